//! What every controller is handed: the client, shared informers, the
//! event recorder and the manager's settings.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::events::EventRecorder;
use kube::api::Api;

use crate::framework::informer::{Informer, Object};

/// Settings, named and defaulted as kube-controller-manager's flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Workers per controller (upstream's `--concurrent-*-syncs`, 5 for most).
    pub concurrent_syncs: usize,
    /// `--node-monitor-grace-period`: a node whose heartbeat is older than
    /// this goes Unknown.
    pub node_monitor_grace_period: Duration,
    /// `--node-monitor-period`: how often node health is checked.
    pub node_monitor_period: Duration,
    /// `--node-startup-grace-period`: how long a new node may take to post
    /// its first status.
    pub node_startup_grace_period: Duration,
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub hpa_sync_period: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`.
    pub hpa_downscale_stabilization: Duration,
    /// `--horizontal-pod-autoscaler-tolerance`.
    pub hpa_tolerance: f64,
    /// `--max-endpoints-per-slice`: endpoints per EndpointSlice (1-1000).
    pub max_endpoints_per_slice: usize,
    /// `--endpoint-updates-batch-period`: how long pod changes are
    /// gathered before a Service's Endpoints are synced.
    pub endpoint_updates_batch_period: Duration,
    /// `--endpointslice-updates-batch-period`: the same for EndpointSlices.
    pub endpointslice_updates_batch_period: Duration,
    /// `--cluster-signing-cert-file`/`--cluster-signing-key-file`: the CA
    /// `csrsigning` issues with; none, no signing.
    pub cluster_signing: Option<crate::controllers::certificates::ClusterSigning>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            concurrent_syncs: 5,
            node_monitor_grace_period: Duration::from_secs(50),
            node_monitor_period: Duration::from_secs(5),
            node_startup_grace_period: Duration::from_secs(60),
            hpa_sync_period: Duration::from_secs(15),
            hpa_downscale_stabilization: Duration::from_secs(300),
            hpa_tolerance: 0.1,
            max_endpoints_per_slice: 100,
            endpoint_updates_batch_period: Duration::ZERO,
            endpointslice_updates_batch_period: Duration::ZERO,
            cluster_signing: None,
        }
    }
}

/// Shared informers, started on first use: every controller asking for
/// pods gets the same pod informer, as with client-go's
/// `SharedInformerFactory`.
#[derive(Clone)]
pub struct Informers {
    client: kube::Client,
    started: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>>,
}

impl Informers {
    pub fn new(client: kube::Client) -> Self {
        Informers {
            client,
            started: Arc::default(),
        }
    }

    /// The cluster-wide informer of `K`, started if it was not yet.
    pub fn get<K: Object>(&self) -> Informer<K> {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        started
            .entry(TypeId::of::<K>())
            .or_insert_with(|| Box::new(Informer::<K>::start(Api::all(self.client.clone()))))
            .downcast_ref::<Informer<K>>()
            .expect("informers are keyed by their type")
            .clone()
    }
}

/// What a controller runs with. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub informers: Informers,
    pub recorder: EventRecorder,
    pub settings: Arc<Settings>,
}

impl Context {
    /// A context whose events are recorded as `component`.
    pub fn new(client: kube::Client, settings: Settings, component: &str) -> Self {
        Context {
            informers: Informers::new(client.clone()),
            recorder: EventRecorder::new(client.clone(), component),
            client,
            settings: Arc::new(settings),
        }
    }
}
