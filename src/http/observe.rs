//! Observability: one structured log event and, where enabled, one
//! CloudWatch embedded-metric-format (EMF) line per request. Installed as
//! the outermost layer of the router, so the local server and the Lambda
//! handler report alike.
//!
//! What is recorded: request id, tenant id, SCIM operation name, HTTP
//! method and status, latency. Never the `Authorization` header, the query
//! string (filters carry user names and e-mail addresses) or a body.

use std::io::Write;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::request::RequestContext;
use serde_json::json;

use crate::scim::model::TenantId;

/// Response header carrying the id the request is logged under.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// CloudWatch namespace of the metrics.
pub const METRICS_NAMESPACE: &str = "ScimProvisioning";
/// `tracing` target of the per-request log event.
pub const LOG_TARGET: &str = "scim::request";

/// Where EMF lines go (stdout in Lambda; tests capture them).
pub type MetricsSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Configuration of the observability layer.
#[derive(Clone, Default)]
pub struct Observe {
    metrics: Option<MetricsSink>,
}

impl Observe {
    /// EMF lines on stdout in Lambda (`AWS_LAMBDA_FUNCTION_NAME` or
    /// `AWS_LAMBDA_RUNTIME_API` set) or with `METRICS=emf`; `METRICS=off`
    /// turns them off everywhere. Log events always.
    pub fn from_env() -> Observe {
        Observe::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`Observe::from_env`] over any variable lookup.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Observe {
        if emf_enabled(lookup) {
            Observe::emf_to_stdout()
        } else {
            Observe::logs_only()
        }
    }

    /// Log events only.
    pub fn logs_only() -> Observe {
        Observe { metrics: None }
    }

    /// Log events, and EMF lines on stdout.
    pub fn emf_to_stdout() -> Observe {
        Observe::emf_to(Arc::new(|line: &str| {
            // One write of the whole line, so lines from concurrent
            // requests never interleave.
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(format!("{line}\n").as_bytes());
            let _ = out.flush();
        }))
    }

    /// Log events, and EMF lines given to `sink`.
    pub fn emf_to(sink: MetricsSink) -> Observe {
        Observe {
            metrics: Some(sink),
        }
    }

    /// Whether EMF lines are produced.
    pub fn emits_metrics(&self) -> bool {
        self.metrics.is_some()
    }
}

/// The EMF switch: `METRICS=emf` on, `METRICS=off|none|false` off, unset:
/// on in Lambda only.
pub fn emf_enabled(lookup: impl Fn(&str) -> Option<String>) -> bool {
    match lookup("METRICS")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("emf") => true,
        Some("off" | "none" | "false" | "0") => false,
        _ => in_lambda(lookup),
    }
}

/// Whether this process runs in AWS Lambda.
pub fn in_lambda(lookup: impl Fn(&str) -> Option<String>) -> bool {
    ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_RUNTIME_API"]
        .iter()
        .any(|k| lookup(k).is_some_and(|v| !v.is_empty()))
}

/// The id a request is logged under, for handlers (audit records).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// What one request did, as logged and measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord<'a> {
    /// The Lambda request id, or a generated one.
    pub request_id: &'a str,
    /// API Gateway's own id of the request, when behind API Gateway.
    pub gateway_request_id: Option<&'a str>,
    pub tenant: Option<&'a str>,
    /// One of a fixed set of names (see [`operation`]).
    pub operation: &'static str,
    pub method: &'a str,
    pub status: u16,
    pub latency_ms: f64,
}

/// The middleware: times the request, names it, and reports it.
pub async fn observe(State(config): State<Observe>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let ids = request_ids(&req);
    // Handlers record it in the audit trail.
    let mut req = req;
    req.extensions_mut().insert(RequestId(ids.0.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    let latency_ms = round_ms(started.elapsed().as_secs_f64() * 1000.0);

    let (request_id, gateway_request_id) = ids;
    let record = RequestRecord {
        request_id: &request_id,
        gateway_request_id: gateway_request_id.as_deref(),
        tenant: tenant_of(&path),
        operation: operation(&method, &path),
        method: method.as_str(),
        status: resp.status().as_u16(),
        latency_ms,
    };
    log_request(&record);
    if let Some(sink) = &config.metrics {
        sink(&emf_line(&record, now_ms()));
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// The id to log the request under (the Lambda invocation's request id when
/// the Lambda runtime delivered the request, else a new UUID) and API
/// Gateway's request id when there is one.
pub fn request_ids(req: &Request) -> (String, Option<String>) {
    let lambda = req
        .extensions()
        .get::<lambda_http::Context>()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty());
    let gateway = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(c)) => c.request_id.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
        _ => None,
    };
    let id = lambda.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    (id, gateway)
}

fn log_request(r: &RequestRecord<'_>) {
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: LOG_TARGET,
                $level,
                request_id = r.request_id,
                gateway_request_id = r.gateway_request_id,
                tenant = r.tenant,
                operation = r.operation,
                method = r.method,
                status = r.status,
                outcome = outcome(r.status),
                latency_ms = r.latency_ms,
                "request"
            )
        };
    }
    if r.status >= 500 {
        emit!(tracing::Level::ERROR);
    } else {
        emit!(tracing::Level::INFO);
    }
}

/// The tenant id in a `/scim/v2/{tenant}/…` path, if it is a valid one.
pub fn tenant_of(path: &str) -> Option<&str> {
    let tenant = if let Some(rest) = path.strip_prefix("/scim/v2/") {
        rest.split('/').next()?
    } else if let Some(rest) = path.strip_prefix("/admin/v1/tenants/") {
        rest.split('/').next()?
    } else {
        // `/credentials/{tenant}.{secret}`: only the tenant part.
        path.strip_prefix("/credentials/")?.split('.').next()?
    };
    TenantId::parse(tenant).map(|_| tenant)
}

/// The SCIM operation a request asks for, mirroring the router's routes:
/// `Users.list|create|search|get|replace|patch|delete` (same for `Groups`),
/// `search` (root `/.search`), `ServiceProviderConfig.get`,
/// `Schemas.list|get`, `ResourceTypes.list|get`, `Bulk`, `Me`, else
/// `unknown` (unknown paths and methods). A fixed set, so it can be a
/// metric dimension.
pub fn operation(method: &Method, path: &str) -> &'static str {
    if let Some(rest) = path.strip_prefix("/admin/v1/") {
        return admin_operation(method, rest);
    }
    if path.starts_with("/credentials/") {
        return match *method {
            Method::GET | Method::HEAD => "credentials.show",
            Method::POST => "credentials.reveal",
            _ => "unknown",
        };
    }
    let Some(rest) = path
        .strip_prefix("/scim/v2/")
        .and_then(|r| r.split_once('/'))
        .map(|(_, rest)| rest)
    else {
        return "unknown";
    };
    let m = if *method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        [kind @ ("Users" | "Groups")] => match (*kind, m.as_str()) {
            ("Users", "GET") => "Users.list",
            ("Users", "POST") => "Users.create",
            ("Groups", "GET") => "Groups.list",
            ("Groups", "POST") => "Groups.create",
            _ => "unknown",
        },
        [kind @ ("Users" | "Groups"), ".search"] => match (*kind, m.as_str()) {
            ("Users", "POST") => "Users.search",
            ("Groups", "POST") => "Groups.search",
            _ => "unknown",
        },
        [kind @ ("Users" | "Groups"), id] if !id.is_empty() => match (*kind, m.as_str()) {
            ("Users", "GET") => "Users.get",
            ("Users", "PUT") => "Users.replace",
            ("Users", "PATCH") => "Users.patch",
            ("Users", "DELETE") => "Users.delete",
            ("Groups", "GET") => "Groups.get",
            ("Groups", "PUT") => "Groups.replace",
            ("Groups", "PATCH") => "Groups.patch",
            ("Groups", "DELETE") => "Groups.delete",
            _ => "unknown",
        },
        [".search"] if m == Method::POST => "search",
        ["ServiceProviderConfig"] if m == Method::GET => "ServiceProviderConfig.get",
        ["Schemas"] if m == Method::GET => "Schemas.list",
        ["Schemas", id] if m == Method::GET && !id.is_empty() => "Schemas.get",
        ["ResourceTypes"] if m == Method::GET => "ResourceTypes.list",
        ["ResourceTypes", id] if m == Method::GET && !id.is_empty() => "ResourceTypes.get",
        ["Bulk"] if m == Method::POST => "Bulk",
        ["Me"] => match *m {
            Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE => "Me",
            _ => "unknown",
        },
        _ => "unknown",
    }
}

/// Admin API operations: `admin.tenants.list|create|get|update`,
/// `admin.credentials.create`, else `admin.unknown`.
fn admin_operation(method: &Method, rest: &str) -> &'static str {
    let segments: Vec<&str> = rest.split('/').collect();
    match (segments.as_slice(), method.as_str()) {
        (["tenants"], "GET") => "admin.tenants.list",
        (["tenants"], "POST") => "admin.tenants.create",
        (["tenants", _], "GET") => "admin.tenants.get",
        (["tenants", _], "PATCH") => "admin.tenants.update",
        (["tenants", _, "credentials"], "POST") => "admin.credentials.create",
        _ => "admin.unknown",
    }
}

/// The metric dimension of a status: `2xx` for every answer below 400
/// (a `304 Not Modified` is a success), `4xx` for client errors, `5xx`
/// for server errors.
pub fn outcome(status: u16) -> &'static str {
    match status {
        500.. => "5xx",
        400..=499 => "4xx",
        _ => "2xx",
    }
}

/// One CloudWatch EMF line (JSON, no newline) for a request: namespace
/// [`METRICS_NAMESPACE`], dimensions `[[Operation, Outcome]]`, metrics
/// `Requests` (Count, 1) and `Latency` (Milliseconds); `RequestId` and
/// `Tenant` ride along as searchable properties, not dimensions.
pub fn emf_line(r: &RequestRecord<'_>, timestamp_ms: u64) -> String {
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [["Operation", "Outcome"]],
                "Metrics": [
                    {"Name": "Requests", "Unit": "Count"},
                    {"Name": "Latency", "Unit": "Milliseconds"}
                ]
            }]
        },
        "Operation": r.operation,
        "Outcome": outcome(r.status),
        "Requests": 1,
        "Latency": r.latency_ms,
        "StatusCode": r.status,
        "RequestId": r.request_id,
    });
    if let (Some(t), Some(obj)) = (r.tenant, doc.as_object_mut()) {
        obj.insert("Tenant".into(), t.into());
    }
    doc.to_string()
}

fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: u16) -> RequestRecord<'static> {
        RequestRecord {
            request_id: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            gateway_request_id: Some("JKJaXmPLvHcESHA="),
            tenant: Some("acme"),
            operation: "Users.create",
            method: "POST",
            status,
            latency_ms: 12.5,
        }
    }

    #[test]
    fn emf_line_is_valid_embedded_metric_format() {
        let line = emf_line(&record(201), 1_700_000_000_123);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let aws = &v["_aws"];
        assert_eq!(aws["Timestamp"], 1_700_000_000_123u64);
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let d = &directives[0];
        assert_eq!(d["Namespace"], "ScimProvisioning");
        assert_eq!(d["Dimensions"], json!([["Operation", "Outcome"]]));
        // Every dimension and metric is a top-level member of the right type.
        for dim in d["Dimensions"][0].as_array().unwrap() {
            assert!(v[dim.as_str().unwrap()].is_string(), "dimension {dim}");
        }
        let metrics = d["Metrics"].as_array().unwrap();
        assert_eq!(
            metrics,
            &vec![
                json!({"Name": "Requests", "Unit": "Count"}),
                json!({"Name": "Latency", "Unit": "Milliseconds"})
            ]
        );
        for m in metrics {
            assert!(v[m["Name"].as_str().unwrap()].is_number(), "metric {m}");
        }
        assert_eq!(v["Operation"], "Users.create");
        assert_eq!(v["Outcome"], "2xx");
        assert_eq!(v["Requests"], 1);
        assert_eq!(v["Latency"], 12.5);
        assert_eq!(v["RequestId"], "c6af9ac6-7b61-11e6-9a41-93e8deadbeef");
        assert_eq!(v["Tenant"], "acme");
        // At most 30 dimensions, and no dimension may be missing.
        assert!(d["Dimensions"][0].as_array().unwrap().len() <= 30);
    }

    #[test]
    fn emf_line_without_tenant_has_no_tenant_member() {
        let mut r = record(404);
        r.tenant = None;
        r.operation = "unknown";
        let v: serde_json::Value = serde_json::from_str(&emf_line(&r, 1)).unwrap();
        assert!(v.get("Tenant").is_none());
        assert_eq!(v["Outcome"], "4xx");
        assert_eq!(v["Operation"], "unknown");
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome(200), "2xx");
        assert_eq!(outcome(201), "2xx");
        assert_eq!(outcome(204), "2xx");
        assert_eq!(outcome(304), "2xx");
        assert_eq!(outcome(400), "4xx");
        assert_eq!(outcome(401), "4xx");
        assert_eq!(outcome(412), "4xx");
        assert_eq!(outcome(500), "5xx");
        assert_eq!(outcome(503), "5xx");
    }

    #[test]
    fn operation_names() {
        let cases = [
            ("GET", "/scim/v2/acme/Users", "Users.list"),
            ("HEAD", "/scim/v2/acme/Users", "Users.list"),
            ("POST", "/scim/v2/acme/Users", "Users.create"),
            ("POST", "/scim/v2/acme/Users/.search", "Users.search"),
            ("GET", "/scim/v2/acme/Users/.search", "unknown"),
            ("GET", "/scim/v2/acme/Users/42", "Users.get"),
            ("PUT", "/scim/v2/acme/Users/42", "Users.replace"),
            ("PATCH", "/scim/v2/acme/Users/42", "Users.patch"),
            ("DELETE", "/scim/v2/acme/Users/42", "Users.delete"),
            ("DELETE", "/scim/v2/acme/Users", "unknown"),
            ("GET", "/scim/v2/acme/Groups", "Groups.list"),
            ("POST", "/scim/v2/acme/Groups", "Groups.create"),
            ("POST", "/scim/v2/acme/Groups/.search", "Groups.search"),
            ("PATCH", "/scim/v2/acme/Groups/7", "Groups.patch"),
            ("DELETE", "/scim/v2/acme/Groups/7", "Groups.delete"),
            ("POST", "/scim/v2/acme/.search", "search"),
            (
                "GET",
                "/scim/v2/acme/ServiceProviderConfig",
                "ServiceProviderConfig.get",
            ),
            ("GET", "/scim/v2/acme/Schemas", "Schemas.list"),
            (
                "GET",
                "/scim/v2/acme/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
                "Schemas.get",
            ),
            ("GET", "/scim/v2/acme/ResourceTypes", "ResourceTypes.list"),
            (
                "GET",
                "/scim/v2/acme/ResourceTypes/User",
                "ResourceTypes.get",
            ),
            ("POST", "/scim/v2/acme/Bulk", "Bulk"),
            ("GET", "/scim/v2/acme/Me", "Me"),
            ("GET", "/scim/v2/acme/users", "unknown"),
            ("GET", "/scim/v2/acme/Users/", "unknown"),
            ("GET", "/scim/v2/acme/Users/42/x", "unknown"),
            ("GET", "/scim/v2/acme", "unknown"),
            ("GET", "/", "unknown"),
            ("GET", "/prod/scim/v2/acme/Users", "unknown"),
        ];
        for (m, p, want) in cases {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(operation(&method, p), want, "{m} {p}");
        }
    }

    #[test]
    fn tenants() {
        assert_eq!(tenant_of("/scim/v2/acme/Users"), Some("acme"));
        assert_eq!(tenant_of("/scim/v2/acme"), Some("acme"));
        assert_eq!(tenant_of("/scim/v2/a%22b/Users"), None);
        assert_eq!(tenant_of("/other/acme"), None);
    }

    #[test]
    fn emf_switch() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(!emf_enabled(env(&[])));
        assert!(emf_enabled(env(&[("METRICS", "emf")])));
        assert!(emf_enabled(env(&[("AWS_LAMBDA_FUNCTION_NAME", "scim")])));
        assert!(emf_enabled(env(&[(
            "AWS_LAMBDA_RUNTIME_API",
            "127.0.0.1:9001"
        )])));
        assert!(!emf_enabled(env(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "scim"),
            ("METRICS", "off")
        ])));
        assert!(!Observe::from_lookup(env(&[])).emits_metrics());
        assert!(Observe::from_lookup(env(&[("METRICS", "EMF")])).emits_metrics());
    }
}
