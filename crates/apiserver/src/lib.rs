//! `tug-apiserver`: the Kubernetes REST API over Tugboat storage.
//!
//! A request travels: [`server`] (TLS, client certificate, tower layers) →
//! [`handlers`] (authentication, authorization, routing by [`request`]) →
//! [`registry`] (generic create/get/list/update/patch/delete, with per-kind
//! rules from [`strategy`], patches from [`patch`], subresources from
//! [`subresources`]) → `storage` (the MVCC store). Services get their
//! cluster IPs and node ports from [`alloc`], in the same storage
//! transaction as their own write; [`default_service`] keeps the
//! `kubernetes` Service pointing at this server. Lists and watches are
//! served from the [`cache`]; watch streams live in [`watch`]. `pods/log` is
//! proxied to the node's kubelet by [`logs`] over [`kubelet_client`], which
//! [`metrics_api`] also uses to serve `metrics.k8s.io` from kubelet
//! summaries; `pods/exec`, `pods/attach`, `pods/portforward` and
//! `nodes/proxy` by [`kubelet_proxy`], which splices upgraded connections.
//! Discovery and OpenAPI documents come from the resource table
//! ([`discovery`], [`openapi_http`]); [`pki`] makes the cluster CA,
//! certificates and `admin.kubeconfig` on first start; [`cli`] is the
//! command line (flags and the run loop) `tug-apiserver` and `tugboat` share.

// `ApiError` carries what a `Status` body needs (subject, causes); it is
// returned on cold paths only, so its size is not worth boxing everywhere.
#![allow(clippy::result_large_err)]

pub mod alloc;
pub mod auth;
pub mod bootstrap_token;
pub mod cache;
pub mod cached_json;
pub mod cli;
pub mod codec;
pub mod cron;
pub mod csr;
pub mod default_service;
pub mod discovery;
pub mod error;
pub mod fieldcheck;
pub mod handlers;
pub mod kubelet_client;
pub mod kubelet_proxy;
pub mod logs;
pub mod managed;
pub mod metrics_api;
pub mod openapi_http;
pub mod patch;
pub mod pki;
pub mod registry;
pub mod request;
pub mod selection;
pub mod server;
pub mod strategy;
pub mod subresources;
pub mod watch;

pub use server::{start, Config, Running};
