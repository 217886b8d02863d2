//! Kubernetes API types and apimachinery helpers, with no I/O.
//!
//! - [`k8s`] re-exports `k8s-openapi` at the one Kubernetes version the whole
//!   workspace speaks (see `[workspace.dependencies]`).
//! - [`resources`] is the table of built-in resources: group, version, kind,
//!   plural, short names, scope, verbs and subresources. The API server's
//!   routing, discovery and storage keys are all derived from it.
//! - [`meta`] holds small helpers over object metadata kept as JSON.
//! - [`selector`] and [`fields`] parse and match label and field selectors.
//! - [`table`] renders `meta.k8s.io/v1` Tables with upstream's printer columns.
//! - [`schema`] and [`patch_meta`] describe the kinds' schemas and list merge rules.
//!
//! Everything here is pure: the crate depends on none of ours and does no I/O,
//! so every piece is unit-tested without a server.

pub use k8s_openapi as k8s;

pub mod apply;
pub mod fields;
pub mod meta;
pub mod openapi;
pub mod patch_meta;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod strategic;
pub mod table;

/// The Kubernetes release whose API Tugboat serves.
pub const KUBERNETES_VERSION: (u32, u32, u32) = (1, 33, 0);
