//! Every controller, by upstream's name (`--controllers`). Each module is
//! a pure decision (`decide`/`reconcile` functions over observed objects,
//! unit-tested without a server) plus an executor `run` that feeds a work
//! queue from shared informers and carries the decision out.

use futures::future::BoxFuture;

use crate::context::Context;

pub mod certificates;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbagecollector;
pub mod history;
pub mod hpa;
pub mod job;
pub mod namespace;
pub mod nodelifecycle;
pub mod replicaset;
pub mod serviceaccount;
pub mod statefulset;

/// A controller's entry point: runs until the process stops.
pub type Start = fn(Context) -> BoxFuture<'static, anyhow::Result<()>>;

/// Every controller, by the name `--controllers` uses.
pub const CONTROLLERS: &[(&str, Start)] = &[
    ("replicaset", |ctx| Box::pin(replicaset::run(ctx))),
    ("deployment", |ctx| Box::pin(deployment::run(ctx))),
    ("statefulset", |ctx| Box::pin(statefulset::run(ctx))),
    ("daemonset", |ctx| Box::pin(daemonset::run(ctx))),
    ("job", |ctx| Box::pin(job::run(ctx))),
    ("cronjob", |ctx| Box::pin(cronjob::run(ctx))),
    ("garbagecollector", |ctx| {
        Box::pin(garbagecollector::run(ctx))
    }),
    ("namespace", |ctx| Box::pin(namespace::run(ctx))),
    ("nodelifecycle", |ctx| Box::pin(nodelifecycle::run(ctx))),
    ("endpoint", |ctx| Box::pin(endpoints::run(ctx))),
    ("endpointslice", |ctx| Box::pin(endpointslice::run(ctx))),
    ("serviceaccount", |ctx| Box::pin(serviceaccount::run(ctx))),
    ("horizontalpodautoscaling", |ctx| Box::pin(hpa::run(ctx))),
    ("disruption", |ctx| Box::pin(disruption::run(ctx))),
    ("csrapproving", |ctx| {
        Box::pin(certificates::run(ctx, true, None))
    }),
    ("csrsigning", |ctx| {
        let ca = ctx.settings.cluster_signing.clone();
        Box::pin(certificates::run(ctx, false, ca))
    }),
];

/// Whether `name` is enabled by a `--controllers` list: `*` enables all,
/// `foo` enables foo, `-foo` disables it (upstream's syntax).
pub fn enabled(name: &str, list: &[String]) -> bool {
    if list.iter().any(|c| c == &format!("-{name}")) {
        return false;
    }
    list.iter().any(|c| c == "*" || c == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controllers_flag_reads_as_upstreams() {
        let list = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        assert!(enabled("job", &list("*")));
        assert!(!enabled("job", &list("*,-job")));
        assert!(enabled("job", &list("job,cronjob")));
        assert!(!enabled("deployment", &list("job,cronjob")));
    }
}
