//! Cursor pagination shared by every list (CONTRACT.md "Lists and pagination").
//!
//! A cursor is opaque to clients: `base64url(direction || time || id || mac)`, where the
//! MAC (HMAC-SHA256, truncated to 16 bytes, keyed from the server key) also covers the
//! list it belongs to. An unknown, tampered or foreign cursor is a 400. Pages are keyset
//! pages over a strictly ordered key, so they never skip or repeat an item however many
//! items arrive meanwhile.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ServiceError, ServiceResult};

/// Default page size.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest page size.
pub const MAX_LIMIT: u64 = 100;

/// Which way a list is read.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema, async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Oldest first, towards newer items (the default).
    Forward,
    /// Start at the newest page and page towards older ones.
    Backward,
}

/// The query parameters of every list route.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, async_graphql::InputObject)]
#[into_params(parameter_in = Query)]
#[graphql(name = "PageInput")]
pub struct PageParams {
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
    /// Page size, 1..=100, default 50.
    pub limit: Option<i64>,
    /// `forward` (default) or `backward` (message lists only).
    pub direction: Option<Direction>,
}

/// Where a page starts: after (forward) or before (backward) this key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CursorKey {
    /// A time component of the sort key (0 where the list sorts by id alone).
    pub time: i64,
    pub id: Uuid,
}

/// A validated page request.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub limit: u64,
    pub direction: Direction,
    pub after: Option<CursorKey>,
}

/// One page of a list, as every list route returns it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Continue from here; `null` when the list is empty.
    pub cursor: Option<String>,
    /// Whether another page follows in this direction.
    pub has_more: bool,
}

impl<T> Page<T> {
    /// The same page with every item converted.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            cursor: self.cursor,
            has_more: self.has_more,
        }
    }
}

/// Makes and checks cursors.
#[derive(Clone)]
pub struct CursorCodec {
    /// Wiped on drop.
    key: crate::crypto::Secret32,
}

const MAC_LEN: usize = 16;
const PAYLOAD_LEN: usize = 1 + 8 + 16;

impl CursorCodec {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key: crate::crypto::Secret32(key),
        }
    }

    fn hmac(&self, scope: &str, payload: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key.0)
            .expect("HMAC takes a key of any length");
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    fn mac(&self, scope: &str, payload: &[u8]) -> [u8; MAC_LEN] {
        let full: [u8; 32] = self.hmac(scope, payload).finalize().into_bytes().into();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The cursor for continuing `scope` in `direction` from `key`.
    pub fn encode(&self, scope: &str, direction: Direction, key: CursorKey) -> String {
        let mut bytes = Vec::with_capacity(PAYLOAD_LEN + MAC_LEN);
        bytes.push(match direction {
            Direction::Forward => b'f',
            Direction::Backward => b'b',
        });
        bytes.extend_from_slice(&key.time.to_be_bytes());
        bytes.extend_from_slice(key.id.as_bytes());
        let mac = self.mac(scope, &bytes);
        bytes.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a cursor made by [`Self::encode`] for the same `scope`.
    pub fn decode(&self, scope: &str, cursor: &str) -> ServiceResult<(Direction, CursorKey)> {
        let invalid = || ServiceError::validation("cursor is invalid");
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor.as_bytes())
            .map_err(|_| invalid())?;
        if bytes.len() != PAYLOAD_LEN + MAC_LEN {
            return Err(invalid());
        }
        let (payload, mac) = bytes.split_at(PAYLOAD_LEN);
        // Constant-time comparison of the truncated tag, by the hmac crate.
        self.hmac(scope, payload)
            .verify_truncated_left(mac)
            .map_err(|_| invalid())?;
        let direction = match payload[0] {
            b'f' => Direction::Forward,
            b'b' => Direction::Backward,
            _ => return Err(invalid()),
        };
        let time = i64::from_be_bytes(payload[1..9].try_into().map_err(|_| invalid())?);
        let id = Uuid::from_slice(&payload[9..25]).map_err(|_| invalid())?;
        Ok((direction, CursorKey { time, id }))
    }

    /// Validates list parameters for `scope`. `allow_backward` is false for lists that
    /// only read one way.
    pub fn request(
        &self,
        scope: &str,
        params: &PageParams,
        allow_backward: bool,
    ) -> ServiceResult<PageRequest> {
        let limit = match params.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as u64,
            Some(_) => return Err(ServiceError::validation("limit must be between 1 and 100")),
        };
        let mut direction = params.direction.unwrap_or(Direction::Forward);
        if direction == Direction::Backward && !allow_backward {
            return Err(ServiceError::validation("this list reads forward only"));
        }
        let after = match params.cursor.as_deref() {
            None => None,
            Some(cursor) => {
                let (cursor_direction, key) = self.decode(scope, cursor)?;
                if params.direction.is_some_and(|d| d != cursor_direction) {
                    return Err(ServiceError::validation(
                        "direction does not match the cursor",
                    ));
                }
                direction = cursor_direction;
                Some(key)
            }
        };
        Ok(PageRequest {
            limit,
            direction,
            after,
        })
    }

    /// Builds a page from up to `limit + 1` rows read in the request's direction
    /// (newest first for backward). Items come out oldest first either way.
    pub fn page<T>(
        &self,
        scope: &str,
        request: &PageRequest,
        mut rows: Vec<T>,
        key_of: impl Fn(&T) -> CursorKey,
    ) -> Page<T> {
        let has_more = rows.len() as u64 > request.limit;
        rows.truncate(request.limit as usize);
        // The continuation point is the last row read in the request's direction.
        let last_key = rows.last().map(&key_of).or(request.after);
        if request.direction == Direction::Backward {
            rows.reverse();
        }
        Page {
            cursor: last_key.map(|key| self.encode(scope, request.direction, key)),
            items: rows,
            has_more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codec() -> CursorCodec {
        CursorCodec::new([9; 32])
    }

    proptest! {
        #[test]
        fn cursors_round_trip(time in any::<i64>(), id in any::<u128>(), backward in any::<bool>()) {
            let direction = if backward { Direction::Backward } else { Direction::Forward };
            let key = CursorKey { time, id: Uuid::from_u128(id) };
            let cursor = codec().encode("scope", direction, key);
            prop_assert_eq!(codec().decode("scope", &cursor).expect("decodes"), (direction, key));
        }

        #[test]
        fn any_other_string_is_refused(s in "\\PC{0,80}") {
            prop_assert!(codec().decode("scope", &s).is_err());
        }

        #[test]
        fn a_flipped_bit_is_refused(id in any::<u128>(), bit in 0usize..(41 * 8)) {
            let cursor = codec().encode("scope", Direction::Forward, CursorKey { time: 5, id: Uuid::from_u128(id) });
            let mut bytes = URL_SAFE_NO_PAD.decode(cursor).expect("b64");
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(codec().decode("scope", &URL_SAFE_NO_PAD.encode(bytes)).is_err());
        }
    }

    #[test]
    fn a_cursor_of_another_list_is_refused() {
        let cursor = codec().encode(
            "a",
            Direction::Forward,
            CursorKey {
                time: 0,
                id: Uuid::nil(),
            },
        );
        assert!(codec().decode("b", &cursor).is_err());
    }

    #[test]
    fn limits_outside_1_to_100_are_refused() {
        for limit in [0, -1, 101, i64::MAX] {
            let params = PageParams {
                limit: Some(limit),
                ..Default::default()
            };
            assert!(codec().request("s", &params, true).is_err());
        }
        let params = PageParams {
            limit: Some(100),
            ..Default::default()
        };
        assert_eq!(codec().request("s", &params, true).expect("ok").limit, 100);
    }
}
