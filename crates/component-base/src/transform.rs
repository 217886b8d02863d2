//! What a component drops from objects before it keeps them, as client-go's
//! informer transforms (`TransformStripManagedFields`) do.
//!
//! A component holds a copy of every object it watches, so what it keeps
//! per object is multiplied by the size of the cluster: a running pod's
//! `metadata.managedFields` (one entry per writer, each a tree of the
//! fields it owns) is larger than the rest of the pod, and no controller,
//! scheduler or kubelet reads it.

use kube::Resource;

/// Drop `metadata.managedFields`. For `kube::runtime` streams:
/// `watcher(api, config).modify(strip_managed_fields)`.
pub fn strip_managed_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    #[test]
    fn managed_fields_go_and_the_rest_stays() {
        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                resource_version: Some("7".into()),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubelet".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        };
        strip_managed_fields(&mut pod);
        assert_eq!(pod.metadata.managed_fields, None);
        assert_eq!(pod.metadata.name.as_deref(), Some("web"));
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("7"));
    }
}
