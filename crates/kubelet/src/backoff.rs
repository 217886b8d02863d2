//! Container restart back-off, as upstream's `flowcontrol.Backoff` used by
//! `doBackOff` (`pkg/kubelet/kuberuntime`): keyed by container, measured
//! from when the container last *finished*:
//! - the first restart is immediate and arms a 10 s back-off;
//! - each further exit within the back-off window waits it out, then the
//!   window doubles, up to 5 minutes;
//! - an entry idle for twice the maximum (10 minutes) starts over.
//!
//! This is what makes `kubectl get pods` show `CrashLoopBackOff` with
//! restarts at roughly 10 s, 20 s, 40 s, ... apart.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Upstream's kubelet defaults.
pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    backoff: Duration,
    last_update: Timestamp,
}

/// Back-off state per key (a pod's container).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL, MAX)
    }
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    let d: SignedDuration = to.duration_since(from);
    d.try_into().unwrap_or(Duration::ZERO)
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, entry: &Entry, event_time: Timestamp) -> bool {
        elapsed(entry.last_update, event_time) > self.max * 2
    }

    /// The current window of `key` (zero if none).
    pub fn get(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.backoff)
    }

    /// Whether `key`, which last finished at `event_time`, must still wait
    /// at `now`; if so, until when.
    pub fn waiting_until(
        &self,
        key: &str,
        event_time: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let entry = self.entries.get(key)?;
        if self.expired(entry, event_time) {
            return None;
        }
        let until = event_time
            .checked_add(SignedDuration::try_from(entry.backoff).ok()?)
            .ok()?;
        (now < until).then_some(until)
    }

    /// Records a restart of `key` that finished at `event_time`: the window
    /// starts at the initial value, or doubles.
    pub fn next(&mut self, key: &str, event_time: Timestamp) {
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(e, event_time) => (e.backoff * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                backoff,
                last_update: event_time,
            },
        );
    }

    /// Forgets `key` (its container is gone for good).
    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// Go's `time.Duration` string for whole seconds: `10s`, `1m20s`, `5m0s`.
pub fn go_seconds(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn restarts_back_off_exponentially_from_the_second() {
        let mut b = Backoff::default();
        // First exit at t=0: no entry, restart at once.
        assert_eq!(b.waiting_until("c", at(0), at(0)), None);
        b.next("c", at(0));
        // Second exit at t=1: wait 10 s from that exit.
        assert_eq!(b.waiting_until("c", at(1), at(5)), Some(at(11)));
        assert_eq!(b.waiting_until("c", at(1), at(11)), None);
        b.next("c", at(1));
        assert_eq!(b.get("c"), Duration::from_secs(20));
        assert_eq!(b.waiting_until("c", at(12), at(12)), Some(at(32)));
        for i in 0..10 {
            b.next("c", at(40 + i));
        }
        assert_eq!(b.get("c"), MAX);
    }

    #[test]
    fn a_long_quiet_period_starts_over() {
        let mut b = Backoff::default();
        b.next("c", at(0));
        b.next("c", at(1));
        assert_eq!(b.get("c"), Duration::from_secs(20));
        // More than 10 minutes after the last restart.
        assert_eq!(b.waiting_until("c", at(700), at(700)), None);
        b.next("c", at(700));
        assert_eq!(b.get("c"), INITIAL);
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_seconds(Duration::from_secs(10)), "10s");
        assert_eq!(go_seconds(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_seconds(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_seconds(Duration::from_secs(3661)), "1h1m1s");
    }
}
