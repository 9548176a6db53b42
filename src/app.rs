//! Wiring: builds the service from configuration for the local server,
//! the admin CLI and the Lambda handler.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use std::time::Duration;

use crate::admin::Admin;
use crate::auth::{AdminAuth, admin_key_path, load_or_create_admin_key};
use crate::credentials::vault::{InlineVault, Vault};
use crate::credentials::{Credentials, DEFAULT_REVEAL_TTL, TOKEN_PREFIX, secret};
use crate::http::pages::RevealGuard;
use crate::http::{AppState, router};
use crate::mail::{Mailer, Outbox, Ses, Unconfigured};
use crate::scim::model::TenantId;
use crate::secrets::SecretsManagerVault;
use crate::service::Service;
use crate::store::Store;
use crate::store::dynamodb::{self, DynamoStore};
use crate::store::embedded::EmbeddedStore;

#[derive(Debug, Error)]
pub enum AppError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("lambda runtime: {0}")]
    Lambda(String),
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    #[error("{0}")]
    Credentials(#[from] crate::credentials::CredentialError),
}

/// How credential emails leave the service.
#[derive(Debug, Clone)]
pub enum MailConfig {
    /// `.eml` files in `<data-dir>/outbox/` (local default).
    Outbox,
    /// Amazon SES (or the emulator `AWS_ENDPOINT_URL` points at).
    Ses,
}

/// Which [`Store`] backs the service.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// redb file in the data directory.
    Embedded,
    /// A DynamoDB table (the real service, or an emulator via `AWS_ENDPOINT_URL`).
    DynamoDb {
        table: String,
        /// Create the table from this SAM template first if it is missing
        /// (local runs and tests against the emulator).
        create_from_template: Option<PathBuf>,
    },
}

pub struct LocalConfig {
    pub addr: SocketAddr,
    /// Keep tenants' token hashes in Secrets Manager under this prefix.
    pub tenant_secret_prefix: Option<String>,
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    /// Answer with an `x-store-calls` header (backend calls made while serving).
    pub expose_store_calls: bool,
    pub demo_tenant: String,
    pub demo_token: Option<String>,
    pub tenants: Option<String>,
    pub public_base_url: Option<String>,
    /// Admin key to accept instead of `<data-dir>/admin.key`.
    pub admin_key: Option<String>,
    pub mail: MailConfig,
    pub sender_email: String,
    pub demo_admin_email: String,
    pub reveal_ttl: Duration,
}

/// Installs the log subscriber on stderr: JSON lines (one object per event,
/// fields at the top level) in Lambda or with `LOG_FORMAT=json`, the human
/// format otherwise. The level comes from `RUST_LOG`, else Lambda's
/// `AWS_LAMBDA_LOG_LEVEL`, else `info`.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let filter = EnvFilter::try_from_default_env()
        .ok()
        .or_else(|| {
            env("AWS_LAMBDA_LOG_LEVEL").and_then(|l| EnvFilter::try_new(lambda_log_level(&l)).ok())
        })
        .unwrap_or_else(|| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colour only for a person at a terminal, never into files or pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match log_format(env) {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// How log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing-subscriber's JSON formatter (CloudWatch Logs Insights).
    Json,
    /// tracing-subscriber's default human-readable format.
    Human,
}

/// `LOG_FORMAT=json|human` wins; unset, JSON in Lambda, human elsewhere.
pub fn log_format(lookup: impl Fn(&str) -> Option<String>) -> LogFormat {
    match lookup("LOG_FORMAT")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("json") => LogFormat::Json,
        Some("human" | "text" | "pretty") => LogFormat::Human,
        _ if crate::http::observe::in_lambda(lookup) => LogFormat::Json,
        _ => LogFormat::Human,
    }
}

/// Lambda's log levels (`TRACE` … `FATAL`) as an `EnvFilter` directive.
fn lambda_log_level(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        "fatal" => "error".into(),
        l => l.into(),
    }
}

fn open_store(data_dir: &Path) -> Result<Arc<EmbeddedStore>, AppError> {
    Ok(Arc::new(EmbeddedStore::open(&data_dir.join("scim.redb"))?))
}

/// Key that signs pagination cursors; kept beside the data so cursors
/// survive a restart.
fn cursor_key(data_dir: &Path) -> Result<Vec<u8>, AppError> {
    let path = data_dir.join("cursor.key");
    match std::fs::read(&path) {
        Ok(k) if k.len() >= 32 => Ok(k),
        _ => {
            let key: [u8; 32] = rand::random();
            std::fs::create_dir_all(data_dir)?;
            std::fs::write(&path, key)?;
            Ok(key.to_vec())
        }
    }
}

fn tenant_id(raw: &str) -> Result<TenantId, AppError> {
    TenantId::parse(raw).ok_or_else(|| {
        AppError::Config(format!(
            "tenant id {raw:?}: use 1-64 letters, digits, '-' or '_'"
        ))
    })
}

/// Opens the configured store.
pub async fn build_store(
    data_dir: &Path,
    config: &StoreConfig,
) -> Result<Arc<dyn Store>, AppError> {
    match config {
        StoreConfig::Embedded => Ok(open_store(data_dir)?),
        StoreConfig::DynamoDb {
            table,
            create_from_template,
        } => {
            let store = DynamoStore::from_env(table.clone()).await;
            // Only a missing table is created, so a restart keeps the data.
            if let Some(template) = create_from_template
                && store
                    .client()
                    .describe_table()
                    .table_name(table)
                    .send()
                    .await
                    .is_err()
            {
                dynamodb::create_table_from_template(store.client(), template, table).await?;
            }
            Ok(Arc::new(store))
        }
    }
}

/// Where verification material lives: Secrets Manager (one secret per
/// tenant under `secret_prefix`) or, without a prefix, the tenant record.
pub fn build_vault(secret_prefix: Option<&str>) -> Arc<dyn Vault> {
    match secret_prefix {
        Some(prefix) => Arc::new(SecretsManagerVault::new(prefix.to_owned())),
        None => Arc::new(InlineVault),
    }
}

/// The state every entry point serves (and tests build directly).
pub fn build_state(
    store: Arc<dyn Store>,
    cursor_key: &[u8],
    vault: Arc<dyn Vault>,
    mailer: Arc<dyn Mailer>,
    reveal_ttl: Duration,
    admin_auth: AdminAuth,
) -> AppState {
    let retention = std::env::var("AUDIT_RETENTION_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::audit::DEFAULT_RETENTION_DAYS);
    // How long a Bulk request may start operations (seconds, fractions allowed).
    let bulk_time_budget = std::env::var("SCIM_BULK_TIME_BUDGET_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .unwrap_or(crate::bulk::DEFAULT_TIME_BUDGET);
    let credentials = Arc::new(
        Credentials::new(store.clone(), vault, mailer, reveal_ttl).with_retention_days(retention),
    );
    let service = Arc::new(Service::new(store.clone(), cursor_key).with_retention_days(retention));
    AppState {
        admin: Arc::new(Admin::new(store, credentials.clone(), service.clone())),
        credentials,
        service,
        admin_auth: Arc::new(admin_auth),
        reveal_guard: Arc::new(RevealGuard::from_env()),
        public_base_url: None,
        link_origin: None,
        expose_store_calls: false,
        bulk_time_budget,
    }
}

pub async fn serve_local(config: LocalConfig) -> Result<(), AppError> {
    let store = build_store(&config.data_dir, &config.store).await?;
    let mailer: Arc<dyn Mailer> = match config.mail {
        MailConfig::Outbox => Arc::new(Outbox::new(
            config.data_dir.join("outbox"),
            config.sender_email.clone(),
        )),
        MailConfig::Ses => Arc::new(Ses::new(config.sender_email.clone())),
    };
    let (admin_key, key_in_file) =
        load_or_create_admin_key(&config.data_dir, config.admin_key.as_deref())?;
    let mut state = build_state(
        store,
        &cursor_key(&config.data_dir)?,
        build_vault(config.tenant_secret_prefix.as_deref()),
        mailer,
        config.reveal_ttl,
        AdminAuth::key(&admin_key),
    );
    drop(admin_key);

    let demo = tenant_id(&config.demo_tenant)?;
    let startup = crate::audit::Origin::service(state.service.retention_days());
    let demo_record = state
        .admin
        .ensure_tenant(&demo, "Demo organisation", &config.demo_admin_email)
        .await?;
    let mut announce_token = None;
    match &config.demo_token {
        Some(t) => {
            state.credentials.preset(&demo, t, &startup).await?;
        }
        None if demo_record.credential.is_none() => {
            let t = secret::generate(TOKEN_PREFIX);
            state.credentials.preset(&demo, &t, &startup).await?;
            announce_token = Some(t);
        }
        None => {}
    }
    for pair in config
        .tenants
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (id, token) = pair
            .split_once('=')
            .ok_or_else(|| AppError::Config("SCIM_TENANTS takes id=token pairs".into()))?;
        let id = tenant_id(id)?;
        state
            .admin
            .ensure_tenant(&id, id.as_str(), &config.demo_admin_email)
            .await?;
        state.credentials.preset(&id, token, &startup).await?;
    }

    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let origin = config
        .public_base_url
        .clone()
        .map(|o| o.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| {
            // A wildcard bind is no address to put in a link.
            let host = if addr.ip().is_unspecified() {
                std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
            } else {
                addr
            };
            format!("http://{host}")
        });
    state.public_base_url = config.public_base_url.clone();
    state.link_origin = Some(origin.clone());
    state.expose_store_calls = config.expose_store_calls;
    println!("SCIM service listening on http://{addr}");
    println!("Tenant URL:   {origin}/scim/v2/{demo}");
    match announce_token {
        Some(t) => println!(
            "Secret Token: {t}\n(shown once; only its hash is stored. New credentials: scim-provisioning admin credentials create {demo})"
        ),
        None if config.demo_token.is_some() => {
            println!("Secret Token: the one given in SCIM_DEMO_TOKEN")
        }
        None => println!(
            "Secret Token: shown at first start; `scim-provisioning admin credentials create {demo}` emails new ones"
        ),
    }
    if key_in_file {
        println!(
            "Admin API:    {origin}/admin/v1 (key in {}; `scim-provisioning admin` reads it)",
            admin_key_path(&config.data_dir).display()
        );
    } else {
        println!("Admin API:    {origin}/admin/v1 (key: the one given in SCIM_ADMIN_KEY)");
    }
    // The embedded store has no TTL: sweep expired audit records hourly.
    let sweeper = state.service.store().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            match sweeper.sweep_audit(now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "expired audit records swept"),
                Err(e) => tracing::warn!(error = %e, "sweeping audit records failed"),
            }
        }
    });
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
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
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The state the Lambda handler serves, configured from the function's
/// environment (`STORE`, `TABLE_NAME`, `CURSOR_KEY_SECRET_ARN` or
/// `CURSOR_KEY`, `PUBLIC_BASE_URL`, `TENANT_SECRET_PREFIX`,
/// `SENDER_EMAIL`, `REVEAL_TTL_SECS`, `SCIM_DATA_DIR`; `build_state` reads
/// `AUDIT_RETENTION_DAYS` and `SCIM_BULK_TIME_BUDGET_SECS`). Admin requests are
/// authenticated by IAM.
pub async fn lambda_state() -> Result<AppState, AppError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let data_dir = PathBuf::from(env("SCIM_DATA_DIR").unwrap_or_else(|| "/tmp/scim".into()));
    let store_config = match env("STORE").as_deref() {
        None | Some("embedded") => StoreConfig::Embedded,
        Some("dynamodb") => StoreConfig::DynamoDb {
            table: env("TABLE_NAME").ok_or_else(|| {
                AppError::Config("TABLE_NAME is required with STORE=dynamodb".into())
            })?,
            create_from_template: None,
        },
        Some(other) => {
            return Err(AppError::Config(format!(
                "STORE={other}: use embedded or dynamodb"
            )));
        }
    };
    let store = build_store(&data_dir, &store_config).await?;
    // Every instance must sign cursors with the same key: the secret's,
    // else CURSOR_KEY; a random key keeps cursors valid within one instance.
    let key = match (env("CURSOR_KEY_SECRET_ARN"), env("CURSOR_KEY")) {
        (Some(arn), _) => crate::secrets::cursor_key(&arn)
            .await
            .map_err(AppError::Config)?,
        (None, Some(k)) => k.into_bytes(),
        (None, None) => rand::random::<[u8; 32]>().to_vec(),
    };
    let mailer: Arc<dyn Mailer> = match env("SENDER_EMAIL") {
        Some(from) => Arc::new(Ses::new(from)),
        None => Arc::new(Unconfigured(
            "set the stack's SenderEmail parameter to a verified SES identity",
        )),
    };
    let reveal_ttl = env("REVEAL_TTL_SECS")
        .and_then(|v| v.parse().ok())
        .map_or(DEFAULT_REVEAL_TTL, Duration::from_secs);
    let mut state = build_state(
        store,
        &key,
        build_vault(env("TENANT_SECRET_PREFIX").as_deref()),
        mailer,
        reveal_ttl,
        AdminAuth::Iam,
    );
    state.public_base_url = env("PUBLIC_BASE_URL");
    state.link_origin = env("PUBLIC_BASE_URL").map(|o| o.trim_end_matches('/').to_owned());
    Ok(state)
}

/// The Lambda handler: [`crate::lambda::lambda_service`] (the same router
/// as the local server, stage-agnostic) behind `lambda_http`.
pub async fn run_lambda() -> Result<(), AppError> {
    let state = lambda_state().await?;
    lambda_http::run(crate::lambda::lambda_service(state))
        .await
        .map_err(|e| AppError::Lambda(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{LogFormat, lambda_log_level, log_format};

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn log_format_follows_lambda_and_log_format() {
        assert_eq!(log_format(env(&[])), LogFormat::Human);
        assert_eq!(log_format(env(&[("LOG_FORMAT", "json")])), LogFormat::Json);
        assert_eq!(
            log_format(env(&[("AWS_LAMBDA_FUNCTION_NAME", "scim")])),
            LogFormat::Json
        );
        assert_eq!(
            log_format(env(&[
                ("AWS_LAMBDA_FUNCTION_NAME", "scim"),
                ("LOG_FORMAT", "human")
            ])),
            LogFormat::Human
        );
    }

    #[test]
    fn lambda_log_levels_become_filters() {
        assert_eq!(lambda_log_level("FATAL"), "error");
        assert_eq!(lambda_log_level("WARN"), "warn");
    }
}
