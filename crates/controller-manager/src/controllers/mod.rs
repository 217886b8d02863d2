//! Every controller, by upstream's name (`--controllers`). Each module is
//! a pure decision (`decide`/`reconcile` functions over observed objects,
//! unit-tested without a server) plus an executor `run` that feeds a work
//! queue from shared informers and carries the decision out.

use futures::future::BoxFuture;

use crate::context::Context;

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbagecollector;
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
    ("serviceaccount", |ctx| Box::pin(serviceaccount::run(ctx))),
    ("job", |ctx| Box::pin(job::run(ctx))),
    ("cronjob", |ctx| Box::pin(cronjob::run(ctx))),
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
