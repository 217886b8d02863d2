//! `tugboat`: a whole cluster in one process, as k3s packs Kubernetes.
//!
//! The components are linked as libraries: each crate's `cli` module holds
//! the clap flags and the run loop its standalone binary uses, and
//! `tugboat server` builds those flags in code ([`plan`]) and runs every
//! component on one tokio runtime ([`server`]). Each component reaches the
//! API server over loopback HTTPS with a client certificate of its own,
//! issued by the cluster CA on first start. `tugboat agent` ([`agent`]) runs
//! a kubelet and a proxy on another host that join with a token
//! ([`join`]): bootstrap token, CA pinned by hash, node credential from a
//! CertificateSigningRequest.

pub mod agent;
pub mod join;
pub mod plan;
pub mod server;
