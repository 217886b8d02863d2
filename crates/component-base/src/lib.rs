//! What every Tugboat component shares, as upstream's `component-base` and
//! client-go's tools are shared by kube-scheduler and
//! kube-controller-manager:
//! - [`client`]: a kube-rs client from `--kubeconfig` or the usual places;
//! - [`leader`]: leader election through a `coordination.k8s.io` Lease;
//! - [`events`]: recording `core/v1` Events, aggregated as client-go's
//!   event correlator does;
//! - [`signals`]: SIGINT or SIGTERM as the graceful stop;
//! - [`transform`]: what components drop from objects before keeping them;
//! - [`intern`]: one copy of each object version per process.
//!
//! It depends on none of our crates, so every component may use it.

pub mod client;
pub mod events;
pub mod intern;
pub mod leader;
pub mod signals;
pub mod transform;
