//! Message ids: UUID v7, so ids sort by time, and strictly increasing within a context.
//!
//! Pagination is keyset pagination on the id, so an id issued after a reader passed a
//! point must sort after that point. The service issues ids while holding the context's
//! row lock and never below the highest id issued there before, even if clocks disagree.

use uuid::Uuid;

/// A fresh v7 id strictly greater than `previous`.
pub fn next_message_id(previous: Option<Uuid>) -> Uuid {
    let candidate = Uuid::now_v7();
    match previous {
        Some(prev) if candidate <= prev => bump(prev),
        _ => candidate,
    }
}

/// The next v7 id after `id`: adds one to the random tail, keeping version and variant.
fn bump(id: Uuid) -> Uuid {
    // Layout: 48 bits time, 4 version, 12 rand_a, 2 variant, 62 rand_b.
    let value = id.as_u128();
    let rand_b_mask: u128 = (1u128 << 62) - 1;
    let rand_b = value & rand_b_mask;
    if rand_b < rand_b_mask {
        return Uuid::from_u128(value + 1);
    }
    // rand_b is exhausted: carry into rand_a, then into the timestamp.
    let rand_a = (value >> 64) & 0xfff;
    let base = value & !rand_b_mask;
    if rand_a < 0xfff {
        return Uuid::from_u128((base & !(0xfffu128 << 64)) | ((rand_a + 1) << 64));
    }
    let millis = (value >> 80) + 1;
    Uuid::from_u128((millis << 80) | (0x7u128 << 76) | (0b10u128 << 62))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_even_against_a_future_previous() {
        let future = Uuid::from_u128(Uuid::now_v7().as_u128() + (10_000u128 << 80));
        let next = next_message_id(Some(future));
        assert!(next > future);
        assert_eq!(next.get_version_num(), 7);
        let mut prev = next;
        for _ in 0..1000 {
            let id = next_message_id(Some(prev));
            assert!(id > prev);
            prev = id;
        }
    }

    #[test]
    fn bump_carries_and_keeps_version() {
        let full = Uuid::from_u128(
            (5u128 << 80)
                | (0x7u128 << 76)
                | (0xfffu128 << 64)
                | (0b10u128 << 62)
                | ((1u128 << 62) - 1),
        );
        let next = bump(full);
        assert!(next > full);
        assert_eq!(next.get_version_num(), 7);
        assert_eq!(next.get_variant(), uuid::Variant::RFC4122);
    }
}
