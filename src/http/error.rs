//! The one place where errors become HTTP responses (RFC 7644 §3.12).

use std::any::Any;

use axum::body::Body;
use axum::http::{HeaderValue, Response as HttpResponse, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{SCIM_CONTENT_TYPE, scim_json};
use crate::scim::error::ScimError;

/// A [`ScimError`] on its way out.
#[derive(Debug)]
pub struct ApiError(pub ScimError);

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = scim_json(status, &e.to_json());
        let h = resp.headers_mut();
        match &e {
            ScimError::Unauthorized(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"scim\""),
                );
            }
            ScimError::Unavailable {
                retry_after_secs, ..
            } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        resp
    }
}

/// axum answers a wrong method with an empty 405; make it a SCIM Error.
pub async fn scim_method_not_allowed(resp: Response) -> Response {
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && !resp.headers().contains_key(header::CONTENT_TYPE)
    {
        let allow = resp.headers().get(header::ALLOW).cloned();
        let mut r = ApiError(ScimError::MethodNotAllowed(
            "this method is not supported on this endpoint".into(),
        ))
        .into_response();
        if let Some(a) = allow {
            r.headers_mut().insert(header::ALLOW, a);
        }
        return r;
    }
    resp
}

/// A bug must not take the process down or leak a backtrace to clients.
pub fn panic_response(_: Box<dyn Any + Send + 'static>) -> HttpResponse<Body> {
    tracing::error!("request handler panicked");
    let body = ScimError::Internal("internal error".into())
        .to_json()
        .to_string();
    let mut resp = HttpResponse::new(Body::from(body));
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    resp
}
