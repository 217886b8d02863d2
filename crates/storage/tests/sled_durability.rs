//! What only the durable store promises: state survives a re-open and a
//! `SIGKILL`, the revision never goes backwards, and group commit makes
//! durable writes fast.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tugboat_storage::sled::{SledConfig, SledStorage};
use tugboat_storage::{Error, ListOptions, Storage};

use common::{bytes, rng, Model};

fn open(path: &Path) -> Arc<SledStorage> {
    SledStorage::open(path, SledConfig::default()).unwrap()
}

/// Close and drop, so the directory can be opened again.
async fn shut(store: Arc<SledStorage>) {
    store.close().await.unwrap();
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_every_object_and_the_revision_never_goes_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let dyn_store: tugboat_storage::DynStorage = store.clone();
    let mut rng = rng();
    let mut model = Model::default();
    for _ in 0..150 {
        model.random_write(&dyn_store, &mut rng).await;
    }
    // The newest revisions are deletes of the newest keys.
    let newest: Vec<_> = model.state.values().rev().take(5).cloned().collect();
    for kv in newest {
        store.delete(&kv.key, Some(kv.mod_revision)).await.unwrap();
        model.state.remove(&kv.key);
    }
    let current = store.current_revision();
    store.compact(current - 20).await.unwrap();
    drop(dyn_store);
    shut(store).await;

    let store = open(dir.path());
    assert_eq!(store.current_revision(), current);
    assert_eq!(store.compacted_revision(), current - 20);
    let listed = store.list("/", ListOptions::default()).await.unwrap();
    assert_eq!(listed.items, model.state_under("/"));
    // History in the window still answers after the restart.
    let old = ListOptions {
        revision: Some(current - 20),
        ..ListOptions::default()
    };
    assert!(store.list("/", old).await.is_ok());
    let next = store.create("/after-restart", bytes("x")).await.unwrap();
    assert_eq!(next.mod_revision, current + 1);
    shut(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_after_deleting_every_key_and_compacting_keeps_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..3 {
        store.create(&format!("/k{i}"), bytes("x")).await.unwrap();
    }
    for i in 0..3 {
        store.delete(&format!("/k{i}"), None).await.unwrap();
    }
    store.compact(6).await.unwrap();
    shut(store).await;

    let store = open(dir.path());
    assert_eq!(store.current_revision(), 6);
    let created = store.create("/k0", bytes("again")).await.unwrap();
    assert_eq!(created.create_revision, 7);
    shut(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_an_open_directory_fails_with_io() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    match SledStorage::open(dir.path(), SledConfig::default()) {
        Err(Error::Io(_)) => {}
        Err(other) => panic!("expected Io, got {other}"),
        Ok(_) => panic!("a second open succeeded"),
    }
    shut(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_refuses_writes_and_ends_its_watches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("/a", bytes("1")).await.unwrap();
    let mut watch = store.watch("/", 0).unwrap();
    store.close().await.unwrap();
    assert_eq!(store.create("/b", bytes("1")).await, Err(Error::Closed));
    assert_eq!(watch.next().await.map(|e| e.unwrap().revision()), Some(1));
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    assert_eq!(end.unwrap(), None);
}

/// Set in the child process of the `SIGKILL` test: the database directory.
const CHILD_DIR: &str = "TUGBOAT_STORAGE_SIGKILL_CHILD_DIR";
const CHILD_TEST: &str = "sigkill_child_creates_keys_until_killed";
const ACK: &str = "ACK ";

/// The child half of the `SIGKILL` test; does nothing when run on its own.
/// 32 tasks create keys forever, printing each acknowledged key.
#[test]
fn sigkill_child_creates_keys_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = open(Path::new(&dir));
        let tasks: Vec<_> = (0..32)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0u64.. {
                        let key = format!("/crash/{task:02}/{i:08}");
                        store.create(&key, bytes(&key)).await.unwrap();
                        println!("{ACK}{key}");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_create_acknowledged_before_a_sigkill_survives_it() {
    let dir = tempfile::tempdir().unwrap();
    let acked = run_child_until_killed(dir.path(), 5000, Duration::from_secs(5));
    assert!(
        acked.len() >= 50,
        "the child acknowledged only {}",
        acked.len()
    );

    let store = open(dir.path());
    let listed = store.list("/crash/", ListOptions::default()).await.unwrap();
    let present: BTreeSet<_> = listed.items.iter().map(|kv| kv.key.clone()).collect();
    let lost: Vec<_> = acked.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged keys lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    assert!(store.current_revision() >= acked.len() as u64);
    for kv in &listed.items {
        assert_eq!(kv.value, kv.key.as_bytes());
    }
    shut(store).await;
}

/// Run the child against `dir`, `SIGKILL` it once it acknowledged `enough`
/// keys (or after `limit`), and return every key it acknowledged.
fn run_child_until_killed(dir: &Path, enough: usize, limit: Duration) -> BTreeSet<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || read_complete_lines(stdout, lines));

    let deadline = Instant::now() + limit;
    let mut acked = BTreeSet::new();
    while acked.len() < enough {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => collect_ack(&mut acked, line),
            Err(_) => break,
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    reader.join().unwrap();
    for line in received.try_iter() {
        collect_ack(&mut acked, line);
    }
    println!("child acknowledged {} creates before SIGKILL", acked.len());
    acked
}

fn collect_ack(acked: &mut BTreeSet<String>, line: String) {
    if let Some(key) = line.strip_prefix(ACK) {
        acked.insert(key.to_owned());
    }
}

/// Forward newline-terminated lines (a line cut by the kill is not one).
fn read_complete_lines(stdout: impl std::io::Read, lines: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
        if line.ends_with(b"\n") {
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if lines.send(text).is_err() {
                return;
            }
        }
        line.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_writers_share_flushes() {
    const TASKS: usize = 64;
    const PER_TASK: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    let key = format!("/tp/{task:02}/{i:05}");
                    store
                        .create(&key, bytes("{\"kind\":\"Pod\"}"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let writes = (TASKS * PER_TASK) as f64;
    println!(
        "sled: {:.0} durable creates/s ({TASKS} writers, {writes} creates in {elapsed:?}; \
         unoptimised build unless run with --release)",
        writes / elapsed.as_secs_f64()
    );
    assert_eq!(store.current_revision(), (TASKS * PER_TASK) as u64);
    shut(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_survives_a_restart_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ops = (0..3)
        .map(|i| tugboat_storage::TxnOp::Create {
            key: format!("/t/{i}"),
            value: bytes("v"),
        })
        .collect();
    store.transact(ops).await.unwrap();
    shut(store).await;

    let store = open(dir.path());
    assert_eq!(store.current_revision(), 3);
    let listed = store.list("/t/", ListOptions::default()).await.unwrap();
    assert_eq!(listed.items.len(), 3);
    let again = vec![tugboat_storage::TxnOp::Create {
        key: "/t/1".into(),
        value: bytes("w"),
    }];
    assert_eq!(
        store.transact(again).await,
        Err(tugboat_storage::Error::AlreadyExists("/t/1".into()))
    );
    shut(store).await;
}
