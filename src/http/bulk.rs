//! `POST /Bulk` (RFC 7644 §3.7): extract, run through [`crate::bulk`],
//! render. Whole-request errors go through the one error mapping.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::extract::{Authed, ScimBody};
use super::{ApiError, AppState, scim_json};

pub(super) async fn bulk(
    State(s): State<AppState>,
    a: Authed,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let body = crate::bulk::run(&s.service, &a.ctx, &body, s.bulk_time_budget).await?;
    Ok(scim_json(StatusCode::OK, &body))
}
