//! Change notifications for long-polling downloads. Each database has one channel:
//! the apply workers of this node signal it after each applied job, and while any
//! download waits on the database one shared watcher polls its feed position once per
//! [`WATCH_INTERVAL`] for changes applied elsewhere (another node, or SQL run in a
//! PostgreSQL backend). A waiting download costs no query of its own: a thousand
//! waiters on one database cost one cheap read a second, and none once they are gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::backends::Backends;
use crate::ids::DatabaseId;
use crate::model::Database;

/// How often a database with waiting downloads is read for changes made elsewhere.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

struct Channel {
    sender: watch::Sender<u64>,
    /// Whether a watcher task polls this database now.
    watched: bool,
}

/// One channel per database, created on first use.
#[derive(Default)]
pub struct Notifier {
    channels: Mutex<HashMap<DatabaseId, Channel>>,
    /// Feed-position reads made by watchers (all databases), for tests and metrics.
    polls: AtomicU64,
}

impl Notifier {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DatabaseId, Channel>> {
        // Only a map of channels: a panic while holding it leaves nothing half-updated.
        self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn channel<'a>(map: &'a mut HashMap<DatabaseId, Channel>, db: &DatabaseId) -> &'a mut Channel {
        map.entry(db.clone()).or_insert_with(|| Channel { sender: watch::channel(0).0, watched: false })
    }

    /// Signals that `db` has new changes.
    pub fn notify(&self, db: &DatabaseId) {
        Self::channel(&mut self.lock(), db).sender.send_modify(|v| *v += 1);
    }

    /// A receiver that wakes on the next change of `db`, wherever it was made: starts
    /// the database's watcher unless one runs. The watcher stops at its first poll
    /// after the last receiver is dropped.
    pub fn subscribe_watched(self: &Arc<Self>, db: &Database, backends: &Arc<Backends>) -> watch::Receiver<u64> {
        let mut map = self.lock();
        let channel = Self::channel(&mut map, &db.id);
        let receiver = channel.sender.subscribe();
        if !channel.watched {
            channel.watched = true;
            let (notifier, backends, db) = (Arc::clone(self), Arc::clone(backends), db.clone());
            tokio::spawn(async move { notifier.watch(&db, &backends).await });
        }
        receiver
    }

    /// Databases being watched now.
    pub fn watched(&self) -> usize {
        self.lock().values().filter(|c| c.watched).count()
    }

    /// Downloads waiting now (receivers of every channel).
    pub fn waiting(&self) -> usize {
        self.lock().values().map(|c| c.sender.receiver_count()).sum()
    }

    /// Feed-position reads made by watchers since the node started.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    async fn watch(&self, db: &Database, backends: &Backends) {
        let mut last = None;
        loop {
            match backends.of(db).db_version().await {
                Ok(version) => {
                    // The first read wakes every waiter once: one that read the feed
                    // just before it would otherwise miss a change made in between.
                    if last != Some(version) {
                        self.notify(&db.id);
                    }
                    last = Some(version);
                }
                // Unreachable or deleted: waiters still end at their deadlines.
                Err(e) => tracing::debug!(database = %db.id, error = %e, "watching a database for changes failed"),
            }
            self.polls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(WATCH_INTERVAL).await;
            let mut map = self.lock();
            let channel = Self::channel(&mut map, &db.id);
            if channel.sender.receiver_count() == 0 {
                channel.watched = false;
                return;
            }
        }
    }
}
