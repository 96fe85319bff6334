//! When a mirror is due: exponential backoff after failures, and a guard against clocks
//! that jump, so a retry is never postponed forever.

use crate::state::MirrorState;
use std::time::{Duration, SystemTime};

/// First retry delay of a failed push mirror; it doubles with each failure.
pub const PUSH_FIRST_RETRY: Duration = Duration::from_secs(30);
/// The longest a failed push mirror waits before the next try.
pub const PUSH_MAX_RETRY: Duration = Duration::from_secs(60 * 60);

/// Delay before retrying a push mirror after `failures` consecutive failures:
/// 30 s, 1 min, 2 min, … capped at 1 h.
pub fn push_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    PUSH_FIRST_RETRY
        .saturating_mul(1 << doublings)
        .min(PUSH_MAX_RETRY)
}

/// True when the mirror may run at `now`: no retry time is set, it has passed, or it
/// lies further ahead than any backoff could put it (the clock went backwards).
pub fn is_due(state: &MirrorState, now: SystemTime, longest_wait: Duration) -> bool {
    let Some(next) = state
        .next_update_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
    else {
        return true;
    };
    next <= now || next > now + longest_wait
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<u64> = [1, 2, 3, 7, 8, 100]
            .map(|n| push_backoff(n).as_secs())
            .into();
        assert_eq!(secs, [30, 60, 120, 1920, 3600, 3600]);
    }

    #[test]
    fn due_unless_waiting_and_survives_clock_jumps() {
        let now = humantime::parse_rfc3339("2026-11-23T10:00:00Z").unwrap();
        let at = |t: &str| MirrorState {
            next_update_at: Some(t.to_owned()),
            ..MirrorState::default()
        };
        let hour = PUSH_MAX_RETRY;
        assert!(is_due(&MirrorState::default(), now, hour));
        assert!(is_due(&at("2026-11-23T09:59:59Z"), now, hour));
        assert!(!is_due(&at("2026-11-23T10:30:00Z"), now, hour));
        assert!(
            is_due(&at("2026-11-24T10:00:00Z"), now, hour),
            "clock went backwards"
        );
        assert!(is_due(&at("garbage"), now, hour));
    }
}
