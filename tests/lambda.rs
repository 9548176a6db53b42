//! API Gateway events through the Lambda handler's own path, without the
//! Lambda runtime: each recorded-shape event in `tests/events/` is
//! deserialized into `lambda_http`'s `LambdaRequest`, handed with a Lambda
//! `Context` to `lambda_http::Adapter` around `lambda::lambda_service` (what
//! `lambda_http::run` does for every invocation), and the answer is
//! serialized into the JSON the runtime would post back to API Gateway.
//! Also: the per-request log event and EMF line, on both API types.
//!
//! Run: `cargo test --test lambda`.

// Test code may unwrap: a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_http::{Adapter, Context, LambdaEvent};
use scim_provisioning::auth::AdminAuth;
use scim_provisioning::credentials::vault::InlineVault;
use scim_provisioning::http::observe::{Observe, RequestRecord, emf_line};
use scim_provisioning::http::{AppState, router, router_with};
use scim_provisioning::lambda::{LambdaService, lambda_service, lambda_service_from};
use scim_provisioning::scim::model::TenantId;
use scim_provisioning::store::Store;
use scim_provisioning::store::embedded::EmbeddedStore;
use serde_json::{Value, json};

const TOKEN: &str = "lambda-test-token-acme-5f2b8c1e";
/// The user id written in the fixtures; tests put the real one in its place.
const FIXTURE_USER_ID: &str = "2819c223-7f76-453a-919d-413861904646";
const V1_HOST: &str = "70ixmpl4fl.execute-api.us-east-2.amazonaws.com";
const V2_HOST: &str = "r3pmxmplak.execute-api.us-east-2.amazonaws.com";

/// An embedded store in a temp dir with tenant `acme` (token [`TOKEN`]),
/// wired like `app::serve_local` does.
struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("scim.redb")).unwrap());
    with_acme(store, dir).await
}

/// `store` wired like `app::serve_local` does, with tenant `acme` (token
/// [`TOKEN`]); mail goes to an outbox in `dir`.
async fn with_acme(store: Arc<dyn Store>, dir: tempfile::TempDir) -> Fixture {
    let mailer = Arc::new(scim_provisioning::mail::Outbox::new(
        dir.path().join("outbox"),
        "scim@localhost".into(),
    ));
    let state = scim_provisioning::app::build_state(
        store,
        &[7u8; 32],
        Arc::new(InlineVault),
        mailer,
        std::time::Duration::from_secs(3600),
        AdminAuth::Iam,
    );
    let acme = TenantId::parse("acme").unwrap();
    state
        .admin
        .ensure_tenant(&acme, "Acme", "it@acme.example")
        .await
        .unwrap();
    let startup = scim_provisioning::audit::Origin::service(180);
    state
        .credentials
        .preset(&acme, TOKEN, &startup)
        .await
        .unwrap();
    Fixture { _dir: dir, state }
}

// Shared with tests/api, which uses more of it.
#[path = "support/seed.rs"]
#[allow(dead_code)]
mod seed;

/// Tenant `acme` (token [`TOKEN`]) on a fresh DynamoDB table of the
/// emulator `AWS_ENDPOINT_URL` points at, created from template.yaml.
async fn dynamodb_fixture() -> (Fixture, String) {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "needs AWS_ENDPOINT_URL; run scripts/test.sh, which starts the AWS emulator"
    );
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let table = format!("lambda-{}", uuid::Uuid::new_v4().simple());
    // The emulator serves one request at a time for every test: allow for
    // its queue as tests/api/harness.rs does.
    let timing = scim_provisioning::store::dynamodb::Timing {
        budget: std::time::Duration::from_secs(60),
        connect_timeout: std::time::Duration::from_secs(10),
        attempt_timeout: std::time::Duration::from_secs(30),
    };
    let ddb =
        scim_provisioning::store::dynamodb::DynamoStore::with_timing(&conf, table.clone(), timing);
    scim_provisioning::store::dynamodb::create_table_from_template(
        ddb.client(),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml"),
        &table,
    )
    .await
    .unwrap();
    (
        with_acme(Arc::new(ddb), tempfile::tempdir().unwrap()).await,
        table,
    )
}

/// An HTTP API (v2) GET of `path` (under the Tenant URL) with `query`
/// pairs, on stage `prod`.
fn v2_get(path: &str, query: &[(&str, &str)]) -> Value {
    let mut ev = event("http_v2_prod_stage_list_users_filter.json");
    let full = format!("/prod/scim/v2/acme{path}");
    ev["rawPath"] = json!(full);
    ev["requestContext"]["http"]["path"] = json!(full);
    ev["pathParameters"]["proxy"] = json!(format!("acme{path}"));
    ev["rawQueryString"] = json!(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish()
    );
    ev["queryStringParameters"] = json!(
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect::<serde_json::Map<String, Value>>()
    );
    ev
}

/// An HTTP API (v2) request with a JSON `body` to `path` (under the
/// Tenant URL), on stage `prod`.
fn v2_send(method: &str, path: &str, body: &Value) -> Value {
    let mut ev = v2_get(path, &[]);
    ev["requestContext"]["http"]["method"] = json!(method);
    ev["headers"]["content-type"] = json!("application/scim+json");
    ev["body"] = json!(body.to_string());
    ev
}

fn event(name: &str) -> Value {
    let path = format!("{}/tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `event` with every occurrence of `from` in its JSON text replaced.
fn substitute(event: Value, from: &str, to: &str) -> Value {
    serde_json::from_str(&event.to_string().replace(from, to)).unwrap()
}

/// One invocation as the runtime makes it: event JSON → `LambdaRequest` →
/// `Adapter` (request conversion, Lambda context, router, response
/// conversion) → API Gateway response JSON.
async fn invoke(svc: &LambdaService, event: Value, lambda_request_id: &str) -> Value {
    let payload: LambdaRequest = serde_json::from_value(event).unwrap();
    let mut ctx = Context::default();
    ctx.request_id = lambda_request_id.to_owned();
    ctx.invoked_function_arn =
        "arn:aws:lambda:us-east-2:123456789012:function:ScimFunction".to_owned();
    let adapter = Adapter::from(svc.clone());
    let resp = adapter
        .oneshot(LambdaEvent::new(payload, ctx))
        .await
        .unwrap();
    serde_json::to_value(&resp).unwrap()
}

/// A header of an API Gateway response: REST (v1) answers carry them in
/// `multiValueHeaders`, HTTP API (v2) answers in `headers`.
fn header(resp: &Value, name: &str) -> Option<String> {
    if let Some(v) = resp["multiValueHeaders"].get(name) {
        return Some(v[0].as_str().unwrap().to_owned());
    }
    resp["headers"]
        .get(name)
        .map(|v| v.as_str().unwrap().to_owned())
}

fn body(resp: &Value) -> Value {
    let raw = resp["body"].as_str().expect("a body");
    if resp["isBase64Encoded"] == true {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    } else {
        serde_json::from_str(raw).unwrap()
    }
}

fn assert_scim_json(resp: &Value) {
    assert_eq!(
        header(resp, "content-type").as_deref(),
        Some("application/scim+json"),
        "{resp:#}"
    );
    // Text, so API Gateway passes it through as is.
    assert_eq!(resp["isBase64Encoded"], false, "{resp:#}");
}

/// Creates user `userName` through the REST event; returns (id, etag).
async fn create_user(svc: &LambdaService, user_name: &str) -> (String, String) {
    let mut ev = event("rest_v1_create_user.json");
    let mut user: Value = serde_json::from_str(ev["body"].as_str().unwrap()).unwrap();
    user["userName"] = json!(user_name);
    user["externalId"] = json!(format!("ext-{user_name}"));
    user["emails"][0]["value"] = json!(user_name);
    ev["body"] = json!(user.to_string());
    let resp = invoke(svc, ev, "create-user").await;
    assert_eq!(resp["statusCode"], 201, "{resp:#}");
    let b = body(&resp);
    (
        b["id"].as_str().unwrap().to_owned(),
        header(&resp, "etag").unwrap(),
    )
}

// ---------------------------------------------------------------------
// Routing, requests and answers (`event_*` tests also run in child
// processes with the stage setting flipped; see the end of the file).

#[tokio::test]
async fn event_rest_v1_create_user_on_a_stage() {
    let f = fixture().await;
    let svc = lambda_service(f.state.clone());
    let lambda_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef";
    let resp = invoke(&svc, event("rest_v1_create_user.json"), lambda_id).await;

    assert_eq!(resp["statusCode"], 201, "{resp:#}");
    assert_scim_json(&resp);
    // A REST answer puts every header in multiValueHeaders.
    assert_eq!(resp["headers"], json!({}), "{resp:#}");
    let user = body(&resp);
    assert_eq!(user["userName"], "a@b.c");
    assert_eq!(user["name"]["familyName"], "Jensen");
    let id = user["id"].as_str().unwrap();
    // On API Gateway's own domain the public URL includes the stage.
    let location = format!("https://{V1_HOST}/prod/scim/v2/acme/Users/{id}");
    assert_eq!(header(&resp, "location"), Some(location.clone()));
    assert_eq!(user["meta"]["location"], json!(location));
    let etag = header(&resp, "etag").unwrap();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(user["meta"]["version"], json!(etag));
    assert_eq!(header(&resp, "x-request-id").as_deref(), Some(lambda_id));
}

#[tokio::test]
async fn event_http_v2_default_stage_base64_body() {
    let f = fixture().await;
    let svc = lambda_service(f.state.clone());
    let ev = event("http_v2_create_user_base64.json");
    assert_eq!(ev["isBase64Encoded"], true);
    assert_eq!(ev["requestContext"]["stage"], "$default");
    let resp = invoke(&svc, ev, "6b1f5c3a-2d4e-4f60-8a71-9b82c3d4e5f6").await;

    assert_eq!(resp["statusCode"], 201, "{resp:#}");
    assert_scim_json(&resp);
    // An HTTP API answer has no multiValueHeaders and lists cookies apart.
    assert!(
        resp.get("multiValueHeaders")
            .is_none_or(|m| m.as_object().unwrap().is_empty())
    );
    let user = body(&resp);
    assert_eq!(user["userName"], "a@b.c");
    assert_eq!(user["emails"][0]["value"], "a@b.c");
    let id = user["id"].as_str().unwrap();
    assert_eq!(
        header(&resp, "location"),
        Some(format!("https://{V2_HOST}/scim/v2/acme/Users/{id}"))
    );
    assert!(header(&resp, "etag").is_some());
}

#[tokio::test]
async fn event_rest_v1_filter_in_multi_value_query_parameters() {
    let f = fixture().await;
    let svc = lambda_service(f.state.clone());
    let (id, _) = create_user(&svc, "a@b.c").await;
    create_user(&svc, "x@y.z").await;

    let ev = event("rest_v1_list_users_filter.json");
    // API Gateway hands REST functions decoded values.
    assert_eq!(
        ev["multiValueQueryStringParameters"]["filter"][0],
        "userName eq \"a@b.c\""
    );
    let resp = invoke(&svc, ev, "list-1").await;
    assert_eq!(resp["statusCode"], 200, "{resp:#}");
    assert_scim_json(&resp);
    let list = body(&resp);
    assert_eq!(list["totalResults"], 1, "{list:#}");
    assert_eq!(list["Resources"][0]["id"], json!(id));
    assert_eq!(list["Resources"][0]["userName"], "a@b.c");
}

#[tokio::test]
async fn event_http_v2_named_stage_with_encoded_filter() {
    let f = fixture().await;
    let svc = lambda_service(f.state.clone());
    let (id, _) = create_user(&svc, "a@b.c").await;
    create_user(&svc, "x@y.z").await;

    let ev = event("http_v2_prod_stage_list_users_filter.json");
    assert_eq!(ev["rawPath"], "/prod/scim/v2/acme/Users");
    assert_eq!(
        ev["rawQueryString"],
        "filter=userName%20eq%20%22a%40b.c%22&startIndex=1"
    );
    let resp = invoke(&svc, ev, "list-2").await;
    assert_eq!(resp["statusCode"], 200, "{resp:#}");
    assert_scim_json(&resp);
    let list = body(&resp);
    assert_eq!(list["totalResults"], 1, "{list:#}");
    assert_eq!(list["startIndex"], 1);
    assert_eq!(list["Resources"][0]["id"], json!(id));
}

#[tokio::test]
async fn event_http_v2_patch_with_if_match() {
    let f = fixture().await;
    let svc = lambda_service(f.state.clone());
    let (id, etag) = create_user(&svc, "a@b.c").await;
    let ev = substitute(
        event("http_v2_patch_user_if_match.json"),
        FIXTURE_USER_ID,
        &id,
    );

    // The ETag the user has: applied.
    let mut current = ev.clone();
    current["headers"]["if-match"] = json!(etag);
    let resp = invoke(&svc, current.clone(), "patch-1").await;
    assert_eq!(resp["statusCode"], 200, "{resp:#}");
    assert_scim_json(&resp);
    assert_eq!(body(&resp)["active"], false);
    let new_etag = header(&resp, "etag").unwrap();
    assert_ne!(new_etag, etag);

    // The same ETag again, now stale: 412, and the user is unchanged.
    let resp = invoke(&svc, current, "patch-2").await;
    assert_eq!(resp["statusCode"], 412, "{resp:#}");
    assert_scim_json(&resp);
    let err = body(&resp);
    assert_eq!(err["status"], "412");
    assert_eq!(
        err["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
}

#[tokio::test]
async fn event_http_v2_without_token_is_401_with_www_authenticate() {
    let f = fixture().await;
    let svc = lambda_service(f.state.clone());
    let ev = event("http_v2_get_users_no_token.json");
    assert!(ev["headers"].get("authorization").is_none());
    let resp = invoke(&svc, ev.clone(), "unauth-1").await;
    assert_eq!(resp["statusCode"], 401, "{resp:#}");
    assert_scim_json(&resp);
    assert_eq!(
        header(&resp, "www-authenticate").as_deref(),
        Some("Bearer realm=\"scim\"")
    );
    assert_eq!(body(&resp)["status"], "401");

    // A wrong token is answered the same way.
    let mut wrong = ev;
    wrong["headers"]["authorization"] = json!("Bearer not-the-token");
    let resp = invoke(&svc, wrong, "unauth-2").await;
    assert_eq!(resp["statusCode"], 401, "{resp:#}");
    assert!(header(&resp, "www-authenticate").is_some());
}

#[tokio::test]
async fn event_rest_v1_delete_answers_204_without_body() {
    let f = fixture().await;
    let svc = lambda_service(f.state.clone());
    let (id, _) = create_user(&svc, "a@b.c").await;
    let ev = substitute(event("rest_v1_delete_user.json"), FIXTURE_USER_ID, &id);
    let resp = invoke(&svc, ev.clone(), "delete-1").await;
    assert_eq!(resp["statusCode"], 204, "{resp:#}");
    assert!(
        resp.get("body").is_none_or(|b| b.is_null() || b == ""),
        "{resp:#}"
    );
    // Gone now: the SCIM 404.
    let resp = invoke(&svc, ev, "delete-2").await;
    assert_eq!(resp["statusCode"], 404, "{resp:#}");
    assert_scim_json(&resp);
}

#[tokio::test]
async fn event_http_v2_named_stage_discovery_and_unknown_paths() {
    let f = fixture().await;
    let svc = lambda_service(f.state.clone());
    let resp = invoke(
        &svc,
        event("http_v2_prod_stage_get_schemas.json"),
        "schemas",
    )
    .await;
    assert_eq!(resp["statusCode"], 200, "{resp:#}");
    assert_scim_json(&resp);
    assert_eq!(
        body(&resp)["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );

    // Outside /scim/v2/: a SCIM 404 rather than a bare one.
    let mut ev = event("http_v2_prod_stage_get_schemas.json");
    ev["rawPath"] = json!("/prod/health");
    ev["requestContext"]["http"]["path"] = json!("/prod/health");
    let resp = invoke(&svc, ev, "unknown").await;
    assert_eq!(resp["statusCode"], 404, "{resp:#}");
    assert_scim_json(&resp);
}

/// What `lambda_http` itself does with the stage, which `lambda_service`
/// then undoes: REST paths get it prepended unless
/// `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set; HTTP API `rawPath`s of a
/// named stage carry it either way; `$default` never appears.
#[test]
fn event_lambda_http_stage_semantics() {
    let ignore = std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_some();
    let path_of = |name: &str| {
        let req = lambda_http::request::from_str(&event(name).to_string()).unwrap();
        req.uri().path().to_owned()
    };
    assert_eq!(
        path_of("rest_v1_create_user.json"),
        if ignore {
            "/scim/v2/acme/Users"
        } else {
            "/prod/scim/v2/acme/Users"
        }
    );
    assert_eq!(
        path_of("http_v2_prod_stage_list_users_filter.json"),
        "/prod/scim/v2/acme/Users"
    );
    assert_eq!(
        path_of("http_v2_create_user_base64.json"),
        "/scim/v2/acme/Users"
    );
}

// ---------------------------------------------------------------------
// Observability.

/// Collects what the `tracing` JSON formatter writes for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
    /// The per-request events, parsed.
    fn request_events(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["target"] == "scim::request")
            .collect()
    }
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// Writes to the capture of the current thread's test, if any. Tests run
/// on their own threads (`#[tokio::test]` is single-threaded), so one
/// process-wide subscriber serves them all: per-test scoped subscribers
/// would race with `tracing`'s process-wide callsite interest cache.
struct ThreadCapture;

impl Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| match &mut *c.borrow_mut() {
            Some(cap) => cap.write(buf),
            None => Ok(buf.len()),
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

/// Captures the log events of the calling thread, in the format
/// `app::init_tracing` uses in Lambda, until the guard is dropped.
fn capture_logs() -> (Captured, CaptureGuard) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .with_writer(|| ThreadCapture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    let cap = Captured::default();
    CAPTURE.with(|c| *c.borrow_mut() = Some(cap.clone()));
    (cap, CaptureGuard)
}

type Lines = Arc<Mutex<Vec<String>>>;

fn emf_capture() -> (Observe, Lines) {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let observe = Observe::emf_to(Arc::new(move |l: &str| {
        sink.lock().unwrap().push(l.to_owned());
    }));
    (observe, lines)
}

#[tokio::test]
async fn event_one_json_log_event_per_request_without_secrets() {
    let f = fixture().await;
    let (logs, _guard) = capture_logs();
    let svc = lambda_service(f.state.clone());

    let (id, _) = create_user(&svc, "a@b.c").await;
    let list = invoke(
        &svc,
        event("http_v2_prod_stage_list_users_filter.json"),
        "0d9c1b2a-0000-4000-8000-00000000000a",
    )
    .await;
    let patch = substitute(
        event("http_v2_patch_user_if_match.json"),
        FIXTURE_USER_ID,
        &id,
    );
    let patched = invoke(&svc, patch, "0d9c1b2a-0000-4000-8000-00000000000b").await;
    let unauth = invoke(
        &svc,
        event("http_v2_get_users_no_token.json"),
        "0d9c1b2a-0000-4000-8000-00000000000c",
    )
    .await;
    assert_eq!(list["statusCode"], 200);
    assert_eq!(unauth["statusCode"], 401);

    let events = logs.request_events();
    assert_eq!(events.len(), 4, "{}", logs.text());
    let expect = [
        (
            "create-user",
            "77375676-xmpl-4b79-853a-f982474efe18",
            "Users.create",
            json!(201),
        ),
        (
            "0d9c1b2a-0000-4000-8000-00000000000a",
            "JKJbCmPLvHcEMbQ=",
            "Users.list",
            json!(200),
        ),
        (
            "0d9c1b2a-0000-4000-8000-00000000000b",
            "JKJcDnPLvHcEJwA=",
            "Users.patch",
            patched["statusCode"].clone(),
        ),
        (
            "0d9c1b2a-0000-4000-8000-00000000000c",
            "JKJdEoPLvHcEMgw=",
            "Users.list",
            json!(401),
        ),
    ];
    for (e, (rid, gw, op, status)) in events.iter().zip(expect) {
        assert_eq!(e["request_id"], rid, "{e}");
        assert_eq!(e["gateway_request_id"], gw, "{e}");
        assert_eq!(e["operation"], op, "{e}");
        assert_eq!(e["status"], status, "{e}");
        assert_eq!(
            e["method"],
            if op == "Users.list" {
                "GET"
            } else if op == "Users.patch" {
                "PATCH"
            } else {
                "POST"
            },
            "{e}"
        );
        assert_eq!(e["tenant"], "acme", "{e}");
        assert!(e["latency_ms"].as_f64().unwrap() >= 0.0, "{e}");
        assert_eq!(e["message"], "request", "{e}");
        assert_eq!(e["level"], "INFO", "{e}");
        assert_eq!(e["x-request-id"], Value::Null, "{e}");
    }
    let all = logs.text();
    for secret in [TOKEN, "a@b.c", "a%40b.c", "Barbara", "Jensen", "PatchOp"] {
        assert!(!all.contains(secret), "logs contain {secret:?}:\n{all}");
    }
}

#[tokio::test]
async fn event_one_emf_line_per_request() {
    let f = fixture().await;
    let (observe, lines) = emf_capture();
    let svc = lambda_service_from(router_with(f.state.clone(), observe));

    create_user(&svc, "a@b.c").await;
    invoke(
        &svc,
        event("http_v2_prod_stage_list_users_filter.json"),
        "m2",
    )
    .await;
    invoke(&svc, event("http_v2_get_users_no_token.json"), "m3").await;
    invoke(&svc, event("http_v2_prod_stage_get_schemas.json"), "m4").await;

    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let expect = [
        ("Users.create", "2xx", "create-user"),
        ("Users.list", "2xx", "m2"),
        ("Users.list", "4xx", "m3"),
        ("Schemas.list", "2xx", "m4"),
    ];
    for (line, (op, outcome, rid)) in lines.iter().zip(expect) {
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(line).unwrap();
        let d = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "ScimProvisioning", "{v}");
        assert_eq!(d["Dimensions"], json!([["Operation", "Outcome"]]), "{v}");
        assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        assert_eq!(v["Operation"], op, "{v}");
        assert_eq!(v["Outcome"], outcome, "{v}");
        assert_eq!(v["Requests"], 1, "{v}");
        assert!(v["Latency"].is_number(), "{v}");
        assert_eq!(v["RequestId"], rid, "{v}");
        assert!(!line.contains(TOKEN) && !line.contains("a@b.c"), "{line}");
    }
}

#[test]
fn emf_line_matches_the_documented_shape() {
    let line = emf_line(
        &RequestRecord {
            request_id: "r-1",
            gateway_request_id: None,
            tenant: Some("acme"),
            operation: "Groups.patch",
            method: "PATCH",
            status: 503,
            latency_ms: 40.25,
        },
        1_700_000_000_000,
    );
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        v,
        json!({
            "_aws": {
                "Timestamp": 1_700_000_000_000u64,
                "CloudWatchMetrics": [{
                    "Namespace": "ScimProvisioning",
                    "Dimensions": [["Operation", "Outcome"]],
                    "Metrics": [
                        {"Name": "Requests", "Unit": "Count"},
                        {"Name": "Latency", "Unit": "Milliseconds"}
                    ]
                }]
            },
            "Operation": "Groups.patch",
            "Outcome": "5xx",
            "Requests": 1,
            "Latency": 40.25,
            "StatusCode": 503,
            "RequestId": "r-1",
            "Tenant": "acme"
        })
    );
}

/// The local server's path (no Lambda context): a fresh id per request,
/// returned as `x-request-id` and logged under the same id; no EMF unless
/// asked for.
#[tokio::test]
async fn local_router_generates_request_ids() {
    let f = fixture().await;
    let (logs, _guard) = capture_logs();
    let app = router(f.state.clone());
    let get = || {
        axum::http::Request::builder()
            .uri("/scim/v2/acme/Users?filter=userName%20eq%20%22a%40b.c%22")
            .header("host", "localhost:8080")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let r1 = app.clone().oneshot(get()).await.unwrap();
    let r2 = app.clone().oneshot(get()).await.unwrap();
    assert_eq!(r1.status(), 200);
    let id =
        |r: &axum::response::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (id1, id2) = (id(&r1), id(&r2));
    assert!(uuid::Uuid::parse_str(&id1).is_ok(), "{id1}");
    assert_ne!(id1, id2);

    let events = logs.request_events();
    assert_eq!(events.len(), 2, "{}", logs.text());
    assert_eq!(events[0]["request_id"], json!(id1));
    assert_eq!(events[1]["request_id"], json!(id2));
    assert_eq!(events[0]["operation"], "Users.list");
    assert!(events[0].get("gateway_request_id").is_none());
    assert!(!logs.text().contains("a@b.c") && !logs.text().contains(TOKEN));

    // Errors get an id as well (the 404 fallback included).
    let resp = app
        .oneshot(
            axum::http::Request::builder()
                .uri("/nowhere")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(logs.request_events()[2]["operation"], "unknown");
}

// ---------------------------------------------------------------------
// The stage setting is process-wide and read by `lambda_http` on every
// request, so the `event_*` tests are run again in child processes, once
// with `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true` (as `template.yaml`
// sets it) and once without.

fn run_event_tests(ignore_stage: bool) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["event_", "--test-threads=2"]);
    if ignore_stage {
        cmd.env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true");
    } else {
        cmd.env_remove("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "event tests failed with ignore_stage={ignore_stage}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("test result: ok") && !stdout.contains(" 0 passed"),
        "{stdout}"
    );
}

#[test]
fn routing_with_ignore_stage_in_path_set() {
    run_event_tests(true);
}

#[test]
fn routing_with_ignore_stage_in_path_unset() {
    run_event_tests(false);
}

/// An admin API event: the REST fixture re-aimed at `/admin/v1{path}`,
/// with the IAM caller API Gateway's `AWS_IAM` authoriser would record.
fn admin_event(method: &str, path: &str, user_arn: Option<&str>, body: Option<Value>) -> Value {
    let mut e = event("rest_v1_create_user.json");
    let full = format!("/admin/v1{path}");
    e["resource"] = json!("/admin/{proxy+}");
    e["path"] = json!(full);
    e["httpMethod"] = json!(method);
    e["pathParameters"] = json!({"proxy": full.trim_start_matches("/admin/")});
    e["requestContext"]["resourcePath"] = json!("/admin/{proxy+}");
    e["requestContext"]["httpMethod"] = json!(method);
    e["requestContext"]["path"] = json!(format!("/prod{full}"));
    e["requestContext"]["identity"]["userArn"] = json!(user_arn);
    e["requestContext"]["identity"]["caller"] = json!(user_arn.map(|_| "AIDAXMPL"));
    for headers in ["headers", "multiValueHeaders"] {
        let h = e[headers].as_object_mut().unwrap();
        h.remove("Authorization");
        h.remove("Content-Type");
    }
    match body {
        Some(b) => {
            e["body"] = json!(b.to_string());
            e["headers"]["Content-Type"] = json!("application/json");
            e["multiValueHeaders"]["Content-Type"] = json!(["application/json"]);
        }
        None => e["body"] = Value::Null,
    }
    e
}

#[tokio::test]
async fn event_admin_request_without_an_iam_caller_is_refused() {
    let f = fixture().await;
    let svc = lambda_service(f.state.clone());
    for (method, path, payload) in [
        ("GET", "/tenants", None),
        (
            "POST",
            "/tenants",
            Some(json!({"id": "intruder", "name": "X", "adminEmail": "x@x.example"})),
        ),
        ("POST", "/tenants/acme/credentials", None),
    ] {
        let mut e = admin_event(method, path, None, payload);
        // Not even a bearer token of the tenant, or a local admin key, opens it.
        e["headers"]["Authorization"] = json!(format!("Bearer {TOKEN}"));
        e["multiValueHeaders"]["Authorization"] = json!([format!("Bearer {TOKEN}")]);
        let resp = invoke(&svc, e, "admin-no-caller").await;
        assert_eq!(resp["statusCode"], 401, "{method} {path}: {resp:#}");
        assert_eq!(body(&resp)["error"], "unauthorized");
    }
    // Nothing was created.
    let arn = "arn:aws:iam::123456789012:role/console";
    let resp = invoke(
        &svc,
        admin_event("GET", "/tenants/intruder", Some(arn), None),
        "x",
    )
    .await;
    assert_eq!(resp["statusCode"], 404, "{resp:#}");
}

#[tokio::test]
async fn event_admin_request_from_an_iam_principal_is_served() {
    let f = fixture().await;
    let svc = lambda_service(f.state.clone());
    let arn = "arn:aws:iam::123456789012:role/console";
    let created = invoke(
        &svc,
        admin_event(
            "POST",
            "/tenants",
            Some(arn),
            Some(json!({"id": "initech", "name": "Initech", "adminEmail": "it@initech.example"})),
        ),
        "admin-create",
    )
    .await;
    assert_eq!(created["statusCode"], 201, "{created:#}");
    let tenant = body(&created);
    // Without PUBLIC_BASE_URL the Tenant URL comes from API Gateway's own
    // domain and stage in the event, not from a Host header.
    assert_eq!(
        tenant["tenantUrl"],
        json!(format!("https://{V1_HOST}/prod/scim/v2/initech"))
    );
    let listed = invoke(
        &svc,
        admin_event("GET", "/tenants", Some(arn), None),
        "admin-list",
    )
    .await;
    assert_eq!(listed["statusCode"], 200, "{listed:#}");
    let ids: Vec<Value> = body(&listed)["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(ids, [json!("acme"), json!("initech")]);
}

// ---------------------------------------------------------------------
// A 100,000-member group behind API Gateway: no answer may exceed
// Lambda's 6 MB response limit (API Gateway would turn it into a 502).

/// Lambda's synchronous response limit is 6 MB (6,291,456 bytes) for the
/// whole JSON the function returns; stay clear of it.
const LAMBDA_RESPONSE_LIMIT: usize = 6_000_000;

#[tokio::test]
async fn huge_group_answers_through_lambda_stay_under_the_response_limit() {
    let (f, table) = dynamodb_fixture().await;
    let state = f.state.clone();
    let svc = lambda_service(state.clone());
    let ctx = scim_provisioning::service::Ctx {
        tenant: TenantId::parse("acme").unwrap(),
        base_url: format!("https://{V2_HOST}/prod/scim/v2/acme"),
        origin: scim_provisioning::audit::Origin::service(180),
    };
    let group = state
        .service
        .create(
            &ctx,
            scim_provisioning::scim::schema::Kind::Group,
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Everyone"}),
            &Default::default(),
        )
        .await
        .unwrap();
    let gid = group.body.unwrap()["id"].as_str().unwrap().to_owned();
    let (template, _) = create_user(&svc, "template@acme.example").await;
    let client = seed::client().await;
    seed::seed_members(&client, &table, "acme", &gid, 100_000).await;
    let page: Vec<String> = (0..1000).map(seed::seeded_id).collect();
    seed::seed_users(&client, &table, "acme", &template, Some(&gid), &page).await;

    let sized = |resp: &Value| {
        let len = serde_json::to_vec(resp).unwrap().len();
        assert!(len < LAMBDA_RESPONSE_LIMIT, "a {len}-byte Lambda answer");
        len
    };
    // The whole group, alone or in a list: refused, saying how to read it.
    for (path, query) in [
        (format!("/Groups/{gid}"), vec![]),
        ("/Groups".to_owned(), vec![]),
        (
            "/Groups".to_owned(),
            vec![("filter", "displayName eq \"Everyone\"")],
        ),
    ] {
        let resp = invoke(&svc, v2_get(&path, &query), "huge-whole").await;
        sized(&resp);
        assert_eq!(resp["statusCode"], 400, "{path}: {resp:#}");
        let b = body(&resp);
        assert_eq!(b["scimType"], "tooMany");
        let detail = b["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("groups.value eq \"{gid}\"")),
            "{detail}"
        );
    }
    // Without its members it is an ordinary answer.
    let resp = invoke(
        &svc,
        v2_get(
            &format!("/Groups/{gid}"),
            &[("excludedAttributes", "members")],
        ),
        "huge-slim",
    )
    .await;
    sized(&resp);
    assert_eq!(resp["statusCode"], 200, "{resp:#}");
    assert!(body(&resp).get("members").is_none());
    // Its members, the largest page there is.
    let filter = format!("groups.value eq \"{gid}\"");
    let resp = invoke(
        &svc,
        v2_get("/Users", &[("filter", &filter), ("count", "1000")]),
        "huge-members",
    )
    .await;
    let len = sized(&resp);
    assert_eq!(resp["statusCode"], 200, "{resp:#}");
    let list = body(&resp);
    assert_eq!(list["totalResults"], 100_000);
    assert_eq!(list["itemsPerPage"], 1000);
    assert_eq!(list["Resources"][999]["id"], seed::seeded_id(999));
    println!("a page of 1,000 members through Lambda: {len} bytes");
}

/// A PUT that takes a group from one member to 10,001, more than one
/// answer may carry: the write is done and its answer leaves `members`
/// out, judged by the new member count (by the old one, a PUT of 100,000
/// members would answer some 15 MB, which API Gateway turns into a 502).
/// One member fewer, and the whole group is one answer again.
#[tokio::test]
async fn a_put_over_the_member_cap_answers_without_members() {
    const CAP: usize = 10_000;
    let (f, table) = dynamodb_fixture().await;
    let svc = lambda_service(f.state.clone());
    let (template, _) = create_user(&svc, "template@acme.example").await;
    let group = |members: &[String]| {
        let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Everyone",
            "members": members,
        })
    };
    let resp = invoke(
        &svc,
        v2_send("POST", "/Groups", &group(std::slice::from_ref(&template))),
        "cap-create",
    )
    .await;
    assert_eq!(resp["statusCode"], 201, "{resp:#}");
    let gid = body(&resp)["id"].as_str().unwrap().to_owned();
    let users: Vec<String> = (0..=CAP).map(seed::seeded_id).collect();
    seed::seed_users(
        &seed::client().await,
        &table,
        "acme",
        &template,
        None,
        &users,
    )
    .await;

    let sized = |resp: &Value| {
        let len = serde_json::to_vec(resp).unwrap().len();
        assert!(len < LAMBDA_RESPONSE_LIMIT, "a {len}-byte Lambda answer");
    };
    let path = format!("/Groups/{gid}");
    let resp = invoke(&svc, v2_send("PUT", &path, &group(&users)), "cap-put").await;
    sized(&resp);
    assert_eq!(resp["statusCode"], 200, "{resp:#}");
    let b = body(&resp);
    assert_eq!(b["displayName"], "Everyone");
    assert!(b.get("members").is_none(), "members answered");

    let resp = invoke(&svc, v2_get(&path, &[]), "cap-get").await;
    assert_eq!(resp["statusCode"], 400, "{resp:#}");
    assert_eq!(body(&resp)["scimType"], "tooMany");
    let filter = format!("groups.value eq \"{gid}\"");
    let resp = invoke(
        &svc,
        v2_get(
            "/Users",
            &[
                ("filter", &filter),
                ("count", "1"),
                ("attributes", "userName"),
            ],
        ),
        "cap-members",
    )
    .await;
    assert_eq!(body(&resp)["totalResults"], CAP + 1, "{resp:#}");

    let leave = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": format!("members[value eq \"{}\"]", users[0])}],
    });
    let resp = invoke(&svc, v2_send("PATCH", &path, &leave), "cap-leave").await;
    assert_eq!(resp["statusCode"], 200, "{resp:#}");
    let resp = invoke(&svc, v2_get(&path, &[]), "cap-whole").await;
    sized(&resp);
    assert_eq!(resp["statusCode"], 200, "{resp:#}");
    let members = body(&resp)["members"].as_array().unwrap().len();
    assert_eq!(members, CAP);
}
