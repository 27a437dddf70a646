//! Failed authentications, limited per client address (`docs/security.md`): guessing
//! tokens or keys costs the guesser its address. Each failed sign-in — a bearer token
//! the API refuses, a dashboard sign-in refused — takes one cell of its address's
//! bucket (GCRA, `governor`); once the bucket is empty the address is refused every
//! authentication, valid or not, with `429 too_many_failed_attempts` until it refills,
//! so a guess past the limit learns nothing. IPv6 addresses count by their /64, which
//! one subscriber usually holds whole.
//!
//! Memory is bounded: the buckets are pruned of full ones with the per-credential
//! limiter's, and at most [`MAX_BLOCKED`] addresses are remembered as blocked (expired
//! entries are dropped first; beyond that, new blocks are not remembered and the
//! bucket alone still refuses every further failure).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use governor::clock::Clock;
use governor::DefaultKeyedRateLimiter;

use crate::error::ApiError;
use crate::AppState;

/// Addresses remembered as blocked at most.
pub const MAX_BLOCKED: usize = 100_000;

/// The client address of a request, as the node takes it ([`client_addr`]); an
/// extractor that never refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_addr(state, &parts.headers, &parts.extensions)))
    }
}

/// What an address is counted as: itself (IPv4), or its /64 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for Key {
    fn from(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(v4) => Key::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::V4(u32::from(v4)),
                None => Key::V6(u64::try_from(u128::from(v6) >> 64).unwrap_or(u64::MAX)),
            },
        }
    }
}

/// The failed-authentication limiter of a node.
pub struct Lockout {
    failures: DefaultKeyedRateLimiter<Key>,
    blocked: Mutex<HashMap<Key, Instant>>,
}

impl Lockout {
    /// `per_minute` failed authentications per address and minute, in bursts of as
    /// many; `None` when 0 (no limit).
    pub fn new(per_minute: u32) -> Option<Lockout> {
        let n = NonZeroU32::new(per_minute)?;
        let quota = governor::Quota::per_minute(n).allow_burst(n);
        Some(Lockout { failures: governor::RateLimiter::keyed(quota), blocked: Mutex::new(HashMap::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Instant>> {
        // Only a map of deadlines: a panic while holding it leaves nothing half-updated.
        self.blocked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `addr` is still refused, if it is.
    pub fn blocked(&self, addr: IpAddr) -> Option<Duration> {
        let until = *self.lock().get(&Key::from(addr))?;
        until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    /// Counts a failed authentication from `addr`; returns how long it is now refused
    /// when this one emptied its bucket.
    pub fn failed(&self, addr: IpAddr) -> Option<Duration> {
        let key = Key::from(addr);
        let not_until = self.failures.check_key(&key).err()?;
        let wait = not_until.wait_time_from(self.failures.clock().now()).max(Duration::from_secs(1));
        let mut blocked = self.lock();
        if blocked.len() >= MAX_BLOCKED {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
        }
        if blocked.len() < MAX_BLOCKED || blocked.contains_key(&key) {
            blocked.insert(key, Instant::now() + wait);
        }
        Some(wait)
    }

    /// Forgets addresses whose buckets are full again and blocks that ended.
    pub fn prune(&self) {
        self.failures.retain_recent();
        let now = Instant::now();
        self.lock().retain(|_, until| *until > now);
    }
}

/// The client address of a request: the value of the operator's
/// `--client-address-header` when set (its last entry, the one the operator's own proxy
/// appended), else the connection's peer. None for requests that came through neither
/// (in-process tests).
pub fn client_addr(state: &AppState, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
    if let Some(name) = &state.client_address_header {
        return headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
    }
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Refuses a request from an address that is locked out (`429
/// too_many_failed_attempts`, with `Retry-After`).
pub fn check(state: &AppState, addr: Option<IpAddr>) -> Result<(), ApiError> {
    let (Some(lockout), Some(addr)) = (&state.lockout, addr) else {
        return Ok(());
    };
    match lockout.blocked(addr) {
        Some(wait) => {
            state.metrics.auth_failures.with_label_values(&["refused"]).inc();
            Err(ApiError::TooManyFailedAttempts(retry_after_secs(wait)))
        }
        None => Ok(()),
    }
}

/// Counts a failed authentication of a request.
pub fn failed(state: &AppState, addr: Option<IpAddr>) {
    state.metrics.auth_failures.with_label_values(&["failed"]).inc();
    if let (Some(lockout), Some(addr)) = (&state.lockout, addr) {
        if let Some(wait) = lockout.failed(addr) {
            tracing::warn!(%addr, seconds = wait.as_secs(), "too many failed authentications: address locked out");
        }
    }
}

/// Whole seconds to wait, at least one (a `Retry-After` value).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_and_neighbours_are_not() {
        let lockout = Lockout::new(3).unwrap();
        let guesser: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(lockout.failed(guesser), None);
            assert_eq!(lockout.blocked(guesser), None);
        }
        let wait = lockout.failed(guesser).expect("the fourth failure within a minute empties the bucket");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(lockout.blocked(guesser).is_some());
        assert_eq!(lockout.blocked("203.0.113.8".parse().unwrap()), None);
        // IPv6: one /64 is one address; the next /64 is another; a mapped IPv4 is that IPv4.
        let v6 = |s: &str| -> IpAddr { s.parse().unwrap() };
        for i in 0..4 {
            lockout.failed(v6(&format!("2001:db8:1:2::{i}")));
        }
        assert!(lockout.blocked(v6("2001:db8:1:2:ffff::1")).is_some());
        assert_eq!(lockout.blocked(v6("2001:db8:1:3::1")), None);
        assert!(lockout.blocked(v6("::ffff:203.0.113.7")).is_some());
        assert!(Lockout::new(0).is_none());
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
