//! `tug-proxy`, Tugboat's kube-proxy: it makes every Service's ClusterIP
//! and NodePort reach the Service's ready endpoints on this node.
//!
//! - [`rules`]: the pure model: Services + EndpointSlices + node name →
//!   the service ports to program and their backends;
//! - [`nftables`]: those rules as an `ip tugboat` table, full renders and
//!   diffs as `nft -f` transactions (pure), plus running `nft`;
//! - [`userspace`]: the fallback backend, a tokio TCP/UDP relay listening
//!   on the ClusterIPs (added to `lo`) and NodePorts;
//! - [`sync`]: the loop: reflectors over Services and EndpointSlices, a
//!   rate-limited sync on each change and a periodic check;
//! - [`metrics`]: `/metrics` (sync latency, rule count, last sync) and
//!   `/healthz`;
//! - [`cli`]: the command line `tug-proxy` and `tugboat` share.

pub mod cli;
pub mod metrics;
pub mod nftables;
pub mod rules;
pub mod sync;
pub mod userspace;
