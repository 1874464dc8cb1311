//! Statements of fixed text ([`write_numbered`], also used by the history page; [`Fixed`]),
//! and multi-row writes through them.
//!
//! diesel writes a multi-row `INSERT` with one bind per value, so its text changes with the
//! number of rows and diesel never caches it: every batch paid a round trip to prepare the
//! statement before the one that ran it, inside a transaction that holds a channel's lock.
//! These statements take their rows as one JSON array (`jsonb_to_recordset`), so the text
//! is fixed, prepared once per connection, and run in one round trip.

use diesel::QueryResult;
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
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        write_numbered(self.sql, &mut out, |out, parameter| match parameter {
            b'1' => Some(out.push_bind_param::<SqlUuid, _>(&self.channel)),
            b'2' => Some(out.push_bind_param::<Timestamptz, _>(&self.at)),
            b'3' => Some(out.push_bind_param::<Jsonb, _>(&self.rows)),
            b'4' => Some(out.push_bind_param::<Nullable<BigInt>, _>(&self.number)),
            _ => None,
        })
    }
}

/// A statement of fixed text and no binds (`BEGIN`, `COMMIT`), prepared once per connection
/// where `sql_query` would be prepared again, in a round trip of its own, at every use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fixed(pub &'static str);

impl QueryId for Fixed {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for Fixed {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(self.0);
        Ok(())
    }
}

/// Writes a statement's text with a bind, made by `bind`, in place of each parameter `$1` to
/// `$9` (`None` for a parameter the statement does not have). A parameter used twice is
/// bound twice, which is how diesel numbers binds. Such a statement is prepared once per
/// connection and text, where diesel never caches `sql_query`.
pub(crate) fn write_numbered<'b>(
    sql: &'b str,
    out: &mut AstPass<'_, 'b, Pg>,
    mut bind: impl FnMut(&mut AstPass<'_, 'b, Pg>, u8) -> Option<QueryResult<()>>,
) -> QueryResult<()> {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_sql(&rest[..at]);
        let parameter = rest.as_bytes().get(at + 1).copied().unwrap_or_default();
        bind(out, parameter).unwrap_or_else(|| {
            Err(diesel::result::Error::QueryBuilderError(
                format!("no parameter ${} in a fixed statement", char::from(parameter)).into(),
            ))
        })?;
        rest = &rest[at + 2..];
    }
    out.push_sql(rest);
    Ok(())
}
