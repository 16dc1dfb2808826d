//! The GCRA arithmetic, in integer nanoseconds on a limiter's own time line,
//! shared by the direct and keyed limiters (see the module docs of
//! [`crate::limit`] for the formulas).

/// Takes `increment = n·T` at `now` from a limiter whose theoretical arrival
/// time is `tat` and whose capacity is `capacity = burst·T`.
///
/// `Ok(new_tat)` when allowed; `Err(earliest)` (the time at which the same
/// request would pass) when not. The caller has checked `increment <= capacity`.
#[inline(always)]
pub(crate) fn decide(tat: u64, now: u64, increment: u64, capacity: u64) -> Result<u64, u64> {
    let new = tat.max(now) + increment;
    let earliest = new.saturating_sub(capacity);
    if earliest <= now {
        Ok(new)
    } else {
        Err(earliest)
    }
}

/// The cells a reservation made with `increment`, ending at `reserved_tat`,
/// can give back at `now` when the limiter's TAT is `tat`: the part not yet
/// drained by time, less whatever later takes already counted on.
#[inline]
pub(crate) fn refund(tat: u64, now: u64, increment: u64, reserved_tat: u64) -> u64 {
    let undrained = increment.min(reserved_tat.saturating_sub(now));
    let later = tat.saturating_sub(reserved_tat);
    undrained.saturating_sub(later).min(tat.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_matches_the_formula() {
        // T = 10, burst 3 (capacity 30).
        assert_eq!(decide(0, 0, 10, 30), Ok(10));
        assert_eq!(decide(10, 0, 10, 30), Ok(20));
        assert_eq!(decide(20, 0, 10, 30), Ok(30));
        assert_eq!(decide(30, 0, 10, 30), Err(10));
        assert_eq!(decide(30, 10, 10, 30), Ok(40));
        // After idling, the past does not count: at most `burst` at once.
        assert_eq!(decide(40, 1_000, 30, 30), Ok(1_030));
        assert_eq!(decide(1_030, 1_000, 10, 30), Err(1_010));
    }

    #[test]
    fn refund_gives_back_only_what_is_still_owed() {
        // Reserved 10 ending at 30, nothing after it: all of it back at 20 (10 undrained).
        assert_eq!(refund(30, 20, 10, 30), 10);
        // Partly drained: at 25 only 5 is still owed.
        assert_eq!(refund(30, 25, 10, 30), 5);
        // Fully drained: nothing.
        assert_eq!(refund(30, 40, 10, 30), 0);
        // A later take of 10 counted on it: nothing back.
        assert_eq!(refund(40, 20, 10, 30), 0);
        assert_eq!(refund(35, 20, 10, 30), 5);
    }
}
