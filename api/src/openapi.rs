//! The OpenAPI 3.1 description of the API, generated from the handlers' annotations
//! (`#[utoipa::path]`) as the router is built, so the document cannot drift from the
//! routes; and a human-readable page rendered from it.
//!
//! [`finish`] adds what every operation shares instead of repeating it per handler:
//! bearer security on every `/v1` operation except the signed-URL blob endpoints, and
//! the documented error responses (`400`, `401`, `403`, `404`, `409`, `413`, `429`, `507`,
//! `503`) with the one error body.

use std::fmt::Write;

use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, PathItem, Ref, RefOr, ResponseBuilder};

use crate::error::{ErrorBody, ErrorDetail};

/// The document's fixed parts.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "CloudSync API",
        description = "Sync protocol, tenant management and operations of a CloudSync node. \
            Authenticate with `Authorization: Bearer <token>`: the operator's admin token, a tenant's API key \
            (`csk_…`), or, on sync endpoints, a device JWT from the tenant's identity provider."
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "tenants", description = "Tenants (operator)"),
        (name = "databases", description = "A tenant's databases"),
        (name = "credentials", description = "API keys and identity-provider settings"),
        (name = "devices", description = "Devices of a database"),
        (name = "jobs", description = "Apply jobs of a database"),
        (name = "usage", description = "Usage over time"),
        (name = "sync", description = "The sync protocol (devices)"),
        (name = "operations", description = "Health and metrics")
    )
)]
pub struct ApiDoc;

/// Paths that authenticate by signed URL, not bearer token.
pub const UNAUTHENTICATED_PREFIXES: &[&str] = &["/v1/blobs/"];

const METHODS: [HttpMethod; 5] =
    [HttpMethod::Get, HttpMethod::Post, HttpMethod::Put, HttpMethod::Patch, HttpMethod::Delete];

/// The operation of `path` for `method`, if any.
pub fn operation_mut<'a>(item: &'a mut PathItem, method: &HttpMethod) -> Option<&'a mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        _ => None,
    }
}

/// The operations of a path, by method name.
pub fn methods(item: &PathItem) -> [(&'static str, Option<&Operation>); 5] {
    [
        ("GET", item.get.as_ref()),
        ("POST", item.post.as_ref()),
        ("PUT", item.put.as_ref()),
        ("PATCH", item.patch.as_ref()),
        ("DELETE", item.delete.as_ref()),
    ]
}

/// Every `(method, path)` the document describes.
pub fn operations(api: &OpenApi) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (path, item) in &api.paths.paths {
        for (name, op) in methods(item) {
            if op.is_some() {
                out.push((name, path.clone()));
            }
        }
    }
    out
}

/// Whether an operation on `path` needs a bearer token.
pub fn secured(path: &str) -> bool {
    path.starts_with("/v1/") && !UNAUTHENTICATED_PREFIXES.iter().any(|p| path.starts_with(p))
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build(),
    )
}

/// Completes the generated document (see the module docs).
pub fn finish(mut api: OpenApi) -> OpenApi {
    // axum's wildcard `{*key}` is OpenAPI's plain `{key}`.
    let paths = std::mem::take(&mut api.paths.paths);
    api.paths.paths = paths.into_iter().map(|(p, i)| (p.replace("{*", "{"), i)).collect();
    api.components.get_or_insert_with(Default::default).add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("Admin token, API key (csk_…) or device JWT"))
                .build(),
        ),
    );
    for (path, item) in api.paths.paths.iter_mut() {
        for method in &METHODS {
            let Some(op) = operation_mut(item, method) else { continue };
            let mut add = |code: &str, description: &str| {
                op.responses.responses.entry(code.to_string()).or_insert_with(|| error_response(description));
            };
            // Every request meets the head limits and path checks first (`hygiene`).
            add("400", "Malformed request (`invalid_request`, `confirmation_required`)");
            add("414", "Request target over the limit (`uri_too_long`)");
            add("431", "Too many or too large header fields (`headers_too_large`)");
            if !path.starts_with("/v1/") {
                continue;
            }
            if path.contains('{') {
                add("404", "A path segment that names nothing here (`not_found`)");
            }
            add(
                "503",
                "A store is unavailable for now (`control_plane_unavailable`, `payload_store_unavailable`, \
                 `database_unavailable`; see `Retry-After`), or the tenant's identity provider (JWKS) is \
                 unreachable (`unavailable`)",
            );
            if secured(path) {
                add("401", "Missing, malformed, invalid, expired or revoked credentials (`unauthorized`)");
                add(
                    "403",
                    "Credentials that do not allow this (`forbidden`, `tenant_suspended`, `device_blocked`, \
                     `site_bound`)",
                );
                add("404", "Unknown resource, or one of another tenant (`not_found`)");
                add(
                    "429",
                    "Rate limit of the credential exceeded (`rate_limited`), too many new site ids this hour \
                     (`too_many_new_sites`), or too many failed authentications from this address \
                     (`too_many_failed_attempts`); see `Retry-After`",
                );
            }
            if matches!(method, HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch | HttpMethod::Delete) {
                add("409", "Conflicts with the current state (`conflict`)");
                if secured(path) {
                    add("507", "A tenant database at its size quota (`storage_quota_exceeded`): nothing was kept");
                }
            }
            if op.request_body.is_some() {
                add("413", "Body over the size limit (`payload_too_large`)");
            }
            if secured(path) {
                op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
            }
        }
    }
    api
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A self-contained HTML page describing every operation (no scripts, no external
/// assets: it works on an air-gapped deployment).
pub fn html(api: &OpenApi) -> String {
    let mut out = String::new();
    let title = esc(&api.info.title);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font:15px/1.5 system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         code,.m{{font-family:ui-monospace,monospace}}.op{{border-top:1px solid #ddd;padding:.6rem 0}}\
         .m{{display:inline-block;width:4.5rem;font-weight:bold}}table{{border-collapse:collapse;margin:.3rem 0}}\
         td,th{{border:1px solid #ddd;padding:.15rem .5rem;text-align:left;vertical-align:top}}\
         h2{{margin-top:2rem}}</style></head><body><h1>{title} <small>{}</small></h1><p>{}</p>\
         <p>Machine-readable: <a href=\"/openapi.json\"><code>/openapi.json</code></a> (OpenAPI 3.1).</p>",
        esc(&api.info.version),
        esc(api.info.description.as_deref().unwrap_or("")),
    );
    let tags: Vec<String> = api.tags.iter().flatten().map(|t| t.name.clone()).collect();
    for tag in &tags {
        let desc = api.tags.iter().flatten().find(|t| &t.name == tag).and_then(|t| t.description.clone());
        let _ = write!(out, "<h2 id=\"{0}\">{0}</h2><p>{1}</p>", esc(tag), esc(desc.as_deref().unwrap_or("")));
        for (path, item) in &api.paths.paths {
            for (name, op) in methods(item) {
                let Some(op) = op else { continue };
                if !op.tags.iter().flatten().any(|t| t == tag) {
                    continue;
                }
                let _ = write!(
                    out,
                    "<div class=\"op\"><span class=\"m\">{name}</span><code>{}</code><br>{}",
                    esc(path),
                    esc(op.summary.as_deref().unwrap_or(""))
                );
                if let Some(d) = &op.description {
                    let _ = write!(out, "<br><small>{}</small>", esc(d));
                }
                let params: Vec<_> = op.parameters.iter().flatten().collect();
                if !params.is_empty() {
                    out.push_str("<table><tr><th>parameter</th><th>in</th><th>description</th></tr>");
                    for p in params {
                        let location = serde_json::to_value(&p.parameter_in).ok();
                        let _ = write!(
                            out,
                            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                            esc(&p.name),
                            if matches!(p.required, utoipa::openapi::Required::True) { " *" } else { "" },
                            esc(location.as_ref().and_then(|v| v.as_str()).unwrap_or("")),
                            esc(p.description.as_deref().unwrap_or(""))
                        );
                    }
                    out.push_str("</table>");
                }
                if let Some(body) = &op.request_body {
                    let types: Vec<&str> = body.content.keys().map(String::as_str).collect();
                    let _ = write!(out, "Body: <code>{}</code><br>", esc(&types.join(", ")));
                }
                let codes: Vec<&str> = op.responses.responses.keys().map(String::as_str).collect();
                let _ = write!(out, "Responses: <code>{}</code></div>", esc(&codes.join(" ")));
            }
        }
    }
    out.push_str("</body></html>");
    out
}
