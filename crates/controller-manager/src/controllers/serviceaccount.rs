//! The ServiceAccount controller: every active namespace has a `default`
//! ServiceAccount, recreated if deleted (upstream's
//! `serviceaccounts-controller`).

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::context::Context;
use crate::framework::{forward, run_workers, Change, ObjectKey, Outcome, WorkQueue};

/// The accounts every namespace gets.
pub const DEFAULT_ACCOUNTS: &[&str] = &["default"];

/// The accounts to create in a namespace: the defaults it lacks, none while
/// it is terminating.
pub fn missing_accounts(namespace: &Namespace, has: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Vec::new();
    }
    DEFAULT_ACCOUNTS
        .iter()
        .copied()
        .filter(|name| !has(name))
        .collect()
}

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let namespaces = ctx.informers.get::<Namespace>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    let queue = WorkQueue::new();
    forward(&namespaces, &queue, |change| match change {
        Change::Deleted(_) => Vec::new(),
        change => vec![change.object().metadata.name.clone().unwrap_or_default()],
    });
    forward(&accounts, &queue, |change| match change {
        Change::Deleted(sa)
            if DEFAULT_ACCOUNTS.contains(&sa.metadata.name.as_deref().unwrap_or("")) =>
        {
            vec![sa.metadata.namespace.clone().unwrap_or_default()]
        }
        _ => Vec::new(),
    });
    namespaces.wait_synced().await;
    accounts.wait_synced().await;
    let workers = ctx.settings.concurrent_syncs;
    run_workers("serviceaccount", queue, workers, move |ns: String| {
        let ctx = ctx.clone();
        let namespaces = namespaces.clone();
        let accounts = accounts.clone();
        async move {
            let Some(namespace) = namespaces.get(&ObjectKey::cluster(&ns)) else {
                return Ok(Outcome::Done);
            };
            let missing = missing_accounts(&namespace, |name| {
                accounts.get(&ObjectKey::new(&ns, name)).is_some()
            });
            let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
            for name in missing {
                let account = ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(ns.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &account).await {
                    Ok(_) => {}
                    // Already there (our cache lagged), or the namespace is
                    // going away: nothing to do.
                    Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(Outcome::Done)
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;

    fn namespace(phase: &str) -> Namespace {
        Namespace {
            status: Some(NamespaceStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_active_namespaces_get_their_default_account() {
        assert_eq!(
            missing_accounts(&namespace("Active"), |_| false),
            ["default"]
        );
        assert!(missing_accounts(&namespace("Active"), |_| true).is_empty());
        assert!(missing_accounts(&namespace("Terminating"), |_| false).is_empty());
    }
}
