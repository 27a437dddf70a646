//! Waiting downloads counted against the tenant's quotas, per node: at most
//! `long_polls` per tenant and `long_polls_per_credential` per user or API key wait at
//! once; one more is refused (`429 too_many_long_polls`) rather than queued. Waiting
//! costs no query (`service::notify`), but each wait holds a connection and a task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cloudsync_service::control::quotas::{Quota, Quotas};
use cloudsync_service::ids::TenantId;

/// The node's waiting downloads, by tenant and by credential.
#[derive(Default)]
pub struct LongPolls {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// One waiting download; counted until dropped.
pub struct Waiting {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    keys: [String; 2],
}

fn lock(m: &Mutex<HashMap<String, usize>>) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
    // Counters only, each updated in one step: a poisoned lock is still sound.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LongPolls {
    /// Counts one more waiting download of `subject` in `tenant`, or names the quota
    /// it would exceed (and its limit).
    pub fn enter(&self, tenant: &TenantId, subject: &str, quotas: Quotas) -> Result<Waiting, (Quota, u32)> {
        let keys = [format!("t:{tenant}"), format!("s:{tenant}:{subject}")];
        let mut counts = lock(&self.counts);
        for (key, quota, limit) in [
            (&keys[0], Quota::LongPolls, quotas.long_polls),
            (&keys[1], Quota::LongPollsPerCredential, quotas.long_polls_per_credential),
        ] {
            if limit > 0 && counts.get(key).copied().unwrap_or(0) >= limit as usize {
                return Err((quota, limit));
            }
        }
        for key in &keys {
            *counts.entry(key.clone()).or_default() += 1;
        }
        Ok(Waiting { counts: Arc::clone(&self.counts), keys })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        for key in &self.keys {
            if let Some(n) = counts.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_counted_per_tenant_and_per_credential_until_dropped() {
        let polls = LongPolls::default();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let quotas = Quotas { long_polls: 3, long_polls_per_credential: 2, ..Quotas::default() };
        let w1 = polls.enter(&a, "key:1", quotas).unwrap();
        let _w2 = polls.enter(&a, "key:1", quotas).unwrap();
        assert_eq!(polls.enter(&a, "key:1", quotas).err(), Some((Quota::LongPollsPerCredential, 2)));
        let _w3 = polls.enter(&a, "user:u", quotas).unwrap();
        assert_eq!(polls.enter(&a, "user:v", quotas).err(), Some((Quota::LongPolls, 3)));
        // Another tenant is untouched; a finished wait frees its place.
        let _other = polls.enter(&b, "key:1", quotas).unwrap();
        drop(w1);
        assert!(polls.enter(&a, "key:1", quotas).is_ok());
        // 0: no limit.
        let none = Quotas { long_polls: 0, long_polls_per_credential: 0, ..Quotas::default() };
        let many: Vec<Waiting> = (0..50).map(|_| polls.enter(&b, "key:2", none).unwrap()).collect();
        drop(many);
        // Left: A's tenant count, key:1's and user:u's; B's tenant count and key:1's.
        assert_eq!(lock(&polls.counts).len(), 5);
    }
}
