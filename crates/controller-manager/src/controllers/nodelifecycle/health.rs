//! Node health as upstream's `tryUpdateNodeHealth` judges it.
//!
//! A node is alive while its heartbeats keep coming: the kubelet renews the
//! node's Lease in `kube-node-lease` every few seconds and posts its Ready
//! condition (with a new `lastHeartbeatTime`) now and then. We never compare
//! those timestamps with our clock: like upstream's `probeTimestamp`, we
//! note when *we* saw either of them change, and the node is overdue once
//! that moment is older than the grace period (`--node-monitor-grace-period`,
//! or `--node-startup-grace-period` for a node that never posted a Ready
//! condition, counted from its creation).
//!
//! An overdue node gets every condition the kubelet owns (Ready,
//! MemoryPressure, DiskPressure, PIDPressure) set to Unknown, which the
//! controller writes through `nodes/status`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The conditions the kubelet posts and the controller marks Unknown when
/// it stops (upstream leaves NetworkUnavailable to the cloud provider).
pub const KUBELET_CONDITIONS: [&str; 4] =
    ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller remembers of a node between passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    /// The Ready condition's heartbeat as last seen; `None` when the node
    /// had no Ready condition.
    ready_heartbeat: Option<Option<Timestamp>>,
    /// The Lease's `renewTime` as last seen.
    lease_renewed: Option<Timestamp>,
    /// When we last saw a heartbeat (upstream's `probeTimestamp`).
    pub probe: Timestamp,
}

impl NodeHealth {
    /// Health as first seen when the controller starts over (upstream does
    /// this when leaving full-disruption mode): every node gets a fresh
    /// grace period.
    pub fn reset_probe(&mut self, now: Timestamp) {
        self.probe = now;
    }
}

/// The grace periods the controller allows.
#[derive(Debug, Clone, Copy)]
pub struct Grace {
    /// `--node-monitor-grace-period`.
    pub monitor: Duration,
    /// `--node-startup-grace-period`.
    pub startup: Duration,
}

/// One look at a node.
#[derive(Debug, Clone)]
pub struct Observation {
    /// What to remember of the node, if the conditions below are written
    /// (or there is nothing to write).
    pub health: NodeHealth,
    /// The Ready condition as the node reported it (Unknown, since its
    /// creation, if it never did).
    pub observed_ready: NodeCondition,
    /// The conditions to write through `nodes/status` because the node is
    /// overdue and its Ready condition is not Unknown yet.
    pub new_conditions: Option<Vec<NodeCondition>>,
    /// The Ready condition after that write (the node's, when nothing is
    /// written); `None` for a node that never posted one and is still in
    /// its startup grace period.
    pub current_ready: Option<NodeCondition>,
}

/// The condition of `type_` in the node's status.
pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The node's Ready status: "True", "False", "Unknown", or None.
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

fn plus(at: Timestamp, d: Duration) -> Timestamp {
    at.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(at)
}

/// Look at `node` (and its `lease`) at `now`, given what was remembered of
/// it (`saved`, `None` on first sight).
pub fn observe(
    saved: Option<&NodeHealth>,
    node: &Node,
    lease: Option<&Lease>,
    now: Timestamp,
    grace: Grace,
) -> Observation {
    let created = node
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let current = condition(node, "Ready");
    let heartbeat = current.map(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
    let (observed_ready, grace_period) = match current {
        Some(c) => (c.clone(), grace.monitor),
        // Never posted: a stand-in Unknown condition, and the startup
        // grace from the node's creation.
        None => (
            NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                last_transition_time: node.metadata.creation_timestamp.clone(),
                ..Default::default()
            },
            grace.startup,
        ),
    };

    let mut health = match saved {
        // First sight of a node without a Ready condition: it has had its
        // chance since it was created.
        None if current.is_none() => NodeHealth {
            ready_heartbeat: None,
            lease_renewed: None,
            probe: created,
        },
        // First sight otherwise (also after a controller restart): a full
        // grace period from now.
        None => NodeHealth {
            ready_heartbeat: Some(heartbeat.flatten()),
            lease_renewed: None,
            probe: now,
        },
        Some(saved) => {
            let mut health = saved.clone();
            let changed = match (&saved.ready_heartbeat, &heartbeat) {
                (None, None) => false,
                (Some(old), Some(new)) => old != new,
                // The condition appeared or (oddly) disappeared.
                _ => true,
            };
            if changed {
                health.probe = now;
            }
            health.ready_heartbeat = heartbeat;
            health
        }
    };

    // A renewed Lease is a heartbeat too.
    let renewed = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    if let Some(renewed) = renewed {
        if health.lease_renewed.is_none_or(|seen| seen < renewed) {
            health.lease_renewed = Some(renewed);
            health.probe = now;
        }
    }

    let mut observation = Observation {
        health,
        current_ready: current.cloned(),
        observed_ready,
        new_conditions: None,
    };
    if now <= plus(observation.health.probe, grace_period) {
        return observation;
    }

    // Overdue: every kubelet condition goes Unknown.
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for type_ in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => conditions.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                last_transition_time: Some(Time(now)),
            }),
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
    let ready = conditions.iter().find(|c| c.type_ == "Ready").cloned();
    // As upstream, written only when the Ready condition changes (a node
    // already Unknown is left alone).
    if ready.as_ref() != current {
        observation.current_ready = ready;
        observation.new_conditions = Some(conditions);
        // The heartbeat we remember stays the kubelet's: our own write
        // must not count as one.
    }
    observation
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::NodeStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    const GRACE: Grace = Grace {
        monitor: Duration::from_secs(40),
        startup: Duration::from_secs(60),
    };

    fn node(ready: Option<(&str, i64)>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                creation_timestamp: Some(Time(at(-10))),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: ready.map(|(status, heartbeat)| {
                    vec![
                        NodeCondition {
                            type_: "Ready".into(),
                            status: status.into(),
                            reason: Some("KubeletReady".into()),
                            last_heartbeat_time: Some(Time(at(heartbeat))),
                            last_transition_time: Some(Time(at(-10))),
                            ..Default::default()
                        },
                        NodeCondition {
                            type_: "MemoryPressure".into(),
                            status: "False".into(),
                            last_heartbeat_time: Some(Time(at(heartbeat))),
                            ..Default::default()
                        },
                    ]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lease(renewed: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(at(renewed))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Observe a sequence of (seconds, node as the API holds it, lease) and
    /// report, for each, the Ready status the controller leaves.
    fn walk(steps: &[(i64, Node, Option<Lease>)]) -> Vec<String> {
        let mut saved: Option<NodeHealth> = None;
        let mut out = Vec::new();
        for (t, node, lease) in steps {
            let o = observe(saved.as_ref(), node, lease.as_ref(), at(*t), GRACE);
            out.push(
                o.current_ready
                    .as_ref()
                    .map(|c| c.status.clone())
                    .unwrap_or_else(|| "-".into()),
            );
            saved = Some(o.health);
        }
        out
    }

    #[test]
    fn a_node_goes_unknown_only_after_a_grace_period_without_heartbeats() {
        let ready = |hb| node(Some(("True", hb)));
        type Steps = Vec<(i64, Node, Option<Lease>)>;
        let cases: Vec<(&str, Steps, Vec<&str>)> = vec![
            (
                // First sight gives a full grace period from now, whatever
                // the heartbeat's own clock says.
                "stale clock, fresh sight",
                vec![
                    (0, ready(-1000), None),
                    (39, ready(-1000), None),
                    (41, ready(-1000), None),
                ],
                vec!["True", "True", "Unknown"],
            ),
            (
                "condition heartbeats keep it alive",
                vec![
                    (0, ready(0), None),
                    (30, ready(30), None),
                    (65, ready(30), None),
                    (71, ready(30), None),
                ],
                vec!["True", "True", "True", "Unknown"],
            ),
            (
                "lease renewals keep it alive",
                vec![
                    (0, ready(0), Some(lease(0))),
                    (30, ready(0), Some(lease(30))),
                    (60, ready(0), Some(lease(60))),
                    (99, ready(0), Some(lease(60))),
                    (101, ready(0), Some(lease(60))),
                ],
                vec!["True", "True", "True", "True", "Unknown"],
            ),
            (
                // A lease whose renewTime goes back is no heartbeat.
                "a lease going backwards",
                vec![
                    (0, ready(0), Some(lease(10))),
                    (30, ready(0), Some(lease(5))),
                    (41, ready(0), Some(lease(5))),
                ],
                vec!["True", "True", "Unknown"],
            ),
            (
                // Never posted: the startup grace, counted from creation.
                "startup grace",
                vec![
                    (0, node(None), None),
                    (49, node(None), None),
                    (51, node(None), None),
                ],
                vec!["-", "-", "Unknown"],
            ),
            (
                "a NotReady node also goes Unknown when silent",
                vec![
                    (0, node(Some(("False", 0))), None),
                    (41, node(Some(("False", 0))), None),
                ],
                vec!["False", "Unknown"],
            ),
        ];
        for (name, steps, want) in cases {
            assert_eq!(walk(&steps), want, "{name}");
        }
    }

    #[test]
    fn overdue_nodes_get_every_kubelet_condition_unknown() {
        let n = node(Some(("True", 0)));
        let first = observe(None, &n, None, at(0), GRACE);
        assert!(first.new_conditions.is_none());
        let o = observe(Some(&first.health), &n, None, at(41), GRACE);
        let conditions = o.new_conditions.expect("a status write");
        let by_type = |t: &str| conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        for t in KUBELET_CONDITIONS {
            assert_eq!(by_type(t).status, "Unknown", "{t}");
        }
        let ready = by_type("Ready");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(ready.last_transition_time, Some(Time(at(41))));
        // The heartbeat is the kubelet's, untouched.
        assert_eq!(ready.last_heartbeat_time, Some(Time(at(0))));
        // Conditions the kubelet never posted say so.
        let disk = by_type("DiskPressure");
        assert_eq!(disk.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(
            disk.message.as_deref(),
            Some("Kubelet never posted node status.")
        );
        assert_eq!(o.observed_ready.status, "True");
        assert_eq!(o.current_ready.unwrap().status, "Unknown");

        // Once Unknown, nothing more is written.
        let mut unknown = n.clone();
        unknown.status.as_mut().unwrap().conditions = Some(conditions);
        let again = observe(Some(&o.health), &unknown, None, at(50), GRACE);
        assert!(again.new_conditions.is_none());
        assert_eq!(again.observed_ready.status, "Unknown");
    }
}
