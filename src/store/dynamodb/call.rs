//! One DynamoDB call with the store's fault policy: throttling and transient
//! faults are retried with capped exponential backoff and full jitter while
//! a time budget lasts, then reported as [`StoreError::Unavailable`] (503
//! with `Retry-After`); anything else is returned for the caller to
//! interpret or becomes [`StoreError::Backend`].
//!
//! The SDK's own retries are disabled (see `DynamoStore::from_conf`) so that
//! this budget is the only one, and every attempt is visible to the call
//! counter below.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::error::TransactionCanceledException;
use rand::Rng;

use super::super::StoreError;

/// Counts every request the SDK executes (one per attempt, since the SDK
/// does not retry by itself), so tests can pin each operation's cost.
#[derive(Debug, Clone, Default)]
pub(super) struct CallCounter(pub(super) Arc<AtomicU64>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "ScimCallCounter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Error codes DynamoDB documents as retryable.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "TransactionConflictException",
    "LimitExceededException",
];

/// Cancellation reasons that say "not now" rather than "no".
const TRANSIENT_REASONS: &[&str] = &[
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
];

pub(super) fn transient_code<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
}

/// A cancelled transaction is worth retrying when nothing but contention or
/// throttling cancelled it; a failed condition is an answer, not a fault.
/// Nothing was written, so the retry is a new request with a new token
/// (a token may stand for the cancelled outcome for ten minutes).
pub(super) fn transient_cancel(c: &TransactionCanceledException) -> bool {
    let codes = || {
        c.cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .filter(|code| *code != "None")
    };
    codes().next().is_some() && codes().all(|code| TRANSIENT_REASONS.contains(&code))
}

/// What a call that did not succeed left to its caller.
#[derive(Debug)]
pub(super) enum CallError<E> {
    /// Already mapped: budget exhausted, or a fault with no modelled error.
    Store(StoreError),
    /// A modelled service error that was not transient (e.g. a cancelled
    /// transaction), for the caller to interpret.
    Service(E),
}

impl<E: ProvideErrorMetadata> CallError<E> {
    /// For callers that expect no modelled error: any is a backend failure.
    pub(super) fn into_store(self) -> StoreError {
        match self {
            CallError::Store(e) => e,
            CallError::Service(e) => StoreError::Backend(format!(
                "DynamoDB {}: {}",
                e.code().unwrap_or("error"),
                e.message().unwrap_or("no message")
            )),
        }
    }
}

/// How long one store call may keep retrying before it answers 503.
pub(super) const DEFAULT_BUDGET: Duration = Duration::from_secs(2);
const BASE_DELAY: Duration = Duration::from_millis(20);
const MAX_DELAY: Duration = Duration::from_millis(500);

/// Full jitter: a random delay up to a cap that doubles per attempt.
pub(super) fn backoff(attempt: u32) -> Duration {
    let cap = BASE_DELAY
        .saturating_mul(1u32 << attempt.min(10))
        .min(MAX_DELAY);
    let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::rng().random_range(1..=millis))
}

/// Retries `f` on transient faults within `budget`. `transient` classifies
/// the operation's modelled errors. Our writes are idempotent to retry
/// (puts and deletes by key; transactions carry a client request token),
/// except the group's `ADD ver, mc` after a members-only change: retrying a
/// timeout or 5xx that did apply bumps it twice, which `infra/dynamodb.md`
/// accepts (versions need only change; the count is a hint).
pub(super) async fn with_retries<T, E, F, Fut>(
    what: &str,
    budget: Duration,
    transient: fn(&E) -> bool,
    mut f: F,
) -> Result<T, CallError<E>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E>>>,
{
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        let err = match f().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let retry = match &err {
            SdkError::ServiceError(se) => {
                transient(se.err()) || se.raw().status().is_server_error()
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            _ => false,
        };
        if !retry {
            return Err(match err {
                SdkError::ServiceError(se) => CallError::Service(se.into_err()),
                other => CallError::Store(StoreError::Backend(format!(
                    "DynamoDB {what}: {}",
                    DisplayErrorContext(&other)
                ))),
            });
        }
        let delay = backoff(attempt);
        if start.elapsed() + delay > budget {
            return Err(CallError::Store(StoreError::Unavailable(format!(
                "DynamoDB {what} still failing after {} attempts: {}",
                attempt + 1,
                DisplayErrorContext(&err)
            ))));
        }
        tracing::warn!(what, attempt, ?delay, error = %DisplayErrorContext(&err), "retrying a transient DynamoDB fault");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// Sleeps before trying again what DynamoDB did not do (batch calls report
/// throttling as unprocessed items, transactions as cancellations), or
/// gives up with `Unavailable` once the budget is spent.
pub(super) async fn pause(
    what: &str,
    start: Instant,
    budget: Duration,
    attempt: u32,
) -> Result<(), StoreError> {
    let delay = backoff(attempt);
    if start.elapsed() + delay > budget {
        return Err(StoreError::Unavailable(format!(
            "DynamoDB {what} still contended or throttled after {attempt} attempts"
        )));
    }
    tokio::time::sleep(delay).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::CancellationReason;

    fn cancelled(codes: &[&str]) -> TransactionCanceledException {
        let mut b = TransactionCanceledException::builder();
        for code in codes {
            b = b.cancellation_reasons(CancellationReason::builder().code(*code).build());
        }
        b.build()
    }

    #[test]
    fn only_contention_and_throttling_cancellations_are_retried() {
        assert!(transient_cancel(&cancelled(&[
            "None",
            "TransactionConflict"
        ])));
        assert!(transient_cancel(&cancelled(&["ThrottlingError", "None"])));
        assert!(!transient_cancel(&cancelled(&[
            "ConditionalCheckFailed",
            "TransactionConflict"
        ])));
        assert!(!transient_cancel(&cancelled(&["None", "ValidationError"])));
        assert!(!transient_cancel(&cancelled(&["None"])));
    }

    #[test]
    fn backoff_is_capped_and_never_zero() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            assert!(d >= Duration::from_millis(1) && d <= MAX_DELAY, "{d:?}");
        }
    }
}
