//! RollingUpdate (upstream's `rolling.go`): the new ReplicaSet grows within
//! maxSurge, old ones shrink within maxUnavailable (replicas that are not
//! available anyway first), one step per sync; a finished rollout cleans up
//! old ReplicaSets.

use super::*;

impl Model<'_> {
    pub(super) fn rollout_rolling(mut self, observed: &Deployment) -> Result<Plan, String> {
        let new = self
            .get_new_replica_set(true)?
            .expect("get_new_replica_set(true) yields a ReplicaSet");
        if self.reconcile_new_replica_set(&new)? {
            return Ok(self.sync_rollout_status(observed, Some(&new)));
        }
        if self.reconcile_old_replica_sets(&new) {
            return Ok(self.sync_rollout_status(observed, Some(&new)));
        }
        if deployment_complete(&self.d, self.d.status.as_ref()) {
            self.cleanup(Some(&new));
        }
        Ok(self.sync_rollout_status(observed, Some(&new)))
    }

    /// Upstream's `reconcileNewReplicaSet`: scale the new ReplicaSet up as
    /// far as maxSurge allows (or down if it has too many).
    fn reconcile_new_replica_set(&mut self, new: &str) -> Result<bool, String> {
        let desired = replicas(&self.d);
        let current = rs_replicas(self.rs(new));
        if current == desired {
            return Ok(false);
        }
        if current > desired {
            return Ok(self.scale_and_record(new, desired));
        }
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let size = new_rs_new_replicas(&self.d, &all, self.rs(new))?;
        Ok(self.scale_and_record(new, size))
    }

    /// Upstream's `reconcileOldReplicaSets`: scale old ReplicaSets down as
    /// far as maxUnavailable allows, unhealthy replicas first.
    fn reconcile_old_replica_sets(&mut self, new: &str) -> bool {
        let old = self.active_old(Some(new));
        let old_pods: i32 = old.iter().map(|n| rs_replicas(self.rs(n))).sum();
        if old_pods == 0 {
            return false;
        }
        let all_pods: i32 = self.rss.iter().map(rs_replicas).sum();
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_rs = self.rs(new);
        let new_unavailable = rs_replicas(new_rs) - rs_status_counts(new_rs).2;
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let cleaned = self.cleanup_unhealthy_replicas(&old, max_scaled_down);
        let scaled = self.scale_down_old_for_rolling_update(&old);
        cleaned + scaled > 0
    }

    /// Upstream's `cleanupUnhealthyReplicas`: drop old replicas that are
    /// not available anyway, oldest ReplicaSets first, up to `max`.
    fn cleanup_unhealthy_replicas(&mut self, old: &[String], max: i32) -> i32 {
        let mut old = old.to_vec();
        old.sort_by(|a, b| by_creation(self.rs(a), self.rs(b)));
        let mut total = 0;
        for rs_name in old {
            if total >= max {
                break;
            }
            let rs = self.rs(&rs_name);
            let size = rs_replicas(rs);
            let available = rs_status_counts(rs).2;
            // All available (or more, while a scale-down is in flight):
            // nothing unhealthy here.
            if size == 0 || available >= size {
                continue;
            }
            let down = (max - total).min(size - available);
            self.scale_and_record(&rs_name, size - down);
            total += down;
        }
        total
    }

    /// Upstream's `scaleDownOldReplicaSetsForRollingUpdate`: scale old
    /// ReplicaSets down by what availability allows, oldest first.
    fn scale_down_old_for_rolling_update(&mut self, old: &[String]) -> i32 {
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let available: i32 = self.rss.iter().map(|rs| rs_status_counts(rs).2).sum();
        if available <= min_available {
            return 0;
        }
        let allowed = available - min_available;
        let mut old = old.to_vec();
        old.sort_by(|a, b| by_creation(self.rs(a), self.rs(b)));
        let mut total = 0;
        for rs_name in old {
            if total >= allowed {
                break;
            }
            let size = rs_replicas(self.rs(&rs_name));
            if size == 0 {
                continue;
            }
            let down = size.min(allowed - total);
            self.scale_and_record(&rs_name, size - down);
            total += down;
        }
        total
    }
}
