//! Recreate (upstream's `recreate.go`): every old ReplicaSet goes to 0, and
//! only once their pods are all gone does the new one come up at full size.

use super::*;
use crate::pods::{controller_of, phase};

impl Model<'_> {
    pub(super) fn rollout_recreate(mut self, observed: &Deployment) -> Result<Plan, String> {
        let new = self.get_new_replica_set(false)?;
        let mut scaled_down = false;
        for rs_name in self.active_old(new.as_deref()) {
            if self.scale_and_record(&rs_name, 0) {
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running(new.as_deref()) {
            return Ok(self.sync_rollout_status(observed, new.as_deref()));
        }
        let new = match new {
            Some(new) => new,
            None => self
                .get_new_replica_set(true)?
                .expect("get_new_replica_set(true) yields a ReplicaSet"),
        };
        let desired = replicas(&self.d);
        if self.scale_and_record(&new, desired) {
            return Ok(self.sync_rollout_status(observed, Some(&new)));
        }
        if deployment_complete(&self.d, self.d.status.as_ref()) {
            self.cleanup(Some(&new));
        }
        Ok(self.sync_rollout_status(observed, Some(&new)))
    }

    /// Upstream's `oldPodsRunning`: an old ReplicaSet still reports pods,
    /// or a pod of one is not finished (terminating pods count: Recreate
    /// waits until they are gone).
    fn old_pods_running(&self, new: Option<&str>) -> bool {
        let old = self.old_names(new);
        if old
            .iter()
            .map(|n| rs_status_counts(self.rs(n)).0)
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let new_uid = new.and_then(|n| self.rs(n).metadata.uid.clone());
        self.pods.iter().any(|pod| {
            let owner = controller_of(pod.as_ref()).map(|r| r.uid.clone());
            owner.is_some() && owner != new_uid && !matches!(phase(pod), "Failed" | "Succeeded")
        })
    }
}
