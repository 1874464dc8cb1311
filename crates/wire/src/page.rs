//! Listings paged by a cursor (docs/api.md section 1).

use domain::{Cursor, DomainError, Limit};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `?limit=&after=` of every listing paged by a cursor (`after` is the previous page's
/// `next_cursor`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
pub struct PageQuery {
    /// 1–200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub after: Option<String>,
}

impl PageQuery {
    /// The limit and the cursor, for listings keyed by an id.
    pub fn parse(&self) -> Result<(Limit, Option<uuid::Uuid>), DomainError> {
        let (limit, after) = self.parse_text()?;
        let after = after
            .map(|key| key.parse::<uuid::Uuid>().map_err(|_| DomainError::invalid("after", "is not a valid cursor")))
            .transpose()?;
        Ok((limit, after))
    }

    /// The limit and the cursor's key as text, for listings keyed otherwise (by username).
    pub fn parse_text(&self) -> Result<(Limit, Option<String>), DomainError> {
        let limit = Limit::parse(self.limit)?;
        let after = self.after.as_deref().map(|raw| Cursor::decode(raw, "after")).transpose()?;
        Ok((limit, after))
    }
}

/// A page of a listing. Pass `next_cursor` back as `after` (or `before` for message
/// history) to get the next page; `null` means there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says whether there is
    /// more, and the cursor is made from the last row kept.
    pub fn from_rows<R>(
        mut rows: Vec<R>,
        limit: i64,
        cursor_of: impl Fn(&R) -> String,
        into: impl FnMut(R) -> T,
    ) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|r| Cursor::encode(&cursor_of(r)).into_string()) } else { None };
        Self { items: rows.into_iter().map(into).collect(), next_cursor }
    }
}
