//! The horizontal pod autoscaler (`autoscaling/v2`, upstream's
//! `pkg/controller/podautoscaler`).
//!
//! Every `--horizontal-pod-autoscaler-sync-period` (15 s) each HPA is
//! reconciled ([`plan`]):
//! 1. the target's `/scale` gives its replicas and pod selector (failure:
//!    `AbleToScale` False, `FailedGetScale`);
//! 2. each metric proposes a replica count from the pods' usage
//!    ([`replicas`], metrics from a [`MetricsSource`]); the highest wins
//!    (all failing: `ScalingActive` False with the metric's reason, e.g.
//!    `FailedGetResourceMetric` while no metrics server answers);
//! 3. the proposal is stabilized and rate-limited ([`normalize`]), and
//!    bounded by `minReplicas`/`maxReplicas`;
//! 4. a changed count is written to the target's `/scale`
//!    (`SuccessfulRescale`), and the status (current/desired replicas,
//!    current metrics, last scale time, the conditions) is updated when it
//!    changed.
//!
//! Supported metrics: `Resource` and `ContainerResource` (Utilization and
//! AverageValue targets). `Pods`, `Object` and `External` metrics need the
//! custom and external metrics APIs, which nothing serves here: they fail
//! as upstream's do without those APIs.

pub mod metrics;
pub mod normalize;
pub mod replicas;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::selector::parse;
use component_base::events::EventRecorder;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, CrossVersionObjectReference, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus,
    MetricTarget, MetricValueStatus, ResourceMetricSource, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;

use crate::context::Context;
use crate::framework::{forward, run_workers, Change, Informer, ObjectKey, Outcome, WorkQueue};
pub use metrics::{ContainerMetrics, MetricsSource, PodMetrics, ResourceMetricsApi};
use normalize::Memory;
use replicas::Target;

/// Events are recorded as upstream's autoscaler records them.
pub const COMPONENT: &str = "horizontal-pod-autoscaler";
/// The metric an HPA without any gets (API defaulting: 80% cpu).
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;

/// An event for the HPA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

fn warning(reason: &'static str, message: impl Into<String>) -> Event {
    Event {
        warning: true,
        reason,
        message: message.into(),
    }
}

/// The settings a reconcile uses.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// `--horizontal-pod-autoscaler-tolerance`.
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`.
    pub downscale_window: Duration,
}

/// A change of the target's replicas to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescale {
    pub from: i32,
    pub to: i32,
    pub reason: String,
}

/// What a reconcile decided.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The status to write (final once [`Plan::rescaled`] was told how the
    /// rescale went).
    pub status: HorizontalPodAutoscalerStatus,
    pub rescale: Option<Rescale>,
    pub events: Vec<Event>,
    /// What went wrong, for the log.
    pub error: Option<String>,
    /// The previous desired count, kept when a rescale fails.
    previous_desired: i32,
}

impl Plan {
    /// Finish the status after writing the rescale (upstream's success and
    /// `FailedUpdateScale` paths).
    pub fn rescaled(&mut self, outcome: Result<(), String>, now: Timestamp) {
        let Some(rescale) = self.rescale.clone() else {
            return;
        };
        let mut conditions = self.status.conditions.take().unwrap_or_default();
        match outcome {
            Ok(()) => {
                set_condition(
                    &mut conditions,
                    "AbleToScale",
                    "True",
                    "SucceededRescale",
                    format!(
                        "the HPA controller was able to update the target scale to {}",
                        rescale.to
                    ),
                    now,
                );
                self.events.push(Event {
                    warning: false,
                    reason: "SuccessfulRescale",
                    message: format!("New size: {}; reason: {}", rescale.to, rescale.reason),
                });
                self.status.desired_replicas = rescale.to;
                self.status.last_scale_time = Some(Time(now));
            }
            Err(error) => {
                self.events.push(warning(
                    "FailedRescale",
                    format!(
                        "New size: {}; reason: {}; error: {error}",
                        rescale.to, rescale.reason
                    ),
                ));
                set_condition(
                    &mut conditions,
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {error}"),
                    now,
                );
                self.status.desired_replicas = self.previous_desired;
                self.error = Some(format!("failed to rescale: {error}"));
            }
        }
        self.status.conditions = Some(conditions);
    }
}

/// Upstream's `setCondition`: the condition of `type_` (added if new),
/// its transition time moving only with its status.
pub fn set_condition(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) {
    let index = match conditions.iter().position(|c| c.type_ == type_) {
        Some(i) => i,
        None => {
            conditions.push(HorizontalPodAutoscalerCondition {
                type_: type_.into(),
                ..Default::default()
            });
            conditions.len() - 1
        }
    };
    let condition = &mut conditions[index];
    if condition.status != status {
        condition.last_transition_time = Some(Time(now));
    }
    condition.status = status.into();
    condition.reason = Some(reason.into());
    condition.message = Some(message.into());
}

/// The HPA's metrics, with API defaulting's 80% cpu when it has none.
fn metric_specs(hpa: &HorizontalPodAutoscaler) -> Vec<MetricSpec> {
    match hpa.spec.as_ref().and_then(|s| s.metrics.clone()) {
        Some(specs) if !specs.is_empty() => specs,
        _ => vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(DEFAULT_CPU_UTILIZATION),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }],
    }
}

/// A metric that could not be computed: the reason its condition and
/// event carry, the message they carry, and the error as the aggregate
/// reports it.
struct MetricError {
    reason: &'static str,
    message: String,
    wrapped: String,
}

/// What the metrics are computed from: the target's pods, their
/// PodMetrics, the settings, the time.
struct Observed<'a> {
    current: i32,
    pods: &'a [&'a Pod],
    items: &'a Result<Vec<PodMetrics>, String>,
    config: &'a Config,
    now: Timestamp,
}

/// Upstream's `computeStatusForResourceMetricGeneric`: the proposal, the
/// metric's name and its current value, or the error.
fn resource_metric(
    resource: &str,
    container: Option<&str>,
    target: &MetricTarget,
    seen: &Observed<'_>,
) -> Result<(i32, String, MetricValueStatus), String> {
    let Observed {
        current,
        pods,
        items,
        config,
        now,
    } = *seen;
    let goal = match (&target.average_value, target.average_utilization) {
        (Some(value), _) => Target::AverageValue(
            metrics::milli_value(&value.0).ok_or_else(|| format!("invalid averageValue {:?}", value.0))?,
        ),
        (None, Some(percent)) => Target::Utilization(percent),
        (None, None) => {
            return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into())
        }
    };
    let wrap = |e: String| match goal {
        Target::AverageValue(_) => format!("failed to get {resource} usage: {e}"),
        Target::Utilization(_) => format!("failed to get {resource} utilization: {e}"),
    };
    let values = match items {
        Err(e) => Err(format!(
            "unable to fetch metrics from resource metrics API: {e}"
        )),
        Ok(items) if items.is_empty() => {
            Err("no metrics returned from resource metrics API".to_string())
        }
        Ok(items) => metrics::resource_values(items, resource, container),
    }
    .map_err(|e| {
        wrap(format!(
            "unable to get metrics for resource {resource}: {e}"
        ))
    })?;
    let proposal = replicas::resource_replicas(
        current,
        goal,
        resource,
        container,
        config.tolerance,
        pods,
        &values,
        now,
    )
    .map_err(wrap)?;
    let average = Some(Quantity(metrics::format_milli(proposal.average)));
    let (name, status) = match goal {
        Target::AverageValue(_) => (
            format!("{resource} resource"),
            MetricValueStatus {
                average_value: average,
                ..Default::default()
            },
        ),
        Target::Utilization(_) => (
            match container {
                Some(_) => {
                    format!("{resource} container resource utilization (percentage of request)")
                }
                None => format!("{resource} resource utilization (percentage of request)"),
            },
            MetricValueStatus {
                average_utilization: proposal.utilization,
                average_value: average,
                ..Default::default()
            },
        ),
    };
    Ok((proposal.replicas, name, status))
}

/// Upstream's `computeReplicasForMetric` for one metric.
fn compute_metric(
    spec: &MetricSpec,
    seen: &Observed<'_>,
) -> Result<(i32, String, MetricStatus), MetricError> {
    let no_custom = "unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered";
    match spec.type_.as_str() {
        "Resource" => {
            let Some(source) = &spec.resource else {
                return Err(MetricError {
                    reason: "FailedGetResourceMetric",
                    message: "invalid resource metric source: no resource given".into(),
                    wrapped: "invalid resource metric source: no resource given".into(),
                });
            };
            let (replicas, name, current) =
                resource_metric(&source.name, None, &source.target, seen).map_err(|e| {
                    MetricError {
                        reason: "FailedGetResourceMetric",
                        wrapped: format!(
                            "failed to get {} resource metric value: {e}",
                            source.name
                        ),
                        message: e,
                    }
                })?;
            let status = MetricStatus {
                type_: "Resource".into(),
                resource: Some(ResourceMetricStatus {
                    name: source.name.clone(),
                    current,
                }),
                ..Default::default()
            };
            Ok((replicas, name, status))
        }
        "ContainerResource" => {
            let Some(source) = &spec.container_resource else {
                return Err(MetricError {
                    reason: "FailedGetContainerResourceMetric",
                    message: "invalid container resource metric source: no resource given".into(),
                    wrapped: "invalid container resource metric source: no resource given".into(),
                });
            };
            let (replicas, name, current) =
                resource_metric(&source.name, Some(&source.container), &source.target, seen)
                    .map_err(|e| MetricError {
                        reason: "FailedGetContainerResourceMetric",
                        wrapped: format!(
                            "failed to get {} container metric value: {e}",
                            source.name
                        ),
                        message: e,
                    })?;
            let status = MetricStatus {
                type_: "ContainerResource".into(),
                container_resource: Some(ContainerResourceMetricStatus {
                    name: source.name.clone(),
                    container: source.container.clone(),
                    current,
                }),
                ..Default::default()
            };
            Ok((replicas, name, status))
        }
        "Pods" => {
            let name = spec
                .pods
                .as_ref()
                .map(|p| p.metric.name.clone())
                .unwrap_or_default();
            let message = format!("unable to get metric {name}: {no_custom}");
            Err(MetricError {
                reason: "FailedGetPodsMetric",
                wrapped: format!("failed to get pods metric value: {message}"),
                message,
            })
        }
        "Object" => {
            let name = spec
                .object
                .as_ref()
                .map(|o| o.metric.name.clone())
                .unwrap_or_default();
            let message = format!("unable to get metric {name}: {no_custom}");
            Err(MetricError {
                reason: "FailedGetObjectMetric",
                wrapped: format!("failed to get object metric value: {message}"),
                message,
            })
        }
        "External" => {
            let name = spec
                .external
                .as_ref()
                .map(|e| e.metric.name.clone())
                .unwrap_or_default();
            let message = format!(
                "unable to get external metric {name}: unable to fetch metrics from external metrics API: no external metrics API (external.metrics.k8s.io) registered"
            );
            Err(MetricError {
                reason: "FailedGetExternalMetric",
                wrapped: format!("failed to get {name} external metric value: {message}"),
                message,
            })
        }
        other => {
            let message = format!("unknown metric source type {other:?}");
            Err(MetricError {
                reason: "InvalidMetricSourceType",
                wrapped: message.clone(),
                message,
            })
        }
    }
}

/// Everything [`plan`] looks at.
pub struct Inputs<'a> {
    pub hpa: &'a HorizontalPodAutoscaler,
    /// The target's scale, or why it could not be read.
    pub scale: Result<&'a Scale, String>,
    /// The pods of the HPA's namespace.
    pub pods: &'a [Arc<Pod>],
    /// The PodMetrics of the target's pods, or why they could not be read.
    pub metrics: &'a Result<Vec<PodMetrics>, String>,
    pub config: Config,
    pub now: Timestamp,
}

/// Upstream's `reconcileAutoscaler`, short of the writes: what the status
/// becomes, whether to rescale, and the events.
pub fn plan(inputs: Inputs<'_>, memory: &mut Memory) -> Plan {
    let Inputs {
        hpa,
        scale,
        pods,
        metrics: items,
        config,
        now,
    } = inputs;
    let old = hpa.status.clone().unwrap_or_default();
    let spec = hpa.spec.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let mut events = Vec::new();
    let target = &spec.scale_target_ref;
    let namespace = hpa.metadata.namespace.as_deref().unwrap_or("");
    let reference = format!("{}/{namespace}/{}", target.kind, target.name);
    let mut plan = Plan {
        status: old.clone(),
        rescale: None,
        events: Vec::new(),
        error: None,
        previous_desired: old.desired_replicas,
    };

    let scale = match scale {
        Ok(scale) => scale,
        Err(error) => {
            events.push(warning("FailedGetScale", error.clone()));
            set_condition(
                &mut conditions,
                "AbleToScale",
                "False",
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {error}"),
                now,
            );
            plan.status.conditions = Some(conditions);
            plan.events = events;
            plan.error = Some(format!(
                "failed to query scale subresource for {reference}: {error}"
            ));
            return plan;
        }
    };
    set_condition(
        &mut conditions,
        "AbleToScale",
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now,
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    memory.record_initial(current, now);
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;

    let mut statuses: Option<Vec<MetricStatus>> = None;
    let mut desired = 0;
    let mut reason = String::new();
    let rescale;
    if current == 0 && min != 0 {
        // Scaled to zero by hand: autoscaling is off until scaled up again.
        rescale = false;
        set_condition(
            &mut conditions,
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            now,
        );
    } else if current > max {
        reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
        rescale = true;
    } else if current < min {
        reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
        rescale = true;
    } else {
        // Which pods: the scale's selector.
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let parsed = if selector.is_empty() {
            events.push(warning("SelectorRequired", "selector is required"));
            set_condition(
                &mut conditions,
                "ScalingActive",
                "False",
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
                now,
            );
            Err("selector is required".to_string())
        } else {
            parse(&selector).map_err(|e| {
                let message = format!(
                    "couldn't convert selector into a corresponding internal selector object: {e}"
                );
                events.push(warning("InvalidSelector", message.clone()));
                set_condition(
                    &mut conditions,
                    "ScalingActive",
                    "False",
                    "InvalidSelector",
                    message.clone(),
                    now,
                );
                message
            })
        };
        let selector = match parsed {
            Ok(selector) => selector,
            Err(error) => {
                plan.status = HorizontalPodAutoscalerStatus {
                    current_replicas: Some(current),
                    current_metrics: None,
                    conditions: Some(conditions),
                    ..old
                };
                plan.events = events;
                plan.error = Some(error);
                return plan;
            }
        };
        let selected: Vec<&Pod> = pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| selector.matches(&p.metadata.labels.clone().unwrap_or_default()))
            .collect();

        // Each metric's proposal; the highest wins.
        let specs = metric_specs(hpa);
        let mut metric_statuses = vec![MetricStatus::default(); specs.len()];
        let (mut proposal, mut metric_name) = (0, String::new());
        let mut invalid: Vec<MetricError> = Vec::new();
        for (i, metric) in specs.iter().enumerate() {
            let seen = Observed {
                current,
                pods: &selected,
                items,
                config: &config,
                now,
            };
            match compute_metric(metric, &seen) {
                Ok((replicas, name, status)) => {
                    metric_statuses[i] = status;
                    if proposal == 0 || replicas > proposal {
                        proposal = replicas;
                        metric_name = name;
                    }
                }
                Err(e) => {
                    // Upstream's `getUnableComputeReplicaCountCondition`
                    // records the event for every failing metric.
                    events.push(warning(e.reason, e.message.clone()));
                    invalid.push(e);
                }
            }
        }
        if let Some(first) = invalid.first() {
            let error = format!(
                "invalid metrics ({} invalid out of {}), first error is: {}",
                invalid.len(),
                specs.len(),
                first.wrapped
            );
            // All failed, or some did and the rest would scale down: do
            // nothing rather than act on part of the picture.
            if invalid.len() >= specs.len() || proposal < current {
                set_condition(
                    &mut conditions,
                    "ScalingActive",
                    "False",
                    first.reason,
                    format!(
                        "the HPA was unable to compute the replica count: {}",
                        first.message
                    ),
                    now,
                );
                events.push(warning("FailedComputeMetricsReplicas", error.clone()));
                plan.status = HorizontalPodAutoscalerStatus {
                    current_replicas: Some(current),
                    current_metrics: Some(metric_statuses),
                    conditions: Some(conditions),
                    ..old
                };
                plan.events = events;
                plan.error = Some(format!(
                    "failed to compute desired number of replicas based on listed metrics for {reference}: {error}"
                ));
                return plan;
            }
            plan.error = Some(error);
        }
        set_condition(
            &mut conditions,
            "ScalingActive",
            "True",
            "ValidMetricFound",
            format!(
                "the HPA was able to successfully calculate a replica count from {metric_name}"
            ),
            now,
        );
        statuses = Some(metric_statuses);

        desired = proposal;
        if desired > current {
            reason = format!("{metric_name} above target");
        } else if desired < current {
            reason = "All metrics below target".into();
        }
        desired = match &spec.behavior {
            None => {
                let stabilized =
                    normalize::stabilize(memory, desired, config.downscale_window, now);
                if stabilized != desired {
                    set_condition(
                        &mut conditions,
                        "AbleToScale",
                        "True",
                        "ScaleDownStabilized",
                        "recent recommendations were higher than current one, applying the highest recent recommendation",
                        now,
                    );
                } else {
                    set_condition(
                        &mut conditions,
                        "AbleToScale",
                        "True",
                        "ReadyForNewScale",
                        "recommended size matches current size",
                        now,
                    );
                }
                let (limited, why, message) =
                    normalize::limit_without_behavior(current, stabilized, min, max);
                let status = if limited == stabilized {
                    "False"
                } else {
                    "True"
                };
                set_condition(&mut conditions, "ScalingLimited", status, why, message, now);
                limited
            }
            Some(behavior) => {
                let rules = normalize::rules(behavior, config.downscale_window);
                let (stabilized, why, message) =
                    normalize::stabilize_with_behavior(memory, &rules, current, desired, now);
                if stabilized != desired {
                    set_condition(&mut conditions, "AbleToScale", "True", why, message, now);
                } else {
                    set_condition(
                        &mut conditions,
                        "AbleToScale",
                        "True",
                        "ReadyForNewScale",
                        "recommended size matches current size",
                        now,
                    );
                }
                let (limited, why, message) = normalize::limit_with_behavior(
                    memory, &rules, current, stabilized, min, max, now,
                );
                let status = if limited == stabilized {
                    "False"
                } else {
                    "True"
                };
                set_condition(&mut conditions, "ScalingLimited", status, why, message, now);
                limited
            }
        };
        rescale = desired != current;
    }

    if !rescale {
        desired = current;
    }
    plan.status = HorizontalPodAutoscalerStatus {
        current_replicas: Some(current),
        desired_replicas: desired,
        current_metrics: statuses,
        conditions: Some(conditions),
        last_scale_time: old.last_scale_time.clone(),
        observed_generation: old.observed_generation,
    };
    if rescale {
        plan.rescale = Some(Rescale {
            from: current,
            to: desired,
            reason,
        });
    }
    plan.events = events;
    plan
}

/// The API of the target's kind, to reach its `/scale`: the built-in
/// workloads directly, anything else through discovery.
async fn target_api(
    client: &kube::Client,
    namespace: &str,
    target: &CrossVersionObjectReference,
) -> Result<Api<DynamicObject>, String> {
    let api_version = target.api_version.as_deref().unwrap_or("");
    let (group, version) = match api_version.split('/').collect::<Vec<_>>()[..] {
        [version] => ("", version),
        [group, version] => (group, version),
        _ => return Err(format!("unexpected GroupVersion string: {api_version}")),
    };
    let gvk = GroupVersionKind::gvk(group, version, &target.kind);
    let resource = match (group, target.kind.as_str()) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet") | ("", "ReplicationController") => {
            ApiResource::from_gvk(&gvk)
        }
        _ => kube::discovery::pinned_kind(client, &gvk)
            .await
            .map(|(resource, _)| resource)
            .map_err(|_| format!("no matches for kind {:?} in group {group:?}", target.kind))?,
    };
    Ok(Api::namespaced_with(client.clone(), namespace, &resource))
}

/// The message of a client error, as upstream shows it.
fn error_text(error: kube::Error) -> String {
    match error {
        kube::Error::Api(e) => e.message,
        e => e.to_string(),
    }
}

/// The autoscaler with the resource metrics API as its metrics source.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let source = Arc::new(ResourceMetricsApi::new(ctx.client.clone()));
    run_with_metrics(ctx, source).await
}

/// The autoscaler with the given metrics source.
pub async fn run_with_metrics(ctx: Context, source: Arc<dyn MetricsSource>) -> anyhow::Result<()> {
    let recorder = EventRecorder::new(ctx.client.clone(), COMPONENT);
    let hpas = ctx.informers.get::<HorizontalPodAutoscaler>();
    let pods = ctx.informers.get::<Pod>();
    let queue = WorkQueue::new();
    // New HPAs and spec changes are looked at at once; our own status
    // writes are not a reason to look again. The rest is the sync period.
    forward(&hpas, &queue, |change| match change {
        Change::Updated { old, new } if old.metadata.generation == new.metadata.generation => {
            Vec::new()
        }
        change => vec![ObjectKey::of(change.object().as_ref())],
    });
    hpas.wait_synced().await;
    pods.wait_synced().await;
    let memory: Arc<Mutex<HashMap<ObjectKey, Memory>>> = Arc::default();
    run_workers("horizontal-pod-autoscaler", queue, ctx.settings.concurrent_syncs, move |key: ObjectKey| {
        let ctx = ctx.clone();
        let hpas = hpas.clone();
        let pods = pods.clone();
        let recorder = recorder.clone();
        let memory = memory.clone();
        let source = source.clone();
        async move { reconcile(&ctx, &hpas, &pods, &recorder, &memory, source.as_ref(), key).await }
    })
    .await;
    Ok(())
}

async fn reconcile(
    ctx: &Context,
    hpas: &Informer<HorizontalPodAutoscaler>,
    pods: &Informer<Pod>,
    recorder: &EventRecorder,
    memory: &Mutex<HashMap<ObjectKey, Memory>>,
    source: &dyn MetricsSource,
    key: ObjectKey,
) -> anyhow::Result<Outcome> {
    let lock = || memory.lock().unwrap_or_else(|e| e.into_inner());
    let Some(hpa) = hpas.get(&key) else {
        lock().remove(&key);
        return Ok(Outcome::Done);
    };
    let spec = hpa.spec.clone().unwrap_or_default();
    let target = &spec.scale_target_ref;
    let api = target_api(&ctx.client, &key.namespace, target).await;
    let scale = match &api {
        Ok(api) => api.get_scale(&target.name).await.map_err(error_text),
        Err(e) => Err(e.clone()),
    };
    let selector = scale
        .as_ref()
        .ok()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let items = if selector.is_empty() {
        Ok(Vec::new())
    } else {
        source.pod_metrics(&key.namespace, &selector).await
    };
    let in_namespace = pods.list_namespace(&key.namespace);
    let now = Timestamp::now();
    let config = Config {
        tolerance: ctx.settings.hpa_tolerance,
        downscale_window: ctx.settings.hpa_downscale_stabilization,
    };
    let mut plan = {
        let mut memories = lock();
        let inputs = Inputs {
            hpa: &hpa,
            scale: scale.as_ref().map_err(Clone::clone),
            pods: &in_namespace,
            metrics: &items,
            config,
            now,
        };
        plan(inputs, memories.entry(key.clone()).or_default())
    };

    if let (Some(rescale), Ok(api), Ok(scale)) = (plan.rescale.clone(), &api, &scale) {
        let mut next = scale.clone();
        next.spec.get_or_insert_with(Default::default).replicas = Some(rescale.to);
        let outcome = api
            .replace_scale(&target.name, &PostParams::default(), &next)
            .await
            .map(|_| ())
            .map_err(error_text);
        if outcome.is_ok() {
            if let Some(behavior) = &spec.behavior {
                let rules = normalize::rules(behavior, config.downscale_window);
                lock().entry(key.clone()).or_default().store_scale_event(
                    &rules,
                    rescale.from,
                    rescale.to,
                    now,
                );
            }
        }
        plan.rescaled(outcome, now);
    }
    for event in &plan.events {
        if event.warning {
            recorder.warning(hpa.as_ref(), event.reason, event.message.clone());
        } else {
            recorder.normal(hpa.as_ref(), event.reason, event.message.clone());
        }
    }
    if let Some(error) = &plan.error {
        tracing::info!(hpa = %key, %error, "autoscaling");
    }
    if hpa.status.as_ref() != Some(&plan.status) {
        let mut updated = (*hpa).clone();
        updated.status = Some(plan.status);
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &key.namespace);
        api.replace_status(&key.name, &PostParams::default(), &updated)
            .await?;
    }
    Ok(Outcome::RequeueAfter(ctx.settings.hpa_sync_period))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v1::{ScaleSpec, ScaleStatus};
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec;
    use k8s_openapi::api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    const CONFIG: Config = Config {
        tolerance: 0.1,
        downscale_window: Duration::from_secs(300),
    };

    fn hpa(min: i32, max: i32, target: i32) -> HorizontalPodAutoscaler {
        HorizontalPodAutoscaler {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(HorizontalPodAutoscalerSpec {
                min_replicas: Some(min),
                max_replicas: max,
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name: "web".into(),
                },
                metrics: Some(vec![MetricSpec {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".into(),
                        target: MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(target),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                }]),
                behavior: None,
            }),
            status: None,
        }
    }

    fn scale(replicas: i32) -> Scale {
        Scale {
            spec: Some(ScaleSpec {
                replicas: Some(replicas),
            }),
            status: Some(ScaleStatus {
                replicas,
                selector: Some("app=web".into()),
            }),
            ..Default::default()
        }
    }

    fn pods(n: usize) -> Vec<Arc<Pod>> {
        (0..n)
            .map(|i| {
                Arc::new(Pod {
                    metadata: ObjectMeta {
                        name: Some(format!("web-{i}")),
                        labels: Some([("app".to_string(), "web".to_string())].into()),
                        ..Default::default()
                    },
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "app".into(),
                            resources: Some(ResourceRequirements {
                                requests: Some(
                                    [("cpu".to_string(), Quantity("100m".into()))].into(),
                                ),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    status: Some(PodStatus {
                        phase: Some("Running".into()),
                        start_time: Some(Time(at(-3600))),
                        conditions: Some(vec![PodCondition {
                            type_: "Ready".into(),
                            status: "True".into(),
                            last_transition_time: Some(Time(at(-3600))),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                })
            })
            .collect()
    }

    fn usage(n: usize, millicores: i64) -> Result<Vec<PodMetrics>, String> {
        Ok((0..n)
            .map(|i| PodMetrics {
                namespace: "default".into(),
                name: format!("web-{i}"),
                timestamp: at(0),
                window: Duration::from_secs(30),
                containers: vec![ContainerMetrics {
                    name: "app".into(),
                    usage: BTreeMap::from([(
                        "cpu".to_string(),
                        Quantity(format!("{millicores}m")),
                    )]),
                }],
            })
            .collect())
    }

    fn condition<'a>(status: &'a HorizontalPodAutoscalerStatus, type_: &str) -> (&'a str, &'a str) {
        let c = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.as_str(), c.reason.as_deref().unwrap_or(""))
    }

    fn look(
        hpa: &HorizontalPodAutoscaler,
        scale: Result<&Scale, String>,
        n: usize,
        metrics: Result<Vec<PodMetrics>, String>,
        memory: &mut Memory,
        now: i64,
    ) -> Plan {
        let pods = pods(n);
        let mut plan = plan(
            Inputs {
                hpa,
                scale,
                pods: &pods,
                metrics: &metrics,
                config: CONFIG,
                now: at(now),
            },
            memory,
        );
        plan.rescaled(Ok(()), at(now));
        plan
    }

    #[test]
    fn hot_pods_scale_the_target_up_within_limits() {
        let hpa = hpa(1, 10, 50);
        let mut memory = Memory::default();
        let plan = look(&hpa, Ok(&scale(2)), 2, usage(2, 100), &mut memory, 0);
        assert_eq!(plan.rescale.as_ref().map(|r| r.to), Some(4));
        assert_eq!(plan.status.current_replicas, Some(2));
        assert_eq!(plan.status.desired_replicas, 4);
        assert_eq!(plan.status.last_scale_time, Some(Time(at(0))));
        let current = &plan.status.current_metrics.as_ref().unwrap()[0];
        let value = &current.resource.as_ref().unwrap().current;
        assert_eq!(value.average_utilization, Some(100));
        assert_eq!(value.average_value, Some(Quantity("100m".into())));
        assert_eq!(
            condition(&plan.status, "AbleToScale"),
            ("True", "SucceededRescale")
        );
        assert_eq!(
            condition(&plan.status, "ScalingActive"),
            ("True", "ValidMetricFound")
        );
        assert_eq!(
            condition(&plan.status, "ScalingLimited"),
            ("False", "DesiredWithinRange")
        );
        assert_eq!(
            plan.events,
            [Event {
                warning: false,
                reason: "SuccessfulRescale",
                message: "New size: 4; reason: cpu resource utilization (percentage of request) above target".into(),
            }]
        );

        // Very hot: at most double (to at least 4), then maxReplicas.
        let plan = look(
            &hpa,
            Ok(&scale(2)),
            2,
            usage(2, 500),
            &mut Memory::default(),
            0,
        );
        assert_eq!(plan.rescale.as_ref().map(|r| r.to), Some(4));
        assert_eq!(
            condition(&plan.status, "ScalingLimited"),
            ("True", "ScaleUpLimit")
        );
        let plan = look(
            &hpa,
            Ok(&scale(8)),
            8,
            usage(8, 500),
            &mut Memory::default(),
            0,
        );
        assert_eq!(plan.rescale.as_ref().map(|r| r.to), Some(10));
        assert_eq!(
            condition(&plan.status, "ScalingLimited"),
            ("True", "TooManyReplicas")
        );
    }

    #[test]
    fn cold_pods_scale_down_only_after_the_window() {
        let hpa = hpa(1, 10, 50);
        let mut memory = Memory::default();
        // At 10% of the target's 50%, one pod would do; the first look
        // remembers 4.
        let plan = look(&hpa, Ok(&scale(4)), 4, usage(4, 10), &mut memory, 0);
        assert_eq!(plan.rescale, None);
        assert_eq!(plan.status.desired_replicas, 4);
        assert_eq!(
            condition(&plan.status, "AbleToScale"),
            ("True", "ScaleDownStabilized")
        );
        let plan = look(&hpa, Ok(&scale(4)), 4, usage(4, 10), &mut memory, 200);
        assert_eq!(plan.rescale, None);
        let plan = look(&hpa, Ok(&scale(4)), 4, usage(4, 10), &mut memory, 301);
        assert_eq!(
            plan.rescale.as_ref().map(|r| (r.to, r.reason.as_str())),
            Some((1, "All metrics below target"))
        );
        assert_eq!(
            condition(&plan.status, "AbleToScale"),
            ("True", "SucceededRescale")
        );
    }

    #[test]
    fn bounds_and_failures_read_as_upstreams() {
        let hpa = hpa(2, 5, 50);
        // Outside the bounds: straight to them, whatever the metrics.
        let plan = look(
            &hpa,
            Ok(&scale(9)),
            9,
            Err("down".into()),
            &mut Memory::default(),
            0,
        );
        assert_eq!(
            plan.rescale.as_ref().map(|r| (r.to, r.reason.as_str())),
            Some((5, "Current number of replicas above Spec.MaxReplicas"))
        );
        let plan = look(
            &hpa,
            Ok(&scale(1)),
            1,
            Err("down".into()),
            &mut Memory::default(),
            0,
        );
        assert_eq!(plan.rescale.as_ref().map(|r| r.to), Some(2));
        // Scaled to zero by hand: left alone.
        let plan = look(
            &hpa,
            Ok(&scale(0)),
            0,
            usage(0, 0),
            &mut Memory::default(),
            0,
        );
        assert_eq!(plan.rescale, None);
        assert_eq!(
            condition(&plan.status, "ScalingActive"),
            ("False", "ScalingDisabled")
        );

        // No metrics API: ScalingActive False, FailedGetResourceMetric.
        let missing = "the server could not find the requested resource (get pods.metrics.k8s.io)";
        let plan = look(
            &hpa,
            Ok(&scale(3)),
            3,
            Err(missing.into()),
            &mut Memory::default(),
            0,
        );
        assert_eq!(plan.rescale, None);
        let (_, reason) = condition(&plan.status, "ScalingActive");
        assert_eq!(reason, "FailedGetResourceMetric");
        let message = plan
            .status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "ScalingActive")
            .unwrap()
            .message
            .clone();
        assert_eq!(
            message.as_deref(),
            Some("the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)")
        );
        assert_eq!(plan.status.current_replicas, Some(3));
        assert_eq!(
            plan.status.current_metrics.as_ref().map(|m| m.len()),
            Some(1),
            "an empty entry per metric, as upstream"
        );
        let reasons: Vec<&str> = plan.events.iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            ["FailedGetResourceMetric", "FailedComputeMetricsReplicas"]
        );
        assert!(plan.events[1].message.starts_with("invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: failed to get cpu utilization:"));

        // No scale: AbleToScale False.
        let plan = look(
            &hpa,
            Err("deployments.apps \"web\" not found".into()),
            0,
            usage(0, 0),
            &mut Memory::default(),
            0,
        );
        assert_eq!(
            condition(&plan.status, "AbleToScale"),
            ("False", "FailedGetScale")
        );
        assert_eq!(plan.events[0].message, "deployments.apps \"web\" not found");

        // A failed rescale says so and keeps the old desired count.
        let pods = pods(2);
        let metrics = usage(2, 100);
        let mut failed = plan_for(&hpa, &scale(2), &pods, &metrics);
        failed.rescaled(Err("conflict".into()), at(0));
        assert_eq!(
            condition(&failed.status, "AbleToScale"),
            ("False", "FailedUpdateScale")
        );
        assert_eq!(failed.status.desired_replicas, 0);
        assert_eq!(failed.events.last().unwrap().reason, "FailedRescale");
    }

    fn plan_for(
        hpa: &HorizontalPodAutoscaler,
        scale: &Scale,
        pods: &[Arc<Pod>],
        metrics: &Result<Vec<PodMetrics>, String>,
    ) -> Plan {
        plan(
            Inputs {
                hpa,
                scale: Ok(scale),
                pods,
                metrics,
                config: CONFIG,
                now: at(0),
            },
            &mut Memory::default(),
        )
    }

    #[test]
    fn the_status_is_unchanged_when_nothing_changes() {
        let mut hpa = hpa(1, 10, 50);
        let mut memory = Memory::default();
        let first = look(&hpa, Ok(&scale(2)), 2, usage(2, 50), &mut memory, 0);
        assert_eq!(first.rescale, None);
        hpa.status = Some(first.status.clone());
        let second = look(&hpa, Ok(&scale(2)), 2, usage(2, 50), &mut memory, 15);
        assert_eq!(second.status, first.status, "no write when nothing changed");
    }
}
