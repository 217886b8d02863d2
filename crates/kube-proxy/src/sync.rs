//! The sync loop: kube-rs reflectors keep Services and EndpointSlices in
//! memory; any change wakes the loop, which recomputes the desired rules
//! (pure, [`crate::rules`]) and has the backend apply only what changed.
//!
//! Syncs are rate-limited like upstream's `BoundedFrequencyRunner`: at most
//! one per `--min-sync-period` on average, with a burst of two, so a
//! change after a quiet spell is applied at once while a storm of changes
//! is coalesced. Every `--sync-period` the loop also syncs unprompted, and
//! the nftables backend then checks that its table is still intact (and
//! rewrites it whole if someone deleted or flushed it).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use component_base::transform::for_cache;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::nftables::{self, NftConfig, NftState};
use crate::rules::{desired_rules, DesiredRules};
use crate::userspace::Userspace;

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub node_name: String,
    pub sync_period: Duration,
    pub min_sync_period: Duration,
}

/// The nftables backend's state: what it last applied.
#[derive(Debug, Default)]
pub struct NftBackend {
    pub config: NftConfig,
    applied: Option<NftState>,
}

impl NftBackend {
    pub fn new(config: NftConfig) -> NftBackend {
        NftBackend {
            config,
            applied: None,
        }
    }

    /// Applies `rules`: the whole table on the first sync, after a failure
    /// or when `check` finds the table damaged; otherwise only the diff.
    pub async fn sync(&mut self, rules: &DesiredRules, check: bool) -> anyhow::Result<usize> {
        let t = Instant::now();
        let new = nftables::state(rules, &self.config);
        if check && self.applied.is_some() && !nftables::table_intact().await {
            tracing::warn!(
                "table ip {} is missing or was changed; rewriting it",
                nftables::TABLE
            );
            self.applied = None;
        }
        let script = match &self.applied {
            None => nftables::render_full(&self.config, &new),
            Some(old) => nftables::diff(old, &new),
        };
        let rendered = t.elapsed();
        if !script.is_empty() {
            if let Err(e) = nftables::apply(&script).await {
                // Unknown kernel state: the next sync rewrites everything.
                self.applied = None;
                return Err(e);
            }
        }
        tracing::debug!(
            "nftables: rendered {} bytes in {rendered:?}, nft took {:?}",
            script.len(),
            t.elapsed() - rendered
        );
        let count = new.rule_count();
        self.applied = Some(new);
        Ok(count)
    }
}

/// The configured backend.
pub enum Backend {
    Nftables(NftBackend),
    Userspace(Userspace),
}

impl Backend {
    async fn sync(&mut self, rules: &DesiredRules, check: bool) -> anyhow::Result<usize> {
        match self {
            Backend::Nftables(b) => b.sync(rules, check).await,
            Backend::Userspace(u) => Ok(u.sync(rules).await),
        }
    }

    /// Undo what only lives as long as the process (userspace addresses);
    /// nftables rules stay, as upstream's do, so a restart does not
    /// interrupt traffic.
    pub async fn shutdown(&mut self) {
        if let Backend::Userspace(u) = self {
            u.cleanup().await;
        }
    }
}

/// A token bucket of two syncs, refilled one per `interval`.
#[derive(Debug)]
pub struct Limiter {
    interval: Duration,
    tokens: f64,
    last: Instant,
}

impl Limiter {
    const BURST: f64 = 2.0;

    pub fn new(interval: Duration, now: Instant) -> Limiter {
        Limiter {
            interval,
            tokens: Self::BURST,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if self.interval.is_zero() {
            self.tokens = Self::BURST;
        } else {
            let gained = now.duration_since(self.last).as_secs_f64() / self.interval.as_secs_f64();
            self.tokens = (self.tokens + gained).min(Self::BURST);
        }
        self.last = now;
    }

    /// How long to wait before the next sync may start at `now`.
    pub fn delay(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            self.interval.mul_f64(1.0 - self.tokens)
        }
    }

    /// Spends one sync at `now`.
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// Runs the proxy until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    config: SyncConfig,
    mut backend: Backend,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let changed = Arc::new(Notify::new());
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let watch_services = reflector(
        services_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(for_cache),
    )
    .default_backoff();
    let watch_slices = reflector(
        slices_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        )
        .modify(for_cache),
    )
    .default_backoff();
    let drive = |stream: futures::stream::BoxStream<'static, Result<(), watcher::Error>>,
                 what: &'static str| {
        let changed = changed.clone();
        tokio::spawn(stream.for_each(move |event| {
            if let Err(e) = event {
                tracing::warn!("watching {what}: {e}");
            }
            changed.notify_one();
            futures::future::ready(())
        }))
    };
    let w1 = drive(watch_services.map(|e| e.map(|_| ())).boxed(), "services");
    let w2 = drive(
        watch_slices.map(|e| e.map(|_| ())).boxed(),
        "endpointslices",
    );
    let _abort = AbortOnDrop(vec![w1, w2]);

    tokio::pin!(shutdown);
    tokio::select! {
        r = async { services.wait_until_ready().await?; slices.wait_until_ready().await } => r?,
        _ = &mut shutdown => { backend.shutdown().await; return Ok(()); }
    }
    tracing::info!("services and endpointslices listed; first sync");

    let mut limiter = Limiter::new(config.min_sync_period, Instant::now());
    let mut check = true;
    let mut next_check = Instant::now();
    let mut warned: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep_until(next_check.into()) => check = true,
            _ = &mut shutdown => break,
        }
        let delay = limiter.delay(Instant::now());
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut shutdown => break,
            }
        }
        limiter.take(Instant::now());

        let start = Instant::now();
        let svc_state = services.state();
        let slice_state = slices.state();
        let rules = desired_rules(
            svc_state.iter().map(AsRef::as_ref),
            slice_state.iter().map(AsRef::as_ref),
            &config.node_name,
        );
        let now_warned: BTreeSet<String> = rules.warnings.iter().cloned().collect();
        for w in now_warned.difference(&warned) {
            tracing::warn!("{w}");
        }
        warned = now_warned;
        let computed = start.elapsed();
        match backend.sync(&rules, check).await {
            Ok(count) => {
                let took = start.elapsed();
                metrics.synced(took, count);
                tracing::debug!(
                    "synced {} service ports ({count} rules) in {took:?} (model {computed:?})",
                    rules.ports.len()
                );
                if check {
                    check = false;
                    next_check = Instant::now() + config.sync_period;
                }
            }
            Err(e) => {
                tracing::error!("sync failed, retrying in 1s: {e:#}");
                check = true;
                next_check = Instant::now() + Duration::from_secs(1);
            }
        }
    }
    backend.shutdown().await;
    Ok(())
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_a_burst_of_two_then_one_per_interval() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut l = Limiter::new(Duration::from_secs(1), t0);
        assert_eq!(l.delay(ms(0)), Duration::ZERO);
        l.take(ms(0));
        assert_eq!(l.delay(ms(10)), Duration::ZERO, "the burst's second sync");
        l.take(ms(10));
        let wait = l.delay(ms(20));
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_millis(980),
            "{wait:?}"
        );
        assert_eq!(l.delay(ms(1010)), Duration::ZERO);
        l.take(ms(1010));
        // After a quiet spell the bucket is full again.
        assert_eq!(l.delay(ms(10_000)), Duration::ZERO);
        l.take(ms(10_000));
        assert_eq!(l.delay(ms(10_000)), Duration::ZERO);
    }

    #[test]
    fn a_zero_interval_never_waits() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Duration::ZERO, t0);
        for _ in 0..5 {
            l.take(t0);
            assert_eq!(l.delay(t0), Duration::ZERO);
        }
    }
}
