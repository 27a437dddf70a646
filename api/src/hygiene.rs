//! Limits every request meets before any route sees it, answered in the API's JSON
//! error shape: the target's length, the number and size of header fields, and a path
//! that decodes to UTF-8 without control characters or dot segments.
//!
//! The HTTP server (`cloudsync serve`) lets heads up to [`SERVER_HEAD_BYTES`] and
//! [`SERVER_HEADERS`] fields through to here, so that anything between these limits and
//! those gets a JSON answer with a code; beyond them the server itself answers `431`
//! (empty body) and closes the connection. hyper also refuses a request target over
//! 64 KiB itself (`414`, empty body): a fixed limit of its parser.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Longest request target (path and query) answered normally.
pub const MAX_TARGET: usize = 8 << 10;
/// Most header fields in a request.
pub const MAX_HEADERS: usize = 100;
/// Largest single header field (name and value).
pub const MAX_HEADER: usize = 16 << 10;
/// Largest total of header fields.
pub const MAX_HEAD: usize = 64 << 10;
/// Largest request head the server buffers before answering on its own.
pub const SERVER_HEAD_BYTES: usize = 2 << 20;
/// Most header fields the server parses before answering on its own.
pub const SERVER_HEADERS: usize = 1024;

/// The middleware: refuses a request over the limits or with a malformed path.
pub async fn check(req: Request, next: Next) -> Response {
    match judge(&req) {
        None => next.run(req).await,
        Some((status, code, message)) => {
            let body = crate::error::ErrorBody { error: crate::error::ErrorDetail { code: code.into(), message } };
            (status, axum::Json(body)).into_response()
        }
    }
}

/// Why a request is refused: its status, code and message.
fn judge(req: &Request) -> Option<(StatusCode, &'static str, String)> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_TARGET {
        return Some((
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {target} bytes; at most {MAX_TARGET} are accepted"),
        ));
    }
    let headers = req.headers();
    let total: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    let largest = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).max().unwrap_or(0);
    if headers.len() > MAX_HEADERS || largest > MAX_HEADER || total > MAX_HEAD {
        return Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request has {} header fields ({total} bytes, the largest {largest}); at most {MAX_HEADERS} fields, \
                 {MAX_HEADER} bytes each and {MAX_HEAD} in all are accepted",
                headers.len()
            ),
        ));
    }
    let why = path_problem(req.uri().path())?;
    let (status, code) = ApiError::BadRequest(String::new()).status_and_code();
    Some((status, code, why.into()))
}

/// What is wrong with a request path, if anything: a segment that does not decode to
/// UTF-8, holds a control character or a slash once decoded, or is a dot segment. No
/// resource of this API has such a name, and a name that could climb out of a folder
/// never reaches a handler.
pub fn path_problem(path: &str) -> Option<&'static str> {
    for segment in path.split('/').skip(1) {
        let Ok(decoded) = percent_encoding::percent_decode_str(segment).decode_utf8() else {
            return Some("the request path is not valid UTF-8 once percent-decoded");
        };
        if decoded.chars().any(char::is_control) {
            return Some("the request path holds a control character");
        }
        if decoded.contains('/') || decoded.contains('\\') {
            return Some("a segment of the request path holds an encoded slash");
        }
        if decoded == "." || decoded == ".." {
            return Some("the request path holds a dot segment ('.' or '..')");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::path_problem;

    #[test]
    fn paths() {
        for ok in ["/", "/v1/tenants", "/v1/sync/x/changes", "/a%20b", "/%C3%A9t%C3%A9", "/admin/"] {
            assert_eq!(path_problem(ok), None, "{ok}");
        }
        for bad in ["/%FF%FE", "/a/..", "/a/%2e%2E", "/a/%2Fb", "/a/%5Cb", "/a/%00", "/a/%0a", "/./x", "/%C3"] {
            assert!(path_problem(bad).is_some(), "{bad}");
        }
    }
}
