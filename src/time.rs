//! Time on the wire and in storage.
//!
//! Storage keeps milliseconds since the Unix epoch (`i64`), which sort the same on
//! SQLite and PostgreSQL; the wire shows RFC 3339 UTC with milliseconds
//! (`2026-03-13T10:00:00.000Z`, CONTRACT.md "Wire conventions").

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 UTC with milliseconds for a stored millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z() {
        assert_eq!(rfc3339(1_773_396_000_000), "2026-03-13T10:00:00.000Z");
        assert_eq!(rfc3339(1_773_396_000_123), "2026-03-13T10:00:00.123Z");
    }
}
