//! Request extractors that fail with SCIM errors: tenant and credentials,
//! JSON bodies, query parameters and conditional headers.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde_json::Value;

use super::{ApiError, AppState};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::list::RawQuery;
use crate::scim::model::TenantId;
use crate::scim::render::Projection;
use crate::scim::schema::Kind;
use crate::service::{Conditions, Ctx};

/// The tenant named in the path and its Tenant URL.
pub struct Tenant {
    pub id: TenantId,
    pub base_url: String,
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ScimError::NotFound("no tenant in the path".into()))?;
        let raw = params
            .iter()
            .find(|(k, _)| *k == "tenant")
            .map(|(_, v)| v.to_owned())
            .ok_or_else(|| ScimError::NotFound("no tenant in the path".into()))?;
        let id = TenantId::parse(&raw)
            .ok_or_else(|| ScimError::NotFound(format!("tenant {raw:?} not found")))?;
        let origin = match &state.public_base_url {
            Some(b) => b.trim_end_matches('/').to_owned(),
            None => lambda_origin(parts).unwrap_or_else(|| {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost");
                let proto = parts
                    .headers
                    .get("x-forwarded-proto")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("http");
                format!("{proto}://{host}")
            }),
        };
        Ok(Tenant {
            base_url: format!("{origin}/scim/v2/{id}"),
            id,
        })
    }
}

/// Behind API Gateway's own domain, the public URL includes the stage
/// (`https://id.execute-api.region.amazonaws.com/prod`), which the Host
/// header does not tell. Custom domains map stages themselves: configure
/// `PUBLIC_BASE_URL` for those.
pub(crate) fn lambda_origin(parts: &Parts) -> Option<String> {
    use lambda_http::request::RequestContext;
    let (domain, stage) = match parts.extensions.get::<RequestContext>()? {
        RequestContext::ApiGatewayV1(c) => (c.domain_name.clone()?, c.stage.clone()),
        RequestContext::ApiGatewayV2(c) => (c.domain_name.clone()?, c.stage.clone()),
        _ => return None,
    };
    match stage.filter(|s| !s.is_empty() && s != "$default") {
        Some(stage) if domain.ends_with(".amazonaws.com") => {
            Some(format!("https://{domain}/{stage}"))
        }
        _ => Some(format!("https://{domain}")),
    }
}

/// An authenticated request: the bearer token is the tenant's current one.
pub struct Authed {
    pub ctx: Ctx,
    pub conditions: Conditions,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized =
            || ScimError::Unauthorized("a valid bearer token for this tenant is required".into());
        let token = crate::auth::bearer(&parts.headers).map(str::to_owned);
        // Look the tenant up only after the header is known to be usable, and
        // answer an unknown tenant exactly like a wrong token.
        let Some(token) = token else {
            return Err(unauthorized().into());
        };
        let tenant = Tenant::from_request_parts(parts, state)
            .await
            .map_err(|_| unauthorized())?;
        let ok = state
            .credentials
            .verify(&tenant.id, &token)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "token verification failed");
                ScimError::Unavailable {
                    detail: "credentials cannot be checked right now".into(),
                    retry_after_secs: 1,
                }
            })?;
        let Some(generation) = ok else {
            return Err(unauthorized().into());
        };
        let origin = crate::audit::Origin {
            actor: crate::audit::Actor::Scim { generation },
            request_id: parts
                .extensions
                .get::<super::observe::RequestId>()
                .map(|r| r.0.clone()),
            retention_days: state.service.retention_days(),
        };
        let header_str = |name: header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Authed {
            ctx: Ctx {
                tenant: tenant.id,
                base_url: tenant.base_url,
                origin,
            },
            conditions: Conditions {
                if_match: header_str(header::IF_MATCH),
                if_none_match: header_str(header::IF_NONE_MATCH),
            },
        })
    }
}

/// The raw query string, parsed on demand into list or projection params.
pub struct Query(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Query(parts.uri.query().map(str::to_owned)))
    }
}

impl Query {
    pub fn raw(&self) -> ScimResult<RawQuery> {
        let pairs: Vec<(String, String)> = match &self.0 {
            Some(q) => url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect(),
            None => Vec::new(),
        };
        RawQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    pub fn projection(&self, kind: Kind) -> ScimResult<Projection> {
        let raw = self.raw()?;
        Projection::parse(
            kind,
            raw.attributes.as_deref(),
            raw.excluded_attributes.as_deref(),
        )
    }
}

/// A JSON request body; bad JSON is `invalidSyntax`, too large is 413.
pub struct ScimBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        check_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ScimError::PayloadTooLarge(format!(
                    "the request body exceeds the limit of {} bytes",
                    crate::scim::discovery::MAX_BODY_BYTES
                ))
            } else {
                ScimError::invalid_syntax(format!(
                    "the request body could not be read: {}",
                    r.body_text()
                ))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ScimError::invalid_syntax("a JSON request body is required").into());
        }
        let v = serde_json::from_slice(&bytes).map_err(|e| {
            ScimError::invalid_syntax(format!("the request body is not valid JSON: {e}"))
        })?;
        Ok(ScimBody(v))
    }
}

/// The media types a body may be declared as; no `Content-Type` is taken
/// as JSON too, as many clients send none.
const JSON_TYPES: [&str; 2] = ["application/scim+json", "application/json"];

/// Refuses, before the body is read, a body declared as anything but JSON.
fn check_content_type(headers: &axum::http::HeaderMap) -> Result<(), ScimError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let declared = value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<mime::Mime>().ok());
    if let Some(m) = &declared
        && JSON_TYPES.contains(&m.essence_str())
    {
        return Ok(());
    }
    Err(ScimError::UnsupportedMediaType(format!(
        "a request body must be JSON: Content-Type {} or {} (or none), not {:?}",
        JSON_TYPES[0],
        JSON_TYPES[1],
        String::from_utf8_lossy(value.as_bytes())
    )))
}
