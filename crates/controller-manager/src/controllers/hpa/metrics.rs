//! Where the autoscaler's pod metrics come from: a [`MetricsSource`]
//! giving `metrics.k8s.io/v1beta1` PodMetrics (the real one,
//! [`ResourceMetricsApi`], asks the API server, which answers once a
//! metrics server is aggregated into it; tests use a fake), and the
//! per-pod values upstream's `resourceMetricsClient` makes of them.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use serde::Deserialize;

/// One container's usage, as PodMetrics reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContainerMetrics {
    pub name: String,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// A pod's usage (`metrics.k8s.io/v1beta1` PodMetrics): averaged over
/// `window`, ending at `timestamp`.
#[derive(Debug, Clone, PartialEq)]
pub struct PodMetrics {
    pub namespace: String,
    pub name: String,
    pub timestamp: Timestamp,
    pub window: Duration,
    pub containers: Vec<ContainerMetrics>,
}

/// A source of pod metrics.
pub trait MetricsSource: Send + Sync + 'static {
    /// The PodMetrics of the pods in `namespace` matching `selector` (a
    /// label selector string, as a Scale's `status.selector`). An error is
    /// the message upstream would show after "unable to fetch metrics from
    /// resource metrics API: ".
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>>;
}

/// The resource metrics API through the API server.
pub struct ResourceMetricsApi {
    client: kube::Client,
}

impl ResourceMetricsApi {
    pub fn new(client: kube::Client) -> Self {
        ResourceMetricsApi { client }
    }
}

/// The fields of a PodMetrics besides its metadata.
#[derive(Deserialize)]
struct PodMetricsData {
    timestamp: Option<String>,
    window: Option<String>,
    #[serde(default)]
    containers: Vec<ContainerMetrics>,
}

impl MetricsSource for ResourceMetricsApi {
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>> {
        Box::pin(async move {
            let gvk = GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics");
            let resource = ApiResource::from_gvk_with_plural(&gvk, "pods");
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &resource);
            let list = api
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| match e {
                    // client-go's words for an API nobody serves.
                    kube::Error::Api(e) if e.code == 404 => {
                        "the server could not find the requested resource (get pods.metrics.k8s.io)"
                            .to_string()
                    }
                    kube::Error::Api(e) => e.message,
                    e => e.to_string(),
                })?;
            list.items
                .into_iter()
                .map(|item| {
                    let data: PodMetricsData = serde_json::from_value(item.data)
                        .map_err(|e| format!("decoding PodMetrics: {e}"))?;
                    let window = data.window.as_deref().unwrap_or("0s");
                    Ok(PodMetrics {
                        namespace: item.metadata.namespace.unwrap_or_default(),
                        name: item.metadata.name.unwrap_or_default(),
                        timestamp: data
                            .timestamp
                            .and_then(|t| t.parse().ok())
                            .unwrap_or_else(Timestamp::now),
                        window: crate::parse_duration(window)?,
                        containers: data.containers,
                    })
                })
                .collect()
        })
    }
}

/// One pod's value of a metric, in milli-units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: Timestamp,
    pub window: Duration,
}

/// Upstream's `getPodMetrics` / `getContainerMetrics`: each pod's usage of
/// `resource`, summed over its containers (or the one named `container`).
/// A pod missing the resource in any container has no value; with a
/// container named, a pod without that container is an error.
pub fn resource_values(
    items: &[PodMetrics],
    resource: &str,
    container: Option<&str>,
) -> Result<BTreeMap<String, PodMetric>, String> {
    let mut values = BTreeMap::new();
    for item in items {
        let metric = |value| PodMetric {
            value,
            timestamp: item.timestamp,
            window: item.window,
        };
        match container {
            Some(wanted) => {
                let Some(c) = item.containers.iter().find(|c| c.name == wanted) else {
                    return Err(format!(
                        "container {wanted} not present in metrics for pod {}/{}",
                        item.namespace, item.name
                    ));
                };
                if let Some(v) = c.usage.get(resource).and_then(|q| milli_value(&q.0)) {
                    values.insert(item.name.clone(), metric(v));
                }
            }
            None => {
                let sum: Option<i64> = (!item.containers.is_empty())
                    .then(|| {
                        item.containers
                            .iter()
                            .map(|c| c.usage.get(resource).and_then(|q| milli_value(&q.0)))
                            .sum()
                    })
                    .flatten();
                if let Some(sum) = sum {
                    values.insert(item.name.clone(), metric(sum));
                }
            }
        }
    }
    Ok(values)
}

/// A quantity (`250m`, `1.5`, `128Mi`, `1e3`, `123456n`) in thousandths of
/// a unit, rounded up as upstream's `Quantity.MilliValue()`; `None` if it
/// is not a quantity.
pub fn milli_value(s: &str) -> Option<i64> {
    let s = s.trim();
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    // value = mantissa * 10^exp10 * 2^exp2
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse().ok()?, 0),
        _ => return None,
    };
    // Thousandths, less the fraction's digits.
    let exp = exp10 + 3 - fraction.len() as i32;
    let scaled = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
    let milli = if exp >= 0 {
        scaled.checked_mul(10i128.checked_pow(exp as u32)?)?
    } else {
        let divisor = 10i128.checked_pow(exp.unsigned_abs())?;
        // Round up (away from zero), as MilliValue.
        (scaled + divisor - 1) / divisor
    };
    let milli = if negative { -milli } else { milli };
    i64::try_from(milli).ok()
}

/// A milli-value as upstream's `NewMilliQuantity(v, DecimalSI).String()`:
/// the largest SI suffix that keeps an integer (`250m`, `1`, `5k`).
pub fn format_milli(value: i64) -> String {
    if value == 0 {
        return "0".into();
    }
    let mut n = value;
    let mut exp = -3;
    while n % 1000 == 0 && exp < 18 {
        n /= 1000;
        exp += 3;
    }
    let suffix = match exp {
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_in_thousandths_rounding_up() {
        let cases = [
            ("250m", Some(250)),
            ("1", Some(1000)),
            ("1.5", Some(1500)),
            ("0.0001", Some(1)),
            ("123456789n", Some(124)),
            ("10u", Some(1)),
            ("2k", Some(2_000_000)),
            ("128Mi", Some(134_217_728_000)),
            ("1e3", Some(1_000_000)),
            ("-100m", Some(-100)),
            ("abc", None),
            ("", None),
            ("5x", None),
        ];
        for (q, want) in cases {
            assert_eq!(milli_value(q), want, "{q}");
        }
        for (v, want) in [
            (250, "250m"),
            (1000, "1"),
            (1500, "1500m"),
            (5_000_000, "5k"),
            (0, "0"),
        ] {
            assert_eq!(format_milli(v), want);
        }
    }

    #[test]
    fn pod_values_sum_containers_or_pick_one() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let usage = |cpu: Option<&str>| -> BTreeMap<String, Quantity> {
            cpu.map(|c| [("cpu".to_string(), Quantity(c.into()))].into())
                .unwrap_or_default()
        };
        let pod = |name: &str, containers: Vec<(&str, Option<&str>)>| PodMetrics {
            namespace: "ns".into(),
            name: name.into(),
            timestamp: at,
            window: Duration::from_secs(30),
            containers: containers
                .into_iter()
                .map(|(n, cpu)| ContainerMetrics {
                    name: n.into(),
                    usage: usage(cpu),
                })
                .collect(),
        };
        let items = [
            pod("a", vec![("app", Some("100m")), ("side", Some("50m"))]),
            pod("b", vec![("app", Some("200m")), ("side", None)]),
            pod("c", vec![]),
        ];
        let all = resource_values(&items, "cpu", None).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(all["a"].value, 150);
        let app = resource_values(&items[..2], "cpu", Some("app")).unwrap();
        assert_eq!((app["a"].value, app["b"].value), (100, 200));
        assert_eq!(
            resource_values(&items, "cpu", Some("app")).unwrap_err(),
            "container app not present in metrics for pod ns/c"
        );
    }
}
