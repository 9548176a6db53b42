//! The public "Get Secret Token" page, `/credentials/{ref}`, opened from
//! the credentials email. `GET`/`HEAD` only show it (mail scanners and
//! link previews burn nothing); the button's `POST` reveals the token once.
//! A used, expired and made-up link answer the same page.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use super::AppState;

const STYLE: &str = "body{margin:0;background:#f4f5f7;color:#1f2328;font:16px/1.5 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}main{max-width:560px;margin:0 auto;padding:24px 20px;background:#fff;min-height:100vh;box-sizing:border-box}h1{font-size:1.4rem;margin:0 0 1rem}h2{font-size:1rem;margin:1.4rem 0 .4rem}.value{padding:10px 12px;background:#f6f8fa;border-radius:6px;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9rem;word-break:break-all;margin:0}.secret{background:#fff8c5}button{font:inherit;font-weight:600;padding:12px 20px;border:0;border-radius:6px;background:#1f6feb;color:#fff;cursor:pointer;margin-top:1rem}.note{font-size:.875rem;color:#57606a}li{margin:.4rem 0}@media(min-width:600px){main{margin-top:40px;min-height:0;border-radius:8px}}";

const SCRIPT: &str = "document.getElementById('copy').addEventListener('click',function(){var t=document.getElementById('token').textContent;navigator.clipboard.writeText(t).then(function(){document.getElementById('copied').textContent='Copied.';},function(){document.getElementById('copied').textContent='Select the token and copy it.';});});";

fn csp_hash(s: &str) -> String {
    format!("'sha256-{}'", STANDARD.encode(Sha256::digest(s.as_bytes())))
}

/// No inline code but the two hashed blocks, nothing from elsewhere, no
/// framing, forms only back to this page.
static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; style-src {}; script-src {}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        csp_hash(STYLE),
        csp_hash(SCRIPT)
    )
});

#[derive(Template)]
#[template(path = "reveal.html")]
struct Page<'a> {
    state: &'a str,
    tenant_url: &'a str,
    token: &'a str,
    style: &'a str,
    script: &'a str,
}

fn page(status: StatusCode, state: &str, tenant_url: &str, token: &str) -> Response {
    let html = Page {
        state,
        tenant_url,
        token,
        style: STYLE,
        script: SCRIPT,
    }
    .render()
    .unwrap_or_else(|_| "<!DOCTYPE html><title>Error</title><p>Internal error.".into());
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(&CSP) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

fn gone() -> Response {
    page(StatusCode::GONE, "gone", "", "")
}

fn unavailable() -> Response {
    let mut r = page(StatusCode::SERVICE_UNAVAILABLE, "gone", "", "");
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn too_many(wait: Duration) -> Response {
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        "Too many invalid links from this address; wait and try again.",
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from(wait.as_secs().max(1)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Slows down guessing: each client may fail (a used, expired or wrong
/// link) `burst` times, regaining one try per `1/per_minute` minute; past
/// that it is refused with 429 before any lookup, until it regains one.
/// Per instance: on Lambda, API Gateway's throttling and WAF bound the rest.
pub struct RevealGuard {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    pause: Duration,
}

impl RevealGuard {
    pub fn new(per_minute: u32, burst: u32) -> RevealGuard {
        let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        RevealGuard {
            failures: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            blocked: Mutex::new(HashMap::new()),
            pause: Duration::from_secs(60) / per_minute.get(),
        }
    }

    /// From `SCIM_REVEAL_FAILURES_PER_MINUTE` and `SCIM_REVEAL_FAILURE_BURST`
    /// (defaults 10 and 20).
    pub fn from_env() -> RevealGuard {
        let num = |k: &str, d: u32| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        RevealGuard::new(
            num("SCIM_REVEAL_FAILURES_PER_MINUTE", 10),
            num("SCIM_REVEAL_FAILURE_BURST", 20),
        )
    }

    fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let mut map = self.blocked.lock().ok()?;
        let until = *map.get(&ip)?;
        let now = Instant::now();
        if until > now {
            return Some(until - now);
        }
        map.remove(&ip);
        None
    }

    /// Records a failure; `Some(wait)` if the client is now refused.
    fn failed(&self, ip: IpAddr) -> Option<Duration> {
        if self.failures.check_key(&ip).is_ok() {
            return None;
        }
        let until = Instant::now() + self.pause;
        if let Ok(mut map) = self.blocked.lock() {
            let now = Instant::now();
            map.retain(|_, t| *t > now);
            map.insert(ip, until);
        }
        self.failures.retain_recent();
        Some(self.pause)
    }
}

/// The client's address: API Gateway's `sourceIp` on Lambda, the TCP
/// peer locally.
pub struct ClientIp(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        use lambda_http::request::RequestContext;
        let from_lambda = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV1(c)) => c.identity.source_ip.clone(),
            Some(RequestContext::ApiGatewayV2(c)) => c.http.source_ip.clone(),
            _ => None,
        };
        let ip = from_lambda
            .and_then(|s| s.parse().ok())
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            })
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(ClientIp(ip))
    }
}

/// Runs a link lookup unless the client is refused; a miss counts as a
/// failure, and a store fault is a 503 page.
async fn guarded<T, E: std::fmt::Display>(
    s: &AppState,
    ip: IpAddr,
    what: &str,
    lookup: impl Future<Output = Result<Option<T>, E>>,
    found: impl FnOnce(T) -> Response,
) -> Response {
    if let Some(wait) = s.reveal_guard.blocked(ip) {
        return too_many(wait);
    }
    match lookup.await {
        Ok(Some(v)) => found(v),
        Ok(None) => s.reveal_guard.failed(ip).map_or_else(gone, too_many),
        Err(e) => {
            tracing::error!(error = %e, "{what} failed");
            unavailable()
        }
    }
}

pub async fn show(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(reference): Path<String>,
) -> Response {
    let lookup = s.credentials.peek(&reference);
    guarded(&s, ip, "reading a reveal link", lookup, |tenant_url| {
        page(StatusCode::OK, "ready", &tenant_url, "")
    })
    .await
}

pub async fn reveal(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(reference): Path<String>,
) -> Response {
    let origin = crate::audit::Origin {
        actor: crate::audit::Actor::Link,
        request_id: None,
        retention_days: s.service.retention_days(),
    };
    let lookup = s.credentials.reveal(&reference, &origin);
    guarded(&s, ip, "consuming a reveal link", lookup, |r| {
        tracing::info!(tenant = %r.tenant, generation = r.generation, "secret token revealed");
        page(StatusCode::OK, "revealed", &r.tenant_url, &r.token)
    })
    .await
}
