//! The DynamoDB store: every tenant's users, groups and memberships in one
//! table, defined once, as `ScimTable` in `template.yaml`.
//!
//! `infra/dynamodb.md` is the design: the item types and their keys, why
//! there is no GSI, what each operation costs in DynamoDB calls, and what is
//! atomic. In short:
//!
//! | item            | PK                 | SK                     |
//! |-----------------|--------------------|------------------------|
//! | resource        | `T#{t}`            | `R#{kind}#{id}`        |
//! | unique marker   | `T#{t}`            | `K#{kind}#{attr}#{v}`  |
//! | counter shard   | `T#{t}`            | `C#{kind}#{0..8}`      |
//! | page bookmark   | `T#{t}`            | `B#{kind}#{offset}`    |
//! | membership      | `T#{t}#G#{group}`  | `M#{member}`           |
//! | reverse         | `T#{t}#M#{member}` | `G#{group}`            |
//! | tenant          | `TENANT#{t}`       | `TENANT`               |
//! | reveal link     | `TENANT#{t}`       | `REVEAL#{hash}`        |
//! | tenant directory| `TENANTS`          | `{t}`                  |
//!
//! Every write that must be atomic is one `TransactWriteItems` whose
//! conditions carry the semantics (versions, unique keys, membership
//! presence); `tx.rs` reads a cancellation back into a [`StoreError`]. Only
//! membership changes too big for one transaction are chunked, after an
//! atomic first transaction. A members-only change without If-Match keeps
//! the group item out of its transactions (concurrent transactions on one
//! item cancel each other): the memberships are written first, then the
//! group's version and count with one plain `UpdateItem`.

mod audit;
mod call;
mod keys;
mod pool;
mod table;
mod tenants;
#[cfg(test)]
mod tests;
mod tx;

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{DeleteRequest, KeysAndAttributes, ReturnValue, WriteRequest};
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use self::audit::push_audit;
use self::call::{CallCounter, CallError, transient_cancel, transient_code, with_retries};
use self::keys::*;
use self::pool::{pool_actions, push_pool_ops};
use self::tx::{Drops, Expr, MAX_ACTIONS, Tag, Tx, interpret, merge};
use super::{
    AuditRecord, MemberDelta, MemberRef, PoolOp, RevealRecord, SeatPool, Store, StoreError,
    StoredResource, TenantId, TenantRecord, UniqueKey, Update, Waiting,
};
use crate::scim::schema::Kind;

pub use self::table::{TEMPLATE_RESOURCE, create_table_from_template};

/// `BatchGetItem` takes at most 100 keys: two per id (one per kind).
const IDS_PER_BATCH_GET: usize = 50;
/// `BatchWriteItem` takes at most 25 requests.
const BATCH_WRITE: usize = 25;
/// Batch reads of one operation in flight at once.
const CONCURRENCY: usize = 4;
/// Reverse-membership Queries in flight when rendering a page of users.
const GROUPS_QUERY_CONCURRENCY: usize = 16;
/// Batch deletes in flight when dropping a deleted group's memberships:
/// a 100,000-member group means 8,000 calls.
const CLEANUP_CONCURRENCY: usize = 8;
/// Memberships of a deleted resource read per page when cleaning up.
const CLEANUP_PAGE: usize = 1000;
/// How long a page bookmark is trusted (and kept, through the table's TTL).
const BOOKMARK_TTL_SECS: i64 = 3600;
/// Re-reads of a resource that changed between `delete`'s read and write.
const DELETE_ATTEMPTS: usize = 8;

/// A [`Store`] on one DynamoDB table. Cheap to clone; clones share the
/// client and the call counter.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    calls: Arc<AtomicU64>,
    budget: Duration,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// How long readers treat a group as settling after the first transaction
/// of a chunked member change, if its writer never clears the mark: far
/// beyond the Lambda timeout (28 s) that bounds any one request.
const SETTLE_SECS: i64 = 300;

/// The settling mark of one chunked member change: a deadline for readers,
/// and a token of its own, so that of two such changes overlapping on one
/// group the first to finish cannot remove the other's mark.
struct Settle {
    until: i64,
    token: String,
}

impl Settle {
    /// The mark for a change with `rest` chunks after its first, if any.
    fn of(rest: &[Range<usize>]) -> Option<Settle> {
        (!rest.is_empty()).then(|| Settle {
            until: unix_now() + SETTLE_SECS,
            token: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// The `SET` clauses that mark the group, bound by [`Settle::bind`].
    const SET: &'static str = ", #mw = :mw, #mwt = :mwt";

    fn bind(&self, expr: Expr) -> Expr {
        expr.name("#mw", MW)
            .name("#mwt", MW_TOKEN)
            .value(":mw", n(self.until))
            .value(":mwt", s(self.token.as_str()))
    }
}

/// Time limits of DynamoDB calls. The defaults suit Lambda; tests against
/// the (slow, single-threaded) emulator raise them through
/// `DYNAMODB_RETRY_BUDGET_MS` and `DYNAMODB_ATTEMPT_TIMEOUT_MS`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long transient faults are retried before answering 503.
    pub budget: Duration,
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            budget: call::DEFAULT_BUDGET,
            connect_timeout: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(3),
        }
    }
}

impl DynamoStore {
    /// A store on `table`, configured from the environment the usual AWS
    /// way (region, credentials, and `AWS_ENDPOINT_URL` for an emulator).
    pub async fn from_env(table: String) -> DynamoStore {
        let conf = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let ms = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
        };
        let mut timing = Timing::default();
        if let Some(b) = ms("DYNAMODB_RETRY_BUDGET_MS") {
            timing.budget = b;
        }
        if let Some(t) = ms("DYNAMODB_ATTEMPT_TIMEOUT_MS") {
            timing.attempt_timeout = t;
        }
        DynamoStore::with_timing(&conf, table, timing)
    }

    /// A store on `table` with a client built from `conf`. The SDK's own
    /// retries are turned off: the store retries within its time budget, so
    /// that a throttled request answers 503 in bounded time.
    pub fn from_conf(conf: &SdkConfig, table: impl Into<String>) -> DynamoStore {
        DynamoStore::with_timing(conf, table, Timing::default())
    }

    pub fn with_timing(conf: &SdkConfig, table: impl Into<String>, timing: Timing) -> DynamoStore {
        let calls = Arc::new(AtomicU64::new(0));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(timing.connect_timeout)
            .operation_attempt_timeout(timing.attempt_timeout)
            .build();
        let config = aws_sdk_dynamodb::config::Builder::from(conf)
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .interceptor(CallCounter(Arc::clone(&calls)))
            .build();
        DynamoStore {
            client: Client::from_conf(config),
            table: table.into().into(),
            calls,
            budget: timing.budget,
        }
    }

    /// The client, e.g. for [`create_table_from_template`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// DynamoDB requests sent so far by this store and its clones (retries
    /// included), to measure what an operation costs.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

fn now() -> Result<String, StoreError> {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .map_err(|e| StoreError::Backend(format!("formatting time: {e}")))
}

fn not_a_group() -> StoreError {
    StoreError::Backend("only groups have members".into())
}

fn other_kind(kind: Kind) -> Kind {
    match kind {
        Kind::User => Kind::Group,
        Kind::Group => Kind::User,
    }
}

fn pk_expr() -> Expr {
    Expr::new().name("#pk", PK)
}

fn dedupe_keys(keys: &[UniqueKey]) -> Vec<UniqueKey> {
    let mut seen = HashSet::new();
    keys.iter()
        .filter(|k| seen.insert((k.attr, k.value.as_str())))
        .cloned()
        .collect()
}

fn clamp_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The sort-key condition of a Query.
enum SkRange {
    Prefix(String),
    Between(String, String),
}

/// One membership change, already known to change something unless its
/// condition says otherwise (see [`Tag::Add`], [`Tag::Remove`]).
#[derive(Debug, Clone)]
enum MemberOp {
    Add(MemberRef),
    Remove(String),
}

impl MemberOp {
    fn actions(&self, group: &str) -> usize {
        match self {
            // A group in itself needs no existence check: it is the group.
            MemberOp::Add(m) if m.id == group => 2,
            MemberOp::Add(_) => 3,
            MemberOp::Remove(_) => 2,
        }
    }
}

/// Cuts `ops` into transactions: the first has `first_room` actions left
/// for memberships, the others `room`.
fn split(ops: &[MemberOp], group: &str, first_room: usize, room: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut used, mut cap) = (0, 0, first_room);
    for (i, op) in ops.iter().enumerate() {
        let cost = op.actions(group);
        if used + cost > cap && i > start {
            ranges.push(start..i);
            (start, used, cap) = (i, 0, room);
        }
        used += cost;
    }
    ranges.push(start..ops.len());
    ranges
}

/// The ops of `range` still to write, with their indices (for tags).
fn chunk<'o>(
    ops: &'o [MemberOp],
    range: &Range<usize>,
    drops: &Drops,
) -> Vec<(usize, &'o MemberOp)> {
    range
        .clone()
        .filter(|i| !drops.ops.contains(i))
        .filter_map(|i| ops.get(i).map(|op| (i, op)))
        .collect()
}

/// The audit record of one transaction's part of a membership change.
fn part_record(
    audit: Option<&AuditRecord>,
    index: usize,
    part: &[(usize, &MemberOp)],
) -> Option<AuditRecord> {
    let r = audit?;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for (_, op) in part {
        match op {
            MemberOp::Add(m) => added.push(m.id.clone()),
            MemberOp::Remove(id) => removed.push(id.clone()),
        }
    }
    Some(r.for_part(index, added, removed))
}

/// The records of a write's first transaction: when it carries only part
/// of a membership change, the change's record names only that part.
fn first_part_records(
    audit: &[AuditRecord],
    ops: &[MemberOp],
    part: &[(usize, &MemberOp)],
) -> Vec<AuditRecord> {
    let mut out = audit.to_vec();
    if !ops.is_empty()
        && let Some(first) = out.first_mut()
        && let Some(r) = part_record(Some(first), 0, part)
    {
        *first = r;
    }
    out
}

/// Net change of a group's member count if `chunk` commits.
fn net(chunk: &[(usize, &MemberOp)]) -> i64 {
    chunk
        .iter()
        .map(|(_, op)| match op {
            MemberOp::Add(_) => 1,
            MemberOp::Remove(_) => -1,
        })
        .sum()
}

/// Adds the actions of membership changes to `group`. Each is conditional
/// on the membership's presence, so that the count the caller adds moves by
/// exactly what changed; a no-op shows up as a cancellation and is dropped.
fn push_member_ops(
    tx: &mut Tx,
    t: &TenantId,
    group: &str,
    chunk: &[(usize, &MemberOp)],
) -> Result<(), StoreError> {
    for &(i, op) in chunk {
        match op {
            MemberOp::Add(m) => {
                let [forward, reverse] = membership_items(t, group, &m.id, m.kind);
                tx.put(
                    forward,
                    Some("attribute_not_exists(#pk)"),
                    pk_expr(),
                    Tag::Add(i),
                )?;
                tx.put(reverse, None, Expr::new(), Tag::Plain)?;
                if m.id != group {
                    tx.check(
                        key(tenant_pk(t), resource_sk(m.kind, &m.id)),
                        "attribute_exists(#pk)",
                        pk_expr(),
                        Tag::Exists(i, m.id.clone()),
                    )?;
                }
            }
            MemberOp::Remove(id) => {
                tx.delete(
                    key(group_pk(t, group), member_sk(id)),
                    Some("attribute_exists(#pk)"),
                    pk_expr(),
                    Tag::Remove(i),
                )?;
                tx.delete(
                    key(member_of_pk(t, id), member_of_sk(group)),
                    None,
                    Expr::new(),
                    Tag::Plain,
                )?;
            }
        }
    }
    Ok(())
}

/// Removes a deleted resource `id` from the groups `leaves` names: its
/// membership item, the reverse item, and the group's count and version.
fn push_leaves(
    tx: &mut Tx,
    t: &TenantId,
    id: &str,
    leaves: &[(usize, &str)],
    drops: &Drops,
    now: &str,
) -> Result<(), StoreError> {
    for &(i, group) in leaves {
        tx.delete(
            key(member_of_pk(t, id), member_of_sk(group)),
            None,
            Expr::new(),
            Tag::Plain,
        )?;
        // Already removed by a concurrent change: only the (stray) reverse
        // item is left to delete, and the group's count is right.
        if drops.leaves.contains(&i) {
            continue;
        }
        tx.delete(
            key(group_pk(t, group), member_sk(id)),
            Some("attribute_exists(#pk)"),
            pk_expr(),
            Tag::Leave(i),
        )?;
        // A group in itself is the item being deleted; a group that is gone
        // has nothing to bump (and an update would resurrect a stub of it).
        if group != id && !drops.leave_groups.contains(&i) {
            tx.update(
                key(tenant_pk(t), resource_sk(Kind::Group, group)),
                "SET #lm = :now ADD #ver :one, #mc :minus",
                Some("attribute_exists(#pk)"),
                pk_expr()
                    .name("#lm", LM)
                    .name("#ver", VER)
                    .name("#mc", MC)
                    .value(":now", s(now))
                    .value(":one", n(1))
                    .value(":minus", n(-1)),
                Tag::LeaveGroup(i),
            )?;
        }
    }
    Ok(())
}

/// Actions one leave costs.
fn leave_actions(group: &str, id: &str) -> usize {
    if group == id { 2 } else { 3 }
}

impl DynamoStore {
    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = with_retries("GetItem", self.budget, transient_code, || {
            self.client
                .get_item()
                .table_name(self.table.as_ref())
                .set_key(Some(key.clone()))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(CallError::into_store)?;
        Ok(out.item)
    }

    async fn put_item(&self, item: Item) -> Result<(), StoreError> {
        with_retries("PutItem", self.budget, transient_code, || {
            self.client
                .put_item()
                .table_name(self.table.as_ref())
                .set_item(Some(item.clone()))
                .send()
        })
        .await
        .map_err(CallError::into_store)?;
        Ok(())
    }

    /// A strongly consistent Query of one partition, in sort key order (or
    /// reversed), starting after the sort key `after`, until `limit` items
    /// or the end; DynamoDB's 1 MB pages are followed transparently.
    async fn query(
        &self,
        pk: String,
        range: SkRange,
        after: Option<String>,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let (cond, expr) = match range {
            SkRange::Prefix(p) => ("#pk = :pk AND begins_with(#sk, :p)", vec![(":p", p)]),
            SkRange::Between(lo, hi) => (
                "#pk = :pk AND #sk BETWEEN :lo AND :hi",
                vec![(":lo", lo), (":hi", hi)],
            ),
        };
        let mut values: std::collections::HashMap<String, _> = expr
            .into_iter()
            .map(|(k, v)| (k.to_owned(), s(v)))
            .collect();
        values.insert(":pk".into(), s(pk.as_str()));
        let names = std::collections::HashMap::from([
            ("#pk".to_owned(), PK.to_owned()),
            ("#sk".to_owned(), SK.to_owned()),
        ]);
        let mut start = after.map(|sk| key(pk.clone(), start_after(sk)));
        let mut out = Vec::new();
        loop {
            let want = match limit {
                Some(l) if out.len() >= l => break,
                Some(l) => Some(clamp_i32(l - out.len())),
                None => None,
            };
            let resp = with_retries("Query", self.budget, transient_code, || {
                self.client
                    .query()
                    .table_name(self.table.as_ref())
                    .key_condition_expression(cond)
                    .set_expression_attribute_names(Some(names.clone()))
                    .set_expression_attribute_values(Some(values.clone()))
                    .consistent_read(true)
                    .scan_index_forward(forward)
                    .set_limit(want)
                    .set_exclusive_start_key(start.clone())
                    .send()
            })
            .await
            .map_err(CallError::into_store)?;
            out.extend(resp.items.unwrap_or_default());
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// One `BatchGetItem` (≤ 100 keys), re-sending unprocessed keys.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let start = Instant::now();
        let mut out = Vec::new();
        let mut pending = keys;
        let mut attempt = 0;
        while !pending.is_empty() {
            if attempt > 0 {
                call::pause("BatchGetItem", start, self.budget, attempt).await?;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending.clone()))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Backend(format!("building BatchGetItem: {e}")))?;
            let resp = with_retries("BatchGetItem", self.budget, transient_code, || {
                self.client
                    .batch_get_item()
                    .request_items(self.table.as_ref(), request.clone())
                    .send()
            })
            .await
            .map_err(CallError::into_store)?;
            if let Some(mut found) = resp.responses {
                out.extend(found.remove(self.table.as_ref()).unwrap_or_default());
            }
            pending = resp
                .unprocessed_keys
                .and_then(|mut u| u.remove(self.table.as_ref()))
                .map(|k| k.keys)
                .unwrap_or_default();
            attempt += 1;
        }
        Ok(out)
    }

    /// Deletes items by key with `BatchWriteItem` (not atomic, for cleanup
    /// only), a few calls in flight, re-sending unprocessed items.
    async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        let requests = keys
            .into_iter()
            .map(|k| {
                DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(|e| StoreError::Backend(format!("building BatchWriteItem: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let chunks: Vec<Vec<WriteRequest>> =
            requests.chunks(BATCH_WRITE).map(<[_]>::to_vec).collect();
        futures::stream::iter(chunks.into_iter().map(|c| self.batch_write(c)))
            .buffer_unordered(CLEANUP_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let start = Instant::now();
        let mut pending = requests;
        let mut attempt = 0;
        while !pending.is_empty() {
            if attempt > 0 {
                call::pause("BatchWriteItem", start, self.budget, attempt).await?;
            }
            let resp = with_retries("BatchWriteItem", self.budget, transient_code, || {
                self.client
                    .batch_write_item()
                    .request_items(self.table.as_ref(), pending.clone())
                    .send()
            })
            .await
            .map_err(CallError::into_store)?;
            pending = resp
                .unprocessed_items
                .and_then(|mut u| u.remove(self.table.as_ref()))
                .unwrap_or_default();
            attempt += 1;
        }
        Ok(())
    }

    /// Runs the transaction `build` makes, dropping the actions a
    /// cancellation shows to be no-ops and trying again, until it commits or
    /// a cancellation is an answer (see [`interpret`]). Returns the drops of
    /// the round that committed (or that left nothing to send), which say
    /// what was written.
    ///
    /// A request keeps its client request token across retries of faults
    /// with an unknown outcome (timeouts, 5xx), so it cannot apply twice; a
    /// cancelled request wrote nothing and is re-sent with a new one.
    async fn transact<F>(&self, what: &str, strict: bool, mut build: F) -> Result<Drops, StoreError>
    where
        F: FnMut(&Drops) -> Result<Tx, StoreError>,
    {
        let start = Instant::now();
        let mut drops = Drops::default();
        let (mut rounds, mut contended) = (0, 0);
        loop {
            let tx = build(&drops)?;
            if tx.items.is_empty() {
                return Ok(drops);
            }
            let token = uuid::Uuid::new_v4().to_string();
            let result = with_retries(what, self.budget, transient_code, || {
                self.client
                    .transact_write_items()
                    .set_transact_items(Some(tx.items.clone()))
                    .client_request_token(&token)
                    .send()
            })
            .await;
            let cancelled = match result {
                Ok(_) => return Ok(drops),
                Err(CallError::Service(TransactWriteItemsError::TransactionCanceledException(
                    c,
                ))) => c,
                Err(e) => return Err(e.into_store()),
            };
            if transient_cancel(&cancelled) {
                call::pause(what, start, self.budget, contended).await?;
                contended += 1;
                continue;
            }
            merge(
                &mut drops,
                interpret(&tx.tags, cancelled.cancellation_reasons(), strict)?,
            )?;
            // Every round drops at least one action, so this never trips.
            rounds += 1;
            if rounds > MAX_ACTIONS {
                return Err(StoreError::Backend(format!("{what}: too many rounds")));
            }
        }
    }

    /// Member changes beyond the first transaction, one transaction per
    /// chunk. Each adjusts the count without bumping the version: the
    /// operation made one new version, in its first transaction, which also
    /// marked the group settling until `settle`; the mark is removed after
    /// the last chunk, whatever its outcome. A member deleted meanwhile is
    /// skipped; a group deleted meanwhile ends it.
    async fn write_chunks(
        &self,
        t: &TenantId,
        group: &str,
        ops: &[MemberOp],
        ranges: &[Range<usize>],
        audit: Option<&AuditRecord>,
        settle: Option<&Settle>,
    ) -> Result<(), StoreError> {
        let written = self.write_chunk_parts(t, group, ops, ranges, audit).await;
        if let Some(mark) = settle {
            self.settled(t, group, mark).await;
        }
        written
    }

    /// Removes this change's settling mark from a group, unless a later
    /// chunked change set its own. Best effort: a mark left behind expires.
    async fn settled(&self, t: &TenantId, group: &str, mark: &Settle) {
        let group_key = key(tenant_pk(t), resource_sk(Kind::Group, group));
        let result = with_retries("UpdateItem (settled)", self.budget, transient_code, || {
            self.client
                .update_item()
                .table_name(self.table.as_ref())
                .set_key(Some(group_key.clone()))
                .update_expression("REMOVE #mw, #mwt")
                .condition_expression("#mwt = :mwt")
                .expression_attribute_names("#mw", MW)
                .expression_attribute_names("#mwt", MW_TOKEN)
                .expression_attribute_values(":mwt", s(mark.token.as_str()))
                .send()
        })
        .await;
        match result {
            Ok(_)
            | Err(CallError::Service(UpdateItemError::ConditionalCheckFailedException(_))) => {}
            Err(e) => tracing::warn!(error = %e.into_store(), group, "clearing a settling mark"),
        }
    }

    async fn write_chunk_parts(
        &self,
        t: &TenantId,
        group: &str,
        ops: &[MemberOp],
        ranges: &[Range<usize>],
        audit: Option<&AuditRecord>,
    ) -> Result<(), StoreError> {
        let group_key = key(tenant_pk(t), resource_sk(Kind::Group, group));
        for (i, range) in ranges.iter().enumerate() {
            let result = self
                .transact("TransactWriteItems (members)", false, |drops| {
                    let mut tx = Tx::new(Arc::clone(&self.table));
                    let part = chunk(ops, range, drops);
                    if part.is_empty() {
                        return Ok(tx);
                    }
                    tx.update(
                        group_key.clone(),
                        "ADD #mc :d",
                        Some("attribute_exists(#pk)"),
                        pk_expr().name("#mc", MC).value(":d", n(net(&part))),
                        Tag::Target {
                            if_present: StoreError::Backend("group update refused".into()),
                            if_absent: StoreError::NotFound,
                        },
                    )?;
                    // Each transaction carries the record of its own part.
                    if let Some(r) = part_record(audit, i + 1, &part) {
                        push_audit(&mut tx, &[r])?;
                    }
                    push_member_ops(&mut tx, t, group, &part)?;
                    Ok(tx)
                })
                .await;
            match result {
                Err(StoreError::NotFound) => return Ok(()),
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// `update_members` with If-Match: the group's version condition, its
    /// bump and the first ~30 adds / ~49 removes are one transaction, so the
    /// change is atomic and conditional; more continue in chunks. The group
    /// is read back, since a transaction returns nothing.
    async fn update_members_pinned(
        &self,
        t: &TenantId,
        group: &str,
        ops: &[MemberOp],
        expected: u64,
        now: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<StoredResource, StoreError> {
        let room = MAX_ACTIONS - 1 - usize::from(audit.is_some());
        let ranges = split(ops, group, room, room);
        // This transaction bumps the group: its record names the version.
        let pinned_record = audit.map(|r| AuditRecord {
            version: Some(expected + 1),
            ..r.clone()
        });
        let (first, rest) = ranges
            .split_first()
            .map_or((0..0, &[][..]), |(f, r)| (f.clone(), r));
        let group_key = key(tenant_pk(t), resource_sk(Kind::Group, group));
        let settle = Settle::of(rest);
        self.transact("TransactWriteItems (members)", true, |drops| {
            let part = chunk(ops, &first, drops);
            let mut tx = Tx::new(Arc::clone(&self.table));
            let mut expr = Expr::new()
                .name("#lm", LM)
                .name("#ver", VER)
                .name("#mc", MC)
                .value(":now", s(now))
                .value(":one", n(1))
                .value(":d", n(net(&part)))
                .value(":v", n(expected));
            let mut mark = "";
            if let Some(m) = &settle {
                expr = m.bind(expr);
                mark = Settle::SET;
            }
            tx.update(
                group_key.clone(),
                &format!("SET #lm = :now{mark} ADD #ver :one, #mc :d"),
                Some("#ver = :v"),
                expr,
                Tag::Target {
                    if_present: StoreError::VersionMismatch,
                    if_absent: StoreError::NotFound,
                },
            )?;
            if let Some(r) = part_record(pinned_record.as_ref(), 0, &part) {
                push_audit(&mut tx, &[r])?;
            }
            push_member_ops(&mut tx, t, group, &part)?;
            Ok(tx)
        })
        .await?;
        self.write_chunks(t, group, ops, rest, audit, settle.as_ref())
            .await?;
        // Possibly with a later concurrent change included.
        self.get(t, Kind::Group, group)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// `update_members` without If-Match, the common case (one IdP PATCH
    /// adding or removing a member). The group item is never part of a
    /// transaction here: DynamoDB cancels concurrent transactions on one
    /// item (and rejects a plain write racing one), so 100 simultaneous adds
    /// to one group would thrash on it. Instead:
    ///
    /// 1. the membership actions alone, in transactions of ≤ 100 actions
    ///    (the first strict: a missing member fails it and nothing is
    ///    written; later ones skip members deleted meanwhile);
    /// 2. one plain `UpdateItem` of the group (`ver + 1`, `lm`, `mc` by the
    ///    net change), conditioned only on its existence and returning the
    ///    group as written. Plain updates of one item serialise and never
    ///    conflict.
    ///
    /// If the group is gone at step 2, the memberships this call added are
    /// deleted again and the answer is `NotFound`. If the process dies
    /// between the steps, the memberships are right but `ver` and `mc` miss
    /// this change (see `infra/dynamodb.md`).
    async fn update_members_free(
        &self,
        t: &TenantId,
        group: &str,
        ops: &[MemberOp],
        now: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<StoredResource, StoreError> {
        let room = MAX_ACTIONS - usize::from(audit.is_some());
        let ranges = split(ops, group, room, room);
        let mut written: Vec<usize> = Vec::new();
        let mut d = 0i64;
        let mut failure = None;
        for (round, range) in ranges.iter().enumerate() {
            let result = self
                .transact("TransactWriteItems (members)", round == 0, |drops| {
                    let mut tx = Tx::new(Arc::clone(&self.table));
                    let part = chunk(ops, range, drops);
                    // The group's version is bumped after, outside the
                    // transaction: the record orders by time instead.
                    if let Some(r) = part_record(audit, round, &part) {
                        push_audit(&mut tx, &[r])?;
                    }
                    push_member_ops(&mut tx, t, group, &part)?;
                    Ok(tx)
                })
                .await;
            match result {
                Ok(drops) => {
                    let part = chunk(ops, range, &drops);
                    d += net(&part);
                    written.extend(part.iter().map(|&(i, _)| i));
                }
                // The first transaction wrote nothing: answer as if the
                // group were part of it (its absence ranks first).
                Err(e) if round == 0 => {
                    if matches!(e, StoreError::MemberNotFound(_))
                        && self.get(t, Kind::Group, group).await?.is_none()
                    {
                        return Err(StoreError::NotFound);
                    }
                    return Err(e);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // After a failed later chunk, what did commit is still counted.
        let bumped = self.bump_group(t, group, d, now).await;
        if matches!(bumped, Err(StoreError::NotFound)) {
            self.undo_adds(t, group, ops, &written).await;
        }
        match failure {
            Some(e) if bumped.is_ok() => Err(e),
            _ => bumped,
        }
    }

    /// The group half of a members-only change: one `UpdateItem` of the
    /// group item, outside any transaction, returning it as written.
    async fn bump_group(
        &self,
        t: &TenantId,
        group: &str,
        d: i64,
        now: &str,
    ) -> Result<StoredResource, StoreError> {
        let group_key = key(tenant_pk(t), resource_sk(Kind::Group, group));
        let names = std::collections::HashMap::from(
            [("#pk", PK), ("#lm", LM), ("#ver", VER), ("#mc", MC)]
                .map(|(alias, name)| (alias.to_owned(), name.to_owned())),
        );
        let values = std::collections::HashMap::from(
            [(":now", s(now)), (":one", n(1)), (":d", n(d))]
                .map(|(alias, value)| (alias.to_owned(), value)),
        );
        let result = with_retries("UpdateItem (group)", self.budget, transient_code, || {
            self.client
                .update_item()
                .table_name(self.table.as_ref())
                .set_key(Some(group_key.clone()))
                .update_expression("SET #lm = :now ADD #ver :one, #mc :d")
                .condition_expression("attribute_exists(#pk)")
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .return_values(ReturnValue::AllNew)
                .send()
        })
        .await;
        match result {
            Ok(out) => decode_resource(&out.attributes.unwrap_or_default()),
            Err(CallError::Service(UpdateItemError::ConditionalCheckFailedException(_))) => {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(e.into_store()),
        }
    }

    /// Best effort: deletes the memberships (both items) that ops
    /// `written` added to a group found deleted, so that none dangles. A
    /// failure is only logged; a retried DELETE of the group removes what
    /// is left.
    async fn undo_adds(&self, t: &TenantId, group: &str, ops: &[MemberOp], written: &[usize]) {
        let keys: Vec<Item> = written
            .iter()
            .filter_map(|&i| match ops.get(i) {
                Some(MemberOp::Add(m)) => Some(m.id.as_str()),
                _ => None,
            })
            .flat_map(|m| {
                [
                    key(group_pk(t, group), member_sk(m)),
                    key(member_of_pk(t, m), member_of_sk(group)),
                ]
            })
            .collect();
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.batch_delete(keys).await {
            tracing::warn!(error = %e, group, "removing memberships of a deleted group");
        }
    }

    /// The sort keys of a partition under `prefix`, without the prefix
    /// (member ids of a group, group ids of a member): one Query.
    async fn sk_suffixes(&self, pk: String, prefix: &str) -> Result<Vec<String>, StoreError> {
        let items = self
            .query(pk, SkRange::Prefix(prefix.into()), None, true, None)
            .await?;
        items
            .iter()
            .map(|i| sk_suffix(i, prefix).map(str::to_owned))
            .collect()
    }

    /// Every member id of a group, for a `clear`.
    async fn all_member_ids(&self, t: &TenantId, group: &str) -> Result<Vec<String>, StoreError> {
        self.sk_suffixes(group_pk(t, group), "M#").await
    }

    /// The membership writes a delta needs. Presence is known only after a
    /// `clear` (which has to read the members anyway); otherwise each op is
    /// conditional and a no-op is discovered by its failed condition, which
    /// costs a round trip only when it happens.
    async fn plan(
        &self,
        t: &TenantId,
        group: &str,
        delta: &MemberDelta,
    ) -> Result<Vec<MemberOp>, StoreError> {
        let mut seen = HashSet::new();
        let adds: Vec<&MemberRef> = delta
            .add
            .iter()
            .filter(|m| id_ok(&m.id) && seen.insert(m.id.as_str()))
            .collect();
        let add_ids: HashSet<&str> = adds.iter().map(|m| m.id.as_str()).collect();
        let mut ops = Vec::new();
        if delta.clear {
            let current = self.all_member_ids(t, group).await?;
            let present: HashSet<&str> = current.iter().map(String::as_str).collect();
            ops.extend(
                current
                    .iter()
                    .filter(|id| !add_ids.contains(id.as_str()))
                    .map(|id| MemberOp::Remove(id.clone())),
            );
            ops.extend(
                adds.iter()
                    .filter(|m| !present.contains(m.id.as_str()))
                    .map(|m| MemberOp::Add((*m).clone())),
            );
        } else {
            let mut removed = HashSet::new();
            ops.extend(
                delta
                    .remove
                    .iter()
                    .filter(|id| id_ok(id) && !add_ids.contains(id.as_str()))
                    .filter(|id| removed.insert(id.as_str()))
                    .map(|id| MemberOp::Remove(id.clone())),
            );
            ops.extend(adds.iter().map(|m| MemberOp::Add((*m).clone())));
        }
        Ok(ops)
    }

    /// Finishes removing a deleted resource's memberships: the groups it
    /// was in (each bumped), and for a group its own member items. Run
    /// after the resource's deletion committed, when no new membership of
    /// it can appear, so one pass leaves nothing behind.
    async fn cleanup(
        &self,
        t: &TenantId,
        kind: Kind,
        id: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        let leaves = self.cleanup_leaves(t, kind, id, now);
        let members = async {
            if kind == Kind::Group {
                self.cleanup_members(t, id).await
            } else {
                Ok(())
            }
        };
        tokio::try_join!(leaves, members)?;
        Ok(())
    }

    async fn cleanup_leaves(
        &self,
        t: &TenantId,
        kind: Kind,
        id: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        let per_tx = MAX_ACTIONS / 3;
        let mut after = None;
        loop {
            let page = self
                .query(
                    member_of_pk(t, id),
                    SkRange::Prefix("G#".into()),
                    after.clone(),
                    true,
                    Some(per_tx),
                )
                .await?;
            let groups = leave_groups(&page, kind)?;
            if !groups.is_empty() {
                let leaves: Vec<(usize, &str)> =
                    groups.iter().map(String::as_str).enumerate().collect();
                self.transact("TransactWriteItems (cleanup)", false, |drops| {
                    let mut tx = Tx::new(Arc::clone(&self.table));
                    push_leaves(&mut tx, t, id, &leaves, drops, now)?;
                    Ok(tx)
                })
                .await?;
            }
            if page.len() < per_tx {
                return Ok(());
            }
            after = page
                .last()
                .map(|i| get_s(i, SK).map(str::to_owned))
                .transpose()?;
        }
    }

    async fn cleanup_members(&self, t: &TenantId, group: &str) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let page = self
                .query(
                    group_pk(t, group),
                    SkRange::Prefix("M#".into()),
                    after.clone(),
                    true,
                    Some(CLEANUP_PAGE),
                )
                .await?;
            let mut keys = Vec::with_capacity(page.len() * 2);
            for item in &page {
                let member = sk_suffix(item, "M#")?;
                keys.push(key(group_pk(t, group), member_sk(member)));
                if member != group {
                    keys.push(key(member_of_pk(t, member), member_of_sk(group)));
                }
            }
            self.batch_delete(keys).await?;
            if page.len() < CLEANUP_PAGE {
                return Ok(());
            }
            after = page
                .last()
                .map(|i| get_s(i, SK).map(str::to_owned))
                .transpose()?;
        }
    }

    /// The bookmark at or below `offset`: the id the page at that offset
    /// starts after, and how many items remain to skip from there.
    async fn bookmark(
        &self,
        t: &TenantId,
        kind: Kind,
        offset: u64,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let found = self
            .query(
                tenant_pk(t),
                SkRange::Between(bookmark_sk(kind, 1), bookmark_sk(kind, offset)),
                None,
                false,
                Some(1),
            )
            .await?;
        let Some(item) = found.first() else {
            return Ok(None);
        };
        // TTL deletion lags by up to days: expiry is checked here.
        if get_n(item, EXPIRES_AT)? <= OffsetDateTime::now_utc().unix_timestamp() {
            return Ok(None);
        }
        let at = bookmark_offset(get_s(item, SK)?, kind)
            .ok_or_else(|| StoreError::Backend("undecodable bookmark".into()))?;
        Ok(Some((
            get_s(item, AFTER)?.to_owned(),
            offset.saturating_sub(at),
        )))
    }

    async fn put_bookmark(
        &self,
        t: &TenantId,
        kind: Kind,
        offset: u64,
        after: &str,
    ) -> Result<(), StoreError> {
        let mut item = key(tenant_pk(t), bookmark_sk(kind, offset));
        item.insert(AFTER.into(), s(after));
        let expires = OffsetDateTime::now_utc().unix_timestamp() + BOOKMARK_TTL_SECS;
        item.insert(EXPIRES_AT.into(), n(expires));
        self.put_item(item).await
    }
}

/// The groups of a deleted resource's reverse items. Only items recording
/// its kind count: the id of a long-deleted resource of the other kind
/// could be reused (never with server-minted UUIDs, but cheap to respect).
fn leave_groups(items: &[Item], kind: Kind) -> Result<Vec<String>, StoreError> {
    let mut groups = Vec::new();
    for item in items {
        if get_s(item, KIND)? == kind.name() {
            groups.push(sk_suffix(item, "G#")?.to_owned());
        }
    }
    Ok(groups)
}

#[async_trait]
impl Store for DynamoStore {
    fn backend_calls(&self) -> Option<u64> {
        Some(self.calls())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        kind: Kind,
        id: &str,
    ) -> Result<Option<StoredResource>, StoreError> {
        if !id_ok(id) {
            return Ok(None);
        }
        let item = self
            .get_item(key(tenant_pk(tenant), resource_sk(kind, id)))
            .await?;
        item.as_ref().map(decode_resource).transpose()
    }

    async fn get_many(
        &self,
        tenant: &TenantId,
        ids: &[String],
    ) -> Result<Vec<StoredResource>, StoreError> {
        let mut seen = HashSet::new();
        let ids: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| id_ok(id) && seen.insert(*id))
            .collect();
        let pk = tenant_pk(tenant);
        let batches: Vec<Vec<Item>> = ids
            .chunks(IDS_PER_BATCH_GET)
            .map(|chunk| {
                chunk
                    .iter()
                    .flat_map(|id| {
                        [Kind::User, Kind::Group].map(|kind| key(pk.clone(), resource_sk(kind, id)))
                    })
                    .collect()
            })
            .collect();
        let found: Vec<Vec<Item>> =
            futures::stream::iter(batches.into_iter().map(|keys| self.batch_get(keys)))
                .buffer_unordered(CONCURRENCY)
                .try_collect()
                .await?;
        found.iter().flatten().map(decode_resource).collect()
    }

    async fn find_by_key(
        &self,
        tenant: &TenantId,
        kind: Kind,
        key_: &UniqueKey,
    ) -> Result<Option<StoredResource>, StoreError> {
        let marker = self
            .get_item(key(
                tenant_pk(tenant),
                marker_sk(kind, key_.attr, &key_.value),
            ))
            .await?;
        match marker {
            Some(m) => self.get(tenant, kind, get_s(&m, ID)?).await,
            None => Ok(None),
        }
    }

    async fn create_with(
        &self,
        tenant: &TenantId,
        resource: &StoredResource,
        keys: &[UniqueKey],
        members: &[MemberRef],
        pool: &[PoolOp],
        audit: &[AuditRecord],
    ) -> Result<(), StoreError> {
        let (kind, id) = (resource.kind, resource.id.as_str());
        if kind != Kind::Group && !members.is_empty() {
            return Err(not_a_group());
        }
        if !id_ok(id) {
            return Err(StoreError::Backend(format!(
                "id longer than {MAX_ID_BYTES} bytes"
            )));
        }
        let keys = dedupe_keys(keys);
        let delta = MemberDelta {
            add: members.to_vec(),
            ..MemberDelta::default()
        };
        // A new group has no members: no read is needed to plan adds.
        let ops = self.plan(tenant, id, &delta).await?;
        let fixed = 3 + keys.len() + pool_actions(pool) + audit.len();
        // Later chunks also carry the group's count update and their record.
        let ranges = split(&ops, id, MAX_ACTIONS - fixed, MAX_ACTIONS - 2);
        let (first, rest) = ranges
            .split_first()
            .map_or((0..0, &[][..]), |(f, r)| (f.clone(), r));
        let pk = tenant_pk(tenant);
        let taken = || StoreError::Conflict {
            attr: "id",
            value: id.to_owned(),
        };
        let settle = Settle::of(rest);
        self.transact("TransactWriteItems (create)", true, |drops| {
            let part = chunk(&ops, &first, drops);
            let count = u64::try_from(net(&part)).unwrap_or(0);
            let mut tx = Tx::new(Arc::clone(&self.table));
            let mut item = resource_item(tenant, resource, &keys, count)?;
            if let Some(m) = &settle {
                item.insert(MW.into(), n(m.until));
                item.insert(MW_TOKEN.into(), s(m.token.as_str()));
            }
            tx.put(
                item,
                Some("attribute_not_exists(#pk)"),
                pk_expr(),
                Tag::Target {
                    if_present: taken(),
                    if_absent: taken(),
                },
            )?;
            // Ids are unique across kinds: memberships and `get_many`
            // address resources by id alone.
            tx.check(
                key(pk.clone(), resource_sk(other_kind(kind), id)),
                "attribute_not_exists(#pk)",
                pk_expr(),
                Tag::Claim {
                    attr: "id",
                    value: id.to_owned(),
                },
            )?;
            for k in &keys {
                let mut marker = key(pk.clone(), marker_sk(kind, k.attr, &k.value));
                marker.insert(ID.into(), s(id));
                tx.put(
                    marker,
                    Some("attribute_not_exists(#pk)"),
                    pk_expr(),
                    Tag::Claim {
                        attr: k.attr,
                        value: k.value.clone(),
                    },
                )?;
            }
            tx.update(
                key(pk.clone(), counter_sk(kind, id)),
                "ADD #n :one",
                None,
                Expr::new().name("#n", COUNT).value(":one", n(1)),
                Tag::Plain,
            )?;
            push_pool_ops(&mut tx, tenant, pool)?;
            push_audit(&mut tx, &first_part_records(audit, &ops, &part))?;
            push_member_ops(&mut tx, tenant, id, &part)?;
            Ok(tx)
        })
        .await?;
        self.write_chunks(tenant, id, &ops, rest, audit.first(), settle.as_ref())
            .await
    }

    async fn update(&self, tenant: &TenantId, update: &Update) -> Result<(), StoreError> {
        let r = &update.resource;
        let (kind, id) = (r.kind, r.id.as_str());
        if kind != Kind::Group && !update.members.is_empty() {
            return Err(not_a_group());
        }
        if !id_ok(id) {
            return Err(StoreError::VersionMismatch);
        }
        let ops = if update.members.is_empty() {
            Vec::new()
        } else {
            self.plan(tenant, id, &update.members).await?
        };
        let old = dedupe_keys(&update.old_keys);
        let new = dedupe_keys(&update.new_keys);
        // A key kept across the update stays claimed: the version condition
        // guarantees the stored state is the one `old_keys` describes.
        let claims: Vec<&UniqueKey> = new.iter().filter(|k| !old.contains(k)).collect();
        let releases: Vec<&UniqueKey> = old.iter().filter(|k| !new.contains(k)).collect();
        let fixed =
            1 + claims.len() + releases.len() + pool_actions(&update.pool) + update.audit.len();
        // Later chunks also carry the group's count update and their record.
        let ranges = split(&ops, id, MAX_ACTIONS - fixed, MAX_ACTIONS - 2);
        let (first, rest) = ranges
            .split_first()
            .map_or((0..0, &[][..]), |(f, r)| (f.clone(), r));
        let doc = serde_json::to_string(r)
            .map_err(|e| StoreError::Backend(format!("encoding resource: {e}")))?;
        let keys_json = encode_keys(&new)?;
        let pk = tenant_pk(tenant);
        let settle = Settle::of(rest);
        self.transact("TransactWriteItems (update)", true, |drops| {
            let part = chunk(&ops, &first, drops);
            let d = net(&part);
            let mut set = "SET #doc = :doc, #ver = :ver, #lm = :lm, #keys = :keys".to_owned();
            if settle.is_some() {
                set.push_str(Settle::SET);
            }
            let mut expr = Expr::new()
                .name("#doc", DOC)
                .name("#ver", VER)
                .name("#lm", LM)
                .name("#keys", KEYS)
                .value(":doc", s(doc.as_str()))
                .value(":ver", n(r.version))
                .value(":lm", s(r.last_modified.as_str()))
                .value(":keys", s(keys_json.as_str()))
                .value(":expected", n(update.expected_version));
            if let Some(m) = &settle {
                expr = m.bind(expr);
            }
            if kind == Kind::User {
                set.push_str(", #lic = :lic");
                expr = expr
                    .name("#lic", LIC)
                    .value(":lic", s(r.product.licence.name()));
                match &r.product.licence_since {
                    Some(at) => {
                        set.push_str(", #licat = :licat");
                        expr = expr.name("#licat", LIC_AT).value(":licat", s(at.as_str()));
                    }
                    None => {
                        set.push_str(" REMOVE #licat");
                        expr = expr.name("#licat", LIC_AT);
                    }
                }
            }
            if d != 0 {
                set.push_str(" ADD #mc :d");
                expr = expr.name("#mc", MC).value(":d", n(d));
            }
            let mut tx = Tx::new(Arc::clone(&self.table));
            // A missing item fails `#ver = :expected` too: "or the resource is gone".
            tx.update(
                key(pk.clone(), resource_sk(kind, id)),
                &set,
                Some("#ver = :expected"),
                expr,
                Tag::Target {
                    if_present: StoreError::VersionMismatch,
                    if_absent: StoreError::VersionMismatch,
                },
            )?;
            for k in &claims {
                let mut marker = key(pk.clone(), marker_sk(kind, k.attr, &k.value));
                marker.insert(ID.into(), s(id));
                tx.put(
                    marker,
                    Some("attribute_not_exists(#pk) OR #id = :id"),
                    pk_expr().name("#id", ID).value(":id", s(id)),
                    Tag::Claim {
                        attr: k.attr,
                        value: k.value.clone(),
                    },
                )?;
            }
            for (i, k) in releases.iter().enumerate() {
                if drops.releases.contains(&i) {
                    continue;
                }
                // Never free a key that another resource holds.
                tx.delete(
                    key(pk.clone(), marker_sk(kind, k.attr, &k.value)),
                    Some("attribute_not_exists(#pk) OR #id = :id"),
                    pk_expr().name("#id", ID).value(":id", s(id)),
                    Tag::Release(i),
                )?;
            }
            push_pool_ops(&mut tx, tenant, &update.pool)?;
            push_audit(&mut tx, &first_part_records(&update.audit, &ops, &part))?;
            push_member_ops(&mut tx, tenant, id, &part)?;
            Ok(tx)
        })
        .await?;
        self.write_chunks(
            tenant,
            id,
            &ops,
            rest,
            update.audit.first(),
            settle.as_ref(),
        )
        .await
    }

    async fn update_members_with(
        &self,
        tenant: &TenantId,
        group_id: &str,
        delta: &MemberDelta,
        expected_version: Option<u64>,
        now: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<StoredResource, StoreError> {
        if !id_ok(group_id) {
            return Err(StoreError::NotFound);
        }
        let ops = self.plan(tenant, group_id, delta).await?;
        match expected_version {
            Some(v) => {
                self.update_members_pinned(tenant, group_id, &ops, v, now, audit)
                    .await
            }
            None => {
                self.update_members_free(tenant, group_id, &ops, now, audit)
                    .await
            }
        }
    }

    async fn delete_with(
        &self,
        tenant: &TenantId,
        kind: Kind,
        id: &str,
        expected_version: Option<u64>,
        pool: &[PoolOp],
        audit: &[AuditRecord],
    ) -> Result<(), StoreError> {
        if !id_ok(id) {
            return Err(StoreError::NotFound);
        }
        let pk = tenant_pk(tenant);
        let resource_key = key(pk.clone(), resource_sk(kind, id));
        // Room in the first transaction for memberships, after the resource,
        // its keys (a handful) and the counter.
        let first_leaves = 30;
        let first_members = 30;
        for _ in 0..DELETE_ATTEMPTS {
            // The resource, the groups it is in and (for a group) its first
            // members, read at once: one round trip.
            let (item, member_of, members) = tokio::try_join!(
                self.get_item(resource_key.clone()),
                self.query(
                    member_of_pk(tenant, id),
                    SkRange::Prefix("G#".into()),
                    None,
                    true,
                    Some(first_leaves),
                ),
                async {
                    if kind == Kind::Group {
                        self.query(
                            group_pk(tenant, id),
                            SkRange::Prefix("M#".into()),
                            None,
                            true,
                            Some(first_members),
                        )
                        .await
                    } else {
                        Ok(Vec::new())
                    }
                },
            )?;
            let now = now()?;
            let Some(item) = item else {
                // Memberships left by a delete that was interrupted after
                // its first transaction: finish it, so a retried DELETE
                // converges.
                if !leave_groups(&member_of, kind)?.is_empty() || !members.is_empty() {
                    self.cleanup(tenant, kind, id, &now).await?;
                }
                return Err(StoreError::NotFound);
            };
            let version = get_n(&item, VER)?;
            if expected_version.is_some_and(|v| i64::try_from(v).ok() != Some(version)) {
                return Err(StoreError::VersionMismatch);
            }
            let keys = decode_keys(&item)?;
            let groups = leave_groups(&member_of, kind)?;
            let mut room = MAX_ACTIONS - 2 - keys.len() - pool_actions(pool) - audit.len();
            let mut leaves = Vec::new();
            for (i, g) in groups.iter().enumerate() {
                let cost = leave_actions(g, id);
                if cost > room {
                    break;
                }
                room -= cost;
                leaves.push((i, g.as_str()));
            }
            let mut own = Vec::new();
            for m in &members {
                let m = sk_suffix(m, "M#")?;
                // Self-membership is already among the leaves.
                if m == id {
                    continue;
                }
                if room < 2 {
                    break;
                }
                room -= 2;
                own.push(m);
            }
            let result = self
                .transact("TransactWriteItems (delete)", true, |drops| {
                    let mut tx = Tx::new(Arc::clone(&self.table));
                    // Conditioned on the version read, which is what says
                    // which keys the resource holds.
                    tx.delete(
                        resource_key.clone(),
                        Some("#ver = :ver"),
                        Expr::new().name("#ver", VER).value(":ver", n(version)),
                        Tag::Target {
                            if_present: StoreError::VersionMismatch,
                            if_absent: StoreError::NotFound,
                        },
                    )?;
                    for (i, (attr, value)) in keys.iter().enumerate() {
                        if drops.releases.contains(&i) {
                            continue;
                        }
                        tx.delete(
                            key(pk.clone(), marker_sk(kind, attr, value)),
                            Some("attribute_not_exists(#pk) OR #id = :id"),
                            pk_expr().name("#id", ID).value(":id", s(id)),
                            Tag::Release(i),
                        )?;
                    }
                    tx.update(
                        key(pk.clone(), counter_sk(kind, id)),
                        "ADD #n :minus",
                        None,
                        Expr::new().name("#n", COUNT).value(":minus", n(-1)),
                        Tag::Plain,
                    )?;
                    push_pool_ops(&mut tx, tenant, pool)?;
                    push_audit(&mut tx, audit)?;
                    push_leaves(&mut tx, tenant, id, &leaves, drops, &now)?;
                    for m in &own {
                        tx.delete(
                            key(group_pk(tenant, id), member_sk(m)),
                            None,
                            Expr::new(),
                            Tag::Plain,
                        )?;
                        tx.delete(
                            key(member_of_pk(tenant, m), member_of_sk(id)),
                            None,
                            Expr::new(),
                            Tag::Plain,
                        )?;
                    }
                    Ok(tx)
                })
                .await;
            match result {
                Ok(_) => return self.cleanup(tenant, kind, id, &now).await,
                // Changed since it was read: read its keys again.
                Err(StoreError::VersionMismatch) if expected_version.is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(
            "the resource keeps changing while being deleted".into(),
        ))
    }

    async fn count(&self, tenant: &TenantId, kind: Kind) -> Result<u64, StoreError> {
        let shards = self
            .query(
                tenant_pk(tenant),
                SkRange::Prefix(counter_prefix(kind)),
                None,
                true,
                None,
            )
            .await?;
        let mut total = 0i64;
        for shard in &shards {
            total += get_n(shard, COUNT)?;
        }
        Ok(u64::try_from(total).unwrap_or(0))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredResource>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let items = self
            .query(
                tenant_pk(tenant),
                SkRange::Prefix(resource_prefix(kind)),
                after.map(|a| resource_sk(kind, a)),
                true,
                Some(limit),
            )
            .await?;
        items.iter().map(decode_resource).collect()
    }

    async fn list_at(
        &self,
        tenant: &TenantId,
        kind: Kind,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<StoredResource>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (after, skip) = match offset {
            0 => (None, 0),
            _ => match self.bookmark(tenant, kind, offset).await? {
                Some((after, skip)) => (Some(after), skip),
                None => (None, offset),
            },
        };
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let items = self
            .query(
                tenant_pk(tenant),
                SkRange::Prefix(resource_prefix(kind)),
                after.map(|a| resource_sk(kind, &a)),
                true,
                Some(skip.saturating_add(limit)),
            )
            .await?;
        let page = items
            .iter()
            .skip(skip)
            .map(decode_resource)
            .collect::<Result<Vec<_>, _>>()?;
        // A full page may have a successor: remember where it starts. A
        // bookmark is a cache, so failing to write one fails nothing.
        if page.len() == limit
            && let Some(last) = page.last()
        {
            let next = offset.saturating_add(limit as u64);
            if let Err(e) = self.put_bookmark(tenant, kind, next, &last.id).await {
                tracing::warn!(error = %e, "writing a page bookmark");
            }
        }
        Ok(page)
    }

    async fn members(
        &self,
        tenant: &TenantId,
        group_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MemberRef>, StoreError> {
        if limit == 0 || !id_ok(group_id) {
            return Ok(Vec::new());
        }
        let items = self
            .query(
                group_pk(tenant, group_id),
                SkRange::Prefix("M#".into()),
                after.map(member_sk),
                true,
                Some(limit),
            )
            .await?;
        items
            .iter()
            .map(|i| {
                Ok(MemberRef {
                    id: sk_suffix(i, "M#")?.to_owned(),
                    kind: parse_kind(get_s(i, KIND)?)?,
                })
            })
            .collect()
    }

    async fn is_member(
        &self,
        tenant: &TenantId,
        group_id: &str,
        member_id: &str,
    ) -> Result<bool, StoreError> {
        if !id_ok(group_id) || !id_ok(member_id) {
            return Ok(false);
        }
        let item = self
            .get_item(key(group_pk(tenant, group_id), member_sk(member_id)))
            .await?;
        Ok(item.is_some())
    }

    async fn groups_of(
        &self,
        tenant: &TenantId,
        member_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        if !id_ok(member_id) {
            return Ok(Vec::new());
        }
        self.sk_suffixes(member_of_pk(tenant, member_id), "G#")
            .await
    }

    /// One Query per member (DynamoDB has no multi-partition query), sent
    /// concurrently so a page of users costs one round trip of latency.
    async fn groups_of_many(
        &self,
        tenant: &TenantId,
        member_ids: &[String],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let mut out = Vec::with_capacity(member_ids.len());
        for chunk in member_ids.chunks(GROUPS_QUERY_CONCURRENCY) {
            let mut queries = Vec::with_capacity(chunk.len());
            for id in chunk {
                queries.push(self.groups_of(tenant, id));
            }
            for groups in futures::future::join_all(queries).await {
                out.push(groups?);
            }
        }
        Ok(out)
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        self.read_tenant(tenant).await
    }

    async fn get_pool(&self, tenant: &TenantId) -> Result<Option<SeatPool>, StoreError> {
        self.read_pool(tenant).await
    }

    async fn init_pool(&self, tenant: &TenantId, pool: &SeatPool) -> Result<(), StoreError> {
        self.create_pool(tenant, pool).await
    }

    async fn set_pool(
        &self,
        tenant: &TenantId,
        seats: Option<u64>,
        auto: Option<bool>,
        audit: &[AuditRecord],
    ) -> Result<SeatPool, StoreError> {
        self.change_pool(tenant, seats, auto, audit).await
    }

    async fn waiting(&self, tenant: &TenantId, limit: usize) -> Result<Vec<Waiting>, StoreError> {
        self.line(tenant, limit).await
    }

    async fn apply_pool(
        &self,
        tenant: &TenantId,
        ops: &[PoolOp],
        audit: &[AuditRecord],
    ) -> Result<(), StoreError> {
        self.pool_only(tenant, ops, audit).await
    }

    async fn put_audit(
        &self,
        _tenant: &TenantId,
        records: &[AuditRecord],
    ) -> Result<(), StoreError> {
        self.store_audit(records).await
    }

    async fn audit_range(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        until: Option<&str>,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.read_audit(tenant, after, until, forward, limit).await
    }

    async fn put_tenant_with(
        &self,
        record: &TenantRecord,
        expected_version: Option<u64>,
        audit: &[AuditRecord],
    ) -> Result<(), StoreError> {
        self.write_tenant(record, expected_version, audit).await
    }

    async fn list_tenants(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        self.tenants_page(after, limit).await
    }

    async fn put_reveal(&self, record: &RevealRecord) -> Result<(), StoreError> {
        self.store_reveal(record).await
    }

    async fn get_reveal(
        &self,
        tenant: &TenantId,
        ref_hash: &str,
        now_unix: i64,
    ) -> Result<Option<RevealRecord>, StoreError> {
        self.read_reveal(tenant, ref_hash, now_unix).await
    }

    async fn take_reveal(
        &self,
        tenant: &TenantId,
        ref_hash: &str,
        now_unix: i64,
    ) -> Result<Option<RevealRecord>, StoreError> {
        self.consume_reveal(tenant, ref_hash, now_unix).await
    }

    async fn delete_reveal(&self, tenant: &TenantId, ref_hash: &str) -> Result<(), StoreError> {
        self.drop_reveal(tenant, ref_hash).await
    }
}
