//! The Lambda side of the HTTP adapter: the service `lambda_http::run` is
//! given. API Gateway events become `http::Request`s in `lambda_http`; this
//! module only takes the API stage out of the path so that the one router
//! sees `/scim/v2/{tenant}/…` whatever the API type and stage.
//!
//! Where the stage shows up in the path `lambda_http` builds:
//!
//! | event                           | path in the event          | `lambda_http` path (env unset) | with `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` |
//! |---------------------------------|----------------------------|--------------------------------|---------------------------------------------|
//! | REST API (v1), stage `prod`     | `/scim/v2/…`               | `/prod/scim/v2/…` (prepended)  | `/scim/v2/…`                                |
//! | HTTP API (v2), stage `$default` | `rawPath` `/scim/v2/…`     | `/scim/v2/…`                   | `/scim/v2/…`                                |
//! | HTTP API (v2), stage `prod`     | `rawPath` `/prod/scim/v2/…`| `/prod/scim/v2/…`              | `/prod/scim/v2/…` (never stripped)          |
//!
//! [`strip_stage`] removes a leading `/{stage}` in every case, so routing
//! does not depend on that environment variable.
//!
//! Links the service generates (`Location`, `meta.location`) come from
//! `PUBLIC_BASE_URL`, or else from the request context: on an
//! `execute-api` host they include the stage (`https://{host}/{stage}`);
//! a custom domain with a base-path mapping needs `PUBLIC_BASE_URL`.

use axum::Router;
use axum::http::Uri;
use axum::http::uri::PathAndQuery;
use lambda_http::request::RequestContext;
use tower::util::MapRequest;

use crate::http::{AppState, router};

/// The path every route lives under.
const SCIM_PREFIX: &str = "/scim/v2/";

/// What `lambda_http::run` serves: the router behind [`strip_stage_prefix`].
pub type LambdaService = MapRequest<Router, fn(lambda_http::Request) -> lambda_http::Request>;

/// The Lambda handler's service for this state: [`router`] (observability
/// included) with the API stage taken out of request paths. `lambda_http`'s
/// `Adapter` turns API Gateway events into its requests and its answers into
/// API Gateway responses.
pub fn lambda_service(state: AppState) -> LambdaService {
    lambda_service_from(router(state))
}

/// [`lambda_service`] around an already built router (tests give one with
/// their own observability sinks).
pub fn lambda_service_from(router: Router) -> LambdaService {
    MapRequest::new(router, strip_stage_prefix as fn(_) -> _)
}

/// Rewrites the request path without the API Gateway stage; requests that
/// carry no stage (or do not start with it) pass unchanged.
pub fn strip_stage_prefix(mut req: lambda_http::Request) -> lambda_http::Request {
    let stage = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage else {
        return req;
    };
    let uri = req.uri();
    let Some(path) = strip_stage(&stage, uri.path()) else {
        return req;
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    match PathAndQuery::try_from(path_and_query) {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return req,
    }
    if let Ok(new_uri) = Uri::from_parts(parts) {
        *req.uri_mut() = new_uri;
    }
    req
}

/// `path` without a leading `/{stage}`, or `None` when there is nothing to
/// strip. `$default` is never in a path; a path already under
/// `/scim/v2/` is left alone (so a stage named `scim` cannot eat the
/// SCIM prefix).
pub fn strip_stage<'p>(stage: &str, path: &'p str) -> Option<&'p str> {
    if stage.is_empty() || stage == "$default" || path.starts_with(SCIM_PREFIX) {
        return None;
    }
    let rest = path.strip_prefix('/')?.strip_prefix(stage)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::strip_stage;

    #[test]
    fn strips_a_named_stage_only() {
        assert_eq!(
            strip_stage("prod", "/prod/scim/v2/acme/Users"),
            Some("/scim/v2/acme/Users")
        );
        assert_eq!(strip_stage("prod", "/scim/v2/acme/Users"), None);
        assert_eq!(strip_stage("$default", "/$default/scim/v2/a"), None);
        assert_eq!(strip_stage("", "/scim/v2/a"), None);
        assert_eq!(strip_stage("prod", "/production/scim/v2/a"), None);
        assert_eq!(strip_stage("prod", "/prod"), Some("/"));
    }

    #[test]
    fn a_stage_named_like_the_prefix_keeps_scim_paths() {
        assert_eq!(strip_stage("scim", "/scim/v2/acme/Users"), None);
        assert_eq!(
            strip_stage("scim", "/scim/scim/v2/acme/Users"),
            Some("/scim/v2/acme/Users")
        );
    }
}
