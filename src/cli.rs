//! `scim-provisioning admin …`: a client of the admin API. Against a local
//! server it authenticates with the admin key (`<data-dir>/admin.key`);
//! against a deployment (`--endpoint https://…`) it signs each request with
//! SigV4 for `execute-api`, from the standard AWS credential chain.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use thiserror::Error;

use crate::auth::admin_key_path;

#[derive(Debug, Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    /// The API answered an error (`{"error","detail"}`).
    #[error("{detail} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        detail: String,
    },
    #[error("signing the request: {0}")]
    Signing(String),
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin API origin: a local server (default) or a deployment's
    /// AdminEndpoint output (then requests are SigV4-signed).
    #[arg(
        long,
        env = "SCIM_ADMIN_ENDPOINT",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub endpoint: String,
    /// Data directory of the local server, whose admin.key is used.
    #[arg(long, env = "SCIM_DATA_DIR", default_value = ".data", global = true)]
    pub data_dir: PathBuf,
    /// Admin key (instead of <data-dir>/admin.key).
    #[arg(long, env = "SCIM_ADMIN_KEY", hide_env_values = true, global = true)]
    pub admin_key: Option<String>,
    /// AWS region for SigV4 (default: the AWS config's, else the one in the endpoint).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Tenants (organisations).
    #[command(subcommand)]
    Tenants(TenantCommand),
    /// SCIM credentials of a tenant.
    #[command(subcommand)]
    Credentials(CredentialCommand),
    /// A tenant's users (the console's view: label, licence, admin role).
    #[command(subcommand)]
    Users(UserCommand),
    /// Licences assigned or removed by hand.
    #[command(subcommand)]
    Licence(LicenceCommand),
    /// The admin role (admins cannot be deactivated or deleted through SCIM).
    #[command(subcommand)]
    Admins(AdminRoleCommand),
    /// A tenant's groups and their members.
    #[command(subcommand)]
    Groups(GroupCommand),
    /// The audit trail, newest first: what the IdP and admins changed.
    Audit {
        tenant: String,
        /// Only records about this user (or group) id.
        #[arg(long)]
        user: Option<String>,
        /// Only this operation (created, deactivated, licence.assigned, …).
        #[arg(long)]
        operation: Option<String>,
        /// Only refused SCIM writes.
        #[arg(long)]
        refused: bool,
        /// Oldest first.
        #[arg(long)]
        asc: bool,
        #[arg(long, default_value_t = 100)]
        page_size: usize,
    },
    /// Change events (CloudEvents JSON lines) after a position.
    Events {
        tenant: String,
        /// Resume after this position (printed on stderr after each page).
        #[arg(long)]
        after: Option<String>,
        /// Keep polling for new events.
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Lists users page by page, with optional filters.
    List {
        tenant: String,
        #[arg(long, value_parser = ["scim", "manual"])]
        provisioned: Option<String>,
        #[arg(long, value_parser = ["assigned", "waiting", "none"])]
        licence: Option<String>,
        /// Only administrators.
        #[arg(long)]
        admin: bool,
        #[arg(long, default_value_t = 100)]
        page_size: usize,
    },
    /// Adds a user in the console (not labelled SCIM, no licence).
    Create {
        tenant: String,
        user_name: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// Shows one user.
    Show { tenant: String, id: String },
}

#[derive(Debug, Subcommand)]
pub enum LicenceCommand {
    /// Assigns a licence (needs a free seat).
    Assign { tenant: String, user: String },
    /// Removes a licence; with auto-assignment on, the seat goes to the
    /// longest-waiting user.
    Remove { tenant: String, user: String },
}

#[derive(Debug, Subcommand)]
pub enum AdminRoleCommand {
    /// Grants the admin role to an active user.
    Grant { tenant: String, user: String },
    /// Revokes it (then SCIM may deactivate or delete the user).
    Revoke { tenant: String, user: String },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Lists groups with their member counts.
    List {
        tenant: String,
        #[arg(long, default_value_t = 100)]
        page_size: usize,
    },
    /// Lists a group's members page by page.
    Members {
        tenant: String,
        group: String,
        #[arg(long, default_value_t = 100)]
        page_size: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Lists every tenant, page by page.
    List {
        /// Tenants per request.
        #[arg(long, default_value_t = 100)]
        page_size: usize,
    },
    /// Creates a tenant.
    Create {
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        /// Seats (licences); 25 if not given.
        #[arg(long)]
        seats: Option<u64>,
        /// Do not assign licences to SCIM users automatically.
        #[arg(long)]
        no_auto_assign: bool,
    },
    /// Shows one tenant.
    Show { id: String },
    /// Changes a tenant's name or admin email.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        admin_email: Option<String>,
        #[arg(long)]
        seats: Option<u64>,
        /// Assign licences to SCIM users automatically.
        #[arg(long)]
        auto_assign: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// "Create New Credentials": invalidates every earlier token of the
    /// tenant and emails the Tenant URL and a one-time "Get Secret Token"
    /// link to its admin email. The token is never printed here.
    Create { tenant: String },
}

enum Auth {
    Key(String),
    SigV4 { region: Option<String> },
}

struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

fn is_local(endpoint: &str) -> bool {
    url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]")
}

/// The region in an execute-api host name.
fn region_of(endpoint: &str) -> Option<String> {
    let host = url::Url::parse(endpoint).ok()?.host_str()?.to_owned();
    let mut parts = host.split('.');
    let (_, api, region) = (parts.next()?, parts.next()?, parts.next()?);
    (api == "execute-api").then(|| region.to_owned())
}

impl Client {
    fn new(args: &AdminArgs) -> Result<Client, CliError> {
        let auth = match &args.admin_key {
            Some(k) => Auth::Key(k.trim().to_owned()),
            None if is_local(&args.endpoint) => {
                let path = admin_key_path(&args.data_dir);
                let key = std::fs::read_to_string(&path).map_err(|e| {
                    CliError::Usage(format!(
                        "cannot read the admin key {}: {e} (start the server first, or pass --data-dir / --admin-key)",
                        path.display()
                    ))
                })?;
                Auth::Key(key.trim().to_owned())
            }
            None => Auth::SigV4 {
                region: args.region.clone().or_else(|| region_of(&args.endpoint)),
            },
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(Client {
            http,
            base: args.endpoint.trim_end_matches('/').to_owned(),
            auth,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}/admin/v1{path}", self.base);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut req = axum::http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("accept", "application/json");
        if !bytes.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(bytes)
            .map_err(|e| CliError::Usage(format!("building the request: {e}")))?;
        match &self.auth {
            Auth::Key(k) => {
                let v = format!("Bearer {k}").parse().map_err(|_| {
                    CliError::Usage("the admin key is not a valid header value".into())
                })?;
                req.headers_mut().insert("authorization", v);
            }
            Auth::SigV4 { region } => sign(&mut req, region.clone()).await?,
        }
        let req = reqwest::Request::try_from(req).map_err(|e| CliError::Usage(e.to_string()))?;
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| CliError::Unreachable {
                endpoint: self.base.clone(),
                detail: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"detail": text}));
        if status >= 400 {
            return Err(CliError::Api {
                status,
                code: v["error"].as_str().unwrap_or("error").to_owned(),
                detail: v["detail"]
                    .as_str()
                    .or_else(|| v["message"].as_str())
                    .unwrap_or("no detail")
                    .to_owned(),
            });
        }
        Ok(v)
    }
}

/// SigV4 for API Gateway (`execute-api`), with credentials and region from
/// the standard AWS chain.
async fn sign(
    req: &mut axum::http::Request<Vec<u8>>,
    region: Option<String>,
) -> Result<(), CliError> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;

    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let region = region
        .or_else(|| conf.region().map(|r| r.to_string()))
        .ok_or_else(|| {
            CliError::Signing("no AWS region: pass --region or set AWS_REGION".into())
        })?;
    let provider = conf.credentials_provider().ok_or_else(|| {
        CliError::Signing("no AWS credentials found (AWS_PROFILE, env, SSO, instance role)".into())
    })?;
    let creds = provider
        .provide_credentials()
        .await
        .map_err(|e| CliError::Signing(format!("loading AWS credentials: {e}")))?;
    let identity = creds.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("execute-api")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| CliError::Signing(e.to_string()))?
        .into();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let uri = req.uri().to_string();
    let signable = SignableRequest::new(
        req.method().as_str(),
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(req.body()),
    )
    .map_err(|e| CliError::Signing(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| CliError::Signing(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A plain text table: a header row, then aligned columns.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(headers.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

const TENANT_COLUMNS: [&str; 7] = [
    "ID",
    "NAME",
    "ADMIN EMAIL",
    "SEATS",
    "AUTO",
    "CREDENTIALS",
    "TENANT URL",
];

fn tenant_row(t: &Value) -> Vec<String> {
    let creds = match &t["credentials"] {
        Value::Null => "none".to_owned(),
        c => {
            let state = if c["revealedAt"].is_string() {
                format!("revealed {}", text(&c["revealedAt"]))
            } else if c["revealExpiresAt"].is_string() {
                format!("link until {}", text(&c["revealExpiresAt"]))
            } else {
                "preset".to_owned()
            };
            format!("#{} {}", text(&c["generation"]), state)
        }
    };
    vec![
        text(&t["id"]),
        text(&t["name"]),
        text(&t["adminEmail"]),
        format!(
            "{}/{} (+{} waiting)",
            text(&t["seatsUsed"]),
            text(&t["seats"]),
            text(&t["seatsWaiting"])
        ),
        text(&t["autoAssignLicences"]),
        creds,
        text(&t["tenantUrl"]),
    ]
}

fn print_tenant(t: &Value, json_out: bool) {
    if json_out {
        println!("{t}");
    } else {
        println!("{}", table(&TENANT_COLUMNS, &[tenant_row(t)]));
    }
}

const USER_COLUMNS: [&str; 7] = [
    "ID",
    "USERNAME",
    "DISPLAY NAME",
    "ACTIVE",
    "LICENCE",
    "ADMIN",
    "PROVISIONED",
];

fn user_row(u: &Value) -> Vec<String> {
    let provisioned = match u["provisionedAt"].as_str() {
        Some(at) => format!("scim {at}"),
        None => "manual".into(),
    };
    vec![
        text(&u["id"]),
        text(&u["userName"]),
        text(&u["displayName"]),
        text(&u["active"]),
        text(&u["licence"]),
        text(&u["admin"]),
        provisioned,
    ]
}

const AUDIT_COLUMNS: [&str; 8] = [
    "TIME",
    "TYPE",
    "OPERATION",
    "RESOURCE",
    "NAME",
    "ACTOR",
    "OUTCOME",
    "CHANGES",
];

fn audit_row(r: &Value) -> Vec<String> {
    let actor = match r["actor"]["kind"].as_str() {
        Some("scim") => format!("scim token #{}", text(&r["actor"]["generation"])),
        Some("admin") => text(&r["actor"]["principal"]),
        Some(other) => other.to_owned(),
        None => "-".into(),
    };
    let outcome = match r["outcome"].as_str() {
        Some("refused") => format!(
            "refused {} {}",
            text(&r["status"]),
            r["scimType"].as_str().unwrap_or("")
        )
        .trim_end()
        .to_owned(),
        _ => "ok".into(),
    };
    let t = &r["transitions"];
    let mut changes: Vec<String> = Vec::new();
    for (k, label) in [
        ("active", "active"),
        ("licence", "licence"),
        ("admin", "admin"),
    ] {
        if let Some([a, b]) = t[k].as_array().map(|v| v.as_slice()) {
            changes.push(format!("{label} {}→{}", text(a), text(b)));
        }
    }
    for (k, sign) in [("membersAdded", "+"), ("membersRemoved", "-")] {
        if let Some(n) = t[k].as_array().map(Vec::len).filter(|n| *n > 0) {
            changes.push(format!("{sign}{n} members"));
        }
    }
    if let Some(c) = r["changed"].as_array().filter(|c| !c.is_empty()) {
        let names: Vec<String> = c.iter().map(text).collect();
        changes.push(names.join(","));
    }
    vec![
        text(&r["time"]),
        text(&r["resourceType"]),
        text(&r["operation"]),
        text(&r["resourceId"]),
        text(&r["name"]),
        actor,
        outcome,
        changes.join("; "),
    ]
}

fn print_user(u: &Value, json_out: bool) {
    if json_out {
        println!("{u}");
    } else {
        println!("{}", table(&USER_COLUMNS, &[user_row(u)]));
    }
}

/// Fetches `path` page by page (`nextCursor`), printing each page as it
/// arrives: JSON lines, or one table whose header comes once.
async fn stream(
    client: &Client,
    path: &str,
    field: &str,
    json_out: bool,
    columns: &[&str],
    row: fn(&Value) -> Vec<String>,
) -> Result<(), CliError> {
    let mut cursor: Option<String> = None;
    let mut first = true;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={}", segment(c)),
            None => path.to_owned(),
        };
        let page = client.call(reqwest::Method::GET, &url, None).await?;
        let items = page[field].as_array().cloned().unwrap_or_default();
        if json_out {
            for i in &items {
                println!("{i}");
            }
        } else {
            let rows: Vec<Vec<String>> = items.iter().map(row).collect();
            let rendered = table(columns, &rows);
            let body = if first {
                rendered.as_str()
            } else {
                rendered.split_once('\n').map_or("", |(_, b)| b)
            };
            if !body.is_empty() {
                println!("{body}");
            }
        }
        first = false;
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(()),
        }
    }
}

fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn run(args: AdminArgs) -> Result<(), CliError> {
    let client = Client::new(&args)?;
    let json_out = args.json;
    match args.command {
        AdminCommand::Tenants(TenantCommand::List { page_size }) => {
            let path = format!("/tenants?limit={}", page_size.clamp(1, 100));
            stream(
                &client,
                &path,
                "tenants",
                json_out,
                &TENANT_COLUMNS,
                tenant_row,
            )
            .await?;
        }
        AdminCommand::Tenants(TenantCommand::Create {
            id,
            name,
            admin_email,
            seats,
            no_auto_assign,
        }) => {
            let mut body = json!({"id": id, "name": name, "adminEmail": admin_email});
            if let Some(n) = seats {
                body["seats"] = json!(n);
            }
            if no_auto_assign {
                body["autoAssignLicences"] = json!(false);
            }
            let t = client
                .call(reqwest::Method::POST, "/tenants", Some(body))
                .await?;
            print_tenant(&t, json_out);
        }
        AdminCommand::Tenants(TenantCommand::Show { id }) => {
            let t = client
                .call(
                    reqwest::Method::GET,
                    &format!("/tenants/{}", segment(&id)),
                    None,
                )
                .await?;
            print_tenant(&t, json_out);
        }
        AdminCommand::Tenants(TenantCommand::Update {
            id,
            name,
            admin_email,
            seats,
            auto_assign,
        }) => {
            let mut body = serde_json::Map::new();
            if let Some(n) = seats {
                body.insert("seats".into(), json!(n));
            }
            if let Some(a) = auto_assign {
                body.insert("autoAssignLicences".into(), json!(a));
            }
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(e) = admin_email {
                body.insert("adminEmail".into(), json!(e));
            }
            let t = client
                .call(
                    reqwest::Method::PATCH,
                    &format!("/tenants/{}", segment(&id)),
                    Some(Value::Object(body)),
                )
                .await?;
            print_tenant(&t, json_out);
        }
        AdminCommand::Users(UserCommand::List {
            tenant,
            provisioned,
            licence,
            admin,
            page_size,
        }) => {
            let mut path = format!(
                "/tenants/{}/users?limit={}",
                segment(&tenant),
                page_size.clamp(1, 100)
            );
            if let Some(p) = provisioned {
                path.push_str(&format!("&provisioned={p}"));
            }
            if let Some(l) = licence {
                path.push_str(&format!("&licence={l}"));
            }
            if admin {
                path.push_str("&admin=true");
            }
            stream(&client, &path, "users", json_out, &USER_COLUMNS, user_row).await?;
        }
        AdminCommand::Users(UserCommand::Create {
            tenant,
            user_name,
            display_name,
            email,
        }) => {
            let mut body = json!({"userName": user_name});
            if let Some(d) = display_name {
                body["displayName"] = json!(d);
            }
            if let Some(e) = email {
                body["email"] = json!(e);
            }
            let u = client
                .call(
                    reqwest::Method::POST,
                    &format!("/tenants/{}/users", segment(&tenant)),
                    Some(body),
                )
                .await?;
            print_user(&u, json_out);
        }
        AdminCommand::Users(UserCommand::Show { tenant, id }) => {
            let u = client
                .call(
                    reqwest::Method::GET,
                    &format!("/tenants/{}/users/{}", segment(&tenant), segment(&id)),
                    None,
                )
                .await?;
            print_user(&u, json_out);
        }
        AdminCommand::Licence(cmd) => {
            let (method, tenant, user) = match cmd {
                LicenceCommand::Assign { tenant, user } => (reqwest::Method::PUT, tenant, user),
                LicenceCommand::Remove { tenant, user } => (reqwest::Method::DELETE, tenant, user),
            };
            let path = format!(
                "/tenants/{}/users/{}/licence",
                segment(&tenant),
                segment(&user)
            );
            print_user(&client.call(method, &path, None).await?, json_out);
        }
        AdminCommand::Admins(cmd) => {
            let (method, tenant, user) = match cmd {
                AdminRoleCommand::Grant { tenant, user } => (reqwest::Method::PUT, tenant, user),
                AdminRoleCommand::Revoke { tenant, user } => {
                    (reqwest::Method::DELETE, tenant, user)
                }
            };
            let path = format!(
                "/tenants/{}/users/{}/admin",
                segment(&tenant),
                segment(&user)
            );
            print_user(&client.call(method, &path, None).await?, json_out);
        }
        AdminCommand::Groups(GroupCommand::List { tenant, page_size }) => {
            let path = format!(
                "/tenants/{}/groups?limit={}",
                segment(&tenant),
                page_size.clamp(1, 100)
            );
            stream(
                &client,
                &path,
                "groups",
                json_out,
                &["ID", "DISPLAY NAME", "MEMBERS"],
                |g| {
                    vec![
                        text(&g["id"]),
                        text(&g["displayName"]),
                        text(&g["memberCount"]),
                    ]
                },
            )
            .await?;
        }
        AdminCommand::Groups(GroupCommand::Members {
            tenant,
            group,
            page_size,
        }) => {
            let path = format!(
                "/tenants/{}/groups/{}/members?limit={}",
                segment(&tenant),
                segment(&group),
                page_size.clamp(1, 100)
            );
            stream(&client, &path, "members", json_out, &["ID", "TYPE"], |m| {
                vec![text(&m["id"]), text(&m["type"])]
            })
            .await?;
        }
        AdminCommand::Audit {
            tenant,
            user,
            operation,
            refused,
            asc,
            page_size,
        } => {
            let mut path = format!(
                "/tenants/{}/audit?limit={}",
                segment(&tenant),
                page_size.clamp(1, 100)
            );
            if let Some(u) = user {
                path.push_str(&format!("&resource={}", segment(&u)));
            }
            if let Some(o) = operation {
                path.push_str(&format!("&operation={}", segment(&o)));
            }
            if refused {
                path.push_str("&outcome=refused");
            }
            if asc {
                path.push_str("&order=asc");
            }
            stream(
                &client,
                &path,
                "records",
                json_out,
                &AUDIT_COLUMNS,
                audit_row,
            )
            .await?;
        }
        AdminCommand::Events {
            tenant,
            after,
            follow,
        } => {
            let mut position = after;
            loop {
                let mut path = format!("/tenants/{}/events?limit=100", segment(&tenant));
                if let Some(p) = &position {
                    path.push_str(&format!("&after={}", segment(p)));
                }
                let page = client.call(reqwest::Method::GET, &path, None).await?;
                let events = page["events"].as_array().cloned().unwrap_or_default();
                for e in &events {
                    println!("{e}");
                }
                if let Some(p) = page["position"].as_str() {
                    position = Some(p.to_owned());
                    eprintln!("position: {p}");
                }
                if events.len() < 100 {
                    if !follow {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            }
        }
        AdminCommand::Credentials(CredentialCommand::Create { tenant }) => {
            let c = client
                .call(
                    reqwest::Method::POST,
                    &format!("/tenants/{}/credentials", segment(&tenant)),
                    None,
                )
                .await?;
            if json_out {
                println!("{c}");
            } else {
                println!(
                    "New credentials for {tenant}: every earlier token is now invalid.\nTenant URL:   {}\nEmailed to:   {} (the \"Get Secret Token\" link works once, until {})",
                    text(&c["tenantUrl"]),
                    text(&c["emailedTo"]),
                    text(&c["revealExpiresAt"])
                );
            }
        }
    }
    Ok(())
}
