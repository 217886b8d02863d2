//! Leader election against the in-process API server: of two candidates
//! exactly one leads; when it stops renewing the other takes over after
//! about a lease duration, and a released lease is taken over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use test_support::TestServer;
use tugboat_component_base::leader::{LeaderElectionConfig, LeaderElector, Leadership};

fn config(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        ..LeaderElectionConfig::new("kube-scheduler", identity)
    }
}

fn candidate(
    client: &kube::Client,
    identity: &str,
) -> tokio::task::JoinHandle<anyhow::Result<Leadership>> {
    let elector = LeaderElector::new(client.clone(), config(identity));
    tokio::spawn(elector.acquire())
}

async fn lease(client: &kube::Client) -> Lease {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    leases.get("kube-scheduler").await.unwrap()
}

fn holder(lease: &Lease) -> &str {
    let spec = lease.spec.as_ref().unwrap();
    spec.holder_identity.as_deref().unwrap_or("")
}

/// Wait for whichever of `a` and `b` leads first; the other must stay a
/// candidate for a while after.
async fn first_leader(
    a: &mut tokio::task::JoinHandle<anyhow::Result<Leadership>>,
    b: &mut tokio::task::JoinHandle<anyhow::Result<Leadership>>,
) -> (&'static str, Leadership) {
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::select! {
            l = &mut *a => ("a", l.unwrap().unwrap()),
            l = &mut *b => ("b", l.unwrap().unwrap()),
        }
    })
    .await
    .expect("no candidate became leader");
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_leads_and_the_other_takes_over_after_the_lease_expires() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let mut a = candidate(&client, "a");
    let mut b = candidate(&client, "b");

    let (winner, leadership) = first_leader(&mut a, &mut b).await;
    assert!(leadership.is_leader());
    let record = lease(&client).await;
    assert_eq!(holder(&record), winner);
    let spec = record.spec.as_ref().unwrap();
    assert_eq!(spec.lease_duration_seconds, Some(2));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());

    // While the winner renews, the loser stays a candidate well past the
    // lease duration, and the winner keeps leading.
    let loser = if winner == "a" { &mut b } else { &mut a };
    let waited = tokio::time::timeout(Duration::from_secs(4), &mut *loser).await;
    assert!(waited.is_err(), "both candidates became leader");
    assert!(leadership.is_leader());
    let renewed = lease(&client).await;
    assert_eq!(holder(&renewed), winner);
    let renew_time = |l: &Lease| l.spec.as_ref().unwrap().renew_time.clone().unwrap().0;
    assert!(
        renew_time(&renewed) > renew_time(&record),
        "lease not renewed"
    );

    // The winner stops renewing: the loser takes over after about the lease
    // duration (2 s, plus up to one jittered retry).
    let stopped = Instant::now();
    drop(leadership);
    let taken = tokio::time::timeout(Duration::from_secs(6), &mut *loser)
        .await
        .expect("no takeover")
        .unwrap()
        .unwrap();
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "took over after {took:?}, before the lease expired"
    );
    assert!(taken.is_leader());
    let record = lease(&client).await;
    assert_ne!(holder(&record), winner);
    let spec = record.spec.as_ref().unwrap();
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_at_the_next_retry() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let mut a = candidate(&client, "a");
    let mut b = candidate(&client, "b");
    let (winner, leadership) = first_leader(&mut a, &mut b).await;
    let lost = leadership.lost();

    let released = Instant::now();
    leadership.release().await;
    tokio::time::timeout(Duration::from_millis(100), lost)
        .await
        .expect("lost() did not resolve on release");
    let loser = if winner == "a" { &mut b } else { &mut a };
    let taken = tokio::time::timeout(Duration::from_secs(3), &mut *loser)
        .await
        .expect("no takeover after release")
        .unwrap()
        .unwrap();
    assert!(released.elapsed() < Duration::from_millis(1500));
    assert!(taken.is_leader());
    assert_ne!(holder(&lease(&client).await), winner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_notices_a_takeover_and_run_while_leader_stops() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let elector = LeaderElector::new(client.clone(), config("a"));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(elector.run_while_leader(|| async move {
        let _ = started_tx.send(());
        std::future::pending::<()>().await;
        Ok(())
    }));
    tokio::time::timeout(Duration::from_secs(5), started_rx)
        .await
        .expect("never led")
        .unwrap();

    // Someone rewrites the Lease to name another holder (as a candidate
    // whose clock says it expired would); the leader must step down.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut record = leases.get("kube-scheduler").await.unwrap();
    record.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    leases
        .replace("kube-scheduler", &Default::default(), &record)
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("run_while_leader did not stop")
        .unwrap();
    assert!(result.is_err(), "losing leadership is an error");
    assert_eq!(holder(&lease(&client).await), "intruder");
}
