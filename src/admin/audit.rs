//! Reading the audit trail and the change-event feed.
//!
//! The feed's guarantee: an event is served only once its record is older
//! than the hold-back (`SCIM_EVENTS_HOLDBACK_SECS`, default 10 s). A
//! record's time is taken before its write starts, and a write either
//! commits or gives up within the store's retry budget (a few seconds), so
//! by then every record up to that time has committed: a consumer that
//! resumes `after` its last position misses none, even from concurrent
//! writers that committed late.

use serde_json::{Value, json};

use super::{Admin, AdminError};
use crate::audit::event::to_cloud_event;
use crate::audit::{AuditRecord, Operation, Outcome, sortable};

/// Records read per store call while filtering.
const SCAN_BATCH: usize = 200;
/// A filtered read scans at most this many records, then answers what it
/// found with a cursor to continue.
const SCAN_LIMIT: usize = 5000;
pub const DEFAULT_HOLDBACK_SECS: i64 = 10;

/// What `GET …/audit` selects.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub resource: Option<String>,
    pub operation: Option<Operation>,
    pub outcome: Option<Outcome>,
    /// Positions bounding the window (from `since` / `until`).
    pub after: Option<String>,
    pub until: Option<String>,
    /// Oldest first (default: newest first).
    pub ascending: bool,
}

impl AuditFilter {
    fn matches(&self, r: &AuditRecord) -> bool {
        self.resource.as_ref().is_none_or(|id| *id == r.resource_id)
            && self.operation.is_none_or(|o| o == r.operation)
            && self.outcome.is_none_or(|o| o == r.outcome)
    }
}

/// An RFC 3339 time as a position bound: `since` includes that instant,
/// `until` includes it too.
pub fn time_bound(raw: &str, upper: bool) -> Result<String, AdminError> {
    let t = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| AdminError::bad("invalid_time", format!("{raw:?} is not an RFC 3339 time")))?;
    // `#` sorts below every id character and `~` above them.
    Ok(format!("{}{}", sortable(t), if upper { "#~" } else { "#" }))
}

pub fn record_view(r: &AuditRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("position".into(), json!(r.position()));
        o.insert("operation".into(), json!(r.operation.name()));
        o.remove("expiresAt");
    }
    v
}

impl Admin {
    /// A page of the trail and the cursor of the next one.
    pub async fn audit(
        &self,
        raw: &str,
        filter: &AuditFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<AuditRecord>, Option<String>), AdminError> {
        let t = self.get_tenant(raw).await?.id;
        let (mut after, mut until) = (filter.after.clone(), filter.until.clone());
        // The cursor is the last position served; the next page starts
        // past it in the reading direction.
        match (&cursor, filter.ascending) {
            (Some(c), true) => after = Some(c.clone()),
            (Some(c), false) => until = Some(c.clone()),
            (None, _) => {}
        }
        let mut out = Vec::new();
        let mut scanned = 0;
        loop {
            let batch = self
                .store
                .audit_range(
                    &t,
                    after.as_deref(),
                    until.as_deref(),
                    filter.ascending,
                    SCAN_BATCH,
                )
                .await?;
            let full = batch.len() == SCAN_BATCH;
            for r in batch {
                let pos = r.position();
                if cursor.as_deref() == Some(pos.as_str()) {
                    continue;
                }
                scanned += 1;
                if filter.ascending {
                    after = Some(pos.clone());
                } else {
                    until = Some(pos.clone());
                }
                if filter.matches(&r) {
                    out.push(r);
                    if out.len() == limit {
                        return Ok((out, Some(pos)));
                    }
                }
            }
            if !full {
                return Ok((out, None));
            }
            if scanned >= SCAN_LIMIT {
                let next = if filter.ascending { after } else { until };
                return Ok((out, next));
            }
        }
    }

    /// Events after `after` (a position), oldest first, up to the hold-back
    /// horizon; the position to resume from.
    pub async fn events(
        &self,
        raw: &str,
        after: Option<String>,
        limit: usize,
        source: &str,
        holdback_secs: i64,
    ) -> Result<(Vec<Value>, Option<String>), AdminError> {
        let t = self.get_tenant(raw).await?.id;
        let horizon =
            time::OffsetDateTime::now_utc() - time::Duration::seconds(holdback_secs.max(0));
        let until = format!("{}#~", sortable(horizon));
        let records = self
            .store
            .audit_range(&t, after.as_deref(), Some(&until), true, limit)
            .await?;
        let next = records.last().map(AuditRecord::position).or(after);
        let events = records.iter().map(|r| to_cloud_event(r, source)).collect();
        Ok((events, next))
    }
}
