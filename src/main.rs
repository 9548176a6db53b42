//! Entry point: a local HTTP server on the embedded store, or the Lambda
//! handler when started by the Lambda runtime (`AWS_LAMBDA_RUNTIME_API`):
//! the SCIM API, or the change-event publisher with `SCIM_FUNCTION=publisher`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scim_provisioning::app::{self, LocalConfig};

#[derive(Parser)]
#[command(
    name = "scim-provisioning",
    version,
    about = "SCIM 2.0 provisioning endpoint"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the SCIM API over HTTP on the embedded store (the default).
    Serve(ServeArgs),
    /// Manage tenants and credentials through the admin API (a running
    /// local server by default, or a deployment with --endpoint).
    Admin(scim_provisioning::cli::AdminArgs),
}

#[derive(Parser, Clone)]
struct ServeArgs {
    /// Address to bind; loopback unless you mean otherwise.
    #[arg(long, env = "SCIM_BIND", default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Port; 0 picks a free one (printed on start).
    #[arg(long, env = "SCIM_PORT", default_value_t = 8080)]
    port: u16,
    /// Where the embedded store keeps its data.
    #[arg(long, env = "SCIM_DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
    /// The demo tenant created on first start.
    #[arg(long, env = "SCIM_DEMO_TENANT", default_value = "demo")]
    demo_tenant: String,
    /// Token for the demo tenant, instead of a generated one (for scripts).
    #[arg(long, env = "SCIM_DEMO_TOKEN", hide_env_values = true)]
    demo_token: Option<String>,
    /// Extra tenants as `id=token,id2=token2` (for tests and scripts).
    #[arg(long, env = "SCIM_TENANTS", hide_env_values = true)]
    tenants: Option<String>,
    /// Public URL prefix for `meta.location`, e.g. https://scim.example.com.
    #[arg(long, env = "PUBLIC_BASE_URL")]
    public_base_url: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    /// Admin API key to accept, instead of the one generated into
    /// <data-dir>/admin.key at first start (for scripts).
    #[arg(long, env = "SCIM_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// How credential emails are sent: `outbox` writes .eml files to
    /// <data-dir>/outbox/; `ses` sends through SES (AWS_ENDPOINT_URL for
    /// the emulator).
    #[arg(long, env = "SCIM_MAILER", value_enum, default_value_t = MailerKind::Outbox)]
    mailer: MailerKind,
    /// Sender of credential emails (a verified SES identity with `ses`).
    #[arg(
        long,
        env = "SENDER_EMAIL",
        default_value = "SCIM provisioning <scim@localhost>"
    )]
    sender_email: String,
    /// Admin email of the demo tenant (and of SCIM_TENANTS tenants).
    #[arg(
        long,
        env = "SCIM_DEMO_ADMIN_EMAIL",
        default_value = "admin@example.com"
    )]
    demo_admin_email: String,
    /// Lifetime of a "Get Secret Token" link, in seconds.
    #[arg(long, env = "REVEAL_TTL_SECS", default_value_t = 86_400)]
    reveal_ttl_secs: u64,
    /// Add an `x-store-calls` header with the backend calls each answer
    /// cost (tests; meaningful when requests do not overlap).
    #[arg(long, env = "SCIM_EXPOSE_STORE_CALLS", hide = true)]
    expose_store_calls: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum MailerKind {
    Outbox,
    Ses,
}

/// Where the data lives.
#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// Storage backend.
    #[arg(long, env = "STORE", value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// DynamoDB table (with `--store dynamodb`).
    #[arg(long, env = "TABLE_NAME", default_value = "scim")]
    table: String,
    /// Create the DynamoDB table from this SAM template if it is missing
    /// (for the AWS emulator; `AWS_ENDPOINT_URL` points the SDK at it).
    #[arg(long, env = "SCIM_CREATE_TABLE_FROM")]
    create_table_from: Option<PathBuf>,
    /// Keep tenants' token hashes in Secrets Manager, one secret per tenant
    /// named PREFIX{tenant} (as on AWS), instead of in the data store.
    #[arg(long, env = "TENANT_SECRET_PREFIX")]
    tenant_secret_prefix: Option<String>,
}

impl StoreArgs {
    fn secret_prefix(&self) -> Option<&str> {
        self.tenant_secret_prefix
            .as_deref()
            .filter(|p| !p.is_empty())
    }

    fn config(&self) -> app::StoreConfig {
        match self.store {
            StoreKind::Embedded => app::StoreConfig::Embedded,
            StoreKind::Dynamodb => app::StoreConfig::DynamoDb {
                table: self.table.clone(),
                create_from_template: self.create_table_from.clone(),
            },
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Embedded,
    Dynamodb,
}

fn main() -> ExitCode {
    app::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
            // The same bootstrap is also the change-event publisher
            // (SCIM_FUNCTION=publisher): DynamoDB stream in, EventBridge out.
            if scim_provisioning::publisher::selected() {
                return scim_provisioning::publisher::run()
                    .await
                    .map_err(|e| app::AppError::Lambda(e.to_string()));
            }
            return app::run_lambda().await;
        }
        let cli = Cli::parse();
        match cli.command {
            Some(Command::Admin(args)) => scim_provisioning::cli::run(args)
                .await
                .map_err(|e| app::AppError::Config(e.to_string())),
            Some(Command::Serve(args)) => serve(args).await,
            None => serve(ServeArgs::parse_from(std::env::args().take(1))).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), app::AppError> {
    let config = LocalConfig {
        tenant_secret_prefix: args.store.secret_prefix().map(str::to_owned),
        addr: SocketAddr::new(args.bind, args.port),
        data_dir: args.data_dir,
        demo_tenant: args.demo_tenant,
        demo_token: args.demo_token,
        tenants: args.tenants,
        public_base_url: args.public_base_url,
        store: args.store.config(),
        expose_store_calls: args.expose_store_calls,
        admin_key: args.admin_key,
        mail: match args.mailer {
            MailerKind::Outbox => app::MailConfig::Outbox,
            MailerKind::Ses => app::MailConfig::Ses,
        },
        sender_email: args.sender_email,
        demo_admin_email: args.demo_admin_email,
        reveal_ttl: std::time::Duration::from_secs(args.reveal_ttl_secs),
    };
    app::serve_local(config).await
}
