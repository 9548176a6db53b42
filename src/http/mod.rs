//! The HTTP adapter: one axum [`Router`] for the whole SCIM surface, used
//! unchanged by the local server and the Lambda handler. Handlers only
//! extract, call [`Service`], and render; errors become SCIM Error
//! responses in [`error`].

mod bulk;
mod error;
mod extract;
pub mod observe;
pub mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

pub use error::ApiError;
pub(crate) use extract::lambda_origin;
use extract::{Authed, Query, ScimBody, Tenant};

use crate::admin::Admin;
use crate::auth::AdminAuth;
use crate::credentials::Credentials;
use crate::scim::discovery::{self, MAX_BODY_BYTES};
use crate::scim::error::ScimError;
use crate::scim::list::list_response;
use crate::scim::schema::Kind;
use crate::service::{Reply, Service};

pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub credentials: Arc<Credentials>,
    pub admin: Arc<Admin>,
    pub admin_auth: Arc<AdminAuth>,
    pub reveal_guard: Arc<pages::RevealGuard>,
    /// Public URL prefix (e.g. `https://scim.example.com`); when unset the
    /// request's Host header is used.
    pub public_base_url: Option<String>,
    /// The origin of Tenant URLs and links in emails and admin answers:
    /// configuration only (never a Host header); on Lambda without it, API
    /// Gateway's domain and stage from the event.
    pub link_origin: Option<String>,
    /// Add `x-store-calls` to answers (tests of per-operation cost).
    pub expose_store_calls: bool,
    /// How long a Bulk request may start new operations.
    pub bulk_time_budget: std::time::Duration,
}

/// The router with observability configured from the environment
/// (see [`observe::Observe::from_env`]).
pub fn router(state: AppState) -> Router {
    router_with(state, observe::Observe::from_env())
}

/// The router, reporting each request as `observe` says.
pub fn router_with(state: AppState, observe: observe::Observe) -> Router {
    let tenant_routes = Router::new()
        .route("/Users", get(list::<UserK>).post(create::<UserK>))
        .route("/Users/.search", post(search::<UserK>))
        .route(
            "/Users/{id}",
            get(read::<UserK>)
                .put(replace::<UserK>)
                .patch(patch::<UserK>)
                .delete(remove::<UserK>),
        )
        .route("/Groups", get(list::<GroupK>).post(create::<GroupK>))
        .route("/Groups/.search", post(search::<GroupK>))
        .route(
            "/Groups/{id}",
            get(read::<GroupK>)
                .put(replace::<GroupK>)
                .patch(patch::<GroupK>)
                .delete(remove::<GroupK>),
        )
        .route("/.search", post(root_search))
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Bulk", post(bulk::bulk))
        .route(
            "/Me",
            get(not_implemented)
                .post(not_implemented)
                .put(not_implemented)
                .patch(not_implemented)
                .delete(not_implemented),
        );
    Router::new()
        .nest("/scim/v2/{tenant}", tenant_routes)
        .nest("/admin/v1", crate::admin::http::routes())
        .route(
            "/credentials/{reference}",
            get(pages::show).post(pages::reveal),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_store_calls,
        ))
        .layer(axum::middleware::map_response(
            error::scim_method_not_allowed,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ))
        // Outermost, so it times and reports every answer, panics included.
        .layer(axum::middleware::from_fn_with_state(
            observe,
            observe::observe,
        ))
        .with_state(state)
}

/// With `expose_store_calls`, reports the backend calls a request made.
async fn count_store_calls(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let store = s.service.store();
    let before = if s.expose_store_calls {
        store.backend_calls()
    } else {
        None
    };
    let mut resp = next.run(req).await;
    if let (Some(b), Some(a)) = (before, store.backend_calls()) {
        resp.headers_mut()
            .insert("x-store-calls", HeaderValue::from(a.saturating_sub(b)));
    }
    resp
}

/// Resource type as a type parameter, so one handler serves both endpoints.
trait KindParam: Send + Sync + 'static {
    const KIND: Kind;
}
struct UserK;
struct GroupK;
impl KindParam for UserK {
    const KIND: Kind = Kind::User;
}
impl KindParam for GroupK {
    const KIND: Kind = Kind::Group;
}

pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    resp
}

fn reply(r: Reply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut resp = match &r.body {
        Some(b) => scim_json(status, b),
        None => status.into_response(),
    };
    let h = resp.headers_mut();
    if let Some(tag) = r.etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        h.insert(header::ETAG, tag);
    }
    if r.status == 201
        && let Some(loc) = r.location.and_then(|l| HeaderValue::from_str(&l).ok())
    {
        h.insert(header::LOCATION, loc);
    }
    resp
}

async fn list<K: KindParam>(
    State(s): State<AppState>,
    a: Authed,
    q: Query,
) -> Result<Response, ApiError> {
    let body = s.service.list(&a.ctx, &[K::KIND], q.raw()?).await?;
    Ok(scim_json(StatusCode::OK, &body))
}

async fn search<K: KindParam>(
    State(s): State<AppState>,
    a: Authed,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let raw = crate::scim::list::RawQuery::from_search_body(&body)?;
    let body = s.service.list(&a.ctx, &[K::KIND], raw).await?;
    Ok(scim_json(StatusCode::OK, &body))
}

async fn root_search(
    State(s): State<AppState>,
    a: Authed,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let raw = crate::scim::list::RawQuery::from_search_body(&body)?;
    let body = s
        .service
        .list(&a.ctx, &[Kind::User, Kind::Group], raw)
        .await?;
    Ok(scim_json(StatusCode::OK, &body))
}

async fn create<K: KindParam>(
    State(s): State<AppState>,
    a: Authed,
    q: Query,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let proj = q.projection(K::KIND)?;
    Ok(reply(
        s.service.create(&a.ctx, K::KIND, &body, &proj).await?,
    ))
}

async fn read<K: KindParam>(
    State(s): State<AppState>,
    a: Authed,
    Path((_, id)): Path<(String, String)>,
    q: Query,
) -> Result<Response, ApiError> {
    let proj = q.projection(K::KIND)?;
    Ok(reply(
        s.service
            .get(&a.ctx, K::KIND, &id, &proj, &a.conditions)
            .await?,
    ))
}

async fn replace<K: KindParam>(
    State(s): State<AppState>,
    a: Authed,
    Path((_, id)): Path<(String, String)>,
    q: Query,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let proj = q.projection(K::KIND)?;
    Ok(reply(
        s.service
            .replace(&a.ctx, K::KIND, &id, &body, &a.conditions, &proj)
            .await?,
    ))
}

async fn patch<K: KindParam>(
    State(s): State<AppState>,
    a: Authed,
    Path((_, id)): Path<(String, String)>,
    q: Query,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let proj = q.projection(K::KIND)?;
    Ok(reply(
        s.service
            .patch(&a.ctx, K::KIND, &id, &body, &a.conditions, &proj)
            .await?,
    ))
}

async fn remove<K: KindParam>(
    State(s): State<AppState>,
    a: Authed,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(reply(
        s.service
            .delete(&a.ctx, K::KIND, &id, &a.conditions)
            .await?,
    ))
}

// Discovery needs no credentials (RFC 7644 §4 allows it): it is the same
// for every tenant and reveals nothing about one.

async fn service_provider_config(t: Tenant) -> Response {
    scim_json(
        StatusCode::OK,
        &discovery::service_provider_config(&t.base_url),
    )
}

async fn schemas(t: Tenant) -> Response {
    let all = discovery::schemas(&t.base_url);
    let total = all.len() as u64;
    scim_json(StatusCode::OK, &list_response(all, total, Some(1), None))
}

async fn schema(t: Tenant, Path((_, id)): Path<(String, String)>) -> Result<Response, ApiError> {
    let s = discovery::schema(&t.base_url, &id)
        .ok_or_else(|| ScimError::NotFound(format!("schema {id:?} not found")))?;
    Ok(scim_json(StatusCode::OK, &s))
}

async fn resource_types(t: Tenant) -> Response {
    let all = discovery::resource_types(&t.base_url);
    let total = all.len() as u64;
    scim_json(StatusCode::OK, &list_response(all, total, Some(1), None))
}

async fn resource_type(
    t: Tenant,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let r = discovery::resource_type(&t.base_url, &id)
        .ok_or_else(|| ScimError::NotFound(format!("resource type {id:?} not found")))?;
    Ok(scim_json(StatusCode::OK, &r))
}

async fn not_implemented(_: Authed) -> ApiError {
    ScimError::NotImplemented("this endpoint is not supported; see /ServiceProviderConfig".into())
        .into()
}

async fn not_found() -> ApiError {
    ScimError::NotFound("no such endpoint; SCIM resources live under /scim/v2/{tenant}/".into())
        .into()
}
