//! `tug-scheduler`: places unscheduled pods on nodes, as kube-scheduler does.
//!
//! The core is pure and tested without a server:
//! - [`framework`]: the types a scheduling cycle works on ([`framework::NodeInfo`],
//!   the filter and score plugin traits, upstream-style failure reasons);
//! - [`plugins`]: upstream's filter and score plugins, each a pure function
//!   of the pod and one node (plus, for inter-pod rules, the snapshot);
//! - [`queue`]: active, backoff and unschedulable pods, clock-injected;
//! - [`cache`]: nodes, counted pods and assumed pods, giving snapshots;
//! - [`cycle`]: one scheduling cycle (parallel filtering, adaptive
//!   percentageOfNodesToScore, weighted scores) and upstream's `FitError`;
//! - [`preemption`]: choosing victims for a pod that fits nowhere.
//!
//! [`run`] is the I/O edge: kube-rs watchers feed the cache and queue, the
//! loop schedules, and bindings, events and conditions go back to the API
//! server, including preemption's nominations and evictions. Leader
//! election comes from `tugboat-component-base`; [`metrics`] serves
//! `/metrics` and `/healthz`; [`cli`] is the command line `tug-scheduler`
//! and `tugboat` share.

pub mod cache;
pub mod cli;
pub mod cycle;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod run;
