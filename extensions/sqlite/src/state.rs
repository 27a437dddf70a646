//! Per-connection state shared by the SQL functions registered on one connection.

use std::sync::atomic::{AtomicBool, Ordering};

/// State of one connection. There is deliberately little: everything that must
/// survive the connection lives in the database.
#[derive(Debug, Default)]
pub struct ConnState {
    merging: AtomicBool,
}

impl ConnState {
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
