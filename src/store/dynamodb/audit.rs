//! Audit records: one item each, in the tenant's audit partition, written
//! in the same transaction as the change they describe.
//!
//! | item         | PK        | SK            |
//! |--------------|-----------|---------------|
//! | audit record | `T#{t}#A` | `{time}#{id}` |
//!
//! The sort key orders a tenant's trail by time; `expiresAt` (the table's
//! TTL attribute) ends its retention; `k = "audit"` lets the stream's
//! event filter pick records out (the publisher, `infra/events.md`).

use std::sync::Arc;

use super::keys::*;
use super::tx::{Expr, MAX_ACTIONS, Tag, Tx};
use super::{AuditRecord, DynamoStore, SkRange, StoreError, TenantId};

/// The `k` attribute of audit items.
pub(super) const AUDIT_KIND: &str = "audit";
/// The resource an audit item is about (for filtered reads).
const RES: &str = "res";

pub(super) fn audit_pk(t: &TenantId) -> String {
    format!("T#{t}#A")
}

pub(super) fn audit_item(r: &AuditRecord) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(r)
        .map_err(|e| StoreError::Backend(format!("encoding audit record: {e}")))?;
    let mut item = key(audit_pk(&r.tenant), r.position());
    item.insert(DOC.into(), s(doc));
    item.insert(KIND.into(), s(AUDIT_KIND));
    item.insert(RES.into(), s(r.resource_id.as_str()));
    item.insert(EXPIRES_AT.into(), n(r.expires_at));
    Ok(item)
}

/// Adds the records to a transaction (plain puts: ids are unique).
pub(super) fn push_audit(tx: &mut Tx, records: &[AuditRecord]) -> Result<(), StoreError> {
    for r in records {
        tx.put(audit_item(r)?, None, Expr::new(), Tag::Plain)?;
    }
    Ok(())
}

impl DynamoStore {
    pub(super) async fn store_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        for part in records.chunks(MAX_ACTIONS) {
            self.transact("TransactWriteItems (audit)", true, |_| {
                let mut tx = Tx::new(Arc::clone(&self.table));
                push_audit(&mut tx, part)?;
                Ok(tx)
            })
            .await?;
        }
        Ok(())
    }

    pub(super) async fn read_audit(
        &self,
        t: &TenantId,
        after: Option<&str>,
        until: Option<&str>,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        // Times start with a digit, so "0" and "A" bound every position.
        let lo = after.unwrap_or("0").to_owned();
        let hi = until.unwrap_or("A").to_owned();
        if lo > hi {
            return Ok(Vec::new());
        }
        // Ascending, the exclusive start is `after`; descending, the window
        // ends at `after`, which BETWEEN includes: read one more.
        let (start, want) = if forward {
            (after.map(str::to_owned), limit)
        } else {
            (None, limit + usize::from(after.is_some()))
        };
        let items = self
            .query(
                audit_pk(t),
                SkRange::Between(lo, hi),
                start,
                forward,
                Some(want),
            )
            .await?;
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            if after.is_some_and(|a| get_s(item, SK).is_ok_and(|sk| sk == a)) {
                continue;
            }
            let r: AuditRecord = serde_json::from_str(get_s(item, DOC)?)
                .map_err(|e| StoreError::Backend(format!("undecodable audit record: {e}")))?;
            out.push(r);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }
}
