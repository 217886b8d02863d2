//! The node's heartbeat: the Lease `kube-node-lease/<node>`, as upstream's
//! node lease controller (`k8s.io/component-helpers/apimachinery/lease`)
//! keeps it for the kubelet:
//! - `holderIdentity` is the node name, `leaseDurationSeconds` 40 by
//!   default, `renewTime` (MicroTime) the time of the last renewal; no
//!   `acquireTime` (`kubectl describe node` shows it `<unset>`);
//! - its owner is the Node (`v1`, `Node`, name, uid), set as soon as the
//!   Node's UID is known, so deleting the Node deletes its Lease;
//! - it is renewed every `--node-lease-renew-interval` (upstream: a quarter
//!   of the duration, 10 s) with an update of the copy last written; a
//!   conflict makes the next try read it afresh; failures retry with
//!   back-off from 200 ms doubling to 7 s.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Where node Leases live.
pub const NAMESPACE: &str = "kube-node-lease";

const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(7);

/// The owner reference a node's Lease carries.
pub fn node_owner(node_name: &str, node_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node_name.into(),
        uid: node_uid.into(),
        ..Default::default()
    }
}

/// The Lease to write at `now`: `base` (the copy last read or written)
/// renewed, or a new one; the owner reference is added once known.
pub fn renewed(
    base: Option<&Lease>,
    node_name: &str,
    duration_seconds: i32,
    node_uid: Option<&str>,
    now: Timestamp,
) -> Lease {
    let mut lease = base.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(node_name.into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(node_name.into());
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.renew_time = Some(MicroTime(now));
    let owners = lease.metadata.owner_references.get_or_insert_with(Vec::new);
    if let (true, Some(uid)) = (owners.is_empty(), node_uid) {
        owners.push(node_owner(node_name, uid));
    }
    if owners.is_empty() {
        lease.metadata.owner_references = None;
    }
    lease
}

/// Keeps the Lease renewed until the task is aborted.
pub async fn run(
    client: kube::Client,
    node_name: String,
    duration_seconds: i32,
    renew_interval: Duration,
    node: watch::Receiver<Arc<Node>>,
) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let mut latest: Option<Lease> = None;
    let mut delay = BACKOFF_START;
    loop {
        let uid = node.borrow().metadata.uid.clone();
        // Boxed: the requests' futures are kilobytes, and inline they would
        // make every idle lease loop (one per hollow node) that big.
        let result = Box::pin(async {
            if latest.is_none() {
                latest = match api.get_opt(&node_name).await? {
                    Some(l) => Some(l),
                    None => {
                        let lease = renewed(
                            None,
                            &node_name,
                            duration_seconds,
                            uid.as_deref(),
                            Timestamp::now(),
                        );
                        return api.create(&PostParams::default(), &lease).await;
                    }
                };
            }
            let lease = renewed(
                latest.as_ref(),
                &node_name,
                duration_seconds,
                uid.as_deref(),
                Timestamp::now(),
            );
            api.replace(&node_name, &PostParams::default(), &lease)
                .await
        })
        .await;
        match result {
            Ok(lease) => {
                latest = Some(lease);
                delay = BACKOFF_START;
                tokio::time::sleep(renew_interval).await;
            }
            Err(error) => {
                if matches!(&error, kube::Error::Api(e) if e.code == 409 || e.code == 404) {
                    // Changed or gone under us: read it afresh.
                    latest = None;
                }
                tracing::warn!(node = %node_name, %error, "renewing the node lease failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn a_new_lease_names_the_node_and_its_owner_once_known() {
        let lease = renewed(None, "node-a", 40, None, at(0));
        assert_eq!(lease.metadata.name.as_deref(), Some("node-a"));
        assert_eq!(lease.metadata.namespace.as_deref(), Some(NAMESPACE));
        let spec = lease.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("node-a"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.renew_time, Some(MicroTime(at(0))));
        assert_eq!(spec.acquire_time, None);
        assert_eq!(lease.metadata.owner_references, None);

        let again = renewed(Some(&lease), "node-a", 40, Some("uid-1"), at(10));
        assert_eq!(
            again.metadata.owner_references,
            Some(vec![node_owner("node-a", "uid-1")])
        );
        assert_eq!(again.spec.unwrap().renew_time, Some(MicroTime(at(10))));
    }

    #[test]
    fn an_existing_owner_is_kept() {
        let owned = renewed(None, "node-a", 40, Some("uid-1"), at(0));
        let again = renewed(Some(&owned), "node-a", 40, Some("uid-2"), at(10));
        assert_eq!(
            again.metadata.owner_references,
            Some(vec![node_owner("node-a", "uid-1")])
        );
    }
}
