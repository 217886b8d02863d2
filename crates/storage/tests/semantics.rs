//! The storage contract, checked against both the memory and the sled store.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use tugboat_storage::{Error, Event, ListOptions, TxnOp, TxnResult};

use common::{assert_quiet, bytes, next_event, open, open_with, take_events, Kind, Model, Window};

for_both_stores!(
    writes_follow_the_create_update_delete_contract,
    concurrent_read_modify_updates_on_one_key_lose_no_increment,
    a_watch_from_a_random_past_revision_gets_exactly_the_later_events_then_live_ones,
    a_watch_from_a_future_revision_waits_for_it,
    watches_opened_during_concurrent_writes_see_every_revision_exactly_once,
    a_watcher_that_lags_behind_the_live_channel_still_gets_every_event_once,
    a_list_at_an_older_revision_returns_the_state_as_of_then,
    pages_at_a_fixed_revision_form_one_snapshot_while_writes_continue,
    compaction_expires_older_revisions_but_keeps_current_values,
    a_watcher_left_behind_by_compaction_gets_expired_and_ends,
    background_compaction_keeps_the_configured_window,
    a_transaction_applies_every_op_or_none,
    concurrent_transactions_claiming_shared_keys_have_one_winner_per_key,
);

async fn writes_follow_the_create_update_delete_contract(kind: Kind) {
    let subject = open(kind);
    let store = &subject.store;
    assert_eq!(store.current_revision(), 0);
    let created = store.create("/a", bytes("1")).await.unwrap();
    assert_eq!((created.create_revision, created.mod_revision), (1, 1));
    let mut watch = store.watch("/", 1).unwrap();

    assert_eq!(
        store.create("/a", bytes("x")).await,
        Err(Error::AlreadyExists("/a".into()))
    );
    assert_eq!(
        store.update("/missing", bytes("x"), None).await,
        Err(Error::NotFound("/missing".into()))
    );
    assert_eq!(
        store.delete("/missing", None).await,
        Err(Error::NotFound("/missing".into()))
    );
    assert_eq!(
        store.update("/a", bytes("x"), Some(7)).await,
        Err(Error::Conflict {
            key: "/a".into(),
            expected: 7,
            actual: 1
        })
    );
    assert_eq!(
        store.current_revision(),
        1,
        "failed writes take no revision"
    );

    let updated = store.update("/a", bytes("2"), Some(1)).await.unwrap();
    assert_eq!((updated.create_revision, updated.mod_revision), (1, 2));
    let unguarded = store.update("/a", bytes("3"), None).await.unwrap();
    assert_eq!(unguarded.mod_revision, 3);
    assert_eq!(store.get("/a").await.unwrap(), Some(unguarded.clone()));

    let (deleted, revision) = store.delete("/a", Some(3)).await.unwrap();
    assert_eq!((deleted.clone(), revision), (unguarded.clone(), 4));
    assert_eq!(store.get("/a").await.unwrap(), None);

    let events = take_events(&mut watch, 3).await;
    assert_eq!(
        events[2],
        Event::Delete {
            prev: unguarded,
            revision: 4
        }
    );
    assert_eq!(
        events.iter().map(Event::revision).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    let recreated = store.create("/a", bytes("again")).await.unwrap();
    assert_eq!((recreated.create_revision, recreated.mod_revision), (5, 5));
}

async fn concurrent_read_modify_updates_on_one_key_lose_no_increment(kind: Kind) {
    const TASKS: usize = 32;
    const ATTEMPTS: usize = 15;
    let subject = open(kind);
    let store = subject.store.clone();
    store.create("/counter", bytes("0")).await.unwrap();
    let successes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (store, successes) = (store.clone(), successes.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..ATTEMPTS {
                let current = store.get("/counter").await.unwrap().unwrap();
                let n: u64 = std::str::from_utf8(&current.value)
                    .unwrap()
                    .parse()
                    .unwrap();
                let next = bytes(&(n + 1).to_string());
                match store
                    .update("/counter", next, Some(current.mod_revision))
                    .await
                {
                    Ok(_) => {
                        successes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::Conflict { .. }) => {}
                    Err(other) => panic!("only conflicts may fail, got {other}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let last = store.get("/counter").await.unwrap().unwrap();
    let counter: u64 = std::str::from_utf8(&last.value).unwrap().parse().unwrap();
    let successes = successes.load(Ordering::Relaxed);
    assert!(successes > 0);
    assert_eq!(counter, successes);
    assert_eq!(store.current_revision(), 1 + successes);
}

async fn a_watch_from_a_random_past_revision_gets_exactly_the_later_events_then_live_ones(
    kind: Kind,
) {
    let subject = open(kind);
    let store = &subject.store;
    let mut rng = common::rng();
    let mut model = Model::default();
    for _ in 0..120 {
        model.random_write(store, &mut rng).await;
    }
    let current = store.current_revision();
    let mut starts = vec![0, current];
    starts.extend((0..4).map(|_| rng.gen_range(0..=current)));
    let mut watches = Vec::new();
    for &after in &starts {
        let mut watch = store.watch("/w/a/", after).unwrap();
        let expected = model.events_after(after, "/w/a/");
        assert_eq!(take_events(&mut watch, expected.len()).await, expected);
        watches.push(watch);
    }
    for _ in 0..30 {
        model.random_write(store, &mut rng).await;
    }
    let live = model.events_after(current, "/w/a/");
    for watch in &mut watches {
        assert_eq!(take_events(watch, live.len()).await, live);
        assert_quiet(watch).await;
    }
}

async fn a_watch_from_a_future_revision_waits_for_it(kind: Kind) {
    let subject = open(kind);
    let store = &subject.store;
    store.create("/f/0", bytes("0")).await.unwrap();
    let mut watch = store.watch("/f/", 3).unwrap();
    for i in 1..=4 {
        store.create(&format!("/f/{i}"), bytes("x")).await.unwrap();
    }
    assert_eq!(next_event(&mut watch).await.revision(), 4);
    assert_eq!(next_event(&mut watch).await.revision(), 5);
    assert_quiet(&mut watch).await;
}

async fn watches_opened_during_concurrent_writes_see_every_revision_exactly_once(kind: Kind) {
    const WRITERS: u64 = 8;
    const PER_WRITER: u64 = 80;
    const TOTAL: u64 = WRITERS * PER_WRITER;
    let subject = open(kind);
    let store = subject.store.clone();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    store
                        .create(&format!("/r/{w}/{i}"), bytes("x"))
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut rng = common::rng();
    let mut watches = Vec::new();
    while store.current_revision() < TOTAL && watches.len() < 12 {
        let after = rng.gen_range(0..=store.current_revision());
        watches.push((after, store.watch("/r/", after).unwrap()));
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..4))).await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for (after, mut watch) in watches {
        let events = take_events(&mut watch, (TOTAL - after) as usize).await;
        let revisions: Vec<_> = events.iter().map(Event::revision).collect();
        assert_eq!(revisions, (after + 1..=TOTAL).collect::<Vec<_>>());
        assert_quiet(&mut watch).await;
    }
}

async fn a_watcher_that_lags_behind_the_live_channel_still_gets_every_event_once(kind: Kind) {
    // More single-write batches than the live channel holds, unread.
    const WRITES: u64 = 1300;
    let subject = open(kind);
    let store = &subject.store;
    let mut watch = store.watch("/lag/", 0).unwrap();
    for i in 0..WRITES {
        store
            .create(&format!("/lag/{i:05}"), bytes("x"))
            .await
            .unwrap();
    }
    let events = take_events(&mut watch, WRITES as usize).await;
    let revisions: Vec<_> = events.iter().map(Event::revision).collect();
    assert_eq!(revisions, (1..=WRITES).collect::<Vec<_>>());
    assert_quiet(&mut watch).await;
}

async fn a_list_at_an_older_revision_returns_the_state_as_of_then(kind: Kind) {
    let subject = open(kind);
    let store = &subject.store;
    let mut rng = common::rng();
    let mut model = Model::default();
    for _ in 0..100 {
        model.random_write(store, &mut rng).await;
    }
    for (revision, state) in &model.snapshots {
        for prefix in ["/w/", "/w/b/"] {
            let options = ListOptions {
                revision: Some(*revision),
                ..ListOptions::default()
            };
            let listed = store.list(prefix, options).await.unwrap();
            assert_eq!(listed.revision, *revision);
            assert_eq!(listed.items, common::under(state, prefix), "at {revision}");
            assert!(!listed.more);
        }
    }
    let current = store.current_revision();
    let now = store.list("/w/", ListOptions::default()).await.unwrap();
    assert_eq!(
        (now.revision, now.items),
        (current, model.state_under("/w/"))
    );
    let future = ListOptions {
        revision: Some(current + 1),
        ..ListOptions::default()
    };
    assert_eq!(
        store.list("/w/", future).await,
        Err(Error::FutureRevision {
            requested: current + 1,
            current
        })
    );
}

async fn pages_at_a_fixed_revision_form_one_snapshot_while_writes_continue(kind: Kind) {
    let subject = open(kind);
    let store = subject.store.clone();
    for i in 0..90 {
        store
            .create(&format!("/p/{i:03}"), bytes("orig"))
            .await
            .unwrap();
    }
    let snapshot = store.list("/p/", ListOptions::default()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let churn = tokio::spawn(churn(store.clone(), stop.clone()));

    // Page through the old snapshot while the churn rewrites it.
    let paged = paginate(&store, snapshot.revision, 7).await;
    assert_eq!(paged, snapshot.items);

    // A snapshot taken mid-churn, then paged, equals a one-shot list of it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let first = store.list("/p/", ListOptions::default()).await.unwrap();
    let paged = paginate(&store, first.revision, 11).await;
    stop.store(true, Ordering::Relaxed);
    let writes = churn.await.unwrap();
    assert!(writes > 0);
    let whole = ListOptions {
        revision: Some(first.revision),
        ..ListOptions::default()
    };
    assert_eq!(paged, store.list("/p/", whole).await.unwrap().items);
}

/// Updates, deletes and creates under `/p/` until stopped; returns the count.
async fn churn(store: tugboat_storage::DynStorage, stop: Arc<AtomicBool>) -> u64 {
    let mut writes = 0u64;
    while !stop.load(Ordering::Relaxed) && writes < 5000 {
        let i = writes % 90;
        let key = format!("/p/{i:03}");
        // Some of these fail (the key is gone or back); that is churn too.
        let _ = match writes % 3 {
            0 => store.update(&key, bytes("churned"), None).await.map(drop),
            1 => store.delete(&key, None).await.map(drop),
            _ => store
                .create(&format!("{key}-new{writes}"), bytes("n"))
                .await
                .map(drop),
        };
        writes += 1;
        tokio::task::yield_now().await;
    }
    writes
}

/// All items under `/p/` at `revision`, `limit` at a time, checking
/// `more` and `remaining` on every page.
async fn paginate(
    store: &tugboat_storage::DynStorage,
    revision: u64,
    limit: usize,
) -> Vec<tugboat_storage::KeyValue> {
    let mut items = Vec::new();
    let mut start_after = None;
    let mut expected_total = None;
    loop {
        let options = ListOptions {
            start_after: start_after.clone(),
            limit: Some(limit),
            revision: Some(revision),
        };
        let page = store.list("/p/", options).await.unwrap();
        assert_eq!(page.revision, revision);
        assert!(page.items.len() <= limit);
        items.extend(page.items.iter().cloned());
        let total = items.len() as u64 + page.remaining;
        assert_eq!(*expected_total.get_or_insert(total), total);
        if !page.more {
            assert_eq!(page.remaining, 0);
            return items;
        }
        start_after = page.items.last().map(|kv| kv.key.clone());
    }
}

async fn compaction_expires_older_revisions_but_keeps_current_values(kind: Kind) {
    let subject = open(kind);
    let store = &subject.store;
    let mut rng = common::rng();
    let mut model = Model::default();
    for _ in 0..40 {
        model.random_write(store, &mut rng).await;
    }
    let current = store.current_revision();
    store.compact(20).await.unwrap();
    assert_eq!(store.compacted_revision(), 20);
    store.compact(10).await.unwrap(); // already compacted: nothing to do
    assert_eq!(store.compacted_revision(), 20);

    let expired = Err(Error::Expired {
        requested: 19,
        compacted: 20,
    });
    assert_eq!(store.watch("/w/", 19).err(), expired.clone().err());
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    assert_eq!(store.list("/w/", at(19)).await, expired);

    let (_, state_at_20) = &model.snapshots[19];
    let listed = store.list("/w/", at(20)).await.unwrap();
    assert_eq!(listed.items, common::under(state_at_20, "/w/"));
    let mut watch = store.watch("/w/", 20).unwrap();
    let expected = model.events_after(20, "/w/");
    assert_eq!(take_events(&mut watch, expected.len()).await, expected);

    store.compact(current).await.unwrap();
    let now = store.list("/w/", ListOptions::default()).await.unwrap();
    assert_eq!(now.items, model.state_under("/w/"));
    assert_eq!(
        store.compact(current + 1).await,
        Err(Error::FutureRevision {
            requested: current + 1,
            current
        })
    );
}

async fn a_watcher_left_behind_by_compaction_gets_expired_and_ends(kind: Kind) {
    let subject = open(kind);
    let store = &subject.store;
    let mut watch = store.watch("/", 0).unwrap();
    for i in 0..5 {
        store.create(&format!("/k{i}"), bytes("x")).await.unwrap();
    }
    store.compact(3).await.unwrap();
    let item = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    assert_eq!(
        item.unwrap(),
        Some(Err(Error::Expired {
            requested: 0,
            compacted: 3
        }))
    );
    assert_eq!(watch.next().await, None);
}

async fn background_compaction_keeps_the_configured_window(kind: Kind) {
    let window = Window {
        min_age: Duration::ZERO,
        min_revisions: 5,
        interval: Duration::from_millis(20),
    };
    let subject = open_with(kind, window);
    let store = &subject.store;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    while store.compacted_revision() < 20 {
        assert!(Instant::now() < deadline, "no compaction within 10 s");
        store.create(&format!("/c/{i}"), bytes("x")).await.unwrap();
        i += 1;
        let (current, compacted) = (store.current_revision(), store.compacted_revision());
        assert!(
            compacted <= current.saturating_sub(5),
            "kept {compacted}..{current}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let listed = store.list("/c/", ListOptions::default()).await.unwrap();
    assert_eq!(listed.items.len(), i);
}

fn create(key: &str, value: &str) -> TxnOp {
    TxnOp::Create {
        key: key.into(),
        value: bytes(value),
    }
}

async fn a_transaction_applies_every_op_or_none(kind: Kind) {
    let subject = open(kind);
    let store = &subject.store;
    let first = store.create("/held", bytes("h")).await.unwrap();
    let mut watch = store.watch("/", first.mod_revision).unwrap();

    // A later op sees an earlier one: create then update the same key.
    let results = store
        .transact(vec![
            create("/a", "1"),
            TxnOp::Update {
                key: "/a".into(),
                value: bytes("2"),
                expected: Some(2),
            },
            create("/b", "1"),
            TxnOp::Delete {
                key: "/held".into(),
                expected: Some(1),
            },
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    assert!(
        matches!(&results[1], TxnResult::Put(kv) if kv.mod_revision == 3 && kv.create_revision == 2)
    );
    assert!(matches!(&results[3], TxnResult::Deleted(kv, 5) if kv.key == "/held"));
    assert_eq!(store.current_revision(), 5);
    assert_eq!(store.get("/a").await.unwrap().unwrap().value, bytes("2"));
    let events = take_events(&mut watch, 4).await;
    let revisions: Vec<_> = events.iter().map(Event::revision).collect();
    assert_eq!(revisions, vec![2, 3, 4, 5]);

    // A failing op anywhere fails the whole transaction and takes no revision.
    let failures = [
        (
            vec![create("/c", "1"), create("/a", "x")],
            Error::AlreadyExists("/a".into()),
        ),
        (
            vec![
                create("/c", "1"),
                TxnOp::Delete {
                    key: "/missing".into(),
                    expected: None,
                },
            ],
            Error::NotFound("/missing".into()),
        ),
        (
            vec![
                create("/c", "1"),
                TxnOp::Update {
                    key: "/b".into(),
                    value: bytes("x"),
                    expected: Some(1),
                },
            ],
            Error::Conflict {
                key: "/b".into(),
                expected: 1,
                actual: 4,
            },
        ),
    ];
    for (ops, expected) in failures {
        assert_eq!(store.transact(ops).await, Err(expected));
        assert_eq!(
            store.current_revision(),
            5,
            "a failed transaction takes no revision"
        );
        assert_eq!(
            store.get("/c").await.unwrap(),
            None,
            "nothing of it is applied"
        );
    }
    assert_eq!(store.transact(Vec::new()).await, Ok(Vec::new()));
    assert_quiet(&mut watch).await;
}

async fn concurrent_transactions_claiming_shared_keys_have_one_winner_per_key(kind: Kind) {
    let subject = open(kind);
    let mut tasks = Vec::new();
    for writer in 0..40 {
        let store = subject.store.clone();
        tasks.push(tokio::spawn(async move {
            // Each writer wants one of five claims plus its own object.
            let claim = format!("/claims/{}", writer % 5);
            let result = store
                .transact(vec![
                    create(&claim, &writer.to_string()),
                    create(&format!("/objects/{writer}"), "o"),
                ])
                .await;
            (writer, result)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (writer, result) = task.await.unwrap();
        match result {
            Ok(_) => winners.push(writer),
            Err(Error::AlreadyExists(key)) => assert!(key.starts_with("/claims/")),
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(winners.len(), 5, "one winner per claim: {winners:?}");
    let objects = subject
        .store
        .list("/objects/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(objects.items.len(), 5, "losers left no object behind");
    for writer in winners {
        let claim = subject
            .store
            .get(&format!("/claims/{}", writer % 5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claim.value, bytes(&writer.to_string()));
    }
}
