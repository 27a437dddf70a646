//! What a request to the service that got no HTTP answer means, in words a user can act
//! on: where it went and the likely cause (nothing listening, a host name that does not
//! resolve, TLS against a plain-HTTP server or the reverse, a deadline). One home for the
//! extension's network layer and the CLI, which both speak HTTP through ureq.
//!
//! Classification reads ureq's error variants and `std::io::ErrorKind`s, never message
//! text; the messages never include a URL's query (signed payload URLs carry their
//! signature there).

use std::io::ErrorKind;
use std::net::ToSocketAddrs;

/// Why a request got no HTTP answer, each with a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Nothing accepts connections at the address (`server_unreachable`).
    Refused,
    /// The host name does not resolve (`dns_failed`).
    Dns,
    /// The TLS handshake failed: a plain-HTTP server at an `https://` URL, or a
    /// certificate this client does not trust (`tls_failed`).
    Tls,
    /// The peer did not answer with HTTP: a TLS server at an `http://` URL, or another
    /// protocol (`not_http`).
    NotHttp,
    /// The connection closed before an answer: the server stopped or restarted
    /// mid-request, or (the first time) it expects the other scheme
    /// (`connection_closed`).
    Closed,
    /// No answer within the deadline (`timeout`).
    Timeout,
    /// The URL cannot be requested (`invalid_url`).
    BadUrl,
    /// Any other transport failure (`network_error`).
    Other,
}

impl Unreachable {
    /// The stable code applications branch on.
    pub fn code(self) -> &'static str {
        match self {
            Unreachable::Refused => "server_unreachable",
            Unreachable::Dns => "dns_failed",
            Unreachable::Tls => "tls_failed",
            Unreachable::NotHttp => "not_http",
            Unreachable::Closed => "connection_closed",
            Unreachable::Timeout => "timeout",
            Unreachable::BadUrl => "invalid_url",
            Unreachable::Other => "network_error",
        }
    }

    /// Whether trying again later may succeed: a server that is down may come back, and
    /// a device without network fails to resolve names until it has one again; a wrong
    /// scheme or URL will not fix itself.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Unreachable::Refused | Unreachable::Dns | Unreachable::Closed | Unreachable::Timeout | Unreachable::Other
        )
    }
}

/// `url` as messages may show it: without its query or fragment (a signed URL's
/// signature is in its query).
pub fn shown(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// A transport failure of a request to `url`: its kind and a message naming the URL
/// (without its query) and the likely cause.
pub fn describe(e: &ureq::Error, url: &str) -> (Unreachable, String) {
    let shown = shown(url);
    let https = shown.starts_with("https://");
    let authority = authority(shown);
    let kind = classify(e, authority, https);
    let message = match kind {
        Unreachable::Refused => {
            format!("cannot connect to {authority} ({shown}): connection refused; is the service running there?")
        }
        Unreachable::Dns => format!("cannot resolve the host of {shown}; check the host name"),
        Unreachable::Tls => format!(
            "TLS with {authority} failed ({e}); if the server speaks plain HTTP, use an http:// URL, otherwise \
             check its certificate"
        ),
        Unreachable::NotHttp => {
            format!("{authority} did not answer with HTTP ({e}); if it expects TLS, use an https:// URL ({shown})")
        }
        Unreachable::Closed => {
            let other = if https {
                "it speaks plain HTTP: then use an http:// URL"
            } else {
                "it expects TLS: then use an https:// URL"
            };
            format!(
                "{authority} closed the connection before answering ({shown}): the service stopped or restarted, \
                 or {other}"
            )
        }
        Unreachable::Timeout => {
            format!("no answer from {shown} in time ({e}); is the server overloaded or the network down?")
        }
        Unreachable::BadUrl => format!("cannot request {shown}: {e}"),
        Unreachable::Other => format!("request to {shown} failed: {e}"),
    };
    (kind, message)
}

/// The `host[:port]` of `url`, without any user information.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once('@').map_or(authority, |(_, a)| a)
}

fn classify(e: &ureq::Error, authority: &str, https: bool) -> Unreachable {
    match e {
        ureq::Error::HostNotFound => Unreachable::Dns,
        ureq::Error::Timeout(_) => Unreachable::Timeout,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => Unreachable::Tls,
        ureq::Error::TlsRequired | ureq::Error::RequireHttpsOnly(_) => Unreachable::Tls,
        ureq::Error::Protocol(_) | ureq::Error::LargeResponseHeader(..) => Unreachable::NotHttp,
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => Unreachable::BadUrl,
        ureq::Error::ConnectionFailed => Unreachable::Refused,
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => Unreachable::Refused,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Unreachable::Timeout,
            // rustls reports a handshake it cannot read (a plain-HTTP answer) as invalid data.
            ErrorKind::InvalidData if https => Unreachable::Tls,
            ErrorKind::InvalidData => Unreachable::NotHttp,
            // A server that stops mid-request, or one of the other scheme hanging up.
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Unreachable::Closed,
            // Name resolution fails with an uncategorized I/O error; resolving again
            // tells it apart from everything else.
            _ if !resolves(authority, https) => Unreachable::Dns,
            _ => Unreachable::Other,
        },
        _ => Unreachable::Other,
    }
}

/// Whether the host of `authority` (`host[:port]`) resolves to at least one address.
fn resolves(authority: &str, https: bool) -> bool {
    let has_port =
        authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !authority.ends_with(']');
    let addr = if has_port { authority.to_string() } else { format!("{authority}:{}", if https { 443 } else { 80 }) };
    addr.to_socket_addrs().map(|mut a| a.next().is_some()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let all = [
            Unreachable::Refused,
            Unreachable::Dns,
            Unreachable::Tls,
            Unreachable::NotHttp,
            Unreachable::Closed,
            Unreachable::Timeout,
            Unreachable::BadUrl,
            Unreachable::Other,
        ];
        let codes: Vec<&str> = all.iter().map(|u| u.code()).collect();
        let expected = [
            "server_unreachable",
            "dns_failed",
            "tls_failed",
            "not_http",
            "connection_closed",
            "timeout",
            "invalid_url",
            "network_error",
        ];
        assert_eq!(codes, expected);
    }

    #[test]
    fn a_refused_connection_names_the_address_and_no_query() {
        let e = ureq::Error::Io(std::io::Error::from(ErrorKind::ConnectionRefused));
        let (kind, msg) = describe(&e, "http://127.0.0.1:9/v1/sync/db?sig=secret");
        assert_eq!(kind, Unreachable::Refused);
        assert!(msg.contains("127.0.0.1:9") && msg.contains("http://127.0.0.1:9/v1/sync/db"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
    }

    #[test]
    fn an_unresolvable_host_is_told_apart() {
        let e = ureq::Error::Io(std::io::Error::other("lookup failed"));
        let (kind, _) = describe(&e, "http://no-such-host.invalid:8080/v1/sync/db");
        assert_eq!(kind, Unreachable::Dns);
        assert_eq!(classify(&ureq::Error::HostNotFound, "x", false), Unreachable::Dns);
    }

    #[test]
    fn scheme_mismatches_get_the_other_scheme_as_hint() {
        let tls = ureq::Error::Io(std::io::Error::from(ErrorKind::InvalidData));
        let (kind, msg) = describe(&tls, "https://127.0.0.1:8080/v1/sync/db");
        assert_eq!(kind, Unreachable::Tls);
        assert!(msg.contains("use an http:// URL"), "{msg}");
        let garbage = ureq::Error::Io(std::io::Error::from(ErrorKind::InvalidData));
        assert_eq!(describe(&garbage, "http://127.0.0.1:8443/v1/sync/db").0, Unreachable::NotHttp);
        // A connection closed early may be a restart as well: retried, with both causes.
        let eof = ureq::Error::Io(std::io::Error::from(ErrorKind::UnexpectedEof));
        let (kind, msg) = describe(&eof, "http://127.0.0.1:8443/v1/sync/db");
        assert_eq!(kind, Unreachable::Closed);
        assert!(kind.retryable() && msg.contains("restarted") && msg.contains("use an https:// URL"), "{msg}");
    }
}
