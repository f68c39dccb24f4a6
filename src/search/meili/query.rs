//! Pure helpers for the Meilisearch backend: the document shape, the id split used for
//! exact range filters, the filter text and the query sanitiser.

use serde::Serialize;
use uuid::Uuid;

use crate::search::{IndexDoc, SearchRequest};

/// Bits of a message id held by each of the three numeric id fields. Meilisearch filters
/// and sorts numbers as `f64`, exact for integers up to 2^53, so the 128-bit id is split
/// into 48 + 40 + 40 bits; comparing the three parts in order compares the ids exactly.
const MID_BITS: u32 = 40;
const LO_BITS: u32 = 40;

/// The three numeric parts of a message id, most significant first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdParts {
    pub hi: u64,
    pub mid: u64,
    pub lo: u64,
}

impl IdParts {
    pub fn of(id: Uuid) -> Self {
        let n = id.as_u128();
        let mask = |bits: u32| (1u128 << bits) - 1;
        IdParts {
            hi: (n >> (MID_BITS + LO_BITS)) as u64,
            mid: ((n >> LO_BITS) & mask(MID_BITS)) as u64,
            lo: (n & mask(LO_BITS)) as u64,
        }
    }
}

/// A message as Meilisearch stores it. `text` is the only searchable attribute.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDoc<'a> {
    /// The message id, lowercase hyphenated (the primary key).
    pub id: String,
    pub channel_id: String,
    pub sender_id: String,
    pub created_at: i64,
    pub id_hi: u64,
    pub id_mid: u64,
    pub id_lo: u64,
    pub text: &'a str,
}

impl<'a> MessageDoc<'a> {
    pub fn of(doc: &'a IndexDoc) -> Self {
        let parts = IdParts::of(doc.message_id);
        MessageDoc {
            id: doc.message_id.hyphenated().to_string(),
            channel_id: doc.channel_id.hyphenated().to_string(),
            sender_id: doc.sender_id.hyphenated().to_string(),
            created_at: doc.created_at_ms,
            id_hi: parts.hi,
            id_mid: parts.mid,
            id_lo: parts.lo,
            text: &doc.text,
        }
    }
}

/// `channelId = "…"`, the filter that selects one channel's messages.
pub fn channel_filter(channel_id: Uuid) -> String {
    format!("channelId = \"{}\"", channel_id.hyphenated())
}

/// The filter for a search: its channel and, when given, `id > after_id` and
/// `id <= until_id`, both exact (a lexicographic comparison of the three id parts).
pub fn search_filter(request: &SearchRequest) -> String {
    let mut clauses = vec![channel_filter(request.channel_id)];
    if let Some(after) = request.after_id {
        clauses.push(id_compare(after, ">", ">"));
    }
    if let Some(until) = request.until_id {
        clauses.push(id_compare(until, "<", "<="));
    }
    clauses.join(" AND ")
}

/// `id <strict> bound` on the higher parts, `<last>` on the lowest part once the higher
/// parts are equal: `hi > a OR (hi = a AND (mid > b OR (mid = b AND lo > c)))`.
fn id_compare(bound: Uuid, strict: &str, last: &str) -> String {
    let IdParts { hi, mid, lo } = IdParts::of(bound);
    format!(
        "(idHi {strict} {hi} OR (idHi = {hi} AND (idMid {strict} {mid} OR \
         (idMid = {mid} AND idLo {last} {lo}))))"
    )
}

/// Characters Meilisearch reads as query syntax, not words: `"` opens a phrase and a
/// `-` after a space negates the next word. The look-alikes that Unicode compatibility
/// normalisation folds into them are dropped too. Everything else is plain text.
fn is_operator(c: char) -> bool {
    matches!(c, '"' | '-' | '\u{FF02}' | '\u{FF0D}' | '\u{FE63}')
}

/// The query as plain words: operator characters become spaces (a hyphen separates words
/// in the index as well, so `e-mail` still finds `e-mail`).
pub fn plain_words(query: &str) -> String {
    query
        .chars()
        .map(|c| if is_operator(c) { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_parts_preserve_order_and_fit_an_f64() {
        let ids = [
            Uuid::nil(),
            Uuid::from_u128(1),
            Uuid::from_u128((1 << 40) - 1),
            Uuid::from_u128(1 << 40),
            Uuid::from_u128(1 << 80),
            Uuid::now_v7(),
            Uuid::max(),
        ];
        for pair in ids.windows(2) {
            let (a, b) = (IdParts::of(pair[0]), IdParts::of(pair[1]));
            assert!((a.hi, a.mid, a.lo) < (b.hi, b.mid, b.lo), "{pair:?}");
        }
        let max = IdParts::of(Uuid::max());
        assert_eq!(max.hi, (1 << 48) - 1);
        assert_eq!(max.mid, (1 << 40) - 1);
        assert_eq!(max.lo, (1 << 40) - 1);
        assert!(max.hi < 1 << 53);
    }

    #[test]
    fn filter_names_the_channel_and_both_bounds() {
        let channel = Uuid::from_u128(7);
        let bound = Uuid::from_u128((3u128 << 80) | (2 << 40) | 1);
        let request = SearchRequest {
            channel_id: channel,
            query: "x".into(),
            after_id: Some(bound),
            until_id: Some(bound),
            limit: 10,
        };
        assert_eq!(
            search_filter(&request),
            "channelId = \"00000000-0000-0000-0000-000000000007\" AND \
             (idHi > 3 OR (idHi = 3 AND (idMid > 2 OR (idMid = 2 AND idLo > 1)))) AND \
             (idHi < 3 OR (idHi = 3 AND (idMid < 2 OR (idMid = 2 AND idLo <= 1))))"
        );
    }

    #[test]
    fn queries_lose_their_operators_only() {
        assert_eq!(plain_words("\"exact phrase\" -not"), "exact phrase not");
        assert_eq!(plain_words("  a   b "), "a b");
        assert_eq!(plain_words("(x AND y:*) ~z"), "(x AND y:*) ~z");
        assert_eq!(plain_words("\u{FF02}q\u{FF0D}r"), "q r");
        assert_eq!(plain_words("\"\"--"), "");
    }
}
