//! Starts the real binary on a free loopback port with its own data
//! directory and talks to it over HTTP, as an IdP would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SEARCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// The product's read-only user extension (label, licence, admin role).
pub const PRODUCT_URN: &str = "urn:scim-provisioning:schemas:extension:product:1.0:User";

pub const TENANT: &str = "acme";
pub const OTHER_TENANT: &str = "globex";

/// Which store the server under test runs on: `SCIM_TEST_STORE=dynamodb`
/// runs the whole suite again on DynamoDB (the AWS emulator that
/// `AWS_ENDPOINT_URL` points at; `scripts/test.sh` starts one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    DynamoDb,
}

pub fn backend() -> Backend {
    match std::env::var("SCIM_TEST_STORE").as_deref() {
        Ok("dynamodb") => Backend::DynamoDb,
        Ok("embedded") | Err(_) => Backend::Embedded,
        Ok(other) => panic!("SCIM_TEST_STORE={other}: use embedded or dynamodb"),
    }
}

pub struct TestServer {
    backend: Backend,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// DynamoDB table of this server (one per test, so tests run in parallel).
    table: String,
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    pub token: String,
    pub other_token: String,
    data_dir: PathBuf,
    /// Where the server's stderr (its logs) goes, if captured.
    stderr_file: Option<PathBuf>,
    _tmp: tempfile::TempDir,
    pub client: reqwest::Client,
}

/// An answer: status, headers and the JSON body (Null when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Asserts an admin API error: this status, JSON, and this `error` code.
    #[track_caller]
    pub fn expect_admin_error(self, status: u16, code: &str) -> Resp {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(self.body["error"], json!(code), "error code: {}", self.body);
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "detail missing: {}",
            self.body
        );
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json")
        );
        self
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }
    /// Asserts a SCIM Error with this status and scimType.
    #[track_caller]
    pub fn expect_error(self, status: u16, scim_type: Option<&str>) -> Resp {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(
            self.body["schemas"],
            json!([ERROR_URN]),
            "not a SCIM error: {}",
            self.body
        );
        assert_eq!(
            self.body["status"],
            json!(status.to_string()),
            "status must be a string: {}",
            self.body
        );
        assert_eq!(
            self.body["scimType"].as_str(),
            scim_type,
            "scimType: {}",
            self.body
        );
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "detail missing: {}",
            self.body
        );
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/scim+json")
        );
        self
    }
    /// Backend calls the request cost (the server runs with
    /// `SCIM_EXPOSE_STORE_CALLS`); `None` on the embedded store.
    pub fn store_calls(&self) -> Option<u64> {
        self.header("x-store-calls").and_then(|v| v.parse().ok())
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("id").to_owned()
    }
    pub fn etag(&self) -> String {
        self.header("etag").expect("etag header")
    }
    /// `Resources` of a ListResponse.
    pub fn resources(&self) -> Vec<Value> {
        self.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
    pub fn total(&self) -> u64 {
        self.body["totalResults"].as_u64().expect("totalResults")
    }
}

fn random_token() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

impl TestServer {
    /// A server on the backend the run selects (`SCIM_TEST_STORE`).
    pub async fn start() -> TestServer {
        TestServer::start_on(backend()).await
    }

    /// A server on a given backend; DynamoDB needs the emulator that
    /// `AWS_ENDPOINT_URL` points at (scripts/test.sh starts it).
    pub async fn start_on(backend: Backend) -> TestServer {
        TestServer::start_with(backend, &[]).await
    }

    /// With extra environment for the server process.
    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> TestServer {
        TestServer::build(backend, env, None, false)
    }

    /// A second server process on the same DynamoDB table and tokens as
    /// `other` (another warm instance of one deployment).
    pub async fn start_sharing(other: &TestServer, env: &[(&str, &str)]) -> TestServer {
        TestServer::build(other.backend, env, Some(other), false)
    }

    /// With the server's stderr (its logs) written to a file, see
    /// [`TestServer::logs`].
    pub async fn start_capturing_logs(backend: Backend, env: &[(&str, &str)]) -> TestServer {
        TestServer::build(backend, env, None, true)
    }

    fn build(
        backend: Backend,
        env: &[(&str, &str)],
        sharing: Option<&TestServer>,
        capture: bool,
    ) -> TestServer {
        if backend == Backend::DynamoDb {
            assert!(
                std::env::var_os("AWS_ENDPOINT_URL").is_some(),
                "DynamoDB tests need AWS_ENDPOINT_URL; run scripts/test.sh, which starts the AWS emulator"
            );
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let stderr_file = capture.then(|| tmp.path().join("stderr.log"));
        let mut s = TestServer {
            stderr_file,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            backend,
            child: None,
            table: format!("scim-test-{}", uuid::Uuid::new_v4().simple()),
            origin: String::new(),
            token: random_token(),
            other_token: random_token(),
            data_dir,
            _tmp: tmp,
            client: reqwest::Client::builder()
                // The single-threaded emulator queues every test's requests.
                .timeout(Duration::from_secs(180))
                .build()
                .expect("client"),
        };
        if let Some(o) = sharing {
            s.table = o.table.clone();
            s.token = o.token.clone();
            s.other_token = o.other_token.clone();
        }
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scim-provisioning"));
        cmd.args(["serve", "--port", "0", "--demo-tenant", TENANT])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("SCIM_DEMO_TOKEN", &self.token)
            .env(
                "SCIM_TENANTS",
                format!("{OTHER_TENANT}={}", self.other_token),
            )
            .env("RUST_LOG", "warn")
            .env("SCIM_EXPOSE_STORE_CALLS", "true")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .stdout(Stdio::piped())
            .stderr(match &self.stderr_file {
                Some(p) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .expect("log file"),
                ),
                None => Stdio::inherit(),
            });
        if self.backend == Backend::DynamoDb {
            let template = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
            cmd.args([
                "--store",
                "dynamodb",
                "--table",
                &self.table,
                "--create-table-from",
                template,
            ])
            // The emulator serves one request at a time for all tests at
            // once: allow for its queue instead of answering 503.
            .env("DYNAMODB_RETRY_BUDGET_MS", "60000")
            .env("DYNAMODB_ATTEMPT_TIMEOUT_MS", "30000");
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = cmd.spawn().expect("start the server binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .expect("read stdout");
            if let Some(rest) = line.strip_prefix("SCIM service listening on ") {
                break rest.trim().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.origin = addr;
        self.child = Some(child);
    }

    /// SIGKILL, then start again on the same data.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill");
            let _ = c.wait();
        }
        self.spawn();
    }

    /// Everything the server logged so far (started with
    /// [`TestServer::start_capturing_logs`]).
    pub fn logs(&self) -> String {
        let p = self.stderr_file.as_ref().expect("started capturing logs");
        std::fs::read_to_string(p).unwrap_or_default()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The admin key the server generated into its data directory.
    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.key"))
            .expect("admin.key")
            .trim()
            .to_owned()
    }

    /// An admin API request with the server's admin key.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let key = self.admin_key();
        self.admin_with(method, path, Some(&key), body).await
    }

    /// An admin API request with any (or no) bearer credential.
    pub async fn admin_with(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self
            .client
            .request(method, format!("{}/admin/v1{path}", self.origin));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        Resp::read(resp).await
    }

    /// Creates a tenant through the admin API.
    /// The main tenant's audit records for an audit query string.
    pub async fn audit_trail(&self, query: &str) -> Vec<Value> {
        let r = self
            .admin(
                Method::GET,
                &format!("/tenants/{TENANT}/audit?{query}"),
                None,
            )
            .await
            .expect(200);
        r.body["records"].as_array().cloned().unwrap_or_default()
    }

    pub async fn create_tenant(&self, id: &str, admin_email: &str) -> Value {
        self.admin(
            Method::POST,
            "/tenants",
            Some(json!({"id": id, "name": format!("Tenant {id}"), "adminEmail": admin_email})),
        )
        .await
        .expect(201)
        .body
    }

    /// `scim-provisioning admin …` against this server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_scim-provisioning"))
            .arg("admin")
            .args(["--endpoint", &self.origin])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env_remove("SCIM_ADMIN_KEY")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .output()
            .expect("run the CLI")
    }

    /// The `.eml` files in the local outbox, oldest first.
    pub fn outbox(&self) -> Vec<String> {
        let dir = self.data_dir.join("outbox");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).expect("read eml"))
            .collect()
    }

    /// A page request (`/credentials/…`): status and HTML.
    pub async fn page(&self, method: Method, url: &str) -> (u16, String) {
        let resp = self
            .client
            .request(method, url)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    /// The DynamoDB table of a DynamoDB-backed server.
    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn tenant_url(&self) -> String {
        format!("{}/scim/v2/{TENANT}", self.origin)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.tenant_url())
    }

    /// A request as the main tenant.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.call_with(method, &self.url(path), &self.token, body, &[])
            .await
    }

    pub async fn call_with(
        &self,
        method: Method,
        url: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.client.request(method, url).bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        Resp::read(resp).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a user with a work email; returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        self.post("/Users", user(user_name)).await.expect(201).id()
    }

    pub async fn create_group(&self, name: &str, members: &[&str]) -> String {
        self.post("/Groups", group(name, members))
            .await
            .expect(201)
            .id()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn user(user_name: &str) -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": user_name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true,
    })
}

pub fn group(name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    json!({"schemas": [GROUP_URN], "displayName": name, "members": members})
}

pub fn patch_op(ops: Value) -> Value {
    json!({"schemas": [PATCH_URN], "Operations": ops})
}

/// The "Get Secret Token" link in an email (.eml text or HTML body):
/// `{origin}/credentials/{ref}`.
pub fn link_in(mail: &str) -> String {
    // Undo quoted-printable soft line breaks (long lines are wrapped).
    let mail = mail.replace("=\r\n", "").replace("=\n", "");
    let start = mail.find("/credentials/").expect("a credentials link");
    let begin = mail[..start].rfind("http").expect("link origin");
    let end = mail[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
        .map_or(mail.len(), |e| start + e);
    mail[begin..end].to_owned()
}

/// The token shown on a revealed page.
pub fn token_in(page: &str) -> Option<String> {
    let start = page.find("<code id=\"token\">")? + "<code id=\"token\">".len();
    let end = page[start..].find('<')? + start;
    Some(page[start..end].to_owned())
}

/// `filter=` value, URL-encoded.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Member ids of a group representation, sorted.
pub fn member_ids(doc: &Value) -> Vec<String> {
    let mut ids: Vec<String> = doc["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    m["value"]
                        .as_str()
                        .map_or_else(|| format!("<member without value: {m}>"), str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

pub fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}
