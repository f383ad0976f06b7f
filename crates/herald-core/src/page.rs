//! Cursor pagination: `?limit=&cursor=` in, `{items, next_cursor}` out.
//!
//! A cursor is opaque to clients: the URL-safe base64 of the last id seen. Lists are in id order
//! (UUIDv7, so creation order), which keeps pages stable while rows are added.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

/// Items per page when the client does not say.
pub const DEFAULT_LIMIT: u32 = 50;
/// The most items one page may hold.
pub const MAX_LIMIT: u32 = 200;

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says that more exist.
    pub fn from_rows<R>(mut rows: Vec<R>, limit: u32, id: impl Fn(&R) -> Uuid, view: impl Fn(R) -> T) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|r| encode_cursor(id(r))) } else { None };
        Self { items: rows.into_iter().map(view).collect(), next_cursor }
    }
}

pub fn encode_cursor(id: Uuid) -> String {
    B64.encode(id.as_bytes())
}

/// The prelude of every list: the page size asked (or the default) and the id after which the
/// page starts, from a client's `limit` and `cursor`.
pub fn request<I: From<Uuid>>(limit: Option<u32>, cursor: Option<&str>) -> Result<(u32, Option<I>), ApiError> {
    let after = cursor.map(decode_cursor).transpose()?.map(I::from);
    Ok((limit.unwrap_or(DEFAULT_LIMIT), after))
}

/// Decodes a client's cursor; a bad one is a field error on `cursor`.
pub fn decode_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    B64.decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::invalid_field("cursor", "not a cursor returned by this list"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_a_field_error() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).expect("decode"), id);
        let err = decode_cursor("not-a-cursor").expect_err("junk");
        assert_eq!(err.field_errors()[0].field, "cursor");
    }

    #[test]
    fn the_extra_row_sets_the_cursor() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page: Page<String> = Page::from_rows(ids.clone(), 2, |id| *id, |id| id.to_string());
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next_cursor, Some(encode_cursor(ids[1])));
        let last: Page<String> = Page::from_rows(ids[..2].to_vec(), 2, |id| *id, |id| id.to_string());
        assert_eq!(last.next_cursor, None);
    }
}
