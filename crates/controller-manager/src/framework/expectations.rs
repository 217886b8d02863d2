//! Controller expectations, as upstream's `ControllerExpectations`: after a
//! controller asks for N creations and M deletions it must not act on the
//! same owner again until its informer has seen them (or five minutes
//! pass), or it would create or delete twice from a stale cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::informer::ObjectKey;

/// After this long, unmet expectations are assumed lost (upstream's
/// `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Copy)]
struct Expected {
    adds: i64,
    deletes: i64,
    set_at: Instant,
}

/// Outstanding creations and deletions per owner. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    inner: Arc<Mutex<HashMap<ObjectKey, Expected>>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Expected>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `owner` may be synced: nothing outstanding, never set, or
    /// expired.
    pub fn satisfied(&self, owner: &ObjectKey) -> bool {
        self.satisfied_at(owner, Instant::now())
    }

    pub fn satisfied_at(&self, owner: &ObjectKey, now: Instant) -> bool {
        match self.lock().get(owner) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes <= 0)
                    || now.duration_since(e.set_at) > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// Expect `adds` creations and `deletes` deletions for `owner`,
    /// replacing what was expected before.
    pub fn expect(&self, owner: &ObjectKey, adds: usize, deletes: usize) {
        self.lock().insert(
            owner.clone(),
            Expected {
                adds: adds as i64,
                deletes: deletes as i64,
                set_at: Instant::now(),
            },
        );
    }

    /// The informer saw one of `owner`'s creations (or a creation failed).
    pub fn creation_observed(&self, owner: &ObjectKey) {
        if let Some(e) = self.lock().get_mut(owner) {
            e.adds -= 1;
        }
    }

    /// The informer saw one of `owner`'s deletions (or a deletion failed).
    pub fn deletion_observed(&self, owner: &ObjectKey) {
        if let Some(e) = self.lock().get_mut(owner) {
            e.deletes -= 1;
        }
    }

    /// Forget `owner` (it was deleted).
    pub fn remove(&self, owner: &ObjectKey) {
        self.lock().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_hold_a_sync_until_observed_or_expired() {
        let e = Expectations::new();
        let rs = ObjectKey::new("ns", "rs");
        assert!(e.satisfied(&rs));
        e.expect(&rs, 2, 1);
        assert!(!e.satisfied(&rs));
        e.creation_observed(&rs);
        e.creation_observed(&rs);
        assert!(!e.satisfied(&rs));
        e.deletion_observed(&rs);
        assert!(e.satisfied(&rs));
        e.expect(&rs, 1, 0);
        let later = Instant::now() + EXPECTATIONS_TIMEOUT + Duration::from_secs(1);
        assert!(e.satisfied_at(&rs, later));
    }
}
