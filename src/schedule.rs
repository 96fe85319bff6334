//! When a mirror is due: the pull's interval (fixed or "auto"), backoff after failures
//! (with jitter, so a fleet does not retry in lockstep), hard failure, and a guard against
//! clocks that jump, so a run is never postponed forever.

use crate::config::{Interval, Pull};
use crate::state::{parse_time, MirrorState, UpdateStatus};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First retry delay of a failed push mirror; it doubles with each failure.
pub const PUSH_FIRST_RETRY: Duration = Duration::from_secs(30);
/// The longest a failed push mirror waits before the next try.
pub const PUSH_MAX_RETRY: Duration = Duration::from_secs(60 * 60);

/// A failed pull waits this long per consecutive failure (GitLab's step)…
pub const PULL_RETRY_STEP: Duration = Duration::from_secs(30 * 60);
/// …or the interval, when that is shorter, but at least this…
pub const PULL_MIN_RETRY_STEP: Duration = Duration::from_secs(5 * 60);
/// …and never longer than this.
pub const PULL_MAX_RETRY: Duration = Duration::from_secs(5 * 60 * 60);
/// `interval = "auto"` polls no more often than this…
pub const AUTO_MIN: Duration = Duration::from_secs(45);
/// …and no less often than this.
pub const AUTO_MAX: Duration = Duration::from_secs(8 * 60 * 60);

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
    parse_time(state.next_update_at.as_deref()).is_none_or(|next| reached(next, now, longest_wait))
}

/// `next` has come, or lies further ahead than `longest_wait` could have put it (the
/// clock went backwards since it was set).
fn reached(next: SystemTime, now: SystemTime, longest_wait: Duration) -> bool {
    next <= now
        || now
            .checked_add(longest_wait)
            .is_some_and(|limit| next > limit)
}

/// `wait` after `at`; `at` itself when that is beyond what the clock can hold (a record
/// dated far ahead), which the clock-jump guard of [`reached`] then treats as due.
pub fn later(at: SystemTime, wait: Duration) -> SystemTime {
    at.checked_add(wait).unwrap_or(at)
}

/// Delay before retrying a pull after `failures` consecutive failures: one step per
/// failure (the interval, if shorter than 30 min, but at least 5 min), capped at 5 h.
pub fn pull_backoff(failures: u32, interval: Interval) -> Duration {
    // Never under 5 minutes a step, so that max_failures in a row spans hours, not the
    // length of a short outage.
    let step = match interval {
        Interval::Every(every) => every.clamp(PULL_MIN_RETRY_STEP, PULL_RETRY_STEP),
        Interval::Auto => PULL_RETRY_STEP,
    };
    step.saturating_mul(failures.max(1)).min(PULL_MAX_RETRY)
}

/// The `auto` interval: half the time since the upstream last changed, within
/// [45 s, 8 h], so an active upstream is polled often and a quiet one almost never.
pub fn auto_interval(since_change: Duration) -> Duration {
    (since_change / 2).clamp(AUTO_MIN, AUTO_MAX)
}

/// `delay` shortened by up to a fifth, by an amount that `seed` fixes: spread over a
/// fleet, yet the same each time it is computed for the same repository and failure.
pub fn jitter(delay: Duration, seed: &str) -> Duration {
    let fraction = (crate::state::hash(seed.as_bytes()) % 1000) as f64 / 1000.0;
    delay.mul_f64(1.0 - 0.2 * fraction)
}

/// When the pull is next due, from what its record says and what the configuration is
/// now (so a changed interval takes effect at once); `None` when it is hard-failed and
/// waits for a person. `config` is the fingerprint of mirror.toml now: an edit after a
/// hard failure resumes the schedule. `seed` spreads the retries of many repositories
/// (the repository's path serves).
pub fn next_pull(state: &MirrorState, pull: &Pull, config: &str, seed: &str) -> Option<SystemTime> {
    let last_run = parse_time(state.last_update_at.as_deref());
    if state.update_status == UpdateStatus::HardFailed {
        let edited = state.hard_failed_config.as_deref() != Some(config);
        return edited.then_some(UNIX_EPOCH);
    }
    let Some(last_run) = last_run else {
        return Some(UNIX_EPOCH);
    };
    if state.consecutive_failures > 0 {
        let backoff = pull_backoff(state.consecutive_failures, pull.interval);
        let seed = format!("{seed} {}", state.consecutive_failures);
        return Some(later(last_run, jitter(backoff, &seed)));
    }
    let interval = match pull.interval {
        Interval::Every(every) => every,
        Interval::Auto => {
            let changed = parse_time(state.last_changed_at.as_deref()).unwrap_or(UNIX_EPOCH);
            auto_interval(last_run.duration_since(changed).unwrap_or_default())
        }
    };
    Some(later(last_run, interval))
}

/// True when the pull may run at `now`: see [`next_pull`]; a due time further ahead than
/// any interval or backoff could put it means the clock went backwards, and it runs.
pub fn pull_is_due(next: Option<SystemTime>, pull: &Pull, now: SystemTime) -> bool {
    let longest = match pull.interval {
        Interval::Every(every) => every.max(PULL_MAX_RETRY),
        Interval::Auto => AUTO_MAX,
    };
    next.is_some_and(|next| reached(next, now, longest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refs::RefPatterns;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    fn pull(interval: Interval) -> Pull {
        Pull {
            url: crate::url::RemoteUrl::parse("/srv/git/upstream.git", std::path::Path::new("/"))
                .unwrap(),
            refs: RefPatterns::heads_and_tags(),
            interval,
            overwrite_diverged: false,
            prune: crate::config::Prune::Off,
            max_failures: 14,
            auth: None,
            timeout: Duration::from_secs(600),
            webhook_secret_file: None,
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<u64> = [1, 2, 3, 7, 8, 100]
            .map(|n| push_backoff(n).as_secs())
            .into();
        assert_eq!(secs, [30, 60, 120, 1920, 3600, 3600]);
    }

    #[test]
    fn due_unless_waiting_and_survives_clock_jumps() {
        let now = at("2026-11-23T10:00:00Z");
        let state = |t: &str| MirrorState {
            next_update_at: Some(t.to_owned()),
            ..MirrorState::default()
        };
        let hour = PUSH_MAX_RETRY;
        assert!(is_due(&MirrorState::default(), now, hour));
        assert!(is_due(&state("2026-11-23T09:59:59Z"), now, hour));
        assert!(!is_due(&state("2026-11-23T10:30:00Z"), now, hour));
        assert!(
            is_due(&state("2026-11-24T10:00:00Z"), now, hour),
            "clock went backwards"
        );
        assert!(is_due(&state("garbage"), now, hour));
    }

    #[test]
    fn pull_backoff_follows_gitlab_and_the_interval() {
        let minutes = |n, i| pull_backoff(n, i).as_secs() / 60;
        let half_hour = Interval::Every(Duration::from_secs(1800));
        assert_eq!(minutes(1, half_hour), 30);
        assert_eq!(minutes(4, half_hour), 120);
        assert_eq!(minutes(13, half_hour), 300, "capped at 5 h");
        assert_eq!(minutes(3, Interval::Every(Duration::from_secs(60))), 15);
        assert_eq!(minutes(2, Interval::Every(Duration::from_secs(600))), 20);
        assert_eq!(minutes(2, Interval::Auto), 60);
    }

    #[test]
    fn auto_interval_is_half_the_quiet_time_within_bounds() {
        assert_eq!(auto_interval(Duration::ZERO), AUTO_MIN);
        assert_eq!(auto_interval(Duration::from_secs(600)).as_secs(), 300);
        assert_eq!(auto_interval(Duration::from_secs(86400 * 30)), AUTO_MAX);
    }

    #[test]
    fn jitter_shortens_by_at_most_a_fifth_and_is_repeatable() {
        let hour = Duration::from_secs(3600);
        let spread: std::collections::BTreeSet<u64> = (0..50)
            .map(|i| jitter(hour, &format!("/srv/git/repo{i}.git")).as_secs())
            .collect();
        assert!(spread.len() > 20, "jitter spreads a fleet: {spread:?}");
        assert!(spread.iter().all(|s| (2880..=3600).contains(s)));
        assert_eq!(jitter(hour, "a"), jitter(hour, "a"));
    }

    #[test]
    fn next_pull_from_the_record() {
        let every = pull(Interval::Every(Duration::from_secs(1800)));
        let never_run = MirrorState::default();
        assert_eq!(next_pull(&never_run, &every, "c", "r"), Some(UNIX_EPOCH));

        let ok = MirrorState {
            update_status: UpdateStatus::Finished,
            last_update_at: Some("2026-11-23T10:00:00Z".into()),
            last_changed_at: Some("2026-11-23T09:00:00Z".into()),
            ..MirrorState::default()
        };
        assert_eq!(
            next_pull(&ok, &every, "c", "r"),
            Some(at("2026-11-23T10:30:00Z"))
        );
        assert_eq!(
            next_pull(&ok, &pull(Interval::Auto), "c", "r"),
            Some(at("2026-11-23T10:30:00Z")),
            "auto: half the hour since the last change"
        );

        let failing = MirrorState {
            update_status: UpdateStatus::Failed,
            consecutive_failures: 2,
            ..ok.clone()
        };
        let next = next_pull(&failing, &every, "c", "r").unwrap();
        assert!(next > at("2026-11-23T10:47:00Z") && next <= at("2026-11-23T11:00:00Z"));

        let hard = MirrorState {
            update_status: UpdateStatus::HardFailed,
            hard_failed_config: Some("c".into()),
            ..failing
        };
        assert_eq!(next_pull(&hard, &every, "c", "r"), None);
        assert_eq!(
            next_pull(&hard, &every, "edited", "r"),
            Some(UNIX_EPOCH),
            "an edit of mirror.toml resumes"
        );
    }

    #[test]
    fn pull_due_guards_against_clock_jumps() {
        let every = pull(Interval::Every(Duration::from_secs(1800)));
        let now = at("2026-11-23T10:00:00Z");
        assert!(pull_is_due(Some(at("2026-11-23T09:00:00Z")), &every, now));
        assert!(!pull_is_due(Some(at("2026-11-23T10:20:00Z")), &every, now));
        assert!(pull_is_due(Some(at("2026-11-25T10:00:00Z")), &every, now));
        assert!(!pull_is_due(None, &every, now));
    }
}
