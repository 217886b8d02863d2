//! Compaction: how much log to keep, and dropping the rest.
//!
//! The log exists so that watches can resume and paginated lists can stay at
//! one revision; it cannot grow forever. We keep the last `min_age` of
//! history OR the last `min_revisions` revisions, whichever is *more*, so a
//! burst of writes does not expire watchers that are only seconds behind, and
//! a quiet store still keeps a useful number of revisions.
//!
//! Times are not stored in the log. Instead each compaction check records a
//! sample `(now, current revision)`; every revision at or below a sample's
//! revision was written at or before that sample's time. The age bound is
//! the newest sample old enough. That errs on the side of keeping more
//! (by up to one check interval, or everything since a restart), never less.

use std::collections::VecDeque;
use std::sync::Weak;
use std::time::{Duration, Instant};

use tokio::sync::watch as signal;

use super::{lock, Backend, Shared};
use crate::{Error, Result, Revision};

/// How much history to keep and how often to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryPolicy {
    pub min_age: Duration,
    pub min_revisions: u64,
    pub interval: Duration,
}

/// Samples of `(time, current revision)`, oldest first.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<(Instant, Revision)>,
}

impl History {
    fn record(&mut self, now: Instant, current: Revision) {
        self.samples.push_back((now, current));
    }

    /// The newest revision written at least `min_age` before `now` (0 if none
    /// is known); forgets samples older than the one it returns.
    fn revision_older_than(&mut self, now: Instant, min_age: Duration) -> Revision {
        let Some(cutoff) = now.checked_sub(min_age) else {
            return 0;
        };
        while self.samples.get(1).is_some_and(|&(t, _)| t <= cutoff) {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some(&(t, rev)) if t <= cutoff => rev,
            _ => 0,
        }
    }

    /// The revision up to which history may be dropped.
    fn compaction_target(
        &mut self,
        policy: &HistoryPolicy,
        now: Instant,
        current: Revision,
    ) -> Revision {
        self.record(now, current);
        let by_age = self.revision_older_than(now, policy.min_age);
        let by_count = current.saturating_sub(policy.min_revisions);
        by_age.min(by_count)
    }
}

impl<B: Backend> Shared<B> {
    /// One periodic check: compact whatever the policy lets go.
    pub(crate) fn compaction_tick(&self, now: Instant) -> Result<()> {
        let mut history = lock(&self.history);
        let target = history.compaction_target(&self.policy, now, self.current());
        self.compact_locked(target)
    }

    /// Forget history at or below `revision` (an explicit request).
    pub(crate) fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.current();
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        let _serialised = lock(&self.history);
        self.compact_locked(revision)
    }

    /// Caller holds the history lock. Already compacted: nothing to do.
    fn compact_locked(&self, revision: Revision) -> Result<()> {
        if revision <= self.compacted() {
            return Ok(());
        }
        // Raise the bar before deleting, so a reader that raced with the
        // deletion notices (it re-checks after reading the log).
        self.compacted
            .store(revision, std::sync::atomic::Ordering::Release);
        self.backend.compact(revision)?;
        tracing::debug!(revision, "storage compacted");
        Ok(())
    }
}

/// The background compactor: checks every `interval` until shutdown or
/// until the store is gone.
pub(crate) async fn run_compactor<B: Backend>(
    shared: Weak<Shared<B>>,
    mut shutdown: signal::Receiver<bool>,
    interval: Duration,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let tick = tokio::task::spawn_blocking(move || shared.compaction_tick(Instant::now()));
        match tick.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "storage compaction failed"),
            Err(error) => tracing::warn!(%error, "storage compaction task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min_age_secs: u64, min_revisions: u64) -> HistoryPolicy {
        HistoryPolicy {
            min_age: Duration::from_secs(min_age_secs),
            min_revisions,
            interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_burst_of_writes_keeps_the_whole_age_window() {
        let start = Instant::now();
        let mut history = History::default();
        let policy = policy(300, 10);
        assert_eq!(history.compaction_target(&policy, start, 100), 0);
        // 301 s and 50_000 revisions later only revision 100 is 5 minutes
        // old: the age window holds far more than 10 revisions, so it wins.
        let later = start + Duration::from_secs(301);
        assert_eq!(history.compaction_target(&policy, later, 50_100), 100);
    }

    #[test]
    fn a_quiet_store_keeps_the_last_revisions_even_when_old() {
        let start = Instant::now();
        let mut history = History::default();
        let policy = policy(300, 10_000);
        history.compaction_target(&policy, start, 12_000);
        let later = start + Duration::from_secs(3600);
        assert_eq!(history.compaction_target(&policy, later, 12_005), 2_005);
    }

    #[test]
    fn old_samples_are_forgotten() {
        let start = Instant::now();
        let mut history = History::default();
        let policy = policy(10, 0);
        for i in 0..100u64 {
            history.compaction_target(&policy, start + Duration::from_secs(i), i * 10);
        }
        assert!(history.samples.len() <= 12, "{}", history.samples.len());
    }
}
