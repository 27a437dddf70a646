//! Settings of `cloudsync serve`, layered with figment: flags, then `CLOUDSYNC_*`
//! environment variables (both read by clap), then the TOML config file, then defaults.
//!
//! One struct, [`ServeArgs`], is both the flags and the file's format: the file is the
//! bottom layer and the flags and variables given are merged over it, so a setting
//! read from anywhere is validated and defaulted once, in [`Settings::resolve`].
//! Secrets (the admin token, the secrets key, the control-plane URL with its password,
//! the S3 secret key) leave this module as `SecretString`: they never print in a
//! `Debug` and are exposed only where they are used.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cloudsync_service::control::quotas::Quotas;
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Flags of `cloudsync serve` (each also read from its environment variable), and the
/// keys of the config file (the same names, without `--`). Not `Debug`: it holds
/// secrets as given.
#[derive(Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CLOUDSYNC_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded stores (created if missing).
    #[arg(long, env = "CLOUDSYNC_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Operator token for the admin API (generated and stored in the data directory if
    /// not given).
    #[arg(long, env = "CLOUDSYNC_ADMIN_TOKEN", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// File holding the admin token (`-`: standard input), instead of the flag or
    /// variable, which other users of the machine may see.
    #[arg(long, env = "CLOUDSYNC_ADMIN_TOKEN_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Base URL devices and browsers use to reach this node (default:
    /// http://<listen address>; required when listening on a non-loopback address).
    #[arg(long, env = "CLOUDSYNC_PUBLIC_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// TOML config file.
    #[arg(long, env = "CLOUDSYNC_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Apply workers on this node.
    #[arg(long, env = "CLOUDSYNC_WORKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Log format: text or json.
    #[arg(long, env = "CLOUDSYNC_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// Largest payload accepted inline in an upload, in bytes.
    #[arg(long, env = "CLOUDSYNC_INLINE_LIMIT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_limit: Option<usize>,
    /// Largest payload accepted through a signed upload URL, in bytes.
    #[arg(long, env = "CLOUDSYNC_UPLOAD_LIMIT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_limit: Option<usize>,
    /// Most bytes an uploaded payload may declare once decompressed, in all.
    #[arg(long, env = "CLOUDSYNC_PAYLOAD_RAW_LIMIT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_raw_limit: Option<u64>,
    /// Largest download chunk, in bytes (uncompressed estimate; at least 1024).
    #[arg(long, env = "CLOUDSYNC_CHUNK_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_bytes: Option<usize>,
    /// Hours uploaded payloads are kept after upload.
    #[arg(long, env = "CLOUDSYNC_PAYLOAD_RETENTION_HOURS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_retention_hours: Option<u64>,
    /// S3 bucket for payloads (instead of the data directory's folder).
    #[arg(long, env = "CLOUDSYNC_S3_BUCKET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
    /// S3 endpoint URL, for S3-compatible services.
    #[arg(long, env = "CLOUDSYNC_S3_ENDPOINT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "CLOUDSYNC_S3_REGION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, env = "CLOUDSYNC_S3_PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_prefix: Option<String>,
    /// S3 access key id.
    #[arg(long, env = "CLOUDSYNC_S3_ACCESS_KEY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_access_key: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "CLOUDSYNC_S3_SECRET_KEY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_secret_key: Option<String>,
    /// File holding the S3 secret access key (`-`: standard input).
    #[arg(long, env = "CLOUDSYNC_S3_SECRET_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_secret_key_file: Option<PathBuf>,
    /// Path-style S3 addressing (endpoint/bucket/key): true or false.
    #[arg(long, env = "CLOUDSYNC_S3_PATH_STYLE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_path_style: Option<bool>,
    /// Control-plane store: postgres://… (for several nodes) or sqlite://… (default: a
    /// SQLite file in the data directory).
    #[arg(long, env = "CLOUDSYNC_CONTROL_PLANE_URL", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane_url: Option<String>,
    /// File holding the control-plane URL (`-`: standard input).
    #[arg(long, env = "CLOUDSYNC_CONTROL_PLANE_URL_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane_url_file: Option<PathBuf>,
    /// Key sealing tenants' secrets at rest: 32 bytes, unpadded base64url (default:
    /// generated and stored in the data directory; every node needs the same key).
    #[arg(long, env = "CLOUDSYNC_SECRETS_KEY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_key: Option<String>,
    /// File holding the secrets key (`-`: standard input).
    #[arg(long, env = "CLOUDSYNC_SECRETS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_key_file: Option<PathBuf>,
    /// Requests per second allowed per API key or JWT user, per node: every tenant's
    /// `requests_per_second_per_credential` quota unless an operator set its own
    /// (default 100; 0: unlimited).
    #[arg(long, env = "CLOUDSYNC_RATE_LIMIT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Burst allowed above `--rate-limit` (default twice the rate; a rate set for one
    /// tenant bursts to twice itself).
    #[arg(long, env = "CLOUDSYNC_RATE_BURST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_burst: Option<u32>,
    /// New site ids (devices) one JWT user or API key may start syncing with per hour,
    /// across its tenant's databases (default 100; 0: no limit).
    #[arg(long, env = "CLOUDSYNC_NEW_SITES_PER_HOUR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_sites_per_hour: Option<u32>,
    /// Seconds between JWKS refetches caused by unknown key ids, per JWKS URL.
    #[arg(long, env = "CLOUDSYNC_JWKS_REFRESH_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_refresh_secs: Option<u64>,
    /// Seconds between usage flushes to the control plane.
    #[arg(long, env = "CLOUDSYNC_USAGE_FLUSH_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_flush_secs: Option<u64>,
    /// Connections this node keeps at most to each PostgreSQL backend (default 8).
    #[arg(long, env = "CLOUDSYNC_POSTGRES_POOL_SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_pool_size: Option<u32>,
    /// Seconds one call in a tenant database may run for a request — a download
    /// chunk, provisioning, listing tables — where tenants' policies and triggers run
    /// (default 60); PostgreSQL backends' `statement_timeout`.
    #[arg(long, env = "CLOUDSYNC_REQUEST_BUDGET_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_budget_secs: Option<u64>,
    /// Seconds applying one uploaded payload may run (default 300): past it the job
    /// fails for good with `time_budget_exceeded`.
    #[arg(long, env = "CLOUDSYNC_APPLY_BUDGET_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply_budget_secs: Option<u64>,
    /// Seconds a PostgreSQL backend session may stay idle inside a transaction
    /// (default 60).
    #[arg(long, env = "CLOUDSYNC_POSTGRES_IDLE_IN_TRANSACTION_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_idle_in_transaction_secs: Option<u64>,
    /// Size in MiB each SQLite tenant database may reach (default 10240; 0: no
    /// limit); writes past it fail with `507 storage_quota_exceeded`.
    #[arg(long, env = "CLOUDSYNC_SQLITE_MAX_DATABASE_MB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_max_database_mb: Option<u64>,
    /// Failed authentications (unknown API keys, a wrong admin token, dashboard
    /// sign-ins) allowed per client address and minute before the address is refused
    /// for a while (default 20; 0: no limit).
    #[arg(long, env = "CLOUDSYNC_AUTH_FAILURES_PER_MINUTE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_failures_per_minute: Option<u32>,
    /// The request header a reverse proxy in front of the node puts the client's
    /// address in (e.g. `Fly-Client-IP`, `X-Forwarded-For`); default: the connection's
    /// peer. Set it only behind a proxy that sets it: clients could otherwise choose it.
    #[arg(long, env = "CLOUDSYNC_CLIENT_ADDRESS_HEADER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_address_header: Option<String>,
    /// Hours finished apply jobs are kept (with the claims they acted with and the rows
    /// refused), each site's newest excepted (default 168).
    #[arg(long, env = "CLOUDSYNC_JOB_RETENTION_HOURS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_retention_hours: Option<u64>,
    /// Every tenant's database quota unless an operator set its own (default 100; 0:
    /// no limit).
    #[arg(long, env = "CLOUDSYNC_QUOTA_DATABASES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_databases: Option<u32>,
    /// Every tenant's device quota, over all its databases (default 100000; 0: no
    /// limit).
    #[arg(long, env = "CLOUDSYNC_QUOTA_DEVICES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_devices: Option<u32>,
    /// MiB every tenant's SQLite databases may take together on the node's disk
    /// unless an operator set its own (default 102400; 0: no limit); uploads past it
    /// are refused with `507 storage_quota_exceeded`.
    #[arg(long, env = "CLOUDSYNC_QUOTA_STORAGE_MB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_storage_mb: Option<u32>,
    /// MiB of sync payloads every tenant's devices may upload and download per UTC
    /// day, over all nodes, unless an operator set its own (default 102400; 0: no
    /// limit); past it sync requests get `429 transfer_quota_exceeded` until the day ends.
    #[arg(long, env = "CLOUDSYNC_QUOTA_TRANSFER_MB_PER_DAY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_transfer_mb_per_day: Option<u32>,
    /// Requests per second of all of one tenant's credentials together, per node,
    /// unless an operator set its own (default 1000; 0: no limit).
    #[arg(long, env = "CLOUDSYNC_QUOTA_REQUESTS_PER_SECOND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_requests_per_second: Option<u32>,
    /// Downloads one tenant may have waiting at once on a node (default 1000; 0: no
    /// limit).
    #[arg(long, env = "CLOUDSYNC_QUOTA_LONG_POLLS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_long_polls: Option<u32>,
    /// Downloads one JWT user or API key may have waiting at once on a node (default
    /// 100; 0: no limit).
    #[arg(long, env = "CLOUDSYNC_QUOTA_LONG_POLLS_PER_CREDENTIAL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_long_polls_per_credential: Option<u32>,
    /// A separate address serving only `/metrics` (the public port then answers 404
    /// there), e.g. a private network's.
    #[arg(long, env = "CLOUDSYNC_METRICS_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token `/metrics` requires (at least 128 bits).
    #[arg(long, env = "CLOUDSYNC_METRICS_TOKEN", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<String>,
    /// File holding the metrics token (`-`: standard input).
    #[arg(long, env = "CLOUDSYNC_METRICS_TOKEN_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_token_file: Option<PathBuf>,
    /// Hosts, addresses and CIDR ranges tenants' URLs (JWKS, PostgreSQL backends) may
    /// reach besides public addresses, comma-separated (e.g. 127.0.0.1,10.0.0.0/8).
    #[arg(long, env = "CLOUDSYNC_EGRESS_ALLOW")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_allow: Option<String>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_token: Option<SecretString>,
    pub public_url: Option<String>,
    pub workers: usize,
    pub json_logs: bool,
    pub inline_limit: usize,
    pub upload_limit: usize,
    pub chunk_bytes: usize,
    pub payload_raw_limit: u64,
    pub payload_retention_hours: u64,
    pub s3: Option<cloudsync_service::payloads::S3Config>,
    pub control_plane_url: Option<SecretString>,
    pub secrets_key: Option<SecretString>,
    pub rate_burst: u32,
    pub new_sites_per_hour: u32,
    pub jwks_refresh_secs: u64,
    pub usage_flush_secs: u64,
    pub postgres_pool_size: u32,
    pub budgets: cloudsync_service::backends::Budgets,
    pub auth_failures_per_minute: u32,
    pub quotas: Quotas,
    pub job_retention_hours: u64,
    pub client_address_header: Option<axum::http::HeaderName>,
    pub sqlite_max_database_bytes: u64,
    pub egress: cloudsync_service::egress::Egress,
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_token: Option<SecretString>,
}

impl Settings {
    /// Applies the precedence flags > environment > file > defaults.
    pub fn resolve(args: ServeArgs) -> Result<Settings> {
        let mut layers = Figment::new();
        if let Some(path) = &args.config {
            // A missing file is an error, not an empty layer: the operator named it.
            anyhow::ensure!(path.is_file(), "reading {}: no such file", path.display());
            layers = layers.merge(Toml::file_exact(path));
        }
        let a: ServeArgs = layers.merge(Serialized::defaults(&args)).extract().map_err(|e| {
            let place = args.config.as_ref().map_or_else(String::new, |p| format!(" in {}", p.display()));
            anyhow::anyhow!("invalid settings{place}: {e}")
        })?;
        let log_format = a.log_format.unwrap_or_else(|| "text".into());
        anyhow::ensure!(
            log_format == "text" || log_format == "json",
            "log format must be 'text' or 'json', got '{log_format}'"
        );
        let workers = a.workers.unwrap_or(2);
        anyhow::ensure!((1..=64).contains(&workers), "workers must be between 1 and 64");
        let rate_limit = a.rate_limit.unwrap_or(Quotas::default().requests_per_second_per_credential);
        let usage_flush_secs = a.usage_flush_secs.unwrap_or(5);
        anyhow::ensure!((1..=3600).contains(&usage_flush_secs), "usage flush interval must be 1 to 3600 seconds");
        let egress = cloudsync_service::egress::Egress::parse(&a.egress_allow.unwrap_or_default())
            .map_err(anyhow::Error::msg)?;
        let from_stdin: Vec<&str> = [
            ("admin-token", &a.admin_token_file),
            ("metrics-token", &a.metrics_token_file),
            ("secrets-key", &a.secrets_key_file),
            ("control-plane-url", &a.control_plane_url_file),
            ("s3-secret-key", &a.s3_secret_key_file),
        ]
        .into_iter()
        .filter(|(_, f)| f.as_ref().is_some_and(|f| f.as_os_str() == "-"))
        .map(|(name, _)| name)
        .collect();
        if let [first, second, ..] = from_stdin[..] {
            anyhow::bail!("--{first}-file and --{second}-file both read standard input: only one can");
        }
        let admin_token = secret("admin-token", a.admin_token, a.admin_token_file)?;
        let metrics_token = secret("metrics-token", a.metrics_token, a.metrics_token_file)?;
        for (name, token) in [("admin token", &admin_token), ("metrics token", &metrics_token)] {
            if let Some(t) = token {
                strong_enough(name, t.expose_secret())?;
            }
        }
        let listen = a.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        if let Some(url) = &a.public_url {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "the public URL must start with http:// or https://, got '{url}'"
            );
        } else {
            anyhow::ensure!(
                listen.ip().is_loopback(),
                "listening on {listen} (reachable from other machines) needs --public-url: the URL devices and \
                 browsers reach this node at, which signed upload URLs name and which decides whether the \
                 dashboard's cookie is Secure (https://…)"
            );
        }
        let defaults = cloudsync_service::backends::Budgets::default();
        let seconds = |name: &str, value: Option<u64>, default: std::time::Duration| {
            let secs = value.unwrap_or(default.as_secs());
            anyhow::ensure!((1..=86_400).contains(&secs), "{name} must be 1 to 86400 seconds, got {secs}");
            Ok(std::time::Duration::from_secs(secs))
        };
        let budgets = cloudsync_service::backends::Budgets {
            request: seconds("the request budget", a.request_budget_secs, defaults.request)?,
            apply: seconds("the apply budget", a.apply_budget_secs, defaults.apply)?,
            idle_in_transaction: seconds(
                "the PostgreSQL idle-in-transaction timeout",
                a.postgres_idle_in_transaction_secs,
                defaults.idle_in_transaction,
            )?,
        };
        let sqlite_max_database_bytes = a
            .sqlite_max_database_mb
            .map_or(cloudsync_service::backends::sqlite::DEFAULT_MAX_BYTES, |mb| mb.saturating_mul(1 << 20));
        let s3_secret_key = secret("s3-secret-key", a.s3_secret_key, a.s3_secret_key_file)?;
        let client_address_header = a
            .client_address_header
            .filter(|h| !h.is_empty())
            .map(|h| {
                axum::http::HeaderName::try_from(h.as_str())
                    .map_err(|_| anyhow::anyhow!("the client address header '{h}' is not a header name"))
            })
            .transpose()?;
        Ok(Settings {
            egress,
            budgets,
            auth_failures_per_minute: a.auth_failures_per_minute.unwrap_or(20),
            job_retention_hours: a.job_retention_hours.unwrap_or(24 * 7).max(1),
            quotas: {
                let d = Quotas::default();
                Quotas {
                    databases: a.quota_databases.unwrap_or(d.databases),
                    devices: a.quota_devices.unwrap_or(d.devices),
                    storage_mb: a.quota_storage_mb.unwrap_or(d.storage_mb),
                    transfer_mb_per_day: a.quota_transfer_mb_per_day.unwrap_or(d.transfer_mb_per_day),
                    requests_per_second: a.quota_requests_per_second.unwrap_or(d.requests_per_second),
                    requests_per_second_per_credential: rate_limit,
                    long_polls: a.quota_long_polls.unwrap_or(d.long_polls),
                    long_polls_per_credential: a.quota_long_polls_per_credential.unwrap_or(d.long_polls_per_credential),
                }
            },
            client_address_header,
            sqlite_max_database_bytes,
            control_plane_url: secret("control-plane-url", a.control_plane_url, a.control_plane_url_file)?,
            secrets_key: secret("secrets-key", a.secrets_key, a.secrets_key_file)?,
            metrics_listen: a.metrics_listen,
            metrics_token,
            rate_burst: a.rate_burst.unwrap_or(rate_limit.saturating_mul(2)),
            new_sites_per_hour: a.new_sites_per_hour.unwrap_or(cloudsync_api::Limits::default().new_sites_per_hour),
            jwks_refresh_secs: a.jwks_refresh_secs.unwrap_or(10),
            usage_flush_secs,
            postgres_pool_size: a
                .postgres_pool_size
                .unwrap_or(cloudsync_service::backends::postgres::DEFAULT_POOL_SIZE)
                .max(1),
            listen,
            data_dir: a.data_dir.unwrap_or_else(|| PathBuf::from("cloudsync-data")),
            admin_token,
            public_url: a.public_url,
            workers,
            json_logs: log_format == "json",
            inline_limit: a.inline_limit.unwrap_or(1 << 20),
            upload_limit: a.upload_limit.unwrap_or(256 << 20),
            chunk_bytes: a.chunk_bytes.unwrap_or(cloudsync_api::Limits::default().chunk_bytes).max(1024),
            payload_raw_limit: a
                .payload_raw_limit
                .unwrap_or(cloudsync_api::Limits::default().payload_raw_bytes)
                .max(1 << 20),
            payload_retention_hours: a.payload_retention_hours.unwrap_or(24 * 7),
            s3: match a.s3_bucket {
                None => None,
                Some(bucket) => Some(cloudsync_service::payloads::S3Config {
                    endpoint: a.s3_endpoint,
                    region: a.s3_region.unwrap_or_else(|| "us-east-1".into()),
                    bucket,
                    prefix: a.s3_prefix.unwrap_or_default(),
                    access_key: a.s3_access_key.context("an S3 bucket needs an access key (--s3-access-key)")?,
                    secret_key: s3_secret_key.context("an S3 bucket needs a secret key (--s3-secret-key)")?,
                    path_style: a.s3_path_style.unwrap_or(true),
                }),
            },
        })
    }
}

/// A secret given as a value or in a file (`--<name>-file`; `-`: standard input), not
/// both; an empty value is none. A file's content is trimmed of its line ending.
fn secret(name: &str, value: Option<String>, file: Option<PathBuf>) -> Result<Option<SecretString>> {
    let value = match (value.filter(|v| !v.is_empty()), file) {
        (Some(_), Some(_)) => anyhow::bail!("--{name} and --{name}-file are both given: choose one"),
        (Some(v), None) => Some(v),
        (None, None) => None,
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .with_context(|| format!("reading --{name}-file from standard input"))?;
            Some(text)
        }
        (None, Some(path)) => {
            Some(std::fs::read_to_string(&path).with_context(|| format!("reading --{name}-file {}", path.display()))?)
        }
    };
    Ok(value.map(|v| v.trim_end_matches(['\r', '\n']).to_string()).filter(|v| !v.is_empty()).map(SecretString::from))
}

/// Refuses a configured token that carries fewer than 128 bits, estimated from its
/// length and the character classes it uses (a lower bound for a random token, an
/// upper one for a chosen word).
fn strong_enough(name: &str, token: &str) -> Result<()> {
    let mut alphabet = 0u32;
    for (class, size) in [
        (&(|c: char| c.is_ascii_lowercase()) as &dyn Fn(char) -> bool, 26),
        (&|c: char| c.is_ascii_uppercase(), 26),
        (&|c: char| c.is_ascii_digit(), 10),
        (&|c: char| !c.is_ascii_alphanumeric(), 33),
    ] {
        if token.chars().any(class) {
            alphabet += size;
        }
    }
    let bits = token.chars().count() as f64 * f64::from(alphabet.max(1)).log2();
    anyhow::ensure!(
        bits >= 128.0,
        "the {name} is too weak: it must carry at least 128 bits, e.g. 32 random hex characters or 22 of \
         base64url (this one carries at most {bits:.0}); leave the admin token unset to have one generated"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile_dir();
        let path = dir.join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nworkers = 3\ndata_dir = \"/tmp/from-file\"\n").unwrap();
        let s = Settings::resolve(ServeArgs { config: Some(path.clone()), workers: Some(5), ..ServeArgs::default() })
            .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.workers, 5);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/from-file"));
        let d = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(d.listen.to_string(), "127.0.0.1:8080");
        std::fs::write(&path, "bogus = 1\n").unwrap();
        let e = Settings::resolve(ServeArgs { config: Some(path.clone()), ..ServeArgs::default() }).err().unwrap();
        assert!(e.to_string().contains("bogus"), "{e}");
        std::fs::write(&path, "workers = \"three\"\n").unwrap();
        assert!(Settings::resolve(ServeArgs { config: Some(path), ..ServeArgs::default() }).is_err());
        let missing = dir.join("missing.toml");
        assert!(Settings::resolve(ServeArgs { config: Some(missing), ..ServeArgs::default() }).is_err());
    }

    #[test]
    fn budgets_quotas_and_the_client_address_are_checked_settings() {
        let d = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(d.budgets, cloudsync_service::backends::Budgets::default());
        assert_eq!(d.sqlite_max_database_bytes, 10 << 30);
        assert_eq!((d.auth_failures_per_minute, d.client_address_header.is_none()), (20, true));
        let s = Settings::resolve(ServeArgs {
            apply_budget_secs: Some(2),
            request_budget_secs: Some(3),
            sqlite_max_database_mb: Some(0),
            client_address_header: Some("Fly-Client-IP".into()),
            rate_limit: Some(5),
            quota_storage_mb: Some(0),
            quota_requests_per_second: Some(50),
            ..ServeArgs::default()
        })
        .unwrap();
        // --rate-limit is the default per-credential quota, bursting to twice itself.
        let q = s.quotas;
        assert_eq!((q.requests_per_second_per_credential, s.rate_burst), (5, 10));
        assert_eq!((q.requests_per_second, q.storage_mb, q.transfer_mb_per_day), (50, 0, 102_400));
        assert_eq!((s.budgets.apply.as_secs(), s.budgets.request.as_secs(), s.budgets.job().as_secs()), (2, 3, 62));
        assert_eq!(s.sqlite_max_database_bytes, 0);
        assert_eq!(s.client_address_header.unwrap().as_str(), "fly-client-ip");
        for bad in [
            ServeArgs { apply_budget_secs: Some(0), ..ServeArgs::default() },
            ServeArgs { request_budget_secs: Some(86_401), ..ServeArgs::default() },
            ServeArgs { client_address_header: Some("not a header".into()), ..ServeArgs::default() },
        ] {
            assert!(Settings::resolve(bad).is_err());
        }
    }

    #[test]
    fn secrets_from_the_file_never_print() {
        let dir = tempfile_dir();
        let path = dir.join("secrets.toml");
        std::fs::write(
            &path,
            "admin_token = \"tok-1234-0123456789abcdef0123\"\nsecrets_key = \"key-5678\"\ncontrol_plane_url = \"postgres://u:pw-9@h/db\"\n\
             s3_bucket = \"b\"\ns3_access_key = \"ak\"\ns3_secret_key = \"sk-0000\"\n",
        )
        .unwrap();
        let s = Settings::resolve(ServeArgs { config: Some(path), ..ServeArgs::default() }).unwrap();
        let shown = format!("{s:?}");
        for secret in ["tok-1234", "key-5678", "pw-9", "sk-0000"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert_eq!(s.admin_token.as_ref().map(|t| t.expose_secret()), Some("tok-1234-0123456789abcdef0123"));
        assert_eq!(s.s3.map(|c| c.secret_key.expose_secret().to_string()).as_deref(), Some("sk-0000"));
    }

    #[test]
    fn secrets_come_from_files_and_weak_tokens_are_refused() {
        let dir = tempfile_dir();
        let token = dir.join("token");
        std::fs::write(&token, "csa_0123456789abcdef0123456789abcdef\n").unwrap();
        let s = Settings::resolve(ServeArgs { admin_token_file: Some(token.clone()), ..ServeArgs::default() }).unwrap();
        assert_eq!(s.admin_token.as_ref().map(|t| t.expose_secret()), Some("csa_0123456789abcdef0123456789abcdef"));
        let both = ServeArgs {
            admin_token: Some("csa_0123456789abcdef0123456789abcdef".into()),
            admin_token_file: Some(token),
            ..ServeArgs::default()
        };
        assert!(Settings::resolve(both).err().unwrap().to_string().contains("both given"));
        let missing = ServeArgs { secrets_key_file: Some(dir.join("nope")), ..ServeArgs::default() };
        assert!(Settings::resolve(missing).err().unwrap().to_string().contains("--secrets-key-file"));
        let two_stdin = ServeArgs {
            admin_token_file: Some("-".into()),
            metrics_token_file: Some("-".into()),
            ..ServeArgs::default()
        };
        // Refused before either is read.
        let e = Settings::resolve(two_stdin).err().unwrap().to_string();
        assert!(e.contains("standard input"), "{e}");
        for weak in ["secret", "password123", "tok-1234", "0123456789abcdef0123"] {
            let args = ServeArgs { admin_token: Some(weak.into()), ..ServeArgs::default() };
            let e = Settings::resolve(args).err().unwrap().to_string();
            assert!(e.contains("at least 128 bits") && !e.contains(weak), "{weak}: {e}");
            let args = ServeArgs { metrics_token: Some(weak.into()), ..ServeArgs::default() };
            assert!(Settings::resolve(args).is_err(), "{weak}");
        }
        for strong in ["0123456789abcdef0123456789abcdef", "Zk3_pQ9-xY7wV2bN5mL8aR"] {
            let args = ServeArgs { admin_token: Some(strong.into()), ..ServeArgs::default() };
            assert!(Settings::resolve(args).is_ok(), "{strong}");
        }
    }

    #[test]
    fn a_node_reachable_from_elsewhere_needs_its_public_url() {
        let open = |public_url: Option<&str>| ServeArgs {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            public_url: public_url.map(str::to_string),
            ..ServeArgs::default()
        };
        let e = Settings::resolve(open(None)).err().unwrap().to_string();
        assert!(e.contains("--public-url"), "{e}");
        assert!(Settings::resolve(open(Some("https://sync.example.com"))).is_ok());
        assert!(Settings::resolve(open(Some("sync.example.com"))).is_err());
        let loopback = ServeArgs { listen: Some("[::1]:8080".parse().unwrap()), ..ServeArgs::default() };
        assert!(Settings::resolve(loopback).is_ok());
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("cloudsync-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
