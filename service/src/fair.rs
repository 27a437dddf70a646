//! A semaphore shared fairly between keys (tenants): while permits are free anyone
//! takes one at once; when callers wait, each freed permit goes to the waiting key
//! that holds the fewest permits now (ties: the one served least recently), so a
//! tenant flooding the node with calls holds no more than its share while others
//! wait, and still gets every permit nobody else wants.
//!
//! Waiting is cancellation-safe: a caller that stops waiting gives back a permit
//! handed to it meanwhile.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

struct Waiter {
    id: u64,
    wake: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    free: usize,
    held: HashMap<String, usize>,
    waiting: HashMap<String, VecDeque<Waiter>>,
    /// When each key was last handed a permit (a counter), for ties.
    served: HashMap<String, u64>,
    clock: u64,
}

impl State {
    fn take(&mut self, key: &str) {
        *self.held.entry(key.to_string()).or_default() += 1;
        self.clock += 1;
        self.served.insert(key.to_string(), self.clock);
    }

    /// A permit comes back: to the fairest waiter, else to the free count.
    fn give_back(&mut self, key: &str) {
        if let Some(n) = self.held.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(key);
            }
        }
        loop {
            let next = self
                .waiting
                .keys()
                .min_by_key(|k| (self.held.get(*k).copied().unwrap_or(0), self.served.get(*k).copied().unwrap_or(0)))
                .cloned();
            let Some(next) = next else {
                self.free += 1;
                return;
            };
            let queue = self.waiting.get_mut(&next).map(VecDeque::pop_front);
            if self.waiting.get(&next).is_some_and(VecDeque::is_empty) {
                self.waiting.remove(&next);
            }
            if let Some(Some(waiter)) = queue {
                // A waiter that stopped waiting is skipped.
                if waiter.wake.send(()).is_ok() {
                    self.take(&next);
                    return;
                }
            }
        }
    }

    fn forget_waiter(&mut self, key: &str, id: u64) {
        if let Some(q) = self.waiting.get_mut(key) {
            q.retain(|w| w.id != id);
            if q.is_empty() {
                self.waiting.remove(key);
                if !self.held.contains_key(key) {
                    self.served.remove(key);
                }
            }
        }
    }
}

/// The fair semaphore.
pub struct FairPermits {
    state: Mutex<State>,
    total: usize,
    ids: std::sync::atomic::AtomicU64,
}

/// A permit; given back when dropped.
pub struct Permit {
    permits: Arc<FairPermits>,
    key: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.permits.lock().give_back(&self.key);
    }
}

/// Gives back a permit handed to a caller that stopped waiting.
struct Waiting {
    permits: Arc<FairPermits>,
    key: String,
    id: u64,
    rx: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.permits.lock();
        self.rx.close();
        if self.rx.try_recv().is_ok() {
            state.give_back(&self.key);
        } else {
            state.forget_waiter(&self.key, self.id);
        }
    }
}

impl FairPermits {
    /// `total` permits (at least one).
    pub fn new(total: usize) -> Arc<FairPermits> {
        let total = total.max(1);
        Arc::new(FairPermits {
            state: Mutex::new(State { free: total, ..State::default() }),
            total,
            ids: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters and queues updated together under the lock, never left half-way by
        // a panic in between (nothing in there panics): a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a permit for `key`.
    pub async fn acquire(self: &Arc<Self>, key: &str) -> Permit {
        let rx = {
            let mut state = self.lock();
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                state.take(key);
                return Permit { permits: Arc::clone(self), key: key.to_string() };
            }
            let (tx, rx) = oneshot::channel();
            let id = self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            state.waiting.entry(key.to_string()).or_default().push_back(Waiter { id, wake: tx });
            // Someone may have given a permit back between a free count of zero and now:
            // nothing to do, give_back hands it to a waiter under this same lock.
            (id, rx)
        };
        let mut waiting = Waiting { permits: Arc::clone(self), key: key.to_string(), id: rx.0, rx: rx.1, done: false };
        // The sender is dropped only after a send or when the waiter is forgotten,
        // which only this future's drop does: an error cannot happen while we wait.
        let _ = (&mut waiting.rx).await;
        waiting.done = true;
        Permit { permits: Arc::clone(self), key: key.to_string() }
    }

    /// Permits in use now.
    pub fn in_use(&self) -> usize {
        self.total.saturating_sub(self.lock().free)
    }

    /// Permits `key` holds now.
    pub fn held_by(&self, key: &str) -> usize {
        self.lock().held.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_flooding_key_gets_no_more_than_its_share_while_others_wait() {
        let permits = FairPermits::new(4);
        // Tenant A takes every free permit and queues a hundred more calls.
        let mut held: Vec<Permit> = Vec::new();
        for _ in 0..4 {
            held.push(permits.acquire("a").await);
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..100 {
            let (p, tx) = (Arc::clone(&permits), tx.clone());
            tokio::spawn(async move {
                let permit = p.acquire("a").await;
                let _ = tx.send(("a", i, permit));
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // B arrives behind them, then C.
        for (key, i) in [("b", 0), ("c", 0), ("b", 1)] {
            let (p, tx) = (Arc::clone(&permits), tx.clone());
            tokio::spawn(async move {
                let permit = p.acquire(key).await;
                let _ = tx.send((key, i, permit));
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A gives back three permits: B and C are served before A's queue.
        held.truncate(1);
        let mut order = Vec::new();
        let mut kept = Vec::new();
        for _ in 0..3 {
            let (key, _, permit) = rx.recv().await.unwrap();
            order.push(key);
            kept.push(permit);
        }
        order.sort_unstable();
        assert_eq!(order, ["a", "b", "c"], "A holding one (fewest with C and B at one each) may be served third");
        assert_eq!(permits.held_by("b"), 1);
        assert_eq!(permits.in_use(), 4);
        // Everyone finishes; every permit comes back.
        drop(kept);
        drop(held);
        let mut seen = 0;
        while let Ok(Some((_, _, permit))) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            drop(permit);
            seen += 1;
            if seen == 100 {
                break;
            }
        }
        assert_eq!(seen, 100, "every queued call was served");
        assert_eq!(permits.in_use(), 0);
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_loses_nothing_for_the_others() {
        let permits = FairPermits::new(1);
        let first = permits.acquire("a").await;
        // A waiter gives up (its request was cancelled) while queued.
        let gave_up = tokio::time::timeout(Duration::from_millis(20), permits.acquire("b")).await;
        assert!(gave_up.is_err());
        let p = Arc::clone(&permits);
        let next = tokio::spawn(async move { p.acquire("c").await.key.clone() });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        assert_eq!(next.await.unwrap(), "c");
        assert_eq!(permits.in_use(), 0);
        // A permit handed to a waiter that is dropped before it looks is given back.
        let held = permits.acquire("a").await;
        let waiting = Box::pin(permits.acquire("b"));
        let mut waiting = Some(waiting);
        // Poll once so it queues.
        let _ = futures_poll_once(waiting.as_mut().unwrap()).await;
        drop(held);
        drop(waiting.take());
        assert_eq!(permits.in_use(), 0);
        let again = permits.acquire("d").await;
        assert_eq!(permits.in_use(), 1);
        drop(again);
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
