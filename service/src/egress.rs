//! Where this node may connect on a tenant's behalf: one policy for every
//! tenant-supplied URL (JWKS documents, PostgreSQL backends, anything later).
//!
//! A tenant names a host; the node resolves it and connects only to the addresses this
//! policy allows, the very addresses it checked (the HTTP client's resolver and the
//! PostgreSQL connection are pinned to them, so a DNS answer that changes between the
//! check and the connection — DNS rebinding — changes nothing). By default every
//! address that is not public unicast is refused: loopback, link-local (the cloud
//! metadata address 169.254.169.254 among them), private and shared ranges, unique-local
//! IPv6, multicast, reserved and documentation ranges, and IPv6 forms that embed one of
//! those (IPv4-mapped, NAT64, 6to4) or tunnel anywhere (Teredo). The operator opens
//! named hosts and address ranges with `--egress-allow` (`docs/security.md`): an
//! on-premises node running everything on one machine allows `127.0.0.1` explicitly.
//!
//! The errors name the host the tenant gave and nothing that answered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// How long a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the node will not connect to a tenant-supplied host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The host resolves only to addresses the policy refuses.
    #[error(
        "{what}: the host '{host}' is refused by this node's egress policy (loopback, link-local and private \
         addresses are not reachable for tenants unless the operator allows them)"
    )]
    Refused {
        /// Which setting named the host (`jwks_url`, `backend url`).
        what: &'static str,
        /// The host as the tenant gave it.
        host: String,
    },
    /// The host does not resolve (in time).
    #[error("{what}: the host '{host}' is unreachable (it does not resolve)")]
    Unresolved {
        /// Which setting named the host.
        what: &'static str,
        /// The host as the tenant gave it.
        host: String,
    },
}

/// The egress policy: public unicast addresses, plus what the operator allows.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl Egress {
    /// The policy allowing public addresses and, in `spec` (comma- or
    /// whitespace-separated), host names (matched exactly, case-insensitively: every
    /// address they resolve to), addresses and CIDR ranges. An empty `spec` allows
    /// nothing more.
    pub fn parse(spec: &str) -> Result<Egress, String> {
        let mut egress = Egress::default();
        for entry in spec.split([',', ' ', '\n', '\t']).map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<IpNet>() {
                egress.nets.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                egress.nets.push(IpNet::from(ip));
            } else if is_host_name(entry) {
                egress.hosts.push(normal_host(entry));
            } else {
                return Err(format!(
                    "egress allow-list entry '{}' is neither a host name, an address nor a CIDR range",
                    entry.escape_debug()
                ));
            }
        }
        Ok(egress)
    }

    /// Whether the node may connect to `ip` for a URL naming `host`.
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.hosts.iter().any(|h| *h == normal_host(host))
            || self.nets.iter().any(|n| n.contains(&ip) || embedded.is_some_and(|e| n.contains(&e)))
            || is_public(ip)
    }

    /// Resolves `host` (a name or an address literal, IPv6 in brackets or not) and
    /// returns the addresses the policy allows, in resolver order: connect to these
    /// and only these.
    pub async fn resolve(&self, what: &'static str, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let all: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                _ => Vec::new(),
            },
        };
        self.filter(what, host, all)
    }

    /// The allowed ones of `host`'s addresses `all`.
    fn filter(&self, what: &'static str, host: &str, all: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, EgressError> {
        if all.is_empty() {
            return Err(EgressError::Unresolved { what, host: host.to_string() });
        }
        let allowed: Vec<SocketAddr> = all.into_iter().filter(|a| self.allows(host, a.ip())).collect();
        if allowed.is_empty() {
            return Err(EgressError::Refused { what, host: host.to_string() });
        }
        Ok(allowed)
    }

    /// A resolver for `ureq` that hands the HTTP client only the addresses this policy
    /// allows. A refusal comes back as `ureq::Error::Other` holding the
    /// [`EgressError`].
    pub fn http_resolver(self: &Arc<Self>, what: &'static str) -> HttpResolver {
        HttpResolver { egress: Arc::clone(self), what, inner: ureq::unversioned::resolver::DefaultResolver::default() }
    }
}

/// See [`Egress::http_resolver`].
#[derive(Debug)]
pub struct HttpResolver {
    egress: Arc<Egress>,
    what: &'static str,
    inner: ureq::unversioned::resolver::DefaultResolver,
}

impl ureq::unversioned::resolver::Resolver for HttpResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let all = match self.inner.resolve(uri, config, timeout) {
            Ok(all) => all.iter().copied().collect(),
            Err(ureq::Error::HostNotFound | ureq::Error::Io(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let allowed = self.egress.filter(self.what, host, all).map_err(|e| ureq::Error::Other(Box::new(e)))?;
        let mut out = self.empty();
        for a in allowed.into_iter().take(16) {
            out.push(a);
        }
        Ok(out)
    }
}

/// The [`EgressError`] inside an HTTP client's error, if the policy caused it.
pub fn refusal(e: &ureq::Error) -> Option<&EgressError> {
    match e {
        ureq::Error::Other(inner) => inner.downcast_ref::<EgressError>(),
        _ => None,
    }
}

fn normal_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// A DNS name: labels of letters, digits and hyphens.
pub(crate) fn is_host_name(s: &str) -> bool {
    let s = s.trim_end_matches('.');
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Public unicast: an address a tenant may make the node connect to by default.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(a: Ipv4Addr) -> bool {
    let [o0, o1, o2, _] = a.octets();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || o0 == 0 // "this network"
        || (o0 == 100 && (o1 & 0xc0) == 64) // 100.64.0.0/10, shared address space
        || (o0 == 192 && o1 == 0 && o2 == 0) // 192.0.0.0/24, protocol assignments
        || (o0 == 198 && (o1 & 0xfe) == 18) // 198.18.0.0/15, benchmarking
        || o0 >= 240) // 240.0.0.0/4, reserved
}

fn public_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10, link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10, site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo: a tunnel to any IPv4 address
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // 64:ff9b:1::/48, local NAT64
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])) // 100::/64, discard
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::`).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = a.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return Some(v4(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(v4(s[1], s[2]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_unicast_by_default() {
        let e = Egress::default();
        for refused in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(!e.allows("h", ip(refused)), "{refused} must be refused");
        }
        for allowed in
            ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]
        {
            assert!(e.allows("h", ip(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn the_operator_opens_hosts_addresses_and_ranges() {
        let e = Egress::parse("127.0.0.1, 10.1.0.0/16 auth.internal.,fd00::/8").unwrap();
        assert!(e.allows("x", ip("127.0.0.1")));
        assert!(e.allows("x", ip("::ffff:127.0.0.1")), "the mapped form of an allowed address");
        assert!(!e.allows("x", ip("127.0.0.2")));
        assert!(e.allows("x", ip("10.1.200.3")));
        assert!(!e.allows("x", ip("10.2.0.1")));
        assert!(e.allows("Auth.Internal", ip("10.9.9.9")), "a named host, whatever it resolves to");
        assert!(!e.allows("other.internal", ip("10.9.9.9")));
        assert!(e.allows("x", ip("fd00::5")));
        for bad in ["10.0.0.0/33", "a..b", "-x.com", "http://x", "x_y.com", "/tmp/sock", "*"] {
            assert!(Egress::parse(bad).is_err(), "{bad}");
        }
        assert!(Egress::parse("").unwrap().nets.is_empty());
    }

    #[tokio::test]
    async fn resolution_returns_only_allowed_addresses() {
        let e = Egress::default();
        assert_eq!(
            e.resolve("jwks_url", "localhost", 80).await,
            Err(EgressError::Refused { what: "jwks_url", host: "localhost".into() })
        );
        assert!(matches!(e.resolve("jwks_url", "[::1]", 80).await, Err(EgressError::Refused { .. })));
        assert!(matches!(e.resolve("jwks_url", "169.254.169.254", 80).await, Err(EgressError::Refused { .. })));
        assert!(matches!(
            e.resolve("jwks_url", "name.that-does-not-resolve.invalid", 80).await,
            Err(EgressError::Unresolved { .. })
        ));
        let open = Egress::parse("127.0.0.1").unwrap();
        let addrs = open.resolve("jwks_url", "localhost", 80).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip() == ip("127.0.0.1")), "{addrs:?}: only the allowed family member");
        let msg = Egress::default().resolve("backend url", "localhost", 5432).await.unwrap_err().to_string();
        assert!(msg.contains("'localhost'") && msg.contains("egress policy") && !msg.contains("127.0.0.1"), "{msg}");
    }

    /// The HTTP client itself goes through the policy (not only the check when a URL
    /// is set): a name that resolves to loopback later is refused at fetch time, and
    /// nothing connects to the listener.
    #[test]
    fn the_http_client_connects_only_where_the_policy_allows() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        let agent = |egress: Egress| {
            let config = ureq::Agent::config_builder().proxy(None).build();
            ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::default(),
                Arc::new(egress).http_resolver("jwks_url"),
            )
        };
        for url in [
            format!("http://localhost:{port}/"),
            format!("http://127.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
        ] {
            let e = agent(Egress::default()).get(&url).call().unwrap_err();
            assert!(matches!(refusal(&e), Some(EgressError::Refused { .. })), "{url}: {e}");
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the listener");
        let mut ok =
            agent(Egress::parse("127.0.0.1").unwrap()).get(&format!("http://localhost:{port}/")).call().unwrap();
        assert_eq!(ok.body_mut().read_to_string().unwrap(), "ok");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
