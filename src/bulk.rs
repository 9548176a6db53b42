//! Bulk (RFC 7644 §3.7) against the service: the request is parsed and
//! ordered by the core (`crate::scim::bulk`), then each operation runs, one
//! after another in dependency order, as the same single request would:
//! through [`Service::create`], [`Service::replace`], [`Service::patch`] or
//! [`Service::delete`] with the request's [`Ctx`], so tenancy, product rules
//! and audit records apply to it unchanged. Each operation is atomic on its
//! own; the request as a whole is not (RFC 7644 makes no such promise).
//!
//! Two limits stop a request early: `failOnErrors` (operations after the
//! N-th failure are not attempted and not reported, as the RFC says), and
//! a time budget (on Lambda the answer must come within the function's
//! timeout): once it is spent no operation is started, and each one left is
//! reported with a 503 saying it was not attempted and may be resent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::scim::bulk::{self, BulkRequest, Method, OpResult};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::render::{self, Projection};
use crate::service::{Conditions, Ctx, Service};

/// How long a Bulk request may start new operations. The Lambda function
/// times out at 28 s (API Gateway gives up at 29 s); one operation started
/// just before the budget ends is bounded by the store's retry budget, so
/// the answer still leaves in time. `SCIM_BULK_TIME_BUDGET_SECS` overrides
/// it (read in `crate::app`; the SAM template sets it beside the timeout).
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(20);

/// Runs a BulkRequest and returns the BulkResponse. An `Err` refuses the
/// whole request, before anything was written.
pub async fn run(
    service: &Service,
    ctx: &Ctx,
    body: &Value,
    time_budget: Duration,
) -> ScimResult<Value> {
    let started = Instant::now();
    let req = bulk::parse(body)?;
    let order = req.execution_order()?;
    let mut results: Vec<Option<OpResult>> = vec![None; req.operations.len()];
    let mut created: HashMap<String, String> = HashMap::new();
    let mut failures = 0usize;
    let mut out_of_time = false;
    for i in order {
        if req.fail_on_errors.is_some_and(|max| failures >= max) {
            break;
        }
        let Some(op) = req.operations.get(i) else {
            continue;
        };
        out_of_time = out_of_time || started.elapsed() >= time_budget;
        if out_of_time {
            results[i] = Some(OpResult {
                method: op.method,
                bulk_id: op.bulk_id.clone(),
                location: None,
                version: None,
                outcome: Err(not_attempted(time_budget)),
            });
            continue;
        }
        let (result, new_id) = run_one(service, ctx, &req, i, &created).await;
        if result.outcome.is_err() {
            failures += 1;
        }
        if let (Some(b), Some(id)) = (&op.bulk_id, new_id) {
            created.insert(b.clone(), id);
        }
        results[i] = Some(result);
    }
    tracing::debug!(
        operations = req.operations.len(),
        failures,
        out_of_time,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "bulk request done"
    );
    Ok(bulk::response(results.iter().flatten()))
}

fn not_attempted(budget: Duration) -> ScimError {
    ScimError::Unavailable {
        detail: format!(
            "not attempted: the Bulk request's time budget of {} s was spent on the \
             operations before it; this operation may be resent",
            budget.as_secs_f64()
        ),
        retry_after_secs: 1,
    }
}

/// One operation: its result, and the id a successful POST created.
async fn run_one(
    service: &Service,
    ctx: &Ctx,
    req: &BulkRequest,
    i: usize,
    created: &HashMap<String, String>,
) -> (OpResult, Option<String>) {
    let Some(op) = req.operations.get(i) else {
        return (
            OpResult {
                method: Method::Post,
                bulk_id: None,
                location: None,
                version: None,
                outcome: Err(ScimError::Internal(format!("no operation {i}"))),
            },
            None,
        );
    };
    let mut result = OpResult {
        method: op.method,
        bulk_id: op.bulk_id.clone(),
        location: None,
        version: None,
        outcome: Ok(0),
    };
    let r = match req.resolve(i, created) {
        Ok(r) => r,
        Err((target, e)) => {
            // Refused before reaching the service, which records the
            // refusals it decides: record this one the same way.
            let (kind, id) = match &target {
                Some((kind, id)) => (Some(*kind), id.as_str()),
                None => (op.kind(), ""),
            };
            if let Some(kind) = kind {
                service.note_refusal(ctx, kind, id, op.data(), &e).await;
            }
            result.location = target.map(|(kind, id)| render::location(&ctx.base_url, kind, &id));
            result.outcome = Err(e);
            return (result, None);
        }
    };
    if let Some(id) = &r.id {
        result.location = Some(render::location(&ctx.base_url, r.kind, id));
    }
    // The response carries no resource: render the least (and skip the
    // reads of members and groups an answer would need).
    let proj = match Projection::parse(r.kind, Some("id"), None) {
        Ok(p) => p,
        Err(e) => {
            result.outcome = Err(e);
            return (result, None);
        }
    };
    let cond = Conditions {
        if_match: op.version.clone(),
        if_none_match: None,
    };
    let id = r.id.as_deref().unwrap_or_default();
    let reply = match op.method {
        Method::Post => service.create(ctx, r.kind, &r.data, &proj).await,
        Method::Put => {
            service
                .replace(ctx, r.kind, id, &r.data, &cond, &proj)
                .await
        }
        Method::Patch => service.patch(ctx, r.kind, id, &r.data, &cond, &proj).await,
        Method::Delete => service.delete(ctx, r.kind, id, &cond).await,
    };
    match reply {
        Ok(reply) => {
            let new_id = match op.method {
                Method::Post => reply
                    .body
                    .as_ref()
                    .and_then(|b| b.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            };
            if let Some(loc) = reply.location.or_else(|| {
                new_id
                    .as_deref()
                    .map(|id| render::location(&ctx.base_url, r.kind, id))
            }) {
                result.location = Some(loc);
            }
            if op.method != Method::Delete {
                result.version = reply.etag;
            }
            result.outcome = Ok(reply.status);
            (result, new_id)
        }
        Err(e) => {
            result.outcome = Err(e);
            (result, None)
        }
    }
}
