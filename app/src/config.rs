//! Settings of `cloudsync serve`: flags, then `CLOUDSYNC_*` environment variables, then
//! the TOML config file, then defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;

/// Flags of `cloudsync serve` (each also read from its environment variable).
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CLOUDSYNC_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded stores (created if missing).
    #[arg(long, env = "CLOUDSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Operator token for the admin API (generated and stored in the data directory if
    /// not given).
    #[arg(long, env = "CLOUDSYNC_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Base URL devices use to reach this node (default: http://<listen address>).
    #[arg(long, env = "CLOUDSYNC_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// TOML config file.
    #[arg(long, env = "CLOUDSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Apply workers on this node.
    #[arg(long, env = "CLOUDSYNC_WORKERS")]
    pub workers: Option<usize>,
    /// Log format: text or json.
    #[arg(long, env = "CLOUDSYNC_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Largest payload accepted inline in an upload, in bytes.
    #[arg(long, env = "CLOUDSYNC_INLINE_LIMIT")]
    pub inline_limit: Option<usize>,
    /// Largest payload accepted through a signed upload URL, in bytes.
    #[arg(long, env = "CLOUDSYNC_UPLOAD_LIMIT")]
    pub upload_limit: Option<usize>,
    /// Most bytes an uploaded payload may declare once decompressed, in all.
    #[arg(long, env = "CLOUDSYNC_PAYLOAD_RAW_LIMIT")]
    pub payload_raw_limit: Option<u64>,
    /// Largest download chunk, in bytes (uncompressed estimate; at least 1024).
    #[arg(long, env = "CLOUDSYNC_CHUNK_BYTES")]
    pub chunk_bytes: Option<usize>,
    /// Hours uploaded payloads are kept after upload.
    #[arg(long, env = "CLOUDSYNC_PAYLOAD_RETENTION_HOURS")]
    pub payload_retention_hours: Option<u64>,
    /// S3 bucket for payloads (instead of the data directory's folder).
    #[arg(long, env = "CLOUDSYNC_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 endpoint URL, for S3-compatible services.
    #[arg(long, env = "CLOUDSYNC_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "CLOUDSYNC_S3_REGION")]
    pub s3_region: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, env = "CLOUDSYNC_S3_PREFIX")]
    pub s3_prefix: Option<String>,
    /// S3 access key id.
    #[arg(long, env = "CLOUDSYNC_S3_ACCESS_KEY", hide_env_values = true)]
    pub s3_access_key: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "CLOUDSYNC_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
    /// Path-style S3 addressing (endpoint/bucket/key): true or false.
    #[arg(long, env = "CLOUDSYNC_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
    /// Control-plane store: postgres://… (for several nodes) or sqlite://… (default: a
    /// SQLite file in the data directory).
    #[arg(long, env = "CLOUDSYNC_CONTROL_PLANE_URL", hide_env_values = true)]
    pub control_plane_url: Option<String>,
    /// Key sealing tenants' secrets at rest: 32 bytes, unpadded base64url (default:
    /// generated and stored in the data directory; every node needs the same key).
    #[arg(long, env = "CLOUDSYNC_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,
    /// Requests per second allowed per API key or JWT user (0: unlimited).
    #[arg(long, env = "CLOUDSYNC_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Burst allowed above the rate limit.
    #[arg(long, env = "CLOUDSYNC_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Seconds between JWKS refetches caused by unknown key ids, per JWKS URL.
    #[arg(long, env = "CLOUDSYNC_JWKS_REFRESH_SECS")]
    pub jwks_refresh_secs: Option<u64>,
    /// Seconds between usage flushes to the control plane.
    #[arg(long, env = "CLOUDSYNC_USAGE_FLUSH_SECS")]
    pub usage_flush_secs: Option<u64>,
    /// Connections this node keeps at most to each PostgreSQL backend (default 8).
    #[arg(long, env = "CLOUDSYNC_POSTGRES_POOL_SIZE")]
    pub postgres_pool_size: Option<u32>,
    /// Hosts, addresses and CIDR ranges tenants' URLs (JWKS, PostgreSQL backends) may
    /// reach besides public addresses, comma-separated (e.g. 127.0.0.1,10.0.0.0/8).
    #[arg(long, env = "CLOUDSYNC_EGRESS_ALLOW")]
    pub egress_allow: Option<String>,
}

/// The same settings in the config file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    admin_token: Option<String>,
    public_url: Option<String>,
    workers: Option<usize>,
    log_format: Option<String>,
    inline_limit: Option<usize>,
    upload_limit: Option<usize>,
    chunk_bytes: Option<usize>,
    payload_raw_limit: Option<u64>,
    payload_retention_hours: Option<u64>,
    s3_bucket: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_prefix: Option<String>,
    s3_access_key: Option<String>,
    s3_secret_key: Option<String>,
    s3_path_style: Option<bool>,
    control_plane_url: Option<String>,
    secrets_key: Option<String>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    jwks_refresh_secs: Option<u64>,
    usage_flush_secs: Option<u64>,
    postgres_pool_size: Option<u32>,
    egress_allow: Option<String>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub public_url: Option<String>,
    pub workers: usize,
    pub json_logs: bool,
    pub inline_limit: usize,
    pub upload_limit: usize,
    pub chunk_bytes: usize,
    pub payload_raw_limit: u64,
    pub payload_retention_hours: u64,
    pub s3: Option<cloudsync_tenants::payloads::S3Config>,
    pub control_plane_url: Option<String>,
    pub secrets_key: Option<String>,
    pub rate_limit: u32,
    pub rate_burst: u32,
    pub jwks_refresh_secs: u64,
    pub usage_flush_secs: u64,
    pub postgres_pool_size: u32,
    pub egress: cloudsync_tenants::egress::Egress,
}

impl Settings {
    /// Applies the precedence flags > environment > file > defaults.
    pub fn resolve(args: ServeArgs) -> Result<Settings> {
        let file: FileSettings = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileSettings::default(),
        };
        let log_format = args.log_format.or(file.log_format).unwrap_or_else(|| "text".into());
        anyhow::ensure!(
            log_format == "text" || log_format == "json",
            "log format must be 'text' or 'json', got '{log_format}'"
        );
        let workers = args.workers.or(file.workers).unwrap_or(2);
        anyhow::ensure!((1..=64).contains(&workers), "workers must be between 1 and 64");
        let rate_limit = args.rate_limit.or(file.rate_limit).unwrap_or(100);
        let usage_flush_secs = args.usage_flush_secs.or(file.usage_flush_secs).unwrap_or(5);
        anyhow::ensure!((1..=3600).contains(&usage_flush_secs), "usage flush interval must be 1 to 3600 seconds");
        let egress =
            cloudsync_tenants::egress::Egress::parse(&args.egress_allow.or(file.egress_allow).unwrap_or_default())
                .map_err(anyhow::Error::msg)?;
        Ok(Settings {
            egress,
            control_plane_url: args.control_plane_url.or(file.control_plane_url).filter(|u| !u.is_empty()),
            secrets_key: args.secrets_key.or(file.secrets_key).filter(|k| !k.is_empty()),
            rate_limit,
            rate_burst: args.rate_burst.or(file.rate_burst).unwrap_or(rate_limit.saturating_mul(2)),
            jwks_refresh_secs: args.jwks_refresh_secs.or(file.jwks_refresh_secs).unwrap_or(10),
            usage_flush_secs,
            postgres_pool_size: args
                .postgres_pool_size
                .or(file.postgres_pool_size)
                .unwrap_or(cloudsync_tenants::backends::postgres::DEFAULT_POOL_SIZE)
                .max(1),
            listen: args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("cloudsync-data")),
            admin_token: args.admin_token.or(file.admin_token).filter(|t| !t.is_empty()),
            public_url: args.public_url.or(file.public_url),
            workers,
            json_logs: log_format == "json",
            inline_limit: args.inline_limit.or(file.inline_limit).unwrap_or(1 << 20),
            upload_limit: args.upload_limit.or(file.upload_limit).unwrap_or(256 << 20),
            chunk_bytes: args
                .chunk_bytes
                .or(file.chunk_bytes)
                .unwrap_or(cloudsync_api::Limits::default().chunk_bytes)
                .max(1024),
            payload_raw_limit: args
                .payload_raw_limit
                .or(file.payload_raw_limit)
                .unwrap_or(cloudsync_api::Limits::default().payload_raw_bytes)
                .max(1 << 20),
            payload_retention_hours: args.payload_retention_hours.or(file.payload_retention_hours).unwrap_or(24 * 7),
            s3: match args.s3_bucket.or(file.s3_bucket) {
                None => None,
                Some(bucket) => Some(cloudsync_tenants::payloads::S3Config {
                    endpoint: args.s3_endpoint.or(file.s3_endpoint),
                    region: args.s3_region.or(file.s3_region).unwrap_or_else(|| "us-east-1".into()),
                    bucket,
                    prefix: args.s3_prefix.or(file.s3_prefix).unwrap_or_default(),
                    access_key: args
                        .s3_access_key
                        .or(file.s3_access_key)
                        .context("an S3 bucket needs an access key (--s3-access-key)")?,
                    secret_key: args
                        .s3_secret_key
                        .or(file.s3_secret_key)
                        .context("an S3 bucket needs a secret key (--s3-secret-key)")?,
                    path_style: args.s3_path_style.or(file.s3_path_style).unwrap_or(true),
                }),
            },
        })
    }
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
        assert!(Settings::resolve(ServeArgs { config: Some(path), ..ServeArgs::default() }).is_err());
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("cloudsync-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
