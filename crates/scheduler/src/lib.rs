//! `tug-scheduler`: places unscheduled pods on nodes, as kube-scheduler does.
//!
//! The core is pure and tested without a server:
//! - [`framework`]: the types a scheduling cycle works on ([`framework::NodeInfo`],
//!   the filter and score plugin traits, upstream-style failure reasons);
//! - [`plugins`]: upstream's filter and score plugins, each a pure function
//!   of the pod and one node (plus, for inter-pod rules, the snapshot).
//!
//! The informers, queue, binding and leader election (the I/O edges) come on
//! top of this core.

pub mod framework;
pub mod plugins;
pub mod queue;
