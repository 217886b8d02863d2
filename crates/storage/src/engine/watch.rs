//! Watch streams: every change after a revision, in order, none lost, none
//! repeated.
//!
//! A watch subscribes to the live broadcast *first*, then replays the log
//! from its start revision up to the published revision, then follows the
//! live channel. Anything published after the subscription arrives live;
//! anything before is in the log; live events at or below the last delivered
//! revision are the overlap and are skipped. If the live channel overflows
//! (a slow watcher lags) or shows a gap, the watch goes back to the log from
//! the last revision it saw. If that history was compacted meanwhile, the
//! stream yields `Expired` and ends: the watcher must re-list.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::{Backend, Shared};
use crate::{Error, Event, Result, Revision, WatchStream};

/// How many log events a watch reads per step, to bound memory and the time
/// spent without yielding.
const LOG_CHUNK: usize = 512;

/// A slice of the log read for one watch.
struct LogChunk {
    /// Events matching the prefix.
    events: Vec<Event>,
    /// Every event up to this revision was looked at.
    through: Revision,
    /// Whether `through` reached the published revision.
    complete: bool,
}

impl<B: Backend> Shared<B> {
    /// Published events after `after` matching `prefix`, at most
    /// [`LOG_CHUNK`] looked at.
    fn read_log(&self, after: Revision, prefix: &str) -> Result<LogChunk> {
        let published = self.current();
        self.ensure_not_compacted(after)?;
        let mut chunk = LogChunk {
            events: Vec::new(),
            through: after,
            complete: true,
        };
        let mut looked = 0;
        let mut gap = false;
        self.backend.scan_log(after, &mut |event| {
            let rev = event.revision();
            if rev > published {
                return Ok(false);
            }
            if looked == LOG_CHUNK {
                chunk.complete = false;
                return Ok(false);
            }
            if rev != chunk.through + 1 {
                gap = true;
                return Ok(false);
            }
            looked += 1;
            chunk.through = rev;
            if event.key().starts_with(prefix) {
                chunk.events.push(event);
            }
            Ok(true)
        })?;
        // A compaction racing with the scan shows up as missing entries.
        self.ensure_not_compacted(after)?;
        if gap || (chunk.complete && chunk.through < published) {
            return Err(Error::Io(format!(
                "storage log has a gap after revision {}",
                chunk.through
            )));
        }
        Ok(chunk)
    }
}

enum Phase {
    /// Reading the log (at start, or after lagging).
    CatchUp,
    /// Following the live channel.
    Live,
    Done,
}

struct Watcher<B> {
    shared: Arc<Shared<B>>,
    prefix: String,
    /// The last revision looked at (delivered or filtered out).
    last: Revision,
    live: broadcast::Receiver<Arc<[Event]>>,
    queue: VecDeque<Event>,
    phase: Phase,
}

/// Open a watch on `prefix` for events after `after`.
pub(crate) fn open<B: Backend>(
    shared: Arc<Shared<B>>,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream> {
    shared.ensure_not_compacted(after)?;
    let live = shared.subscribe()?;
    let watcher = Watcher {
        shared,
        prefix: prefix.to_owned(),
        last: after,
        live,
        queue: VecDeque::new(),
        phase: Phase::CatchUp,
    };
    Ok(Box::pin(futures::stream::unfold(watcher, Watcher::step)))
}

impl<B: Backend> Watcher<B> {
    async fn step(mut self) -> Option<(Result<Event>, Self)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((Ok(event), self));
            }
            match self.phase {
                Phase::Done => return None,
                Phase::CatchUp => {
                    if let Err(error) = self.catch_up() {
                        self.phase = Phase::Done;
                        return Some((Err(error), self));
                    }
                }
                Phase::Live => self.receive().await,
            }
        }
    }

    fn catch_up(&mut self) -> Result<()> {
        let chunk = self.shared.read_log(self.last, &self.prefix)?;
        self.queue.extend(chunk.events);
        self.last = self.last.max(chunk.through);
        if chunk.complete {
            self.phase = Phase::Live;
        }
        Ok(())
    }

    async fn receive(&mut self) {
        match self.live.recv().await {
            Ok(batch) => self.accept(&batch),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, last = self.last, "watch lagged; reading the log");
                self.phase = Phase::CatchUp;
            }
            Err(RecvError::Closed) => self.phase = Phase::Done,
        }
    }

    fn accept(&mut self, batch: &[Event]) {
        for event in batch {
            let rev = event.revision();
            if rev <= self.last {
                continue; // already replayed from the log
            }
            if rev != self.last + 1 {
                // Should not happen; the log knows what we missed.
                self.phase = Phase::CatchUp;
                return;
            }
            self.last = rev;
            if event.key().starts_with(&self.prefix) {
                self.queue.push_back(event.clone());
            }
        }
    }
}
