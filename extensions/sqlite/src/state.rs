//! Per-connection state shared by the SQL functions registered on one connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// State of one connection. There is deliberately little: everything that must
/// survive the connection lives in the database. The exception is the network
/// credential, which is a secret and is kept in memory only.
#[derive(Default)]
pub struct ConnState {
    merging: AtomicBool,
    credential: Mutex<Option<String>>,
    /// Metadata cache (see [`crate::meta::cache`]).
    pub cache: std::sync::Arc<crate::meta::cache::MetaCache>,
    /// The HTTP agent, kept so connections to the service are reused (keep-alive).
    #[cfg(feature = "network")]
    pub(crate) agent: std::sync::OnceLock<ureq::Agent>,
}

impl std::fmt::Debug for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnState").field("merging", &self.merging).finish_non_exhaustive()
    }
}

impl ConnState {
    /// The bearer credential set by `cloudsync_network_set_apikey/_token`.
    pub fn credential(&self) -> Option<String> {
        self.credential.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Sets or clears the bearer credential.
    pub fn set_credential(&self, c: Option<String>) {
        *self.credential.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = c;
    }

    /// Whether a merge is writing to user tables right now (guard triggers let its
    /// writes through).
    pub fn merging(&self) -> bool {
        self.merging.load(Ordering::Relaxed)
    }

    /// Marks a merge in progress until the guard is dropped.
    pub fn merge_guard(&self) -> MergeGuard<'_> {
        self.merging.store(true, Ordering::Relaxed);
        MergeGuard(self)
    }
}

/// Clears the merging flag when dropped, whatever way the merge ends.
pub struct MergeGuard<'a>(&'a ConnState);

impl Drop for MergeGuard<'_> {
    fn drop(&mut self) {
        self.0.merging.store(false, Ordering::Relaxed);
    }
}
