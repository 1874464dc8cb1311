//! Multi-row writes as statements of fixed text.
//!
//! diesel writes a multi-row `INSERT` with one bind per value, so its text changes with the
//! number of rows and diesel never caches it: every batch paid a round trip to prepare the
//! statement before the one that ran it, inside a transaction that holds a channel's lock.
//! These statements take their rows as one JSON array (`jsonb_to_recordset`), so the text
//! is fixed, prepared once per connection, and run in one round trip.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Jsonb, Nullable, Timestamptz, Uuid as SqlUuid};
use time::OffsetDateTime;
use uuid::Uuid;

/// A fixed statement about one channel and its binds, written in its text as `$1` the
/// channel, `$2` the time, `$3` the rows and `$4` a number (`None` where the text has no
/// `$4`); each may appear any number of times.
pub(crate) struct Rows {
    pub sql: &'static str,
    pub channel: Uuid,
    pub at: OffsetDateTime,
    pub rows: serde_json::Value,
    pub number: Option<i64>,
}

impl QueryId for Rows {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for Rows {
    /// Writes the text with a bind in place of each parameter (a parameter used twice is
    /// bound twice, which is how diesel numbers binds).
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        let mut rest = self.sql;
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            match rest.as_bytes().get(at + 1) {
                Some(b'1') => out.push_bind_param::<SqlUuid, _>(&self.channel)?,
                Some(b'2') => out.push_bind_param::<Timestamptz, _>(&self.at)?,
                Some(b'3') => out.push_bind_param::<Jsonb, _>(&self.rows)?,
                Some(b'4') => out.push_bind_param::<Nullable<BigInt>, _>(&self.number)?,
                _ => {
                    return Err(diesel::result::Error::QueryBuilderError(
                        "unknown parameter in a bulk statement".into(),
                    ));
                }
            }
            rest = &rest[at + 2..];
        }
        out.push_sql(rest);
        Ok(())
    }
}
