//! In-process change notifications: long-polling downloads wait on their database's
//! channel, and the apply workers signal it after each applied job.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::ids::DatabaseId;

/// One watch channel per database, created on first use.
#[derive(Default)]
pub struct Notifier {
    channels: Mutex<HashMap<DatabaseId, watch::Sender<u64>>>,
}

impl Notifier {
    fn sender(&self, db: &DatabaseId) -> watch::Sender<u64> {
        let mut map = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(db.clone()).or_insert_with(|| watch::channel(0).0).clone()
    }

    /// Signals that `db` has new changes.
    pub fn notify(&self, db: &DatabaseId) {
        self.sender(db).send_modify(|v| *v += 1);
    }

    /// A receiver that wakes on the next change of `db`.
    pub fn subscribe(&self, db: &DatabaseId) -> watch::Receiver<u64> {
        self.sender(db).subscribe()
    }
}
