//! The write path: validate, apply atomically, make durable, publish.
//!
//! One writer at a time owns the next revision ([`WriterState`]). It turns a
//! batch of requests into events, checking each against the effects of the
//! earlier ones in the same batch, so a batch behaves exactly like the same
//! writes done one by one. The whole batch is applied in one atomic backend
//! write, made durable with one flush, and only then published to readers and
//! watchers and acknowledged: an acknowledged write is on disk, and nobody
//! ever observes a write that could still be lost.
//!
//! With sled, [`run_writer`] is that writer: callers queue requests and the
//! task takes everything queued at once (group commit), so one fsync serves
//! many writers.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch as signal};

use super::{lock, Backend, Shared};
use crate::{Error, Event, KeyValue, Result, Revision};

/// One requested write.
#[derive(Debug)]
pub(crate) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    /// Single-key ops applied all-or-nothing (never nested).
    Txn(Vec<Op>),
}

impl From<crate::TxnOp> for Op {
    fn from(op: crate::TxnOp) -> Self {
        match op {
            crate::TxnOp::Create { key, value } => Op::Create { key, value },
            crate::TxnOp::Update {
                key,
                value,
                expected,
            } => Op::Update {
                key,
                value,
                expected,
            },
            crate::TxnOp::Delete { key, expected } => Op::Delete { key, expected },
        }
    }
}

/// What a successful write answers.
#[derive(Debug)]
pub(crate) enum Outcome {
    Put(KeyValue),
    Deleted(KeyValue, Revision),
    Txn(Vec<Outcome>),
}

impl Outcome {
    pub(crate) fn into_put(self) -> Result<KeyValue> {
        match self {
            Outcome::Put(kv) => Ok(kv),
            _ => Err(Error::Io("internal: a put got another answer".into())),
        }
    }

    pub(crate) fn into_txn(self) -> Result<Vec<crate::TxnResult>> {
        match self {
            Outcome::Txn(outcomes) => outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    Outcome::Put(kv) => Ok(crate::TxnResult::Put(kv)),
                    Outcome::Deleted(kv, rev) => Ok(crate::TxnResult::Deleted(kv, rev)),
                    Outcome::Txn(_) => Err(Error::Io("internal: a nested transaction".into())),
                })
                .collect(),
            _ => Err(Error::Io(
                "internal: a transaction got another answer".into(),
            )),
        }
    }

    pub(crate) fn into_deleted(self) -> Result<(KeyValue, Revision)> {
        match self {
            Outcome::Deleted(kv, rev) => Ok((kv, rev)),
            _ => Err(Error::Io("internal: a delete got another answer".into())),
        }
    }
}

/// A queued write and where to send its answer.
pub(crate) struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// What only the single writer knows: the last revision it applied (which
/// may be ahead of the published one while a flush is in progress).
#[derive(Debug)]
pub(crate) struct WriterState {
    applied: Revision,
}

impl WriterState {
    pub(crate) fn new(applied: Revision) -> Self {
        WriterState { applied }
    }
}

/// The value of a key just before `event`.
pub(crate) fn value_before(event: &Event) -> Option<KeyValue> {
    match event {
        Event::Put { prev, .. } => prev.clone(),
        Event::Delete { prev, .. } => Some(prev.clone()),
    }
}

/// The value of a key just after `event`.
fn value_after(event: &Event) -> Option<KeyValue> {
    match event {
        Event::Put { kv, .. } => Some(kv.clone()),
        Event::Delete { .. } => None,
    }
}

fn check_expected(key: &str, expected: Option<Revision>, current: &KeyValue) -> Result<()> {
    match expected {
        Some(expected) if expected != current.mod_revision => Err(Error::Conflict {
            key: key.to_owned(),
            expected,
            actual: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

/// Decide one write against the key's current value; `rev` is the revision
/// it takes if it succeeds.
fn decide(op: Op, current: Option<KeyValue>, rev: Revision) -> Result<(Event, Outcome)> {
    match (op, current) {
        (Op::Create { key, .. }, Some(_)) => Err(Error::AlreadyExists(key)),
        (Op::Create { key, value }, None) => {
            let kv = KeyValue {
                key,
                value,
                create_revision: rev,
                mod_revision: rev,
            };
            Ok((
                Event::Put {
                    kv: kv.clone(),
                    prev: None,
                },
                Outcome::Put(kv),
            ))
        }
        (Op::Txn(_), _) => Err(Error::Io(
            "internal: a transaction is not a single write".into(),
        )),
        (Op::Update { key, .. } | Op::Delete { key, .. }, None) => Err(Error::NotFound(key)),
        (
            Op::Update {
                key,
                value,
                expected,
            },
            Some(prev),
        ) => {
            check_expected(&key, expected, &prev)?;
            let kv = KeyValue {
                key,
                value,
                create_revision: prev.create_revision,
                mod_revision: rev,
            };
            let event = Event::Put {
                kv: kv.clone(),
                prev: Some(prev),
            };
            Ok((event, Outcome::Put(kv)))
        }
        (Op::Delete { key, expected }, Some(prev)) => {
            check_expected(&key, expected, &prev)?;
            let outcome = Outcome::Deleted(prev.clone(), rev);
            Ok((
                Event::Delete {
                    prev,
                    revision: rev,
                },
                outcome,
            ))
        }
    }
}

/// A validated batch: the events to apply, and one answer per request.
struct Plan {
    events: Vec<Event>,
    outcomes: Vec<Result<Outcome>>,
}

impl<B: Backend> Shared<B> {
    /// Validate `ops` in order, each against the effects of the earlier ones.
    fn plan(&self, applied: Revision, ops: Vec<Op>) -> Plan {
        let mut staged: HashMap<String, Option<KeyValue>> = HashMap::new();
        let mut plan = Plan {
            events: Vec::with_capacity(ops.len()),
            outcomes: Vec::with_capacity(ops.len()),
        };
        let mut rev = applied;
        for op in ops {
            let (transaction, ops) = match op {
                Op::Txn(ops) => (true, ops),
                single => (false, vec![single]),
            };
            match self.plan_all(&staged, rev, ops) {
                Ok((events, mut outcomes)) => {
                    rev += events.len() as Revision;
                    for event in &events {
                        staged.insert(event.key().to_owned(), value_after(event));
                    }
                    plan.events.extend(events);
                    plan.outcomes.push(match (transaction, outcomes.pop()) {
                        (false, Some(single)) => Ok(single),
                        (false, None) => Err(Error::Io("internal: a write got no answer".into())),
                        (true, last) => {
                            outcomes.extend(last);
                            Ok(Outcome::Txn(outcomes))
                        }
                    });
                }
                Err(error) => plan.outcomes.push(Err(error)),
            }
        }
        plan
    }

    /// Decide a group of ops all-or-nothing on top of `staged` (the batch's
    /// earlier effects): the first failure fails the group and leaves
    /// `staged` untouched.
    fn plan_all(
        &self,
        staged: &HashMap<String, Option<KeyValue>>,
        applied: Revision,
        ops: Vec<Op>,
    ) -> Result<(Vec<Event>, Vec<Outcome>)> {
        let mut local: HashMap<String, Option<KeyValue>> = HashMap::new();
        let mut events = Vec::with_capacity(ops.len());
        let mut outcomes = Vec::with_capacity(ops.len());
        for (rev, op) in (applied + 1..).zip(ops) {
            let key = match &op {
                Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => {
                    key.clone()
                }
                Op::Txn(_) => return Err(Error::Io("internal: nested storage transaction".into())),
            };
            let current = match local.get(&key).or_else(|| staged.get(&key)) {
                Some(value) => value.clone(),
                None => self.backend.get(&key)?,
            };
            let (event, outcome) = decide(op, current, rev)?;
            local.insert(key, value_after(&event));
            events.push(event);
            outcomes.push(outcome);
        }
        Ok((events, outcomes))
    }

    /// Apply, flush and publish a batch; one answer per op, in order.
    pub(super) async fn commit(
        &self,
        state: &mut WriterState,
        ops: Vec<Op>,
    ) -> Vec<Result<Outcome>> {
        if let Some(error) = lock(&self.failure).clone() {
            return ops.iter().map(|_| Err(error.clone())).collect();
        }
        let plan = self.plan(state.applied, ops);
        let Some(last) = plan.events.last().map(Event::revision) else {
            return plan.outcomes;
        };
        if let Err(error) = self.persist(&plan.events, last).await {
            tracing::error!(%error, "storage write failed; refusing further writes");
            *lock(&self.failure) = Some(error.clone());
            return plan.outcomes.iter().map(|_| Err(error.clone())).collect();
        }
        state.applied = last;
        self.publish(plan.events, last);
        plan.outcomes
    }

    pub(super) async fn commit_one(&self, state: &mut WriterState, op: Op) -> Result<Outcome> {
        self.commit(state, vec![op])
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::Io("internal: a write got no answer".into())))
    }

    /// Apply under the gate (remembering the old values for readers), then
    /// flush outside it so readers are not blocked by the disk.
    async fn persist(&self, events: &[Event], last: Revision) -> Result<()> {
        {
            let mut view = self.write_view();
            self.backend.apply(events, last)?;
            for event in events {
                if !view.pending.contains_key(event.key()) {
                    view.pending
                        .insert(event.key().to_owned(), value_before(event));
                }
            }
        }
        self.backend.flush().await
    }

    /// Make a durable batch visible to readers, then to watchers.
    fn publish(&self, events: Vec<Event>, last: Revision) {
        {
            let mut view = self.write_view();
            view.current = last;
            view.pending.clear();
            self.current
                .store(last, std::sync::atomic::Ordering::Release);
        }
        self.broadcast(Arc::from(events));
    }
}

/// Queue one write for the group-commit task and wait for its answer.
pub(crate) async fn submit(queue: &mpsc::Sender<Request>, op: Op) -> Result<Outcome> {
    let (reply, answer) = oneshot::channel();
    queue
        .send(Request { op, reply })
        .await
        .map_err(|_| Error::Closed)?;
    answer.await.map_err(|_| Error::Closed)?
}

/// The group-commit writer: take everything queued (up to `max_batch`),
/// commit it with one flush, answer every caller. On shutdown it stops
/// accepting requests, commits those already queued and ends live watches.
pub(crate) async fn run_writer<B: Backend>(
    shared: Arc<Shared<B>>,
    mut queue: mpsc::Receiver<Request>,
    mut shutdown: signal::Receiver<bool>,
    max_batch: usize,
) {
    let mut state = WriterState::new(shared.current());
    let mut closing = false;
    loop {
        let first = if closing {
            queue.recv().await
        } else {
            tokio::select! {
                request = queue.recv() => request,
                _ = shutdown.changed() => {
                    closing = true;
                    queue.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        let batch = take_batch(first, &mut queue, max_batch);
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
        let outcomes = shared.commit(&mut state, ops).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // The caller may have given up waiting; the write stands.
            let _ = reply.send(outcome);
        }
    }
    shared.close_live();
}

fn take_batch(
    first: Request,
    queue: &mut mpsc::Receiver<Request>,
    max_batch: usize,
) -> Vec<Request> {
    let mut batch = vec![first];
    while batch.len() < max_batch {
        match queue.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from(value.to_owned()),
            create_revision: create,
            mod_revision: modified,
        }
    }

    #[test]
    fn an_update_keeps_the_create_revision_and_records_the_previous_value() {
        let prev = kv("/a", "1", 3, 5);
        let op = Op::Update {
            key: "/a".into(),
            value: Bytes::from_static(b"2"),
            expected: Some(5),
        };
        let (event, _) = decide(op, Some(prev.clone()), 9).unwrap();
        assert_eq!(
            event,
            Event::Put {
                kv: kv("/a", "2", 3, 9),
                prev: Some(prev)
            }
        );
    }

    #[test]
    fn a_guarded_delete_with_a_stale_revision_is_a_conflict() {
        let op = Op::Delete {
            key: "/a".into(),
            expected: Some(4),
        };
        let error = decide(op, Some(kv("/a", "1", 3, 5)), 9).unwrap_err();
        assert_eq!(
            error,
            Error::Conflict {
                key: "/a".into(),
                expected: 4,
                actual: 5
            }
        );
    }

    #[test]
    fn a_delete_keeps_the_old_mod_revision_and_carries_its_own() {
        let op = Op::Delete {
            key: "/a".into(),
            expected: None,
        };
        let prev = kv("/a", "1", 3, 5);
        let (event, outcome) = decide(op, Some(prev.clone()), 9).unwrap();
        assert_eq!(event.revision(), 9);
        assert_eq!(outcome.into_deleted().unwrap(), (prev, 9));
    }
}
