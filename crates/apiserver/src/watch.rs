//! Watch streams: `GET ...?watch=true`.
//!
//! A watch starts from the watch cache (initial state for an unset or "0"
//! resourceVersion, the missed events for an exact one), falls back to
//! storage history when the cache window is too short, and ends with an
//! `ERROR` event carrying 410 Gone when even that is compacted, as upstream.
//! Each watch is one task writing lines into the response body; it stops
//! when the client goes away or `timeoutSeconds` passes.

use std::sync::Arc;
use std::time::Duration;

use api::resources::ResourceInfo;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::cache::{
    encode_object_line, encode_watch_event, from_storage_event, CachedEvent, CachedObject,
    EventType,
};
use crate::codec::{self, Query, Rendering};
use crate::error::{ApiError, ApiResult};
use crate::selection::Selection;
use crate::server::AppState;

/// How often an idle watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(15);

struct Watcher {
    resource: &'static ResourceInfo,
    selection: Selection,
    rendering: Rendering,
    include_object: api::table::IncludeObject,
    sent_columns: bool,
    /// Revision of the last event or bookmark sent.
    revision: u64,
    out: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Watcher {
    /// Send one event, translated for this watcher's selection: an object
    /// that starts matching is ADDED, one that stops matching is DELETED.
    async fn send_event(&mut self, event: &CachedEvent) -> bool {
        if event.revision <= self.revision {
            return true;
        }
        self.revision = event.revision;
        let now = self.selection.matches(&event.object.attrs);
        let before = event
            .prev
            .as_ref()
            .is_some_and(|p| self.selection.matches(&p.attrs));
        let event_type = match event.event_type {
            EventType::Added if now => EventType::Added,
            EventType::Modified if now && before => EventType::Modified,
            EventType::Modified if now => EventType::Added,
            EventType::Modified if before => EventType::Deleted,
            EventType::Deleted if before || now => EventType::Deleted,
            _ => return true,
        };
        let line = if event_type == event.event_type && self.rendering == Rendering::Object {
            event.encoded()
        } else {
            self.line(event_type, &event.object)
        };
        self.out.send(Ok(line)).await.is_ok()
    }

    async fn send_added(&mut self, object: &CachedObject) -> bool {
        if !self.selection.matches(&object.attrs) {
            return true;
        }
        let line = self.line(EventType::Added, object);
        self.out.send(Ok(line)).await.is_ok()
    }

    /// The watch line of an event in this watcher's rendering.
    fn line(&mut self, event_type: EventType, object: &CachedObject) -> Bytes {
        match self.rendering {
            Rendering::Object => encode_object_line(event_type.as_str(), object),
            _ => {
                let rendered = self.render(&object.value());
                encode_watch_event(event_type.as_str(), &rendered)
            }
        }
    }

    /// A non-object rendering (metadata only, or a Table) of an object.
    fn render(&mut self, object: &Value) -> Value {
        match self.rendering {
            Rendering::Object => object.clone(),
            Rendering::PartialObjectMetadata => codec::partial_metadata(object),
            Rendering::Table => {
                let mut table = api::table::table(
                    self.resource.group,
                    self.resource.plural,
                    std::slice::from_ref(object),
                    json!({"resourceVersion": api::meta::resource_version(object).unwrap_or("")}),
                    self.include_object,
                    chrono::Utc::now(),
                );
                // Upstream sends column definitions with the first event only.
                if self.sent_columns {
                    table["columnDefinitions"] = json!([]);
                }
                self.sent_columns = true;
                table
            }
        }
    }

    async fn send_bookmark(&mut self, revision: u64, initial_end: bool) -> bool {
        let mut metadata =
            json!({"resourceVersion": revision.to_string(), "creationTimestamp": null});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": metadata,
        });
        self.revision = self.revision.max(revision);
        self.out
            .send(Ok(encode_watch_event("BOOKMARK", &object)))
            .await
            .is_ok()
    }

    async fn send_error(&mut self, error: &ApiError) {
        let _ = self
            .out
            .send(Ok(encode_watch_event("ERROR", &error.status())))
            .await;
    }
}

/// Where a watch begins.
enum Start {
    /// Synthetic ADDED events for the current state, then changes.
    InitialState { bookmark_at_end: bool },
    /// Changes after this revision.
    After(u64),
}

pub async fn serve(
    state: Arc<AppState>,
    resource: &'static ResourceInfo,
    selection: Selection,
    query: &Query,
    accept: &str,
) -> ApiResult<Response> {
    let rendering = codec::rendering(accept)?;
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    let rv = query.non_empty("resourceVersion");
    let timeout = match query.number::<u64>("timeoutSeconds")? {
        Some(t) => Duration::from_secs(t),
        // Upstream spreads long-running requests over [30, 60) minutes.
        None => Duration::from_secs(1800 + rand_below(1800)),
    };
    let start = if send_initial {
        if query.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::invalid(
                "ListOptions",
                Default::default(),
                vec![crate::error::Cause {
                    reason: "FieldValueForbidden".into(),
                    message: "Forbidden: sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan".into(),
                    field: "sendInitialEvents".into(),
                }],
            ));
        }
        match rv {
            Some(v) => {
                let min = crate::registry::parse_revision(v)?;
                state.registry.cache.wait_for(min).await?;
            }
            None => {
                state.registry.cache.wait_fresh().await?;
            }
        }
        Start::InitialState {
            bookmark_at_end: bookmarks,
        }
    } else {
        match rv {
            None => {
                state.registry.cache.wait_fresh().await?;
                Start::InitialState {
                    bookmark_at_end: false,
                }
            }
            Some("0") => Start::InitialState {
                bookmark_at_end: false,
            },
            Some(v) => Start::After(crate::registry::parse_revision(v)?),
        }
    };
    let (tx, rx) = mpsc::channel(256);
    let watcher = Watcher {
        resource,
        selection,
        rendering,
        include_object: api::table::parse_include_object(query.get("includeObject")),
        sent_columns: false,
        revision: 0,
        out: tx,
    };
    tokio::spawn(run(state, watcher, start, bookmarks, timeout));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn rand_below(n: u64) -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()) % n.max(1)
}

async fn run(
    state: Arc<AppState>,
    mut watcher: Watcher,
    start: Start,
    bookmarks: bool,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let prefix = watcher
        .resource
        .namespace_prefix(watcher.selection.namespace());
    let Some(cache) = state.registry.cache.resource(watcher.resource).cloned() else {
        return run_uncached(state, watcher, start, &prefix, deadline).await;
    };
    let live = match start {
        Start::InitialState { bookmark_at_end } => {
            let (objects, revision, live) =
                cache.snapshot_and_subscribe(&prefix, state.registry.cache.revision());
            for object in &objects {
                if !watcher.send_added(object).await {
                    return;
                }
            }
            watcher.revision = revision;
            if bookmark_at_end && !watcher.send_bookmark(revision, true).await {
                return;
            }
            live
        }
        Start::After(after) => {
            watcher.revision = after;
            match cache.subscribe(after) {
                Some(sub) => {
                    for event in &sub.backlog {
                        if !watcher.send_event(event).await {
                            return;
                        }
                    }
                    sub.live
                }
                None => {
                    // Older than the cache window: replay from storage history,
                    // then join the live feed.
                    let live = cache.subscribe(u64::MAX).map(|s| s.live);
                    let stream = match state.registry.cache.storage().watch(&prefix, after) {
                        Ok(s) => s,
                        Err(e) => {
                            let error = too_old(&e);
                            watcher.send_error(&error).await;
                            return;
                        }
                    };
                    let Some(live) = live else { return };
                    if !replay_history(&mut watcher, stream, state.registry.cache.revision()).await
                    {
                        return;
                    }
                    live
                }
            }
        }
    };
    follow(state, watcher, live, bookmarks, deadline).await;
}

fn too_old(e: &storage::Error) -> ApiError {
    match e {
        storage::Error::Expired {
            requested,
            compacted,
        } => ApiError::gone(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        other => ApiError::internal(other),
    }
}

/// Deliver storage history up to the cache's current revision.
async fn replay_history(
    watcher: &mut Watcher,
    mut stream: storage::WatchStream,
    revision: &tokio::sync::watch::Sender<u64>,
) -> bool {
    let target = *revision.borrow();
    while watcher.revision < target {
        match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
            Ok(Some(Ok(event))) => {
                let event = from_storage_event(watcher.resource, &event);
                if !watcher.send_event(&event).await {
                    return false;
                }
            }
            Ok(Some(Err(e))) => {
                watcher.send_error(&too_old(&e)).await;
                return false;
            }
            // No further event for this prefix up to the target.
            _ => break,
        }
    }
    true
}

/// A watch of a resource the watch cache leaves to storage: the initial
/// state is a storage list, and the changes come from a storage watch after
/// it. No periodic bookmarks (as upstream without its cache): without a
/// shared feed there is no revision every queued event is known to be
/// below.
async fn run_uncached(
    state: Arc<AppState>,
    mut watcher: Watcher,
    start: Start,
    prefix: &str,
    deadline: tokio::time::Instant,
) {
    let storage = state.registry.cache.storage();
    let after = match start {
        Start::InitialState { bookmark_at_end } => {
            let listed = match storage.list(prefix, Default::default()).await {
                Ok(listed) => listed,
                Err(e) => return watcher.send_error(&ApiError::internal(e)).await,
            };
            for kv in &listed.items {
                let object =
                    CachedObject::from_stored(watcher.resource, &kv.value, kv.mod_revision);
                if !watcher.send_added(&object).await {
                    return;
                }
            }
            watcher.revision = listed.revision;
            if bookmark_at_end && !watcher.send_bookmark(listed.revision, true).await {
                return;
            }
            listed.revision
        }
        Start::After(after) => {
            watcher.revision = after;
            after
        }
    };
    let mut stream = match storage.watch(prefix, after) {
        Ok(s) => s,
        Err(e) => return watcher.send_error(&too_old(&e)).await,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = watcher.out.closed() => return,
            next = stream.next() => match next {
                Some(Ok(event)) => {
                    let event = from_storage_event(watcher.resource, &event);
                    if !watcher.send_event(&event).await {
                        return;
                    }
                }
                Some(Err(e)) => return watcher.send_error(&too_old(&e)).await,
                None => return,
            },
        }
    }
}

/// The revision a periodic bookmark may carry, if any. A bookmark promises
/// that every event up to its revision was sent: with events still queued
/// for this watcher, a client closed for lagging and resuming from the
/// bookmark would lose them, so it waits for the next tick. (The cache
/// broadcasts an event before it advances the revision, so nothing queued
/// means everything up to `current` was received.)
fn bookmark_revision(queued: usize, current: u64, sent: u64) -> Option<u64> {
    (queued == 0 && current > sent).then_some(current)
}

async fn follow(
    state: Arc<AppState>,
    mut watcher: Watcher,
    mut live: broadcast::Receiver<Arc<CachedEvent>>,
    bookmarks: bool,
    deadline: tokio::time::Instant,
) {
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = watcher.out.closed() => return,
            _ = ticker.tick(), if bookmarks => {
                let current = *state.registry.cache.revision().borrow();
                if let Some(revision) = bookmark_revision(live.len(), current, watcher.revision) {
                    if !watcher.send_bookmark(revision, false).await {
                        return;
                    }
                }
            }
            received = live.recv() => match received {
                Ok(event) => {
                    if !watcher.send_event(&event).await {
                        return;
                    }
                }
                // A watcher too slow for the feed is closed; its client
                // resumes from the last resourceVersion it saw, as with
                // upstream's terminated slow watchers.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, revision = watcher.revision, "closing a watch too slow for the feed");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmarks_never_pass_events_still_queued_for_the_watcher() {
        assert_eq!(bookmark_revision(0, 10, 7), Some(10));
        assert_eq!(bookmark_revision(3, 10, 7), None);
        assert_eq!(bookmark_revision(0, 7, 7), None);
    }
}
