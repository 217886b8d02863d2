//! Upstream's replica calculator (`pkg/controller/podautoscaler/
//! replica_calculator.go`) for resource metrics: from the pods' usage and
//! requests, the replica count that would bring the metric to its target.
//!
//! For a utilization target, usage ratio = (sum of usage / sum of requests
//! as a whole percentage) / target, over the pods that have a metric and
//! are ready; the proposal is ceil(ratio × ready pods), or the current
//! count when the ratio is within the tolerance of 1. Pods still starting,
//! unready or without metrics are then accounted for conservatively: they
//! can dampen a change, never cause or reverse one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::metrics::{milli_value, PodMetric};

/// `--horizontal-pod-autoscaler-cpu-initialization-period`.
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// `--horizontal-pod-autoscaler-initial-readiness-delay`.
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

fn plus(at: Timestamp, d: Duration) -> Timestamp {
    at.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(at)
}

/// Upstream's `groupPods`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Groups {
    pub ready: usize,
    pub unready: BTreeSet<String>,
    pub missing: BTreeSet<String>,
    pub ignored: BTreeSet<String>,
}

/// Sort the pods: being deleted or failed (ignored), pending (unready),
/// without a metric (missing), and for cpu, not ready or too fresh for
/// their sample to count (unready); the rest are ready.
pub fn group_pods(
    pods: &[&Pod],
    metrics: &BTreeMap<String, PodMetric>,
    resource: &str,
    now: Timestamp,
) -> Groups {
    let mut groups = Groups::default();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        if pod.metadata.deletion_timestamp.is_some() || phase == "Failed" {
            groups.ignored.insert(name);
            continue;
        }
        if phase == "Pending" {
            groups.unready.insert(name);
            continue;
        }
        let Some(metric) = metrics.get(&name) else {
            groups.missing.insert(name);
            continue;
        };
        if resource == "cpu" {
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            let start = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            let unready = match (ready, start) {
                (Some(ready), Some(start)) => {
                    let transition = ready
                        .last_transition_time
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or(start);
                    if plus(start, CPU_INITIALIZATION_PERIOD) > now {
                        // Starting up: the sample must postdate readiness by
                        // a whole window.
                        ready.status == "False"
                            || metric.timestamp < plus(transition, metric.window)
                    } else {
                        // Unready and never ready since it started.
                        ready.status == "False" && plus(start, INITIAL_READINESS_DELAY) > transition
                    }
                }
                _ => true,
            };
            if unready {
                groups.unready.insert(name);
                continue;
            }
        }
        groups.ready += 1;
    }
    groups
}

/// Upstream's `calculatePodRequests`: each pod's request of `resource` in
/// thousandths, over its containers and sidecars (or the one named);
/// a container without a request is an error.
pub fn pod_requests(
    pods: &[&Pod],
    container: Option<&str>,
    resource: &str,
) -> Result<BTreeMap<String, i64>, String> {
    let mut requests = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(spec) = pod.spec.as_ref() else {
            requests.insert(name, 0);
            continue;
        };
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0i64;
        for c in spec.containers.iter().chain(sidecars) {
            if container.is_some_and(|wanted| wanted != c.name) {
                continue;
            }
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| milli_value(&q.0));
            match request {
                Some(r) => sum += r,
                None => {
                    return Err(format!(
                        "missing request for {resource} in container {} of Pod {name}",
                        c.name
                    ))
                }
            }
        }
        requests.insert(name, sum);
    }
    Ok(requests)
}

/// Upstream's `GetResourceUtilizationRatio`: (usage ratio, utilization
/// percent, average raw usage) over the pods with both a value and a
/// request.
pub fn utilization_ratio(
    values: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut usage, mut requested, mut entries) = (0i64, 0i64, 0i64);
    for (pod, value) in values {
        // Metrics for pods we do not know (no request) are extraneous.
        if let Some(request) = requests.get(pod) {
            usage += value;
            requested += request;
            entries += 1;
        }
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = (usage * 100 / requested) as i32;
    Ok((
        f64::from(utilization) / f64::from(target.max(1)),
        utilization,
        usage / entries,
    ))
}

/// Upstream's `GetMetricUsageRatio`: the average value against the target
/// average.
fn usage_ratio(values: &BTreeMap<String, i64>, target: i64) -> (f64, i64) {
    let average = values.values().sum::<i64>() / values.len().max(1) as i64;
    (average as f64 / target.max(1) as f64, average)
}

fn within(ratio: f64, tolerance: f64) -> bool {
    (1.0 - ratio).abs() <= tolerance
}

/// The proposal for a utilization target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    /// Average utilization, percent of request (utilization targets only).
    pub utilization: Option<i32>,
    /// Average usage per pod, in thousandths.
    pub average: i64,
}

/// How a target measures the pods.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// `averageUtilization`, percent of the pods' requests.
    Utilization(i32),
    /// `averageValue`, in thousandths per pod.
    AverageValue(i64),
}

/// Upstream's `GetResourceReplicas` (utilization) and
/// `GetRawResourceReplicas` (average value) over `pods` (the target's,
/// by its selector) and their metric `values`.
#[allow(clippy::too_many_arguments)]
pub fn resource_replicas(
    current: i32,
    target: Target,
    resource: &str,
    container: Option<&str>,
    tolerance: f64,
    pods: &[&Pod],
    metrics: &BTreeMap<String, PodMetric>,
    now: Timestamp,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let groups = group_pods(pods, metrics, resource, now);
    let mut values: BTreeMap<String, i64> = metrics
        .iter()
        .filter(|(pod, _)| !groups.ignored.contains(*pod) && !groups.unready.contains(*pod))
        .map(|(pod, m)| (pod.clone(), m.value))
        .collect();
    let requests = match target {
        Target::Utilization(_) => pod_requests(pods, container, resource)?,
        Target::AverageValue(_) => BTreeMap::new(),
    };
    if values.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let ratio_of = |values: &BTreeMap<String, i64>| -> Result<(f64, Option<i32>, i64), String> {
        match target {
            Target::Utilization(t) => {
                let (ratio, utilization, average) = utilization_ratio(values, &requests, t)?;
                Ok((ratio, Some(utilization), average))
            }
            Target::AverageValue(t) => {
                let (ratio, average) = usage_ratio(values, t);
                Ok((ratio, None, average))
            }
        }
    };
    let (ratio, utilization, average) = ratio_of(&values)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average,
    };

    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if within(ratio, tolerance) {
            return Ok(proposal(current));
        }
        return Ok(proposal((ratio * groups.ready as f64).ceil() as i32));
    }

    // Missing pods count as at the target on a scale-down (or at 100% of
    // their request, if the target is higher), as idle on a scale-up.
    for pod in &groups.missing {
        let assumed = if ratio < 1.0 {
            match target {
                Target::Utilization(t) => {
                    requests.get(pod).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                }
                Target::AverageValue(t) => t,
            }
        } else {
            0
        };
        values.insert(pod.clone(), assumed);
    }
    // Unready pods count as idle on a scale-up.
    if scale_up_with_unready {
        for pod in &groups.unready {
            values.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _, _) = ratio_of(&values)?;
    // No change if it is now too small, or would change direction.
    if within(new_ratio, tolerance)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * values.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    /// A running pod requesting `request` millicores, ready since long ago
    /// (or not ready, or pending).
    fn pod(name: &str, request: Option<i64>, state: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    resources: Some(ResourceRequirements {
                        requests: request
                            .map(|r| [("cpu".to_string(), Quantity(format!("{r}m")))].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(
                    if state == "pending" {
                        "Pending"
                    } else {
                        "Running"
                    }
                    .into(),
                ),
                start_time: Some(Time(at(-3600))),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if state == "ready" { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(at(-3600))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn usage(values: &[(&str, i64)]) -> BTreeMap<String, PodMetric> {
        values
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    PodMetric {
                        value: *v,
                        timestamp: at(0),
                        window: Duration::from_secs(30),
                    },
                )
            })
            .collect()
    }

    fn replicas(
        current: i32,
        target: i32,
        pods: &[Pod],
        metrics: &[(&str, i64)],
    ) -> Result<(i32, Option<i32>), String> {
        let refs: Vec<&Pod> = pods.iter().collect();
        resource_replicas(
            current,
            Target::Utilization(target),
            "cpu",
            None,
            0.1,
            &refs,
            &usage(metrics),
            at(0),
        )
        .map(|p| (p.replicas, p.utilization))
    }

    #[test]
    fn utilization_drives_the_replica_count() {
        let two = [pod("a", Some(100), "ready"), pod("b", Some(100), "ready")];
        let cases = [
            // 100% of request against a 50% target: twice as many.
            (
                2,
                50,
                &two[..],
                vec![("a", 100), ("b", 100)],
                Ok((4, Some(100))),
            ),
            // Within the 10% tolerance: no change.
            (
                2,
                50,
                &two[..],
                vec![("a", 54), ("b", 54)],
                Ok((2, Some(54))),
            ),
            (
                2,
                50,
                &two[..],
                vec![("a", 56), ("b", 56)],
                Ok((3, Some(56))),
            ),
            // 10% against 50%: down to a fifth, rounded up.
            (
                2,
                50,
                &two[..],
                vec![("a", 10), ("b", 10)],
                Ok((1, Some(10))),
            ),
            (5, 80, &two[..], vec![("a", 0), ("b", 0)], Ok((0, Some(0)))),
        ];
        for (current, target, pods, metrics, want) in cases {
            assert_eq!(
                replicas(current, target, pods, &metrics),
                want,
                "{metrics:?}"
            );
        }
    }

    #[test]
    fn unready_and_missing_pods_only_dampen() {
        let pods = [
            pod("a", Some(100), "ready"),
            pod("b", Some(100), "ready"),
            pod("c", Some(100), "unready"),
            pod("d", Some(100), "pending"),
        ];
        // Hot ready pods (200% against 50%); on this scale-up the unready
        // ones count as idle: 400m of 400m requested is 100%, a ratio of 2
        // over 4 pods → 8.
        assert_eq!(
            replicas(4, 50, &pods, &[("a", 200), ("b", 200), ("c", 0)]),
            Ok((8, Some(200)))
        );
        // Cold ready pods: unready ones do not matter on a scale-down.
        assert_eq!(
            replicas(4, 50, &pods, &[("a", 10), ("b", 10), ("c", 90)]),
            Ok((1, Some(10)))
        );
        // A pod without metrics counts as at its request on a scale-down:
        // (10 + 10 + 100) / 300 = 40% against 50% → ceil(0.8 * 3) = 3.
        let three = [
            pod("a", Some(100), "ready"),
            pod("b", Some(100), "ready"),
            pod("m", Some(100), "ready"),
        ];
        assert_eq!(
            replicas(3, 50, &three, &[("a", 10), ("b", 10)]),
            Ok((3, Some(10)))
        );
        // ...and as idle on a scale-up: (80+80+0)/300 = 53% vs 50%: within
        // tolerance, no change.
        assert_eq!(
            replicas(3, 50, &three, &[("a", 80), ("b", 80)]),
            Ok((3, Some(80)))
        );
    }

    #[test]
    fn errors_read_as_upstreams() {
        let pods = [pod("a", None, "ready")];
        assert_eq!(
            replicas(1, 50, &pods, &[("a", 10)]),
            Err("missing request for cpu in container app of Pod a".into())
        );
        assert_eq!(
            replicas(1, 50, &[], &[]),
            Err("no pods returned by selector while calculating replica count".into())
        );
        let pods = [pod("a", Some(100), "unready")];
        assert_eq!(
            replicas(1, 50, &pods, &[("a", 10)]),
            Err("did not receive metrics for targeted pods (pods might be unready)".into())
        );
        let pods = [pod("a", Some(100), "ready")];
        let refs: Vec<&Pod> = pods.iter().collect();
        let average = resource_replicas(
            1,
            Target::AverageValue(50),
            "cpu",
            None,
            0.1,
            &refs,
            &usage(&[("a", 150)]),
            at(0),
        );
        assert_eq!(average.map(|p| (p.replicas, p.average)), Ok((3, 150)));
    }

    #[test]
    fn fresh_pods_count_only_once_a_sample_postdates_readiness() {
        let mut fresh = pod("a", Some(100), "ready");
        let status = fresh.status.as_mut().unwrap();
        status.start_time = Some(Time(at(-60)));
        status.conditions.as_mut().unwrap()[0].last_transition_time = Some(Time(at(-10)));
        let refs = [&fresh];
        // The sample (at 0, 30 s window) started before the pod was ready.
        let groups = group_pods(&refs, &usage(&[("a", 50)]), "cpu", at(0));
        assert!(groups.unready.contains("a"));
        // Memory does not care.
        let groups = group_pods(&refs, &usage(&[("a", 50)]), "memory", at(0));
        assert_eq!(groups.ready, 1);
    }
}
