//! The control plane's domain model: tenants, databases and their settings (backend,
//! roles, tables, row policies), with the validation each value gets before it is
//! stored. Storage is `store`'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{DatabaseId, TenantId};
use crate::{Error, Result};

/// A tenant: an operator's customer, owning databases and keys.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Suspended tenants cannot sync and their keys and tokens are refused.
    pub suspended: bool,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// Where a database's central copy lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// A SQLite file managed by the service, in its data directory.
    Sqlite,
    /// The tenant's own PostgreSQL database, with the `cloudsync` extension
    /// (`docs/rls.md`). The service connects as the URL's user: a role with
    /// `BYPASSRLS` used only for operator actions; devices' changes are applied as
    /// their own role.
    Postgres {
        /// `postgres://user:password@host:port/database?…`. The password is sealed at
        /// rest and never shown: the stored and displayed URL has none.
        url: String,
        /// Schema new tables are created in (default `public`).
        #[serde(default = "default_schema")]
        schema: String,
        /// Schema of individual tables, overriding `schema` (table name → schema).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        tables: BTreeMap<String, String>,
    },
}

fn default_schema() -> String {
    "public".into()
}

impl BackendConfig {
    /// The backend's kind, as in its JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Sqlite => "sqlite",
            BackendConfig::Postgres { .. } => "postgres",
        }
    }

    /// Checks names and splits a PostgreSQL URL's password out (for sealing): the
    /// config to store, and the password.
    pub(crate) fn without_password(self) -> Result<(BackendConfig, Option<String>)> {
        match self {
            BackendConfig::Sqlite => Ok((BackendConfig::Sqlite, None)),
            BackendConfig::Postgres { url, schema, tables } => {
                let mut parsed = url::Url::parse(url.trim()).map_err(|e| {
                    Error::Invalid(format!("backend url is not a URL ({e}); expected postgres://user:password@host/db"))
                })?;
                check_backend_url(&parsed, true)?;
                // A password given as a parameter is sealed like one in the userinfo.
                let param = parsed.query_pairs().find(|(k, _)| k == "password").map(|(_, v)| v.into_owned());
                let password = parsed.password().map(url_part).or(param).filter(|p| !p.is_empty());
                let kept: Vec<(String, String)> =
                    parsed.query_pairs().filter(|(k, _)| k != "password").map(|(k, v)| (k.into(), v.into())).collect();
                parsed.set_query(None);
                if !kept.is_empty() {
                    parsed.query_pairs_mut().extend_pairs(kept);
                }
                parsed.set_password(None).map_err(|()| Error::Invalid("backend url cannot hold a password".into()))?;
                for name in std::iter::once(&schema).chain(tables.values()) {
                    pg_name("schema", name)?;
                }
                for name in tables.keys() {
                    pg_name("table", name)?;
                }
                Ok((BackendConfig::Postgres { url: parsed.to_string(), schema, tables }, password))
            }
        }
    }
}

/// Checks a PostgreSQL backend URL's form (at creation, and again before every new
/// connection): `postgres://user[:password]@host[:port]/database`, the host a DNS name
/// or an address (never a unix socket), and no parameter but `sslmode` (and, at
/// creation, `password`, then sealed): `host=`, `hostaddr=`, `port=`, `service=`,
/// `passfile=`, certificate files and `options` would redirect the connection or make
/// the node read its own files. Returns the TLS mode.
pub(crate) fn check_backend_url(parsed: &url::Url, creating: bool) -> Result<sqlx::postgres::PgSslMode> {
    let form = || Error::Invalid("backend url must be postgres://user[:password]@host[:port]/database".into());
    if !matches!(parsed.scheme(), "postgres" | "postgresql") || parsed.fragment().is_some() {
        return Err(form());
    }
    match parsed.host() {
        Some(url::Host::Domain(d)) if crate::egress::is_host_name(d) => {}
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {}
        Some(_) => {
            return Err(Error::Invalid(
                "backend url must name its host by DNS name or address (not a unix socket or a list of hosts)".into(),
            ))
        }
        None => return Err(form()),
    }
    if parsed.username().is_empty() || parsed.path().trim_matches('/').is_empty() {
        return Err(Error::Invalid("backend url must name a user and a database".into()));
    }
    let mut sslmode = sqlx::postgres::PgSslMode::Prefer;
    for (key, value) in parsed.query_pairs() {
        match &*key {
            "sslmode" => {
                sslmode = value.parse().map_err(|_| {
                    Error::Invalid(format!(
                        "backend url: sslmode '{}' is not one of disable, allow, prefer, require, verify-ca, verify-full",
                        value.escape_debug()
                    ))
                })?;
            }
            "password" if creating => {}
            other => {
                return Err(Error::Invalid(format!(
                    "backend url: parameter '{}' is not allowed (only sslmode; the host, port, user and database \
                     belong in the URL itself)",
                    other.escape_debug()
                )))
            }
        }
    }
    Ok(sslmode)
}

/// A part of a URL (userinfo, path) as it reads once percent-decoded.
pub(crate) fn url_part(encoded: &str) -> String {
    percent_encoding::percent_decode_str(encoded).decode_utf8_lossy().into_owned()
}

/// A PostgreSQL identifier given in settings: 1 to 63 bytes, no control characters.
pub fn pg_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!("invalid {what} name '{}': 1 to 63 bytes, printable", name.escape_debug())));
    }
    Ok(())
}

/// A synced database of a tenant.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Database {
    /// Id.
    pub id: DatabaseId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Name, unique within the tenant.
    pub name: String,
    /// Backend.
    pub backend: BackendConfig,
    /// The sealed password of a PostgreSQL backend (never serialized).
    #[serde(skip)]
    pub(crate) backend_secret: Option<Vec<u8>>,
    /// Sync settings.
    pub settings: DatabaseSettings,
    /// The schema's version: 0 until tables are first provisioned, then one more each
    /// time provisioning through the service runs statements in the database (a dry
    /// run, or a schema it already has, runs none). Changes made in a PostgreSQL
    /// database directly, outside the service, do not count.
    pub schema_version: i64,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// Per-database sync settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Settings of individual tables, by table name.
    #[serde(default)]
    pub tables: BTreeMap<String, TableSettings>,
    /// Which roles devices act as (`docs/rls.md`).
    #[serde(default)]
    pub roles: RoleSettings,
}

/// The roles devices' changes are applied and their downloads read as: on PostgreSQL
/// backends the database role (`SET LOCAL ROLE`), on SQLite backends the value of
/// `auth_role()` in row policies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RoleSettings {
    /// Roles a device may act as (a JWT's role claim must be one of them).
    #[serde(default = "default_roles")]
    pub allowed: Vec<String>,
    /// Role of a JWT without a role claim.
    #[serde(default = "default_role")]
    pub default: String,
    /// Role of devices authenticated by API key.
    #[serde(default = "default_role")]
    pub api_key: String,
}

fn default_role() -> String {
    "authenticated".into()
}

fn default_roles() -> Vec<String> {
    vec![default_role()]
}

impl Default for RoleSettings {
    fn default() -> Self {
        RoleSettings { allowed: default_roles(), default: default_role(), api_key: default_role() }
    }
}

impl RoleSettings {
    /// Checks the role names: PostgreSQL identifiers, the defaults allowed.
    pub fn validate(&self) -> Result<()> {
        for r in self.allowed.iter().chain([&self.default, &self.api_key]) {
            pg_name("role", r)?;
        }
        for (what, r) in [("default", &self.default), ("api_key", &self.api_key)] {
            if !self.allowed.contains(r) {
                return Err(Error::Invalid(format!("roles.{what} '{r}' is not in roles.allowed")));
            }
        }
        Ok(())
    }

    /// The role a device acts as: its claim (which must be allowed), else the default.
    pub fn resolve(&self, claimed: Option<&str>) -> Result<String> {
        match claimed {
            None => Ok(self.default.clone()),
            Some(r) if self.allowed.iter().any(|a| a == r) => Ok(r.to_string()),
            Some(r) => Err(Error::Forbidden(format!(
                "role '{r}' is not allowed for this database (allowed: {})",
                self.allowed.join(", ")
            ))),
        }
    }
}

/// A policy as it runs: re-emitted by the guard, or `0` (no row) when refused.
fn guarded(policy: &str) -> String {
    cloudsync_ddl::guard::expression(policy).unwrap_or_else(|_| "0".into())
}

/// How one table syncs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TableSettings {
    /// Which way changes flow.
    #[serde(default)]
    pub direction: Direction,
    /// SQLite backends: which rows a device may read, as a SQL expression over the
    /// row's columns and `auth_uid()`, `auth_role()`, `auth_claim('path')`
    /// (`docs/rls.md`). PostgreSQL backends use the database's row-level security.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_policy: Option<String>,
    /// SQLite backends: which rows a device may create, change or delete (checked on
    /// the row before and after each change), same form as `read_policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_policy: Option<String>,
}

/// Which way a table's changes flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Devices upload and download changes.
    #[default]
    Both,
    /// Devices only download: an upload that changes the table is refused (the central
    /// database, or a direct write to it, is the only writer).
    DownloadOnly,
}

impl DatabaseSettings {
    /// Checks the settings: table names as SQLite would accept them, role names.
    pub fn validate(&self) -> Result<()> {
        self.roles.validate()?;
        for (name, t) in &self.tables {
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                return Err(Error::Invalid(format!("invalid table name in settings: '{}'", name.escape_debug())));
            }
            for p in [&t.read_policy, &t.write_policy].into_iter().flatten() {
                if p.trim().is_empty() || p.len() > 4096 {
                    return Err(Error::Invalid(format!(
                        "invalid policy for table '{}': one SQL expression of at most 4096 bytes",
                        name.escape_debug()
                    )));
                }
                // Parsed as an expression over the row: allow-listed functions, no
                // subquery, no other statement (`ddl::guard`).
                cloudsync_ddl::guard::expression(p).map_err(|why| {
                    Error::Invalid(format!("invalid policy for table '{}': {why}", name.escape_debug()))
                })?;
            }
        }
        Ok(())
    }

    /// Read policies, by table, as the service runs them: re-emitted from their tokens
    /// (`ddl::guard::expression`); a stored policy the guard refuses (set before it
    /// existed) admits no row.
    pub fn read_policies(&self) -> Vec<(String, String)> {
        self.tables.iter().filter_map(|(n, t)| t.read_policy.as_deref().map(|p| (n.clone(), guarded(p)))).collect()
    }

    /// Write policies, by table, as [`DatabaseSettings::read_policies`].
    pub fn write_policies(&self) -> Vec<(String, String)> {
        self.tables.iter().filter_map(|(n, t)| t.write_policy.as_deref().map(|p| (n.clone(), guarded(p)))).collect()
    }

    /// The tables devices may not change.
    pub fn download_only(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().filter(|(_, t)| t.direction == Direction::DownloadOnly).map(|(n, _)| n.as_str())
    }
}

/// A change to a database.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DatabaseUpdate {
    /// New name.
    pub name: Option<String>,
    /// New settings (replacing the old ones).
    pub settings: Option<DatabaseSettings>,
}
