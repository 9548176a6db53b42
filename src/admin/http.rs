//! The admin API over HTTP, under `/admin/v1`: JSON in and out, errors as
//! [`AdminError`] bodies. Handlers extract, call [`super::Admin`], render.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::json_response;
use super::users::{NewUser, UserFilter, parse_filter, user_view};
use super::{AdminError, DEFAULT_PAGE, MAX_PAGE, NewTenant, TenantPatch, tenant_view};
use crate::auth::{AdminActor, AdminAuth};
use crate::http::AppState;

/// Admin bodies are small documents.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route("/tenants/{tenant}", get(get_tenant).patch(update_tenant))
        .route("/tenants/{tenant}/credentials", post(create_credentials))
        .route("/tenants/{tenant}/users", get(list_users).post(create_user))
        .route("/tenants/{tenant}/users/{id}", get(get_user))
        .route(
            "/tenants/{tenant}/users/{id}/licence",
            put(assign_licence).delete(remove_licence),
        )
        .route(
            "/tenants/{tenant}/users/{id}/admin",
            put(grant_admin).delete(revoke_admin),
        )
        .route("/tenants/{tenant}/groups", get(list_groups))
        .route("/tenants/{tenant}/audit", get(list_audit))
        .route("/tenants/{tenant}/events", get(list_events))
        .route("/tenants/{tenant}/groups/{id}/members", get(group_members))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The authenticated admin caller.
/// The authenticated admin caller, as the audit trail records it.
pub struct Caller(pub crate::audit::Origin);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        let actor = match state.admin_auth.as_ref() {
            AdminAuth::Iam => AdminActor::Iam(iam_caller(parts)?),
            auth @ AdminAuth::Key { .. } => match crate::auth::bearer(&parts.headers) {
                Some(k) if auth.accepts_key(k) => AdminActor::LocalKey,
                _ => {
                    return Err(AdminError::Unauthorized(
                        "the admin API needs Authorization: Bearer <admin key> (see <data-dir>/admin.key)".into(),
                    ));
                }
            },
        };
        let request_id = parts
            .extensions
            .get::<crate::http::observe::RequestId>()
            .map(|r| r.0.clone());
        Ok(Caller(crate::audit::Origin::admin(
            &actor,
            request_id,
            state.service.retention_days(),
        )))
    }
}

/// The IAM principal API Gateway authenticated. API Gateway refuses
/// unsigned calls itself; this refuses an event without a caller anyway,
/// should the route ever lose its authoriser.
fn iam_caller(parts: &Parts) -> Result<String, AdminError> {
    use lambda_http::request::RequestContext;
    let arn = match parts.extensions.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(c)) => c.identity.user_arn.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|i| i.user_arn.clone()),
        _ => None,
    };
    arn.filter(|a| a.starts_with("arn:")).ok_or_else(|| {
        AdminError::Unauthorized(
            "the admin API needs a SigV4-signed request from an IAM principal".into(),
        )
    })
}

/// A JSON body (`application/json`, or no Content-Type), deserialised.
pub struct AdminJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AdminJson<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AdminError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let essence = ct
                .to_str()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(AdminError::UnsupportedMediaType(format!(
                    "send the body as application/json, not {essence:?}"
                )));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            AdminError::bad(
                "invalid_json",
                format!("the body could not be read: {}", r.body_text()),
            )
        })?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(AdminError::PayloadTooLarge(format!(
                "the body exceeds {MAX_BODY_BYTES} bytes"
            )));
        }
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(body).map(AdminJson).map_err(|e| {
            AdminError::bad(
                "invalid_json",
                format!("the body is not what this endpoint takes: {e}"),
            )
        })
    }
}

/// This service's public origin for Tenant URLs and links: configuration,
/// else (on Lambda) API Gateway's own domain and stage from the event.
fn origin(state: &AppState, parts: &Parts) -> Option<String> {
    state
        .link_origin
        .clone()
        .or_else(|| crate::http::lambda_origin(parts))
        .map(|o| o.trim_end_matches('/').to_owned())
}

/// The request's public origin, as an extractor.
pub struct Origin(Option<String>);

impl FromRequestParts<AppState> for Origin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        Ok(Origin(origin(state, parts)))
    }
}

fn query_pairs(parts: &axum::http::Uri) -> Vec<(String, String)> {
    parts
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

async fn create_tenant(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Origin(o): Origin,
    AdminJson(new): AdminJson<NewTenant>,
) -> Result<Response, AdminError> {
    let r = s.admin.create_tenant(&actor, new).await?;
    let mut resp = json_response(StatusCode::CREATED, &tenant_view(&r, o.as_deref()));
    if let Ok(loc) = HeaderValue::from_str(&format!("/admin/v1/tenants/{}", r.record.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

async fn list_tenants(
    State(s): State<AppState>,
    Caller(_): Caller,
    Origin(o): Origin,
    uri: axum::http::Uri,
) -> Result<Response, AdminError> {
    let (cursor, limit) = paging(&uri, |_, _| Ok(false))?;
    let (page, next) = s.admin.list_tenants(cursor.as_deref(), limit).await?;
    let tenants: Vec<Value> = page.iter().map(|r| tenant_view(r, o.as_deref())).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"tenants": tenants, "nextCursor": next}),
    ))
}

async fn get_tenant(
    State(s): State<AppState>,
    Caller(_): Caller,
    Origin(o): Origin,
    Path(t): Path<String>,
) -> Result<Response, AdminError> {
    let r = s.admin.tenant(&t).await?;
    Ok(json_response(
        StatusCode::OK,
        &tenant_view(&r, o.as_deref()),
    ))
}

async fn update_tenant(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Origin(o): Origin,
    Path(t): Path<String>,
    AdminJson(patch): AdminJson<TenantPatch>,
) -> Result<Response, AdminError> {
    let r = s.admin.update_tenant(&actor, &t, patch).await?;
    Ok(json_response(
        StatusCode::OK,
        &tenant_view(&r, o.as_deref()),
    ))
}

async fn create_credentials(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Origin(o): Origin,
    Path(t): Path<String>,
) -> Result<Response, AdminError> {
    let issued = s.admin.create_credentials(&actor, &t, o.as_deref()).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "tenantUrl": issued.tenant_url,
            "emailedTo": issued.emailed_to,
            "revealExpiresAt": issued.reveal_expires_at,
            "generation": issued.generation,
        }),
    ))
}

/// `limit` and `cursor`, plus the parameters `extra` accepts.
fn paging(
    uri: &axum::http::Uri,
    mut extra: impl FnMut(&str, &str) -> Result<bool, AdminError>,
) -> Result<(Option<String>, usize), AdminError> {
    let mut cursor = None;
    let mut limit = DEFAULT_PAGE;
    for (k, v) in query_pairs(uri) {
        match k.as_str() {
            "cursor" => cursor = Some(v).filter(|c| !c.is_empty()),
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        AdminError::bad("invalid_limit", format!("limit: 1-{MAX_PAGE}"))
                    })?;
            }
            other => {
                if !extra(other, &v)? {
                    return Err(AdminError::bad(
                        "invalid_request",
                        format!("unknown query parameter {other:?}"),
                    ));
                }
            }
        }
    }
    Ok((cursor, limit))
}

/// Users and groups page by their ids, which the service mints as UUIDs.
fn id_cursor(cursor: Option<String>) -> Result<Option<String>, AdminError> {
    match cursor {
        Some(c) if uuid::Uuid::parse_str(&c).is_err() => Err(AdminError::bad(
            "invalid_cursor",
            "cursor: use the nextCursor of the previous page",
        )),
        other => Ok(other),
    }
}

async fn list_users(
    State(s): State<AppState>,
    Caller(_): Caller,
    Path(t): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, AdminError> {
    let mut filter = UserFilter::default();
    let (cursor, limit) = paging(&uri, |k, v| parse_filter(k, v, &mut filter))?;
    let cursor = id_cursor(cursor)?;
    let (page, next) = s.admin.list_users(&t, &filter, cursor, limit).await?;
    let users: Vec<Value> = page.iter().map(user_view).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"users": users, "nextCursor": next}),
    ))
}

async fn create_user(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(t): Path<String>,
    AdminJson(new): AdminJson<NewUser>,
) -> Result<Response, AdminError> {
    let u = s.admin.create_user(&actor, &t, new).await?;
    Ok(json_response(StatusCode::CREATED, &user_view(&u)))
}

async fn get_user(
    State(s): State<AppState>,
    Caller(_): Caller,
    Path((t, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let u = s.admin.user(&t, &id).await?;
    Ok(json_response(StatusCode::OK, &user_view(&u)))
}

async fn assign_licence(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path((t, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let u = s.admin.assign_licence(&actor, &t, &id).await?;
    Ok(json_response(StatusCode::OK, &user_view(&u)))
}

async fn remove_licence(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path((t, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let u = s.admin.remove_licence(&actor, &t, &id).await?;
    Ok(json_response(StatusCode::OK, &user_view(&u)))
}

async fn grant_admin(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path((t, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let u = s.admin.grant_admin(&actor, &t, &id).await?;
    Ok(json_response(StatusCode::OK, &user_view(&u)))
}

async fn revoke_admin(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path((t, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let u = s.admin.revoke_admin(&actor, &t, &id).await?;
    Ok(json_response(StatusCode::OK, &user_view(&u)))
}

async fn list_groups(
    State(s): State<AppState>,
    Caller(_): Caller,
    Path(t): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, AdminError> {
    let (cursor, limit) = paging(&uri, |_, _| Ok(false))?;
    let cursor = id_cursor(cursor)?;
    let (page, next) = s.admin.list_groups(&t, cursor.as_deref(), limit).await?;
    let groups: Vec<Value> = page
        .iter()
        .map(|g| json!({"id": g.id, "displayName": g.attrs.get("displayName"), "memberCount": g.member_count}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"groups": groups, "nextCursor": next}),
    ))
}

async fn group_members(
    State(s): State<AppState>,
    Caller(_): Caller,
    Path((t, id)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> Result<Response, AdminError> {
    let (cursor, limit) = paging(&uri, |_, _| Ok(false))?;
    let cursor = id_cursor(cursor)?;
    let (members, next) = s
        .admin
        .group_members(&t, &id, cursor.as_deref(), limit)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"members": members, "nextCursor": next}),
    ))
}

async fn list_audit(
    State(s): State<AppState>,
    Caller(_): Caller,
    Path(t): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, AdminError> {
    use crate::audit::{Operation, Outcome};
    let mut f = super::audit::AuditFilter::default();
    let (cursor, limit) = paging(&uri, |k, v| {
        match k {
            "resource" => f.resource = Some(v.to_owned()),
            "operation" => {
                f.operation = Some(Operation::parse(v).ok_or_else(|| {
                    AdminError::bad(
                        "invalid_filter",
                        format!("operation {v:?} is not one of the operations"),
                    )
                })?);
            }
            "outcome" => {
                f.outcome = Some(match v {
                    "refused" => Outcome::Refused,
                    "committed" => Outcome::Committed,
                    _ => {
                        return Err(AdminError::bad(
                            "invalid_filter",
                            "outcome: committed or refused",
                        ));
                    }
                });
            }
            "since" => f.after = Some(super::audit::time_bound(v, false)?),
            "until" => f.until = Some(super::audit::time_bound(v, true)?),
            "order" => {
                f.ascending = match v {
                    "asc" => true,
                    "desc" => false,
                    _ => return Err(AdminError::bad("invalid_filter", "order: asc or desc")),
                };
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let (page, next) = s.admin.audit(&t, &f, cursor, limit).await?;
    let records: Vec<Value> = page.iter().map(super::audit::record_view).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"records": records, "nextCursor": next}),
    ))
}

async fn list_events(
    State(s): State<AppState>,
    Caller(_): Caller,
    Path(t): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, AdminError> {
    let mut after = None;
    let (_, limit) = paging(&uri, |k, v| {
        if k == "after" {
            after = Some(v.to_owned()).filter(|a| !a.is_empty());
            return Ok(true);
        }
        Ok(false)
    })?;
    let holdback = std::env::var("SCIM_EVENTS_HOLDBACK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(super::audit::DEFAULT_HOLDBACK_SECS);
    let source = std::env::var("EVENT_SOURCE").unwrap_or_else(|_| "/scim-provisioning".into());
    let (events, next) = s.admin.events(&t, after, limit, &source, holdback).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"events": events, "position": next}),
    ))
}

async fn not_found() -> AdminError {
    AdminError::NotFound("no such admin endpoint; see /admin/v1/tenants".into())
}

async fn method_not_allowed() -> AdminError {
    AdminError::MethodNotAllowed("this method is not supported on this admin endpoint".into())
}
