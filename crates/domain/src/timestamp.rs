//! The one timestamp format of the API: RFC 3339 in UTC with millisecond precision and a `Z`
//! (`2025-01-09T12:01:00.123Z`), whatever offset the value carries.

use serde::{Deserialize, Deserializer, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Formats a timestamp the way every response shows it.
pub fn format(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC).format(FORMAT).unwrap_or_else(|_| String::from("1970-01-01T00:00:00.000Z"))
}

pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*at))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
    let raw = String::deserialize(deserializer)?;
    OffsetDateTime::parse(&raw, &Rfc3339).map_err(serde::de::Error::custom)
}

/// The same format for optional timestamps (`edited_at`).
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(at: &Option<OffsetDateTime>, serializer: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serializer.serialize_str(&super::format(*at)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<OffsetDateTime>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|raw| OffsetDateTime::parse(&raw, &Rfc3339).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    #[test]
    fn formats_utc_with_milliseconds_and_z() {
        assert_eq!(super::format(datetime!(2025-01-09 12:01:00.123456 UTC)), "2025-01-09T12:01:00.123Z");
        assert_eq!(super::format(datetime!(2025-01-09 14:01:00 +02:00)), "2025-01-09T12:01:00.000Z");
    }
}
