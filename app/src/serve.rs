//! `cloudsync serve`: wire the stores, the workers and the HTTP application together.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use cloudsync_api::{AppState, Inner, Limits, Metrics, MetricsAccess};
use cloudsync_service::backends::postgres::PgBackends;
use cloudsync_service::backends::sqlite::SqliteBackends;
use cloudsync_service::backends::Backends;
use cloudsync_service::control::devices::UsageRecorder;
use cloudsync_service::control::identity::Verifier;
use cloudsync_service::control::{redact, ControlPlane};
use cloudsync_service::notify::Notifier;
use cloudsync_service::payloads::{AnyStore, FolderStore, PayloadStore, S3Store};
use cloudsync_service::secrets::SecretBox;
use cloudsync_service::worker;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{watch, Notify};

use crate::config::Settings;

/// Text logs by default, JSON with `--log-format json`; level from `RUST_LOG`.
pub fn init_logging(s: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if s.json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A secret kept in a file of the data directory (created with mode 0600).
fn stored_secret(path: &Path, make: impl FnOnce() -> String) -> Result<(String, bool)> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let t = existing.trim().to_string();
        if !t.is_empty() {
            return Ok((t, false));
        }
    }
    let secret = make();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write;
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    Ok((secret, true))
}

fn random_token(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// Waits for SIGTERM or Ctrl-C.
async fn terminated() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Runs a node until SIGTERM.
pub async fn run(s: Settings) -> Result<()> {
    std::fs::create_dir_all(&s.data_dir).with_context(|| format!("creating {}", s.data_dir.display()))?;
    let control_url = control_plane_url(&s);
    let (secrets_key, _) = match &s.secrets_key {
        Some(k) => (k.expose_secret().to_string(), false),
        None => {
            if !control_url.starts_with("sqlite:") {
                tracing::warn!(
                    "no --secrets-key given with a shared control plane: every node must use the same key, \
                     or HS256 secrets stored by one node cannot be read by another"
                );
            }
            stored_secret(&s.data_dir.join("secrets-key"), SecretBox::generate_text)?
        }
    };
    let secrets = SecretBox::from_text(&secrets_key).context("the secrets key")?;
    let control = ControlPlane::open(&control_url)
        .await
        .with_context(|| format!("opening the control-plane store {}", redact(&control_url)))?
        .with_secrets(secrets);
    let (admin_token, generated) = match &s.admin_token {
        Some(t) => (t.expose_secret().to_string(), false),
        None => stored_secret(&s.data_dir.join(crate::local::ADMIN_TOKEN_FILE), || {
            random_token(cloudsync_protocol::credentials::ADMIN_TOKEN_PREFIX)
        })?,
    };
    let (url_secret, _) = stored_secret(&s.data_dir.join("url-signing-key"), || random_token(""))?;

    let listener =
        tokio::net::TcpListener::bind(s.listen).await.with_context(|| format!("listening on {}", s.listen))?;
    let addr = listener.local_addr()?;
    let public_url = s.public_url.clone().unwrap_or_else(|| format!("http://{addr}")).trim_end_matches('/').to_string();

    let (payloads, folder) = match &s.s3 {
        Some(cfg) => {
            let store = S3Store::new(cfg.clone());
            store.check().await.with_context(|| format!("S3 bucket '{}' is not usable", cfg.bucket))?;
            (Arc::new(AnyStore::S3(store)), None)
        }
        None => {
            let folder = FolderStore::new(s.data_dir.join("payloads"), public_url.clone(), url_secret.into_bytes())?;
            (Arc::new(AnyStore::Folder(folder.clone())), Some(folder))
        }
    };
    let egress = Arc::new(s.egress.clone());
    let backends = Arc::new(Backends::new(
        SqliteBackends::new(s.data_dir.join("databases"), cloudsync_api::db_permit_count())?
            .with_budgets(s.budgets)
            .with_max_bytes(s.sqlite_max_database_bytes),
        PgBackends::new(s.postgres_pool_size, Arc::clone(&egress)).with_budgets(s.budgets),
        control.clone(),
    ));
    let notifier = Arc::new(Notifier::default());
    let wake = Arc::new(Notify::new());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let node = format!("{}-{}", hostname(), std::process::id());
    let metrics = Metrics::new();
    let ctx = Arc::new(worker::Context {
        control: control.clone(),
        backends: Arc::clone(&backends),
        payloads: Arc::clone(&payloads),
        notifier: Arc::clone(&notifier),
        wake: Arc::clone(&wake),
        node,
        observer: Arc::new(metrics.clone()),
        max_attempt: s.budgets.job(),
    });
    let workers = worker::spawn(s.workers, ctx, shutdown_rx.clone());

    // Retention: uploaded objects are only needed until applied, finished jobs (with
    // the claims they acted with) only for inspection; keep them a while, then delete.
    let retention = Duration::from_secs(s.payload_retention_hours.saturating_mul(3600));
    let job_retention = Duration::from_secs(s.job_retention_hours.saturating_mul(3600));
    let janitor = {
        let payloads = Arc::clone(&payloads);
        let control = control.clone();
        let mut stop = shutdown_rx.clone();
        tokio::spawn(async move {
            loop {
                match payloads.expire(retention).await {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "expired old payloads"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "expiring payloads failed"),
                }
                match control.prune_jobs(job_retention).await {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "pruned finished jobs"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning finished jobs failed"),
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                    _ = stop.changed() => break,
                }
            }
        })
    };

    let state = AppState(Arc::new(Inner {
        control,
        backends,
        payloads,
        folder,
        notifier,
        wake,
        admin_token: SecretString::from(admin_token.clone()),
        public_url: public_url.clone(),
        limits: Limits {
            inline_bytes: s.inline_limit,
            upload_bytes: s.upload_limit,
            chunk_bytes: s.chunk_bytes,
            payload_raw_bytes: s.payload_raw_limit,
            new_sites_per_hour: s.new_sites_per_hour,
            quotas: s.quotas,
            credential_burst: s.rate_burst,
            ..Limits::default()
        },
        metrics,
        shutdown: shutdown_rx.clone(),
        verifier: Verifier::new(Duration::from_secs(s.jwks_refresh_secs), &egress),
        egress,
        usage: UsageRecorder::default(),
        quotas: cloudsync_api::quotas::Enforcer::default(),
        decoding: tokio::sync::Semaphore::new(cloudsync_api::decode_permit_count()),
        metrics_access: MetricsAccess { token: s.metrics_token.clone(), separate: s.metrics_listen.is_some() },
        long_polls: cloudsync_api::longpolls::LongPolls::default(),
        lockout: cloudsync_api::lockout::Lockout::new(s.auth_failures_per_minute),
        client_address_header: s.client_address_header.clone(),
    }));
    let housekeeping = spawn_housekeeping(state.clone(), Duration::from_secs(s.usage_flush_secs), shutdown_rx.clone());
    let app = cloudsync_api::router_with(state.clone(), cloudsync_dashboard::router(state.clone()));
    let metrics_server = match s.metrics_listen {
        None => None,
        Some(at) => {
            let l =
                tokio::net::TcpListener::bind(at).await.with_context(|| format!("listening for metrics on {at}"))?;
            let at = l.local_addr()?;
            let mut down = shutdown_rx.clone();
            let stop = async move {
                let _ = down.wait_for(|d| *d).await;
            };
            let router = cloudsync_api::metrics_router(state.clone());
            Some((at, tokio::spawn(crate::http::serve(l, router, stop, Duration::from_secs(5)))))
        }
    };

    println!("cloudsync {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
    println!("  dashboard:  {public_url}/admin   (sign in with the admin token)");
    println!("  API:        {public_url}/v1");
    match &metrics_server {
        Some((at, _)) => println!("  health:     {public_url}/healthz   metrics: http://{at}/metrics"),
        None => println!("  health:     {public_url}/healthz   metrics: {public_url}/metrics"),
    }
    println!("  API docs:   {public_url}/docs   (OpenAPI: {public_url}/openapi.json)");
    println!("  data dir:   {}", s.data_dir.display());
    println!("  control:    {}", redact(&control_url));
    match &s.s3 {
        Some(cfg) => println!("  payloads:   s3 bucket {} ({})", cfg.bucket, cfg.endpoint.as_deref().unwrap_or("AWS")),
        None => println!("  payloads:   {}", s.data_dir.join("payloads").display()),
    }
    // The token is shown once, when it is made; afterwards only where it is kept.
    match (&s.admin_token, generated) {
        (Some(_), _) => println!("  admin token: (from configuration)"),
        (None, true) => println!(
            "  admin token: {admin_token}   (generated and stored in {}; shown only this once)",
            s.data_dir.join(crate::local::ADMIN_TOKEN_FILE).display()
        ),
        (None, false) => println!("  admin token: in {}", s.data_dir.join(crate::local::ADMIN_TOKEN_FILE).display()),
    }
    // The CLI on this machine finds the node through this record (`cloudsync tenant
    // list` with no flags, next to the data directory).
    match crate::local::record_server(&s.data_dir, addr) {
        Ok(path) => println!(
            "  CLI:        finds this node through {} (from another directory: --data-dir {})",
            path.display(),
            std::path::absolute(&s.data_dir).unwrap_or_else(|_| s.data_dir.clone()).display()
        ),
        Err(e) => tracing::warn!(error = %e, "cannot record where this node listens; the CLI needs --server"),
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let stop = async move {
        terminated().await;
        tracing::info!("shutting down: finishing in-flight requests and releasing job leases");
        let _ = shutdown_tx.send(true);
    };
    crate::http::serve(listener, app, stop, Duration::from_secs(30)).await?;
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
    janitor.abort();
    let _ = housekeeping.await;
    if let Some((_, server)) = metrics_server {
        let _ = server.await;
    }
    // Counters of the last requests.
    if let Err(e) = state.usage.flush(&state.control).await {
        tracing::warn!(error = %e, "final usage flush failed");
    }
    crate::local::forget_server(&s.data_dir);
    tracing::info!("stopped");
    Ok(())
}

/// The control-plane URL: configured, or the SQLite file in the data directory.
pub fn control_plane_url(s: &Settings) -> String {
    default_control_url(s.control_plane_url.as_ref().map(|u| u.expose_secret().to_string()), &s.data_dir)
}

fn default_control_url(url: Option<String>, data_dir: &Path) -> String {
    url.unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("control.sqlite").display()))
}

/// `cloudsync migrate`: applies pending control-plane migrations and reports the version.
pub async fn migrate(url: Option<String>, data_dir: std::path::PathBuf, json: bool) -> Result<()> {
    let url = default_control_url(url, &data_dir);
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    }
    let cp = ControlPlane::connect(&url).await.with_context(|| format!("connecting to {}", redact(&url)))?;
    let applied = cp.migrate().await.context("migrating")?;
    let version = cp.schema_version().await?;
    cp.close().await;
    if json {
        println!("{}", serde_json::json!({ "store": redact(&url), "applied": applied, "version": version }));
    } else {
        println!("{}: {applied} migration(s) applied, schema version {version}", redact(&url));
    }
    Ok(())
}

/// Periodic node work: usage flushes and rate-limiter pruning, until shutdown.
fn spawn_housekeeping(
    state: AppState,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => break,
            }
            if let Err(e) = state.usage.flush(&state.control).await {
                state.metrics.usage_flush_errors.inc();
                tracing::warn!(error = %e, "usage flush failed; counters kept for the next one");
            }
            state.quotas.prune();
            if let Some(l) = &state.lockout {
                l.prune();
            }
            if let Err(e) = state.control.purge_sessions().await {
                tracing::warn!(error = %e, "removing expired dashboard sessions failed");
            }
        }
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "node".into())
}
