//! A tenant's page: its databases, API keys and identity (JWT) settings.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use cloudsync_api::error::ApiError;
use cloudsync_api::extract::Path;
use cloudsync_api::AppState;
use cloudsync_service::control::identity::{IdentityInput, Method};
use cloudsync_service::control::keys::{ApiKey, Scope as KeyScope};
use cloudsync_service::control::overview::Scope;
use cloudsync_service::control::quotas::{Quota, QuotaOverrides};
use cloudsync_service::ids::{now_ms, ApiKeyId, TenantId};
use cloudsync_service::model::{BackendConfig, Tenant};
use cloudsync_service::page::PageRequest;
use leptos::prelude::*;
use serde::Deserialize;

use crate::admin::Admin;
use crate::pages::{is_input_api_error, usage_charts, PAGE};
use crate::ui::{crumbs, document, when, when_opt, Csrf, Empty, Layout, Pager, TextField};
use crate::{notice, Problem};

/// Query of the tenant page.
#[derive(Deserialize, Default)]
pub struct TenantQuery {
    db_cursor: Option<String>,
    key_cursor: Option<String>,
    hours: Option<i64>,
    notice: Option<String>,
}

/// What a failed or special form adds to the page.
#[derive(Default)]
struct Extra {
    database: Option<(String, String)>,
    key: Option<(String, String)>,
    new_key: Option<(ApiKey, String)>,
    identity: Option<(IdentityFields, String)>,
}

/// Loads the tenant after checking the signed-in user may administer it.
pub async fn tenant(state: &AppState, admin: &Admin, id: &str) -> Result<Tenant, Problem> {
    let id = TenantId::parse(id)?;
    admin.caller.tenant(&id, KeyScope::Admin)?;
    Ok(state.control.tenant(&id).await?)
}

async fn render(
    state: &AppState,
    admin: &Admin,
    t: Tenant,
    q: &TenantQuery,
    extra: Extra,
    status: StatusCode,
) -> Result<Response, Problem> {
    let base = format!("/admin/tenants/{}", t.id);
    let dbs = state.control.databases(&t.id, &PageRequest::new(Some(PAGE), q.db_cursor.as_deref())?).await?;
    let keys = state.control.api_keys(&t.id, &PageRequest::new(Some(PAGE), q.key_cursor.as_deref())?).await?;
    let identity = match state.control.identity(&t.id).await {
        Ok(i) => Some(i),
        Err(cloudsync_service::Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let hours = if q.hours == Some(168) { 168 } else { 24 };
    let charts = usage_charts(state, Scope::tenant(&t.id), hours, &base).await?;
    let csrf = admin.csrf.clone();

    let db_rows = dbs
        .items
        .into_iter()
        .map(|d| {
            view! {
                <tr>
                    <td><a href=format!("{base}/databases/{}", d.id)>{d.name}</a></td>
                    <td><code>{d.id.to_string()}</code></td>
                    <td>"SQLite"</td>
                    <td>{when(d.created_at)}</td>
                </tr>
            }
        })
        .collect::<Vec<_>>();
    let db_list = if db_rows.is_empty() && q.db_cursor.is_none() {
        view! { <Empty text="No databases yet. Create one below, then provision its tables."/> }.into_any()
    } else {
        view! {
            <div class="scroll"><table>
                <thead><tr><th scope="col">"Name"</th><th scope="col">"Id"</th><th scope="col">"Backend"</th><th scope="col">"Created"</th></tr></thead>
                <tbody>{db_rows}</tbody>
            </table></div>
        }
        .into_any()
    };
    let now = now_ms();
    let key_rows = keys
        .items
        .into_iter()
        .map(|k| {
            let state_text = if k.revoked_at.is_some() {
                "revoked"
            } else if k.expires_at.is_some_and(|e| e <= now) {
                "expired"
            } else {
                "active"
            };
            let revoke = (state_text == "active").then(|| {
                view! {
                    <form method="post" action=format!("{base}/keys/{}/revoke", k.id) class="inline">
                        <Csrf token=csrf.clone()/>
                        <button type="submit" class="danger" aria-label=format!("Revoke key {}", k.name)>"Revoke"</button>
                    </form>
                }
            });
            let scopes = k.scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ");
            view! {
                <tr>
                    <td>{k.name.clone()}</td>
                    <td>{scopes}</td>
                    <td>{state_text}</td>
                    <td>{when(k.created_at)}</td>
                    <td>{when_opt(k.expires_at)}</td>
                    <td>{when_opt(k.last_used_at)}</td>
                    <td>{revoke}</td>
                </tr>
            }
        })
        .collect::<Vec<_>>();
    let key_list = if key_rows.is_empty() && q.key_cursor.is_none() {
        view! { <Empty text="No API keys yet. Devices and tools need one (or a JWT) to sync."/> }.into_any()
    } else {
        view! {
            <div class="scroll"><table>
                <thead><tr>
                    <th scope="col">"Name"</th><th scope="col">"Scopes"</th><th scope="col">"State"</th>
                    <th scope="col">"Created"</th><th scope="col">"Expires"</th><th scope="col">"Last used"</th>
                    <th scope="col"><span class="sr">"Actions"</span></th>
                </tr></thead>
                <tbody>{key_rows}</tbody>
            </table></div>
        }
        .into_any()
    };
    let new_key = extra.new_key.map(|(k, secret)| {
        view! {
            <div class="secret" role="alert">
                <p>{format!("Key '{}' created. Copy its secret now: it is shown only once.", k.name)}</p>
                <p><code id="new-key-secret">{secret}</code></p>
            </div>
        }
    });
    let (db_name, db_error) = extra.database.map_or((String::new(), None), |(v, e)| (v, Some(e)));
    let (key_name, key_error) = extra.key.map_or((String::new(), None), |(v, e)| (v, Some(e)));
    let identity_now = match &identity {
        None => view! { <Empty text="No identity provider: devices can only use API keys. Set one to accept your users' JWTs."/> }.into_any(),
        Some(i) => {
            let key = match i.method {
                Method::Hs256 => if i.has_secret { "shared secret (stored sealed)" } else { "shared secret missing" }.to_string(),
                Method::Rs256 | Method::Es256 => "public key (PEM)".to_string(),
                Method::Jwks => i.jwks_url.clone().unwrap_or_default(),
            };
            view! {
                <dl class="pairs">
                    <div><dt>"Method"</dt><dd>{format!("{} ({})", i.method.name(), i.algorithm)}</dd></div>
                    <div><dt>"Key"</dt><dd class="wrap">{key}</dd></div>
                    <div><dt>"Issuer"</dt><dd>{i.issuer.clone()}</dd></div>
                    <div><dt>"Audience"</dt><dd>{i.audience.clone()}</dd></div>
                    <div><dt>"Leeway"</dt><dd>{format!("{} s", i.leeway_s)}</dd></div>
                    <div><dt>"Claims"</dt><dd>{format!("user: {}, role: {}", i.user_claim, i.role_claim)}</dd></div>
                    <div><dt>"Updated"</dt><dd>{when(i.updated_at)}</dd></div>
                </dl>
            }
            .into_any()
        }
    };
    let (fields, identity_error) = match extra.identity {
        Some((f, e)) => (f, Some(e)),
        None => (IdentityFields::from_current(identity.as_ref()), None),
    };
    let cloudsync_api::routes::tenants::TenantQuotas { quotas, overrides, used } =
        cloudsync_api::routes::tenants::quotas_of(state, &t.id).await?;
    let quota_rows =
        Quota::ALL.iter().map(|&q| (quota_label(q), q.name(), quotas.get(q), overrides.get(q))).collect::<Vec<_>>();
    let quota_list = quota_rows
        .iter()
        .map(|(label, _, value, set)| {
            let shown = if *value == 0 { "no limit".to_string() } else { value.to_string() };
            let whose = if set.is_some() { " (set for this tenant)" } else { " (the node's default)" };
            view! { <div><dt>{label.clone()}</dt><dd>{shown}{whose}</dd></div> }.into_any()
        })
        .chain(
            [("Transfer today (UTC)", used.transfer_bytes_today), ("Storage used", used.storage_bytes)]
                .map(|(label, bytes)| view! { <div><dt>{label}</dt><dd>{mib(bytes)}</dd></div> }.into_any()),
        )
        .collect::<Vec<_>>();
    let quota_form = admin.is_operator().then(|| {
        let fields = quota_rows
            .iter()
            .map(|(label, name, _, set)| {
                view! {
                    <TextField name=*name label=label.clone() kind=Some("number")
                        value=set.map(|v| v.to_string()).unwrap_or_default()/>
                }
            })
            .collect::<Vec<_>>();
        view! {
            <form method="post" action=format!("{base}/quotas") class="card">
                <h3>"Set this tenant's quotas"</h3>
                <Csrf token=csrf.clone()/>
                <p class="hint">"Empty: the node's default. 0: no limit. Rates and waiting downloads count on each node."</p>
                {fields}
                <button type="submit">"Save quotas"</button>
            </form>
        }
    });
    let title = format!("Tenant {}", t.name);
    let mut trail = vec![("Overview", "/admin".to_string())];
    if admin.is_operator() {
        trail.push(("Tenants", "/admin/tenants".into()));
    }
    let html = document(view! {
        <Layout title=title admin=Some(admin.clone()) notice=notice(q.notice.as_deref()) crumbs=crumbs(&trail)>
            <p class="meta">"Id " <code>{t.id.to_string()}</code> " · created " {when(t.created_at)}
                {t.suspended.then_some(" · suspended: its devices and keys are refused")}</p>
            <section aria-labelledby="db-h">
                <h2 id="db-h">"Databases"</h2>
                {db_list}
                <Pager base=format!("{base}?") param="db_cursor" next=dbs.next_cursor/>
                <form method="post" action=format!("{base}/databases") class="card">
                    <h3>"Create a database"</h3>
                    <Csrf token=csrf.clone()/>
                    <TextField name="name" id=Some("db-name") label="Name" value=db_name error=db_error required=true
                        hint=Some("Unique within the tenant. Its central copy is a SQLite database managed by the service.")/>
                    <button type="submit">"Create database"</button>
                </form>
            </section>
            <section aria-labelledby="keys-h">
                <h2 id="keys-h">"API keys"</h2>
                {new_key}
                {key_list}
                <Pager base=format!("{base}?") param="key_cursor" next=keys.next_cursor/>
                <form method="post" action=format!("{base}/keys") class="card">
                    <h3>"Create an API key"</h3>
                    <Csrf token=csrf.clone()/>
                    <TextField name="name" id=Some("key-name") label="Key name" value=key_name error=key_error required=true/>
                    <fieldset>
                        <legend>"Scopes"</legend>
                        <label><input type="checkbox" name="scope_sync" value="on" checked=true/>" sync: upload and download changes"</label>
                        <label><input type="checkbox" name="scope_schema" value="on"/>" schema: provision tables"</label>
                        <label><input type="checkbox" name="scope_admin" value="on"/>" admin: everything in this tenant"</label>
                    </fieldset>
                    <TextField name="expires_days" label="Expires after (days)" kind=Some("number")
                        hint=Some("Leave empty for a key that does not expire.")/>
                    <button type="submit">"Create key"</button>
                </form>
            </section>
            <section aria-labelledby="quota-h">
                <h2 id="quota-h">"Quotas"</h2>
                <dl class="pairs">{quota_list}</dl>
                {quota_form}
            </section>
            <section aria-labelledby="id-h">
                <h2 id="id-h">"Identity provider (JWT)"</h2>
                {identity_now}
                <IdentityForm action=format!("{base}/identity") csrf=csrf.clone() fields=fields error=identity_error/>
            </section>
            {charts}
        </Layout>
    });
    Ok((status, Html(html)).into_response())
}

/// `GET /admin/tenants/{tenant}`.
pub async fn page(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Response, Problem> {
    let t = tenant(&state, &admin, &id).await?;
    render(&state, &admin, t, &q, Extra::default(), StatusCode::OK).await
}

/// The database-creation form.
#[derive(Deserialize)]
pub struct NewDatabase {
    #[serde(default)]
    name: String,
}

/// `POST /admin/tenants/{tenant}/databases`.
pub async fn create_database(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<NewDatabase>,
) -> Result<Response, Problem> {
    let t = tenant(&state, &admin, &id).await?;
    match cloudsync_service::ops::create_database(
        &state.control,
        &state.backends,
        &t.id,
        &f.name,
        BackendConfig::Sqlite,
        state.limits.quotas,
    )
    .await
    .map_err(ApiError::from)
    {
        Ok(db) => Ok(Redirect::to(&format!("/admin/tenants/{}/databases/{}?notice=database-created", t.id, db.id))
            .into_response()),
        Err(e) if is_input_api_error(&e) => {
            let extra = Extra { database: Some((f.name, e.to_string())), ..Extra::default() };
            render(&state, &admin, t, &TenantQuery::default(), extra, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The key-creation form.
#[derive(Deserialize)]
pub struct NewKey {
    #[serde(default)]
    name: String,
    scope_sync: Option<String>,
    scope_schema: Option<String>,
    scope_admin: Option<String>,
    #[serde(default)]
    expires_days: String,
}

/// `POST /admin/tenants/{tenant}/keys`: answers with the page showing the secret once.
pub async fn create_key(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<NewKey>,
) -> Result<Response, Problem> {
    let t = tenant(&state, &admin, &id).await?;
    let scopes: Vec<KeyScope> =
        [(KeyScope::Sync, &f.scope_sync), (KeyScope::Schema, &f.scope_schema), (KeyScope::Admin, &f.scope_admin)]
            .into_iter()
            .filter(|(_, on)| on.is_some())
            .map(|(s, _)| s)
            .collect();
    let expires_at = match f.expires_days.trim() {
        "" => Ok(None),
        d => match d.parse::<i64>() {
            Ok(days) if (1..=3650).contains(&days) => Ok(Some(now_ms() + days * 86_400_000)),
            _ => Err("Expiry must be a whole number of days between 1 and 3650.".to_string()),
        },
    };
    let result = match expires_at {
        Ok(exp) => state.control.create_api_key(&t.id, &f.name, &scopes, exp).await.map_err(|e| {
            if crate::pages::is_input_error(&e) {
                Ok(e.to_string())
            } else {
                Err(e)
            }
        }),
        Err(msg) => Err(Ok(msg)),
    };
    let (extra, status) = match result {
        Ok((key, secret)) => {
            tracing::info!(tenant = %t.id, key = %key.id, "API key created from the dashboard");
            (Extra { new_key: Some((key, secret)), ..Extra::default() }, StatusCode::CREATED)
        }
        Err(Ok(msg)) => (Extra { key: Some((f.name, msg)), ..Extra::default() }, StatusCode::UNPROCESSABLE_ENTITY),
        Err(Err(e)) => return Err(e.into()),
    };
    render(&state, &admin, t, &TenantQuery::default(), extra, status).await
}

/// A quota as the dashboard names it: what its limit counts.
fn quota_label(q: Quota) -> String {
    let unit = q.unit();
    let mut chars = unit.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Bytes shown in MiB, one decimal (rounded down).
fn mib(bytes: u64) -> String {
    format!("{}.{} MiB", bytes >> 20, ((bytes & ((1 << 20) - 1)) * 10) >> 20)
}

/// The quota form: a field per quota, by its name, each empty (the node's default) or
/// a whole number.
pub type QuotaFields = std::collections::HashMap<String, String>;

/// `POST /admin/tenants/{tenant}/quotas` (operator only).
pub async fn set_quotas(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<QuotaFields>,
) -> Result<Response, Problem> {
    let t = tenant(&state, &admin, &id).await?;
    admin.caller.operator()?;
    let field = |name: &str, text: &str| -> Result<Option<u32>, Problem> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            Problem(ApiError::BadRequest(format!(
                "the {} quota must be empty or a whole number",
                name.replace('_', " ")
            )))
        })
    };
    let mut quotas = QuotaOverrides::default();
    for &q in Quota::ALL {
        quotas.set(q, field(q.name(), f.get(q.name()).map_or("", String::as_str))?);
    }
    state.control.set_quota_overrides(&t.id, &quotas).await?;
    state.quotas.forget(&t.id);
    tracing::info!(tenant = %t.id, ?quotas, "tenant quotas set (dashboard)");
    Ok(Redirect::to(&format!("/admin/tenants/{}?notice=quotas-saved", t.id)).into_response())
}

/// `POST /admin/tenants/{tenant}/keys/{key}/revoke`.
pub async fn revoke_key(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let t = tenant(&state, &admin, &id).await?;
    state.control.revoke_api_key(&t.id, &ApiKeyId::parse(&key)?).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{}?notice=key-revoked", t.id)).into_response())
}

/// The identity form's fields (also what is shown again after a refusal; never the secret).
#[derive(Deserialize, Default, Clone)]
pub struct IdentityFields {
    #[serde(default)]
    method: String,
    #[serde(default, skip_serializing)]
    secret: String,
    #[serde(default)]
    public_key: String,
    #[serde(default)]
    jwks_url: String,
    #[serde(default)]
    algorithm: String,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    audience: String,
    #[serde(default)]
    leeway_s: String,
    #[serde(default)]
    user_claim: String,
    #[serde(default)]
    role_claim: String,
}

impl IdentityFields {
    fn from_current(i: Option<&cloudsync_service::control::identity::Identity>) -> IdentityFields {
        let Some(i) = i else {
            return IdentityFields {
                method: "jwks".into(),
                algorithm: "RS256".into(),
                leeway_s: "30".into(),
                user_claim: "sub".into(),
                role_claim: "role".into(),
                ..IdentityFields::default()
            };
        };
        IdentityFields {
            method: i.method.name().into(),
            secret: String::new(),
            public_key: i.public_key.clone().unwrap_or_default(),
            jwks_url: i.jwks_url.clone().unwrap_or_default(),
            algorithm: i.algorithm.clone(),
            issuer: i.issuer.clone(),
            audience: i.audience.clone(),
            leeway_s: i.leeway_s.to_string(),
            user_claim: i.user_claim.clone(),
            role_claim: i.role_claim.clone(),
        }
    }

    fn input(&self) -> Result<IdentityInput, String> {
        let method = match self.method.as_str() {
            "hs256" => Method::Hs256,
            "rs256" => Method::Rs256,
            "es256" => Method::Es256,
            "jwks" => Method::Jwks,
            _ => return Err("Choose a method.".into()),
        };
        let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let leeway_s = match self.leeway_s.trim() {
            "" => None,
            l => Some(l.parse::<i64>().map_err(|_| "Leeway must be a whole number of seconds.".to_string())?),
        };
        Ok(IdentityInput {
            method,
            secret: text(&self.secret),
            public_key: text(&self.public_key),
            jwks_url: text(&self.jwks_url),
            algorithm: text(&self.algorithm).filter(|_| method == Method::Jwks),
            issuer: self.issuer.trim().to_string(),
            audience: self.audience.trim().to_string(),
            leeway_s,
            user_claim: text(&self.user_claim),
            role_claim: text(&self.role_claim),
        })
    }
}

#[component]
fn IdentityForm(action: String, csrf: String, fields: IdentityFields, error: Option<String>) -> impl IntoView {
    let option = |value: &'static str, text: &'static str, current: &str| {
        let selected = value == current;
        view! { <option value=value selected=selected>{text}</option> }
    };
    let methods = [
        ("jwks", "JWKS URL (RS256 or ES256)"),
        ("hs256", "Shared secret (HS256)"),
        ("rs256", "RSA public key (RS256)"),
        ("es256", "P-256 public key (ES256)"),
    ]
    .into_iter()
    .map(|(v, t)| option(v, t, &fields.method))
    .collect_view();
    let algorithms = [("RS256", "RS256"), ("ES256", "ES256")]
        .into_iter()
        .map(|(v, t)| option(v, t, &fields.algorithm))
        .collect_view();
    let invalid = error.is_some().then_some("true");
    let described = error.as_ref().map(|_| "identity-error");
    view! {
        <form method="post" action=action class="card" aria-describedby=described>
            <h3>"Set the identity provider"</h3>
            {error.map(|e| view! { <p class="error" id="identity-error" role="alert">{e}</p> })}
            <Csrf token=csrf/>
            <div class="field">
                <label for="f-method">"Method"</label>
                <select id="f-method" name="method" aria-invalid=invalid>{methods}</select>
            </div>
            <TextField name="jwks_url" label="JWKS URL (JWKS method)" value=fields.jwks_url kind=Some("url")/>
            <div class="field">
                <label for="f-algorithm">"JWKS algorithm"</label>
                <select id="f-algorithm" name="algorithm">{algorithms}</select>
            </div>
            <TextField name="secret" label="Shared secret (HS256; at least 32 bytes)" kind=Some("password")
                hint=Some("Stored sealed; never shown again. Leave empty to keep the current one only when not changing method.")/>
            <div class="field">
                <label for="f-public_key">"Public key, PEM (RS256, ES256)"</label>
                <textarea id="f-public_key" name="public_key" rows="4">{fields.public_key}</textarea>
            </div>
            <TextField name="issuer" label="Issuer (iss)" value=fields.issuer required=true/>
            <TextField name="audience" label="Audience (aud)" value=fields.audience required=true/>
            <TextField name="leeway_s" label="Clock leeway (seconds, at most 300)" value=fields.leeway_s kind=Some("number")/>
            <TextField name="user_claim" label="User id claim" value=fields.user_claim/>
            <TextField name="role_claim" label="Role claim" value=fields.role_claim/>
            <button type="submit">"Save identity settings"</button>
        </form>
    }
}

/// `POST /admin/tenants/{tenant}/identity`.
pub async fn set_identity(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<IdentityFields>,
) -> Result<Response, Problem> {
    let t = tenant(&state, &admin, &id).await?;
    let outcome = match f.input() {
        Ok(input) => match state.control.set_identity(&t.id, input, &state.egress).await {
            Ok(_) => return Ok(Redirect::to(&format!("/admin/tenants/{}?notice=identity-saved", t.id)).into_response()),
            Err(e) if crate::pages::is_input_error(&e) => e.to_string(),
            Err(e) => return Err(e.into()),
        },
        Err(msg) => msg,
    };
    let fields = IdentityFields { secret: String::new(), ..f };
    let extra = Extra { identity: Some((fields, outcome)), ..Extra::default() };
    render(&state, &admin, t, &TenantQuery::default(), extra, StatusCode::UNPROCESSABLE_ENTITY).await
}
