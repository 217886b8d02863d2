//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's
//! `tools/leaderelection` does it for kube-scheduler (`--leader-elect`).
//!
//! Mirrored upstream behaviour:
//! - the lock is the Lease `kube-system/kube-scheduler` (namespace and name
//!   configurable); its `spec.holderIdentity` names the leader, which writes
//!   `leaseDurationSeconds`, `acquireTime` and `renewTime` (MicroTime) and
//!   bumps `leaseTransitions` whenever the holder changes;
//! - defaults are upstream's: lease duration 15 s, renew deadline 10 s,
//!   retry period 2 s; candidates retry with client-go's jitter (factor 1.2);
//! - expiry is judged by the *local* time at which a candidate last saw the
//!   record change (client-go's `observedTime`), never by comparing the
//!   holder's `renewTime` with our clock, so clock skew cannot cause two
//!   leaders;
//! - every write is a create (a 409 AlreadyExists means another candidate
//!   won) or a replace carrying the observed `resourceVersion` (a 409
//!   Conflict means the record changed under us): two candidates never both
//!   win;
//! - the leader renews every retry period and gives leadership up when it has
//!   not renewed within the renew deadline, or as soon as it sees another
//!   valid holder;
//! - `release` (client-go's `ReleaseOnCancel`) empties `holderIdentity` with a
//!   1 s duration so the next candidate takes over at its next retry.
//!
//! [`decide`] and [`next_spec`] are the pure core; [`LeaderElector`] is the
//! I/O loop around them.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How to elect: which Lease, who we are, and client-go's three durations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease (upstream: `kube-system`).
    pub namespace: String,
    /// Name of the Lease (upstream: `kube-scheduler`).
    pub name: String,
    /// This candidate's `holderIdentity`; unique per process.
    pub identity: String,
    /// How long a non-leader waits after the last observed change before
    /// taking over (`leaseDurationSeconds`; whole seconds on the wire).
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a failing renewal before it gives
    /// up leadership. Must be below `lease_duration`.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// kube-scheduler's defaults for the Lease `kube-system/<name>`.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// `leaseDurationSeconds` as written: whole seconds, at least 1.
    pub fn lease_duration_seconds(&self) -> i32 {
        let secs = self.lease_duration.as_secs_f64().ceil().max(1.0);
        secs.min(f64::from(i32::MAX)) as i32
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.identity.is_empty(),
            "leader election identity is empty"
        );
        anyhow::ensure!(
            self.lease_duration > self.renew_deadline,
            "lease duration must be greater than the renew deadline"
        );
        anyhow::ensure!(
            self.renew_deadline.as_secs_f64() > 1.2 * self.retry_period.as_secs_f64(),
            "renew deadline must be greater than 1.2 × the retry period"
        );
        Ok(())
    }
}

/// Upstream's identity: `<hostname>_<random>`, unique per process.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "tug-scheduler".into());
    let a = RandomState::new().hash_one(std::process::id());
    let b = RandomState::new().hash_one(Instant::now());
    format!("{host}_{a:016x}{b:016x}")
}

/// What a candidate does with the Lease it just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create one naming us.
    Create,
    /// We hold it: renew, keeping `acquireTime` and `leaseTransitions`.
    Renew,
    /// It is free (empty holder) or expired: take it over.
    Acquire,
    /// Another candidate holds it; it expires for us at this instant.
    Wait(Instant),
}

/// client-go's `tryAcquireOrRenew` decision. `observed_at` is the local time
/// at which this version of the record was first seen (its resourceVersion
/// changed); the lease is valid until `observed_at + leaseDurationSeconds`
/// of the record (the config's duration when the record has none).
pub fn decide(
    lease: Option<&Lease>,
    me: &str,
    observed_at: Instant,
    now: Instant,
    config: &LeaderElectionConfig,
) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("");
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .filter(|&d| d > 0)
        .map(|d| Duration::from_secs(u64::from(d.unsigned_abs())))
        .unwrap_or(config.lease_duration);
    let until = observed_at + duration;
    if until > now {
        Decision::Wait(until)
    } else {
        Decision::Acquire
    }
}

/// The spec to write for `decision` (not `Wait`), client-go style: a takeover
/// sets `acquireTime` to now and increments `leaseTransitions`; a renewal
/// keeps both; every write sets `renewTime` to now.
pub fn next_spec(
    decision: Decision,
    old: Option<&LeaseSpec>,
    config: &LeaderElectionConfig,
    now: Timestamp,
) -> LeaseSpec {
    let old_transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    let (acquire_time, transitions) = match decision {
        Decision::Renew => (
            old.and_then(|s| s.acquire_time.clone())
                .unwrap_or(MicroTime(now)),
            old_transitions,
        ),
        Decision::Acquire => (MicroTime(now), old_transitions.saturating_add(1)),
        Decision::Create | Decision::Wait(_) => (MicroTime(now), 0),
    };
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.lease_duration_seconds()),
        acquire_time: Some(acquire_time),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// The record client-go's `release` writes: no holder, a 1 s duration.
fn released_spec(old: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: old.and_then(|s| s.lease_transitions),
        ..LeaseSpec::default()
    }
}

/// The result of one acquire-or-renew attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease as of now.
    Leader,
    /// Another candidate holds a valid Lease.
    HeldBy(String),
    /// Our write raced with another (409); try again later.
    Conflict,
}

/// One candidate for the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    /// The last record seen (or written): its resourceVersion and when it
    /// was first seen locally.
    observed: Option<(String, Instant)>,
    /// The spec of the last record seen.
    observed_spec: Option<LeaseSpec>,
}

impl LeaderElector {
    /// A candidate for `config.namespace/config.name`.
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            observed_spec: None,
        }
    }

    /// The configuration this candidate runs with.
    pub fn config(&self) -> &LeaderElectionConfig {
        &self.config
    }

    /// Block until this candidate holds the Lease, then keep renewing it in
    /// the background until the returned [`Leadership`] is released,
    /// dropped, or lost.
    pub async fn acquire(mut self) -> anyhow::Result<Leadership> {
        self.config.validate()?;
        let name = format!("{}/{}", self.config.namespace, self.config.name);
        tracing::info!(lease = %name, identity = %self.config.identity, "attempting to acquire leader lease");
        let mut reported_holder = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leader) => break,
                Ok(Attempt::HeldBy(holder)) => {
                    if reported_holder.as_ref() != Some(&holder) {
                        tracing::info!(lease = %name, %holder, "new leader elected");
                        reported_holder = Some(holder);
                    }
                }
                Ok(Attempt::Conflict) => {
                    tracing::debug!(lease = %name, "lost a race for the lease");
                }
                Err(error) => tracing::warn!(lease = %name, %error, "error retrieving lease"),
            }
            tokio::time::sleep(jittered(self.config.retry_period)).await;
        }
        tracing::info!(lease = %name, "successfully acquired lease");
        let (leading_tx, leading_rx) = watch::channel(true);
        let (release_tx, release_rx) = oneshot::channel();
        let task = tokio::spawn(self.renew_loop(leading_tx, release_rx));
        Ok(Leadership {
            leading: leading_rx,
            release: Some(release_tx),
            task: Some(task),
        })
    }

    /// Acquire, run `work` while leading, and return:
    /// - `work`'s result when it finishes (the Lease is then released);
    /// - an error when leadership is lost first (`work` is dropped), which
    ///   is when upstream's kube-scheduler exits.
    ///
    /// Prefer [`acquire`](Self::acquire) + [`Leadership::lost`] when `work`
    /// has its own shutdown future, so it can stop cleanly.
    pub async fn run_while_leader<F>(self, work: impl FnOnce() -> F) -> anyhow::Result<()>
    where
        F: Future<Output = anyhow::Result<()>>,
    {
        let leadership = self.acquire().await?;
        let lost = leadership.lost();
        tokio::select! {
            result = work() => {
                leadership.release().await;
                result
            }
            _ = lost => anyhow::bail!("leader election lost"),
        }
    }

    async fn renew_loop(
        mut self,
        leading: watch::Sender<bool>,
        mut release: oneshot::Receiver<()>,
    ) {
        let name = format!("{}/{}", self.config.namespace, self.config.name);
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                _ = &mut release => {
                    let _ = leading.send(false);
                    self.release().await;
                    return;
                }
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
            let deadline = last_renew + self.config.renew_deadline;
            let budget = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(budget, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Leader)) => last_renew = Instant::now(),
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::warn!(lease = %name, %holder, "lease taken over by another candidate");
                    break;
                }
                Ok(Ok(Attempt::Conflict)) => {
                    tracing::debug!(lease = %name, "conflict renewing lease; retrying");
                }
                Ok(Err(error)) => tracing::warn!(lease = %name, %error, "failed to renew lease"),
                Err(_) => {}
            }
            if Instant::now() >= last_renew + self.config.renew_deadline {
                tracing::warn!(lease = %name, "failed to renew lease within the renew deadline");
                break;
            }
        }
        tracing::info!(lease = %name, "leader election lost");
        let _ = leading.send(false);
    }

    /// One read and, unless someone else holds a valid Lease, one write.
    async fn try_acquire_or_renew(&mut self) -> anyhow::Result<Attempt> {
        let current = self.api.get_opt(&self.config.name).await?;
        let now = Instant::now();
        let observed_at = match (&current, &self.observed) {
            (Some(lease), Some((rv, at)))
                if lease.metadata.resource_version.as_ref() == Some(rv) =>
            {
                *at
            }
            (Some(lease), _) => {
                self.observed = lease.metadata.resource_version.clone().map(|rv| (rv, now));
                now
            }
            (None, _) => {
                self.observed = None;
                now
            }
        };
        self.observed_spec = current.as_ref().and_then(|l| l.spec.clone());
        let decision = decide(
            current.as_ref(),
            &self.config.identity,
            observed_at,
            now,
            &self.config,
        );
        let spec = next_spec(
            decision,
            self.observed_spec.as_ref(),
            &self.config,
            Timestamp::now(),
        );
        let params = PostParams::default();
        let written = match decision {
            Decision::Wait(_) => {
                let holder = current
                    .and_then(|l| l.spec)
                    .and_then(|s| s.holder_identity)
                    .unwrap_or_default();
                return Ok(Attempt::HeldBy(holder));
            }
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&params, &lease).await
            }
            Decision::Acquire | Decision::Renew => {
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(spec);
                self.api.replace(&self.config.name, &params, &lease).await
            }
        };
        match written {
            Ok(lease) => {
                self.observed = lease
                    .metadata
                    .resource_version
                    .clone()
                    .map(|rv| (rv, Instant::now()));
                self.observed_spec = lease.spec;
                Ok(Attempt::Leader)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Conflict),
            Err(error) => Err(error.into()),
        }
    }

    /// client-go's `release`: give the Lease up if we still hold it.
    async fn release(&mut self) {
        let lease = match self.api.get_opt(&self.config.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "failed to read lease for release");
                return;
            }
        };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        if holder != Some(self.config.identity.as_str()) {
            return;
        }
        let mut released = lease.clone();
        released.spec = Some(released_spec(lease.spec.as_ref(), Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &released)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.config.name, "released leader lease"),
            Err(error) => tracing::warn!(%error, "failed to release lease"),
        }
    }
}

/// `period` plus up to 1.2 × `period`, as client-go's `JitterUntil`.
fn jittered(period: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    period.mul_f64(1.0 + 1.2 * fraction)
}

/// Held while this process leads. Dropping it stops renewing (the Lease then
/// expires for the others after its duration); [`release`](Self::release)
/// hands it over at once.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    release: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Whether we still hold the Lease (as of the last renewal).
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Resolves once leadership is lost (renewal failed past the renew
    /// deadline, another holder was seen, or this value was released or
    /// dropped). `'static`, so it can be handed to a shutdown parameter.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut leading = self.leading.clone();
        async move {
            let _ = leading.wait_for(|leading| !*leading).await;
        }
    }

    /// Stop renewing and empty `holderIdentity`, so another candidate takes
    /// over at its next retry instead of after the lease duration.
    pub async fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaderElectionConfig {
        LeaderElectionConfig::new("kube-scheduler", "me")
    }

    fn lease(holder: Option<&str>, duration: Option<i32>, transitions: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("kube-scheduler".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: duration,
                lease_transitions: transitions,
                acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
                renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn decide_follows_client_go() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let no_spec = Lease {
            spec: None,
            ..lease(None, None, None)
        };
        // (what, lease, observed_at, now, expected)
        let cases: Vec<(&str, Option<Lease>, Instant, Instant, Decision)> = vec![
            ("missing lease", None, t0, t0, Decision::Create),
            (
                "ours",
                Some(lease(Some("me"), Some(15), Some(3))),
                t0,
                t0,
                Decision::Renew,
            ),
            (
                "ours, even long after our last renewal",
                Some(lease(Some("me"), Some(15), None)),
                t0,
                t0 + s(60),
                Decision::Renew,
            ),
            (
                "no holder",
                Some(lease(None, Some(15), None)),
                t0,
                t0,
                Decision::Acquire,
            ),
            (
                "empty holder",
                Some(lease(Some(""), Some(15), None)),
                t0,
                t0,
                Decision::Acquire,
            ),
            ("no spec", Some(no_spec), t0, t0, Decision::Acquire),
            (
                "other, just observed",
                Some(lease(Some("other"), Some(15), None)),
                t0,
                t0,
                Decision::Wait(t0 + s(15)),
            ),
            (
                "other, not yet expired",
                Some(lease(Some("other"), Some(15), None)),
                t0,
                t0 + s(14),
                Decision::Wait(t0 + s(15)),
            ),
            (
                "other, expired exactly",
                Some(lease(Some("other"), Some(15), None)),
                t0,
                t0 + s(15),
                Decision::Acquire,
            ),
            (
                "other, record's own duration wins over ours",
                Some(lease(Some("other"), Some(2), None)),
                t0,
                t0 + s(3),
                Decision::Acquire,
            ),
            (
                "other, no duration: ours",
                Some(lease(Some("other"), None, None)),
                t0,
                t0 + s(10),
                Decision::Wait(t0 + s(15)),
            ),
            (
                "other, zero duration: ours",
                Some(lease(Some("other"), Some(0), None)),
                t0,
                t0 + s(16),
                Decision::Acquire,
            ),
        ];
        for (what, lease, observed_at, now, expected) in cases {
            let got = decide(lease.as_ref(), "me", observed_at, now, &config());
            assert_eq!(got, expected, "{what}");
        }
    }

    #[test]
    fn next_spec_counts_transitions_and_keeps_acquire_time_on_renewal() {
        let now: Timestamp = "2025-01-02T03:04:05.123456Z".parse().unwrap();
        let old = lease(Some("other"), Some(15), Some(4)).spec.unwrap();
        let config = config();

        let created = next_spec(Decision::Create, None, &config, now);
        assert_eq!(created.holder_identity.as_deref(), Some("me"));
        assert_eq!(created.lease_duration_seconds, Some(15));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.acquire_time, Some(MicroTime(now)));
        assert_eq!(created.renew_time, Some(MicroTime(now)));

        let taken = next_spec(Decision::Acquire, Some(&old), &config, now);
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(5));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));

        let renewed = next_spec(Decision::Renew, Some(&old), &config, now);
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, old.acquire_time);
        assert_eq!(renewed.renew_time, Some(MicroTime(now)));

        let released = released_spec(Some(&old), now);
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(4));
    }

    #[test]
    fn config_defaults_and_validation() {
        let config = config();
        assert_eq!(config.namespace, "kube-system");
        assert_eq!(config.lease_duration_seconds(), 15);
        assert!(config.validate().is_ok());
        let short = LeaderElectionConfig {
            lease_duration: Duration::from_millis(1500),
            ..config.clone()
        };
        assert_eq!(short.lease_duration_seconds(), 2);
        let bad = LeaderElectionConfig {
            renew_deadline: Duration::from_secs(20),
            ..config.clone()
        };
        assert!(bad.validate().is_err());
        let anonymous = LeaderElectionConfig {
            identity: String::new(),
            ..config
        };
        assert!(anonymous.validate().is_err());
        assert_ne!(default_identity(), default_identity());
    }

    #[test]
    fn jitter_stays_within_client_go_bounds() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(2));
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_millis(4400));
        }
    }
}
