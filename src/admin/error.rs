//! Admin API errors, and their one mapping to JSON responses
//! (`{"error": <stable code>, "detail": <what to fix>}`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thiserror::Error;

use crate::credentials::CredentialError;
use crate::mail::MailError;
use crate::store::StoreError;

#[derive(Debug, Error)]
pub enum AdminError {
    /// Bad input; `code` names what (stable, for scripts).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// A conflict with a more specific stable code.
    #[error("{detail}")]
    ConflictCode { code: &'static str, detail: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The email could not be sent (502: an upstream refused).
    #[error("{0}")]
    EmailFailed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    pub fn bad(code: &'static str, detail: impl Into<String>) -> AdminError {
        AdminError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            AdminError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AdminError::ConflictCode { code, .. } => (StatusCode::CONFLICT, code),
            AdminError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AdminError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            AdminError::EmailFailed(_) => (StatusCode::BAD_GATEWAY, "email_failed"),
            AdminError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AdminError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AdminError::NotFound("not found".into()),
            StoreError::Conflict { attr, value } => {
                AdminError::Conflict(format!("{attr} {value:?} is already taken"))
            }
            StoreError::VersionMismatch => {
                AdminError::Conflict("changed concurrently; read it again and retry".into())
            }
            StoreError::PoolChanged => {
                AdminError::Unavailable("licences are being reassigned concurrently; retry".into())
            }
            StoreError::MemberNotFound(id) => {
                AdminError::bad("invalid_member", format!("{id} does not exist"))
            }
            StoreError::Unavailable(d) => {
                tracing::warn!(error = %d, "store unavailable");
                AdminError::Unavailable("storage is temporarily unavailable; retry".into())
            }
            StoreError::Backend(d) => {
                tracing::error!(error = %d, "store failure");
                AdminError::Internal("internal storage error".into())
            }
        }
    }
}

impl From<CredentialError> for AdminError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::UnknownTenant(t) => {
                AdminError::NotFound(format!("tenant {t:?} not found"))
            }
            CredentialError::Mail(MailError::Rejected(d)) => AdminError::EmailFailed(format!(
                "the credentials email could not be sent, so nothing changed and the earlier credentials still work: {d}"
            )),
            CredentialError::Mail(MailError::NotConfigured(d)) => AdminError::Unavailable(format!(
                "email is not configured, so nothing changed and the earlier credentials still work: {d}"
            )),
            CredentialError::Mail(MailError::Unavailable(d)) => AdminError::Unavailable(format!(
                "the email service is unavailable, so nothing changed and the earlier credentials still work; retry: {d}"
            )),
            CredentialError::Concurrent(t) => AdminError::Conflict(format!(
                "credentials of tenant {t:?} were created concurrently; the other request won"
            )),
            CredentialError::Store(e) => e.into(),
            CredentialError::Internal(d) => {
                tracing::error!(error = %d, "credential failure");
                AdminError::Internal("internal error".into())
            }
        }
    }
}

/// A JSON answer of the admin API; never cached (it names tenants).
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = json!({"error": code, "detail": self.to_string()});
        let mut resp = json_response(status, &body);
        let h = resp.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"admin\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}
