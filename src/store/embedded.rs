//! The embedded store: one redb file, for running on a single host.
//!
//! It mirrors the DynamoDB layout on purpose (one record per membership, one
//! record per unique key, everything keyed by tenant first) so that both
//! stores give the same guarantees and the same costs: changing one member of
//! a huge group touches a handful of records, and no trait method scans more
//! than one tenant's slice of one table.
//!
//! Keys are tuples of strings. redb orders tuples element by element, so every
//! `(tenant, …)` prefix is one contiguous range, whatever bytes the ids hold.
//!
//! | table       | key                          | value                                  |
//! |-------------|------------------------------|----------------------------------------|
//! | `resources` | (tenant, kind, id)           | [`Row`] as JSON (resource + its keys)  |
//! | `ids`       | (tenant, id)                 | kind, for lookups by id alone          |
//! | `unique`    | (tenant, kind, attr, value)  | id of the holder                       |
//! | `members`   | (tenant, group, member)      | kind of the member                     |
//! | `member_of` | (tenant, member, group)      | ()                                     |
//! | `counts`    | (tenant, kind)               | number of resources                    |
//! | `blocks`    | (tenant, kind, first id)     | resources from that id to the next one |
//! | `meta`      | name                         | format markers (`blocks` built: 1)     |
//! | `tenants`   | tenant                       | [`TenantRecord`] as JSON               |
//! | `reveals`   | (tenant, ref hash)           | [`RevealRecord`] as JSON               |
//! | `pools`     | tenant                       | [`SeatPool`] as JSON                   |
//! | `queue`     | (tenant, since, user)        | () — the waiting line, in order        |
//! | `audit`     | (tenant, time, record id)    | [`AuditRecord`] as JSON                |
//!
//! Every write is one redb write transaction committed with
//! [`Durability::Immediate`], i.e. fsynced before the caller hears "ok".
//!
//! ## Blocks: `startIndex` without skipping
//!
//! redb has no rank queries, so `list_at` would have to skip `offset`
//! entries one by one. The `blocks` table cuts each (tenant, kind) slice of
//! `resources`, in id order, into consecutive runs: a block's key is a lower
//! bound of its ids (the next block's key bounds it above) and its value is
//! exactly how many resources it holds. Every create and delete of a
//! resource adjusts its block in the same write transaction; a block above
//! 2·`BLOCK` entries is split in two (walking it once), an empty one is
//! dropped, and two neighbours holding `BLOCK` or fewer together are
//! merged (a key removed, counts added), so a slice of `n` resources has at
//! most 2n/`BLOCK` + 1 blocks of at most 2·`BLOCK` each. `list_at` sums
//! block counts up to the block holding `offset` and walks from its first
//! id: O(n/B + B) whatever the offset. A database without the table (made
//! by an earlier version) gets it built from `resources` on open, in one
//! write transaction that also records it as built in `meta`.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    AuditRecord, Licence, MemberDelta, MemberRef, PoolOp, RevealRecord, SeatPool, Store,
    StoreError, StoredResource, TenantId, TenantRecord, UniqueKey, Update, Waiting,
};
use crate::scim::schema::Kind;

type K2 = (&'static str, &'static str);
type K3 = (&'static str, &'static str, &'static str);
type K4 = (&'static str, &'static str, &'static str, &'static str);

const RESOURCES: TableDefinition<K3, &str> = TableDefinition::new("resources");
const IDS: TableDefinition<K2, &str> = TableDefinition::new("ids");
const UNIQUE: TableDefinition<K4, &str> = TableDefinition::new("unique");
const MEMBERS: TableDefinition<K3, &str> = TableDefinition::new("members");
const MEMBER_OF: TableDefinition<K3, ()> = TableDefinition::new("member_of");
const COUNTS: TableDefinition<K2, u64> = TableDefinition::new("counts");
const TENANTS: TableDefinition<&str, &str> = TableDefinition::new("tenants");
const REVEALS: TableDefinition<K2, &str> = TableDefinition::new("reveals");
const POOLS: TableDefinition<&str, &str> = TableDefinition::new("pools");
const QUEUE: TableDefinition<K3, ()> = TableDefinition::new("queue");
const AUDIT: TableDefinition<K3, &str> = TableDefinition::new("audit");
const BLOCKS: TableDefinition<K3, u64> = TableDefinition::new("blocks");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The `meta` entry recording that `blocks` is built, and its format.
const BLOCKS_BUILT: &str = "blocks";
const BLOCKS_FORMAT: u64 = 1;

/// Target block size: blocks hold at most twice this many resources, and
/// any two neighbours more than this many together.
const BLOCK: u64 = 256;

/// The value of the `resources` table.
#[derive(Serialize, Deserialize)]
struct Row {
    resource: StoredResource,
    /// The unique keys this resource holds, as (attr, value), so that
    /// `delete` can release them without the core recomputing them.
    keys: Vec<(String, String)>,
}

fn key_pairs(keys: &[UniqueKey]) -> Vec<(String, String)> {
    keys.iter()
        .map(|k| (k.attr.to_owned(), k.value.clone()))
        .collect()
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Backend(format!("undecodable record: {e}"))
}

fn parse_kind(s: &str) -> Result<Kind, StoreError> {
    Kind::from_name(s).ok_or_else(|| StoreError::Backend(format!("unknown resource kind {s:?}")))
}

fn parse_row(json: &str) -> Result<Row, StoreError> {
    serde_json::from_str(json).map_err(corrupt)
}

fn now() -> Result<String, StoreError> {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .map_err(|e| StoreError::Backend(format!("formatting time: {e}")))
}

fn not_a_group() -> StoreError {
    StoreError::Backend("only groups have members".into())
}

fn load_row(
    table: &impl ReadableTable<K3, &'static str>,
    tenant: &str,
    kind: Kind,
    id: &str,
) -> Result<Option<Row>, StoreError> {
    match table.get((tenant, kind.name(), id)).map_err(backend)? {
        Some(json) => parse_row(json.value()).map(Some),
        None => Ok(None),
    }
}

/// Visits in key order the entries whose key starts with `prefix` and whose
/// last element sorts strictly after `after`, until `visit` returns false.
/// The range is open-ended (no upper bound can be spelled for an arbitrary
/// string), so the walk stops at the first key outside the prefix instead.
fn walk<V: redb::Value + 'static>(
    table: &impl ReadableTable<K3, V>,
    prefix: (&str, &str),
    after: Option<&str>,
    visit: impl FnMut(&str, V::SelfType<'_>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let from = match after {
        Some(last) => Bound::Excluded(last),
        None => Bound::Included(""),
    };
    walk_from(table, prefix, from, visit)
}

/// [`walk`] from a bound on the last key element.
fn walk_from<V: redb::Value + 'static>(
    table: &impl ReadableTable<K3, V>,
    prefix: (&str, &str),
    from: Bound<&str>,
    mut visit: impl FnMut(&str, V::SelfType<'_>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let (a, b) = prefix;
    let start = match from {
        Bound::Included(c) => Bound::Included((a, b, c)),
        Bound::Excluded(c) => Bound::Excluded((a, b, c)),
        Bound::Unbounded => Bound::Included((a, b, "")),
    };
    for entry in table.range((start, Bound::Unbounded)).map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let (ka, kb, kc) = key.value();
        if ka != a || kb != b || !visit(kc, value.value())? {
            break;
        }
    }
    Ok(())
}

fn out_of_step() -> StoreError {
    StoreError::Backend("the blocks table is out of step with resources".into())
}

/// A block as (first id, count).
type Block = (String, u64);

fn block_of(
    entry: redb::Result<(redb::AccessGuard<'_, K3>, redb::AccessGuard<'_, u64>)>,
) -> Result<Block, StoreError> {
    let (key, n) = entry.map_err(backend)?;
    Ok((key.value().2.to_owned(), n.value()))
}

/// The block holding `id`: the one with the greatest first id ≤ `id`.
fn block_holding(
    blocks: &impl ReadableTable<K3, u64>,
    prefix: (&str, &str),
    id: &str,
) -> Result<Option<Block>, StoreError> {
    let (a, b) = prefix;
    let mut range = blocks.range((a, b, "")..=(a, b, id)).map_err(backend)?;
    range.next_back().map(block_of).transpose()
}

/// The block before the one starting at `first`, if any.
fn block_before(
    blocks: &impl ReadableTable<K3, u64>,
    prefix: (&str, &str),
    first: &str,
) -> Result<Option<Block>, StoreError> {
    let (a, b) = prefix;
    let mut range = blocks.range((a, b, "")..(a, b, first)).map_err(backend)?;
    range.next_back().map(block_of).transpose()
}

/// The first block whose first id sorts after `id`, if any.
fn block_after(
    blocks: &impl ReadableTable<K3, u64>,
    prefix: (&str, &str),
    id: &str,
) -> Result<Option<Block>, StoreError> {
    let mut next = None;
    walk_from(blocks, prefix, Bound::Excluded(id), |first, n| {
        next = Some((first.to_owned(), n));
        Ok(false)
    })?;
    Ok(next)
}

/// Builds `blocks` from `resources` unless `meta` says it is built (a
/// database made before blocks existed, or by a different format), in the
/// caller's write transaction.
fn build_blocks(txn: &WriteTransaction, size: u64) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(backend)?;
    let built = meta.get(BLOCKS_BUILT).map_err(backend)?.map(|g| g.value());
    if built == Some(BLOCKS_FORMAT) && blocks_agree_with_counts(txn)? {
        return Ok(());
    }
    txn.delete_table(BLOCKS).map_err(backend)?;
    let resources = txn.open_table(RESOURCES).map_err(backend)?;
    let mut blocks = txn.open_table(BLOCKS).map_err(backend)?;
    // Consecutive runs of `size` ids per (tenant, kind): any two
    // neighbours hold more than `size` together.
    let mut run: Option<(String, String, String, u64)> = None;
    for entry in resources.iter().map_err(backend)? {
        let (key, _) = entry.map_err(backend)?;
        let (t, k, id) = key.value();
        if let Some((rt, rk, _, n)) = &mut run {
            if rt == t && rk == k && *n < size {
                *n += 1;
                continue;
            }
        }
        if let Some((rt, rk, first, n)) = run.take() {
            blocks
                .insert((rt.as_str(), rk.as_str(), first.as_str()), n)
                .map_err(backend)?;
        }
        run = Some((t.to_owned(), k.to_owned(), id.to_owned(), 1));
    }
    if let Some((rt, rk, first, n)) = run {
        blocks
            .insert((rt.as_str(), rk.as_str(), first.as_str()), n)
            .map_err(backend)?;
    }
    meta.insert(BLOCKS_BUILT, BLOCKS_FORMAT).map_err(backend)?;
    Ok(())
}

/// Whether each (tenant, kind)'s block counts add up to its resource
/// count: a cheap check (one entry per block and per count) that catches
/// blocks left behind by a binary that did not keep them, e.g. after a
/// downgrade and an upgrade again.
fn blocks_agree_with_counts(txn: &WriteTransaction) -> Result<bool, StoreError> {
    let blocks = txn.open_table(BLOCKS).map_err(backend)?;
    let counts = txn.open_table(COUNTS).map_err(backend)?;
    let mut sums: std::collections::HashMap<(String, String), u64> = Default::default();
    for entry in blocks.iter().map_err(backend)? {
        let (key, n) = entry.map_err(backend)?;
        let (t, k, _) = key.value();
        *sums.entry((t.to_owned(), k.to_owned())).or_default() += n.value();
    }
    for entry in counts.iter().map_err(backend)? {
        let (key, n) = entry.map_err(backend)?;
        let (t, k) = key.value();
        let sum = sums.remove(&(t.to_owned(), k.to_owned())).unwrap_or(0);
        if sum != n.value() {
            return Ok(false);
        }
    }
    Ok(sums.values().all(|&n| n == 0))
}

/// Every table, opened inside one write transaction.
struct Tables<'t> {
    resources: Table<'t, K3, &'static str>,
    ids: Table<'t, K2, &'static str>,
    unique: Table<'t, K4, &'static str>,
    members: Table<'t, K3, &'static str>,
    member_of: Table<'t, K3, ()>,
    counts: Table<'t, K2, u64>,
    tenants: Table<'t, &'static str, &'static str>,
    reveals: Table<'t, K2, &'static str>,
    pools: Table<'t, &'static str, &'static str>,
    queue: Table<'t, K3, ()>,
    audit: Table<'t, K3, &'static str>,
    blocks: Table<'t, K3, u64>,
    /// Target block size (`BLOCK` outside tests).
    block: u64,
}

impl Tables<'_> {
    /// Audit records, in the same transaction as the change they describe.
    fn record(&mut self, tenant: &str, records: &[AuditRecord]) -> Result<(), StoreError> {
        for r in records {
            let json = serde_json::to_string(r).map_err(corrupt)?;
            self.audit
                .insert((tenant, r.time.as_str(), r.id.as_str()), json.as_str())
                .map_err(backend)?;
        }
        Ok(())
    }

    fn pool(&self, tenant: &str) -> Result<Option<SeatPool>, StoreError> {
        match self.pools.get(tenant).map_err(backend)? {
            Some(json) => serde_json::from_str(json.value())
                .map(Some)
                .map_err(corrupt),
            None => Ok(None),
        }
    }

    fn save_pool(&mut self, tenant: &str, pool: &SeatPool) -> Result<(), StoreError> {
        let json = serde_json::to_string(pool).map_err(corrupt)?;
        self.pools.insert(tenant, json.as_str()).map_err(backend)?;
        Ok(())
    }

    fn leave_line(&mut self, tenant: &str, w: &Waiting) -> Result<(), StoreError> {
        match self
            .queue
            .remove((tenant, w.since.as_str(), w.user.as_str()))
            .map_err(backend)?
        {
            Some(_) => Ok(()),
            None => Err(StoreError::PoolChanged),
        }
    }

    /// Seat pool changes, each under its condition, inside the caller's
    /// transaction: any failed condition rolls the whole write back.
    fn apply_pool(&mut self, tenant: &str, ops: &[PoolOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut p = self.pool(tenant)?.ok_or(StoreError::PoolChanged)?;
        for op in ops {
            match op {
                PoolOp::Take => {
                    if !(p.auto && p.used < p.seats && p.waiting == 0) {
                        return Err(StoreError::PoolChanged);
                    }
                    p.used += 1;
                }
                PoolOp::TakeAny => {
                    if p.used >= p.seats {
                        return Err(StoreError::PoolChanged);
                    }
                    p.used += 1;
                }
                PoolOp::Free => {
                    if (p.auto && p.waiting > 0) || p.used == 0 {
                        return Err(StoreError::PoolChanged);
                    }
                    p.used -= 1;
                }
                PoolOp::Enqueue(w) => {
                    if p.auto && p.used < p.seats && p.waiting == 0 {
                        return Err(StoreError::PoolChanged);
                    }
                    self.queue
                        .insert((tenant, w.since.as_str(), w.user.as_str()), ())
                        .map_err(backend)?;
                    p.waiting += 1;
                }
                PoolOp::Dequeue(w) => {
                    self.leave_line(tenant, w)?;
                    p.waiting = p.waiting.saturating_sub(1);
                }
                PoolOp::HandOver { who, now, spare } => {
                    if !p.auto || (*spare && p.used >= p.seats) {
                        return Err(StoreError::PoolChanged);
                    }
                    self.leave_line(tenant, who)?;
                    let mut row = self
                        .load(tenant, Kind::User, &who.user)?
                        .ok_or(StoreError::PoolChanged)?;
                    let r = &mut row.resource;
                    if r.product.licence != Licence::Waiting {
                        return Err(StoreError::PoolChanged);
                    }
                    r.product.licence = Licence::Assigned;
                    r.product.licence_since = Some(now.clone());
                    r.version += 1;
                    r.last_modified.clone_from(now);
                    self.save(tenant, &row)?;
                    p.waiting = p.waiting.saturating_sub(1);
                    if *spare {
                        p.used += 1;
                    }
                }
            }
        }
        self.save_pool(tenant, &p)
    }
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction, block: u64) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            resources: txn.open_table(RESOURCES).map_err(backend)?,
            ids: txn.open_table(IDS).map_err(backend)?,
            unique: txn.open_table(UNIQUE).map_err(backend)?,
            members: txn.open_table(MEMBERS).map_err(backend)?,
            member_of: txn.open_table(MEMBER_OF).map_err(backend)?,
            counts: txn.open_table(COUNTS).map_err(backend)?,
            tenants: txn.open_table(TENANTS).map_err(backend)?,
            reveals: txn.open_table(REVEALS).map_err(backend)?,
            pools: txn.open_table(POOLS).map_err(backend)?,
            queue: txn.open_table(QUEUE).map_err(backend)?,
            audit: txn.open_table(AUDIT).map_err(backend)?,
            blocks: txn.open_table(BLOCKS).map_err(backend)?,
            block,
        })
    }

    fn load(&self, tenant: &str, kind: Kind, id: &str) -> Result<Option<Row>, StoreError> {
        load_row(&self.resources, tenant, kind, id)
    }

    fn save(&mut self, tenant: &str, row: &Row) -> Result<(), StoreError> {
        let json = serde_json::to_string(row).map_err(corrupt)?;
        let r = &row.resource;
        self.resources
            .insert((tenant, r.kind.name(), r.id.as_str()), json.as_str())
            .map_err(backend)?;
        Ok(())
    }

    /// Counts a new row of `resources` (already inserted) in its block.
    fn index_insert(&mut self, tenant: &str, kind: Kind, id: &str) -> Result<(), StoreError> {
        let prefix = (tenant, kind.name());
        let (first, n) = match block_holding(&self.blocks, prefix, id)? {
            Some((first, n)) => (first, n + 1),
            // Below every block: the first block now starts at `id`.
            None => match block_after(&self.blocks, prefix, id)? {
                Some((first, n)) => {
                    self.blocks
                        .remove((tenant, kind.name(), first.as_str()))
                        .map_err(backend)?;
                    (id.to_owned(), n + 1)
                }
                None => (id.to_owned(), 1),
            },
        };
        if n > 2 * self.block {
            return self.split(prefix, &first, n);
        }
        self.blocks
            .insert((tenant, kind.name(), first.as_str()), n)
            .map_err(backend)?;
        Ok(())
    }

    /// Writes the block starting at `first`, holding `n` resources, as two
    /// halves, walking the first half once to find where the second starts.
    fn split(&mut self, prefix: (&str, &str), first: &str, n: u64) -> Result<(), StoreError> {
        let half = n / 2;
        let mut seen = 0;
        let mut middle = None;
        walk_from(&self.resources, prefix, Bound::Included(first), |id, _| {
            if seen == half {
                middle = Some(id.to_owned());
                return Ok(false);
            }
            seen += 1;
            Ok(true)
        })?;
        let middle = middle.ok_or_else(out_of_step)?;
        let (a, b) = prefix;
        self.blocks.insert((a, b, first), half).map_err(backend)?;
        self.blocks
            .insert((a, b, middle.as_str()), n - half)
            .map_err(backend)?;
        Ok(())
    }

    /// Uncounts a removed row of `resources`; drops its block if empty, or
    /// merges it with a neighbour when the two hold `block` or fewer.
    fn index_remove(&mut self, tenant: &str, kind: Kind, id: &str) -> Result<(), StoreError> {
        let prefix = (tenant, kind.name());
        let (t, k) = prefix;
        let (first, n) = block_holding(&self.blocks, prefix, id)?.ok_or_else(out_of_step)?;
        let n = n.checked_sub(1).ok_or_else(out_of_step)?;
        let first = first.as_str();
        if n == 0 {
            self.blocks.remove((t, k, first)).map_err(backend)?;
            return Ok(());
        }
        if let Some((prev, p)) = block_before(&self.blocks, prefix, first)? {
            if p + n <= self.block {
                self.blocks.remove((t, k, first)).map_err(backend)?;
                self.blocks
                    .insert((t, k, prev.as_str()), p + n)
                    .map_err(backend)?;
                return Ok(());
            }
        }
        if let Some((next, m)) = block_after(&self.blocks, prefix, first)? {
            if n + m <= self.block {
                self.blocks.remove((t, k, next.as_str())).map_err(backend)?;
                self.blocks.insert((t, k, first), n + m).map_err(backend)?;
                return Ok(());
            }
        }
        self.blocks.insert((t, k, first), n).map_err(backend)?;
        Ok(())
    }

    fn kind_of(&self, tenant: &str, id: &str) -> Result<Option<Kind>, StoreError> {
        match self.ids.get((tenant, id)).map_err(backend)? {
            Some(kind) => parse_kind(kind.value()).map(Some),
            None => Ok(None),
        }
    }

    fn count_by(&mut self, tenant: &str, kind: Kind, up: bool) -> Result<(), StoreError> {
        let key = (tenant, kind.name());
        let n = self
            .counts
            .get(key)
            .map_err(backend)?
            .map_or(0, |g| g.value());
        let n = if up { n + 1 } else { n.saturating_sub(1) };
        self.counts.insert(key, n).map_err(backend)?;
        Ok(())
    }

    /// Takes a unique key for `id`; holding it already is fine, so the same
    /// key listed twice or kept across an update is not a conflict.
    fn claim(
        &mut self,
        tenant: &str,
        kind: Kind,
        key: &UniqueKey,
        id: &str,
    ) -> Result<(), StoreError> {
        let k = (tenant, kind.name(), key.attr, key.value.as_str());
        let holder = self
            .unique
            .get(k)
            .map_err(backend)?
            .map(|g| g.value().to_owned());
        match holder {
            Some(holder) if holder != id => Err(StoreError::Conflict {
                attr: key.attr,
                value: key.value.clone(),
            }),
            Some(_) => Ok(()),
            None => {
                self.unique.insert(k, id).map_err(backend)?;
                Ok(())
            }
        }
    }

    /// Frees a unique key, but only if `id` holds it: the caller's idea of the
    /// old keys must never free a key that someone else has taken since.
    fn release(
        &mut self,
        tenant: &str,
        kind: Kind,
        attr: &str,
        value: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        let k = (tenant, kind.name(), attr, value);
        let held = self
            .unique
            .get(k)
            .map_err(backend)?
            .is_some_and(|g| g.value() == id);
        if held {
            self.unique.remove(k).map_err(backend)?;
        }
        Ok(())
    }

    /// Adds a membership in both directions; false if it already existed.
    /// The member's kind is taken from the store rather than the caller, so
    /// the membership record cannot disagree with the resource.
    fn link(&mut self, tenant: &str, group: &str, member: &str) -> Result<bool, StoreError> {
        let kind = self
            .kind_of(tenant, member)?
            .ok_or_else(|| StoreError::MemberNotFound(member.to_owned()))?;
        let existed = self
            .members
            .insert((tenant, group, member), kind.name())
            .map_err(backend)?
            .is_some();
        self.member_of
            .insert((tenant, member, group), ())
            .map_err(backend)?;
        Ok(!existed)
    }

    /// Removes a membership in both directions; false if there was none.
    fn unlink(&mut self, tenant: &str, group: &str, member: &str) -> Result<bool, StoreError> {
        let existed = self
            .members
            .remove((tenant, group, member))
            .map_err(backend)?
            .is_some();
        self.member_of
            .remove((tenant, member, group))
            .map_err(backend)?;
        Ok(existed)
    }

    fn member_ids(&self, tenant: &str, group: &str) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        walk(&self.members, (tenant, group), None, |member, _| {
            ids.push(member.to_owned());
            Ok(true)
        })?;
        Ok(ids)
    }

    fn groups_of(&self, tenant: &str, member: &str) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        walk(&self.member_of, (tenant, member), None, |group, ()| {
            ids.push(group.to_owned());
            Ok(true)
        })?;
        Ok(ids)
    }

    /// Applies a delta to a group whose current member count is `count`;
    /// returns the new count.
    fn apply_delta(
        &mut self,
        tenant: &str,
        group: &str,
        mut count: u64,
        delta: &MemberDelta,
    ) -> Result<u64, StoreError> {
        if delta.clear {
            for member in self.member_ids(tenant, group)? {
                self.unlink(tenant, group, &member)?;
            }
            count = 0;
        }
        for member in &delta.remove {
            if self.unlink(tenant, group, member)? {
                count = count.saturating_sub(1);
            }
        }
        for member in &delta.add {
            if self.link(tenant, group, &member.id)? {
                count += 1;
            }
        }
        Ok(count)
    }
}

/// A [`Store`] on a local redb file. Cheap to clone; clones share the file.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// Target block size of the `blocks` table.
    block: u64,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the database at `path`, creating it and its directory if needed.
    /// redb locks the file, so a second process opening it fails here.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with_blocks(path, BLOCK)
    }

    /// [`EmbeddedStore::open`] with another target block size (tests use
    /// tiny blocks to split and merge often).
    fn open_with_blocks(path: &Path, block: u64) -> Result<EmbeddedStore, StoreError> {
        let block = block.max(1);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(backend)?;
        // A read transaction cannot open a table that was never created, so
        // create them all once rather than special-casing "missing" on reads.
        // The same transaction builds `blocks` for a database that lacks it.
        let txn = db.begin_write().map_err(backend)?;
        build_blocks(&txn, block)?;
        Tables::open(&txn, block)?;
        txn.commit().map_err(backend)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            block,
        })
    }

    /// Runs `f` on a snapshot, off the async runtime (redb blocks on I/O).
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        blocking(move || {
            let txn = db.begin_read().map_err(backend)?;
            f(&txn)
        })
        .await
    }

    /// Runs `f` in one write transaction, committed durably if `f` succeeds
    /// and rolled back entirely if it fails.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tables<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (db, block) = (Arc::clone(&self.db), self.block);
        blocking(move || {
            let mut txn = db.begin_write().map_err(backend)?;
            // The default already, but an acknowledged write surviving a
            // crash is the contract, so do not depend on a default.
            txn.set_durability(Durability::Immediate).map_err(backend)?;
            let result = Tables::open(&txn, block).and_then(|mut tables| f(&mut tables));
            match result {
                Ok(value) => {
                    txn.commit().map_err(backend)?;
                    Ok(value)
                }
                Err(e) => {
                    if let Err(abort) = txn.abort() {
                        tracing::warn!(error = %abort, "aborting a failed write transaction");
                    }
                    Err(e)
                }
            }
        })
        .await
    }
}

async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(
        &self,
        tenant: &TenantId,
        kind: Kind,
        id: &str,
    ) -> Result<Option<StoredResource>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |txn| {
            let resources = txn.open_table(RESOURCES).map_err(backend)?;
            Ok(load_row(&resources, tenant.as_str(), kind, &id)?.map(|row| row.resource))
        })
        .await
    }

    async fn get_many(
        &self,
        tenant: &TenantId,
        ids: &[String],
    ) -> Result<Vec<StoredResource>, StoreError> {
        let (tenant, ids) = (tenant.clone(), ids.to_vec());
        self.read(move |txn| {
            let t = tenant.as_str();
            let kinds = txn.open_table(IDS).map_err(backend)?;
            let resources = txn.open_table(RESOURCES).map_err(backend)?;
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for id in &ids {
                if !seen.insert(id.as_str()) {
                    continue;
                }
                let Some(kind) = kinds.get((t, id.as_str())).map_err(backend)? else {
                    continue;
                };
                let kind = parse_kind(kind.value())?;
                if let Some(row) = load_row(&resources, t, kind, id)? {
                    out.push(row.resource);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn find_by_key(
        &self,
        tenant: &TenantId,
        kind: Kind,
        key: &UniqueKey,
    ) -> Result<Option<StoredResource>, StoreError> {
        let (tenant, key) = (tenant.clone(), key.clone());
        self.read(move |txn| {
            let t = tenant.as_str();
            let unique = txn.open_table(UNIQUE).map_err(backend)?;
            let holder = unique
                .get((t, kind.name(), key.attr, key.value.as_str()))
                .map_err(backend)?;
            let Some(id) = holder else {
                return Ok(None);
            };
            let resources = txn.open_table(RESOURCES).map_err(backend)?;
            Ok(load_row(&resources, t, kind, id.value())?.map(|row| row.resource))
        })
        .await
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
        let tenant = tenant.clone();
        let pool = pool.to_vec();
        let audit = audit.to_vec();
        let mut resource = resource.clone();
        let keys = keys.to_vec();
        let members: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        self.write(move |w| {
            let t = tenant.as_str();
            let (kind, id) = (resource.kind, resource.id.clone());
            if kind != Kind::Group && !members.is_empty() {
                return Err(not_a_group());
            }
            // Ids are unique per tenant across kinds (memberships and
            // `get_many` address resources by id alone).
            if w.kind_of(t, &id)?.is_some() {
                return Err(StoreError::Conflict {
                    attr: "id",
                    value: id,
                });
            }
            for key in &keys {
                w.claim(t, kind, key, &id)?;
            }
            w.ids
                .insert((t, id.as_str()), kind.name())
                .map_err(backend)?;
            w.count_by(t, kind, true)?;
            let mut count = 0;
            for member in &members {
                if w.link(t, &id, member)? {
                    count += 1;
                }
            }
            resource.member_count = count;
            w.save(
                t,
                &Row {
                    resource,
                    keys: key_pairs(&keys),
                },
            )?;
            w.index_insert(t, kind, &id)?;
            w.apply_pool(t, &pool)?;
            w.record(t, &audit)
        })
        .await
    }

    async fn update(&self, tenant: &TenantId, update: &Update) -> Result<(), StoreError> {
        let (tenant, update) = (tenant.clone(), update.clone());
        self.write(move |w| {
            let t = tenant.as_str();
            let Update {
                mut resource,
                expected_version,
                old_keys,
                new_keys,
                members,
                pool,
                audit,
            } = update;
            let (kind, id) = (resource.kind, resource.id.clone());
            let stored = w.load(t, kind, &id)?.ok_or(StoreError::VersionMismatch)?;
            if stored.resource.version != expected_version {
                return Err(StoreError::VersionMismatch);
            }
            // Release what we recorded as well as what the core says, so the
            // resource ends up holding exactly `new_keys` even if the two
            // disagree; `release` never frees another resource's key.
            let recorded = stored.keys.iter().map(|(a, v)| (a.as_str(), v.as_str()));
            let declared = old_keys.iter().map(|k| (k.attr, k.value.as_str()));
            for (attr, value) in recorded.chain(declared) {
                w.release(t, kind, attr, value, &id)?;
            }
            for key in &new_keys {
                w.claim(t, kind, key, &id)?;
            }
            resource.member_count = if kind == Kind::Group {
                w.apply_delta(t, &id, stored.resource.member_count, &members)?
            } else if members.is_empty() {
                0
            } else {
                return Err(not_a_group());
            };
            w.save(
                t,
                &Row {
                    resource,
                    keys: key_pairs(&new_keys),
                },
            )?;
            w.apply_pool(t, &pool)?;
            w.record(t, &audit)
        })
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
        let (tenant, id, delta, now) = (
            tenant.clone(),
            group_id.to_owned(),
            delta.clone(),
            now.to_owned(),
        );
        let audit: Vec<AuditRecord> = audit.into_iter().cloned().collect();
        self.write(move |w| {
            let t = tenant.as_str();
            let mut row = w.load(t, Kind::Group, &id)?.ok_or(StoreError::NotFound)?;
            if expected_version.is_some_and(|v| v != row.resource.version) {
                return Err(StoreError::VersionMismatch);
            }
            row.resource.member_count = w.apply_delta(t, &id, row.resource.member_count, &delta)?;
            row.resource.version += 1;
            row.resource.last_modified = now;
            w.save(t, &row)?;
            // One transaction here: the record names the group's new version.
            let audit: Vec<AuditRecord> = audit
                .into_iter()
                .map(|mut r| {
                    r.version = Some(row.resource.version);
                    r
                })
                .collect();
            w.record(t, &audit)?;
            Ok(row.resource)
        })
        .await
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
        let (tenant, id, pool) = (tenant.clone(), id.to_owned(), pool.to_vec());
        let audit = audit.to_vec();
        self.write(move |w| {
            let t = tenant.as_str();
            let row = w.load(t, kind, &id)?.ok_or(StoreError::NotFound)?;
            if expected_version.is_some_and(|v| v != row.resource.version) {
                return Err(StoreError::VersionMismatch);
            }
            w.resources
                .remove((t, kind.name(), id.as_str()))
                .map_err(backend)?;
            w.index_remove(t, kind, &id)?;
            w.ids.remove((t, id.as_str())).map_err(backend)?;
            for (attr, value) in &row.keys {
                w.release(t, kind, attr, value, &id)?;
            }
            w.count_by(t, kind, false)?;

            // Losing a member changes a group's representation, so each group
            // gets a new version (and ETag), like any other change to it.
            let now = now()?;
            for group in w.groups_of(t, &id)? {
                w.unlink(t, &group, &id)?;
                if group == id {
                    continue; // a group in itself: already gone
                }
                if let Some(mut row) = w.load(t, Kind::Group, &group)? {
                    let g = &mut row.resource;
                    g.member_count = g.member_count.saturating_sub(1);
                    g.version += 1;
                    g.last_modified.clone_from(&now);
                    w.save(t, &row)?;
                }
            }
            if kind == Kind::Group {
                for member in w.member_ids(t, &id)? {
                    w.unlink(t, &id, &member)?;
                }
            }
            w.apply_pool(t, &pool)?;
            w.record(t, &audit)
        })
        .await
    }

    async fn count(&self, tenant: &TenantId, kind: Kind) -> Result<u64, StoreError> {
        let tenant = tenant.clone();
        self.read(move |txn| {
            let counts = txn.open_table(COUNTS).map_err(backend)?;
            let n = counts
                .get((tenant.as_str(), kind.name()))
                .map_err(backend)?
                .map_or(0, |g| g.value());
            Ok(n)
        })
        .await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredResource>, StoreError> {
        let (tenant, after) = (tenant.clone(), after.map(str::to_owned));
        self.read(move |txn| {
            let resources = txn.open_table(RESOURCES).map_err(backend)?;
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            let prefix = (tenant.as_str(), kind.name());
            walk(&resources, prefix, after.as_deref(), |_, json| {
                out.push(parse_row(json)?.resource);
                Ok(out.len() < limit)
            })?;
            Ok(out)
        })
        .await
    }

    async fn list_at(
        &self,
        tenant: &TenantId,
        kind: Kind,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<StoredResource>, StoreError> {
        let tenant = tenant.clone();
        self.read(move |txn| {
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            let prefix = (tenant.as_str(), kind.name());
            // Whole blocks before `offset` are skipped by their counts ...
            let blocks = txn.open_table(BLOCKS).map_err(backend)?;
            let mut before = 0;
            let mut start = None;
            walk(&blocks, prefix, None, |first, n| {
                if before + n > offset {
                    start = Some(first.to_owned());
                    return Ok(false);
                }
                before += n;
                Ok(true)
            })?;
            let Some(start) = start else {
                return Ok(out); // past the end
            };
            // ... and the rest of the way one entry at a time, within one
            // block: a key comparison each, values never decoded.
            let resources = txn.open_table(RESOURCES).map_err(backend)?;
            let mut skip = offset - before;
            walk_from(
                &resources,
                prefix,
                Bound::Included(start.as_str()),
                |_, json| {
                    if skip > 0 {
                        skip -= 1;
                        return Ok(true);
                    }
                    out.push(parse_row(json)?.resource);
                    Ok(out.len() < limit)
                },
            )?;
            Ok(out)
        })
        .await
    }

    async fn members(
        &self,
        tenant: &TenantId,
        group_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MemberRef>, StoreError> {
        let (tenant, group) = (tenant.clone(), group_id.to_owned());
        let after = after.map(str::to_owned);
        self.read(move |txn| {
            let members = txn.open_table(MEMBERS).map_err(backend)?;
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            let prefix = (tenant.as_str(), group.as_str());
            walk(&members, prefix, after.as_deref(), |id, kind| {
                out.push(MemberRef {
                    id: id.to_owned(),
                    kind: parse_kind(kind)?,
                });
                Ok(out.len() < limit)
            })?;
            Ok(out)
        })
        .await
    }

    async fn is_member(
        &self,
        tenant: &TenantId,
        group_id: &str,
        member_id: &str,
    ) -> Result<bool, StoreError> {
        let (tenant, group, member) = (tenant.clone(), group_id.to_owned(), member_id.to_owned());
        self.read(move |txn| {
            let members = txn.open_table(MEMBERS).map_err(backend)?;
            let found = members
                .get((tenant.as_str(), group.as_str(), member.as_str()))
                .map_err(backend)?
                .is_some();
            Ok(found)
        })
        .await
    }

    async fn groups_of(
        &self,
        tenant: &TenantId,
        member_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (tenant, member) = (tenant.clone(), member_id.to_owned());
        self.read(move |txn| {
            let member_of = txn.open_table(MEMBER_OF).map_err(backend)?;
            let mut groups = Vec::new();
            walk(
                &member_of,
                (tenant.as_str(), member.as_str()),
                None,
                |group, ()| {
                    groups.push(group.to_owned());
                    Ok(true)
                },
            )?;
            Ok(groups)
        })
        .await
    }

    async fn groups_of_many(
        &self,
        tenant: &TenantId,
        member_ids: &[String],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let (tenant, members) = (tenant.clone(), member_ids.to_vec());
        self.read(move |txn| {
            let member_of = txn.open_table(MEMBER_OF).map_err(backend)?;
            let mut out = Vec::with_capacity(members.len());
            for member in &members {
                let mut groups = Vec::new();
                walk(
                    &member_of,
                    (tenant.as_str(), member.as_str()),
                    None,
                    |group, ()| {
                        groups.push(group.to_owned());
                        Ok(true)
                    },
                )?;
                out.push(groups);
            }
            Ok(out)
        })
        .await
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let tenant = tenant.clone();
        self.read(move |txn| {
            let tenants = txn.open_table(TENANTS).map_err(backend)?;
            match tenants.get(tenant.as_str()).map_err(backend)? {
                Some(json) => serde_json::from_str(json.value())
                    .map(Some)
                    .map_err(corrupt),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_tenant_with(
        &self,
        record: &TenantRecord,
        expected_version: Option<u64>,
        audit: &[AuditRecord],
    ) -> Result<(), StoreError> {
        let record = record.clone();
        let audit = audit.to_vec();
        self.write(move |w| {
            let stored = match w.tenants.get(record.id.as_str()).map_err(backend)? {
                Some(json) => Some(
                    serde_json::from_str::<TenantRecord>(json.value())
                        .map_err(corrupt)?
                        .version,
                ),
                None => None,
            };
            match (expected_version, stored) {
                (None, Some(_)) => {
                    return Err(StoreError::Conflict {
                        attr: "id",
                        value: record.id.to_string(),
                    });
                }
                (Some(want), got) if got != Some(want) => return Err(StoreError::VersionMismatch),
                _ => {}
            }
            let json = serde_json::to_string(&record).map_err(corrupt)?;
            w.tenants
                .insert(record.id.as_str(), json.as_str())
                .map_err(backend)?;
            w.record(record.id.as_str(), &audit)
        })
        .await
    }

    async fn list_tenants(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        let after = after.map(str::to_owned);
        self.read(move |txn| {
            let tenants = txn.open_table(TENANTS).map_err(backend)?;
            let start = match &after {
                Some(a) => Bound::Excluded(a.as_str()),
                None => Bound::Unbounded,
            };
            let mut out = Vec::new();
            for entry in tenants
                .range::<&str>((start, Bound::Unbounded))
                .map_err(backend)?
            {
                if out.len() >= limit {
                    break;
                }
                let (_, json) = entry.map_err(backend)?;
                out.push(serde_json::from_str(json.value()).map_err(corrupt)?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_reveal(&self, record: &RevealRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.write(move |w| {
            let tenant = record.tenant.as_str();
            let now_unix = OffsetDateTime::now_utc().unix_timestamp();
            // Sweep this tenant's expired links (a handful at most) so
            // they do not accumulate.
            let mut expired = Vec::new();
            for entry in w.reveals.range((tenant, "")..).map_err(backend)? {
                let (key, json) = entry.map_err(backend)?;
                let (t, hash) = key.value();
                if t != tenant {
                    break;
                }
                let r: RevealRecord = serde_json::from_str(json.value()).map_err(corrupt)?;
                if r.expires_at <= now_unix {
                    expired.push(hash.to_owned());
                }
            }
            for hash in &expired {
                w.reveals.remove((tenant, hash.as_str())).map_err(backend)?;
            }
            let json = serde_json::to_string(&record).map_err(corrupt)?;
            w.reveals
                .insert((tenant, record.ref_hash.as_str()), json.as_str())
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn get_reveal(
        &self,
        tenant: &TenantId,
        ref_hash: &str,
        now_unix: i64,
    ) -> Result<Option<RevealRecord>, StoreError> {
        let (tenant, hash) = (tenant.clone(), ref_hash.to_owned());
        self.read(move |txn| {
            let reveals = txn.open_table(REVEALS).map_err(backend)?;
            match reveals
                .get((tenant.as_str(), hash.as_str()))
                .map_err(backend)?
            {
                Some(json) => {
                    let r: RevealRecord = serde_json::from_str(json.value()).map_err(corrupt)?;
                    Ok((r.expires_at > now_unix).then_some(r))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn take_reveal(
        &self,
        tenant: &TenantId,
        ref_hash: &str,
        now_unix: i64,
    ) -> Result<Option<RevealRecord>, StoreError> {
        let (tenant, hash) = (tenant.clone(), ref_hash.to_owned());
        // One write transaction: redb serialises writers, so of concurrent
        // takers exactly one sees the record.
        self.write(move |w| {
            let Some(json) = w
                .reveals
                .remove((tenant.as_str(), hash.as_str()))
                .map_err(backend)?
            else {
                return Ok(None);
            };
            let r: RevealRecord = serde_json::from_str(json.value()).map_err(corrupt)?;
            Ok((r.expires_at > now_unix).then_some(r))
        })
        .await
    }

    async fn get_pool(&self, tenant: &TenantId) -> Result<Option<SeatPool>, StoreError> {
        let tenant = tenant.clone();
        self.read(move |txn| {
            let pools = txn.open_table(POOLS).map_err(backend)?;
            match pools.get(tenant.as_str()).map_err(backend)? {
                Some(json) => serde_json::from_str(json.value())
                    .map(Some)
                    .map_err(corrupt),
                None => Ok(None),
            }
        })
        .await
    }

    async fn init_pool(&self, tenant: &TenantId, pool: &SeatPool) -> Result<(), StoreError> {
        let (tenant, pool) = (tenant.clone(), *pool);
        self.write(move |w| {
            if w.pool(tenant.as_str())?.is_none() {
                w.save_pool(tenant.as_str(), &pool)?;
            }
            Ok(())
        })
        .await
    }

    async fn set_pool(
        &self,
        tenant: &TenantId,
        seats: Option<u64>,
        auto: Option<bool>,
        audit: &[AuditRecord],
    ) -> Result<SeatPool, StoreError> {
        let tenant = tenant.clone();
        let audit = audit.to_vec();
        self.write(move |w| {
            let mut p = w.pool(tenant.as_str())?.ok_or(StoreError::NotFound)?;
            if let Some(n) = seats {
                if n < p.used {
                    return Err(StoreError::PoolChanged);
                }
                p.seats = n;
            }
            if let Some(a) = auto {
                p.auto = a;
            }
            w.save_pool(tenant.as_str(), &p)?;
            w.record(tenant.as_str(), &audit)?;
            Ok(p)
        })
        .await
    }

    async fn waiting(&self, tenant: &TenantId, limit: usize) -> Result<Vec<Waiting>, StoreError> {
        let tenant = tenant.clone();
        self.read(move |txn| {
            let queue = txn.open_table(QUEUE).map_err(backend)?;
            let t = tenant.as_str();
            let mut out = Vec::new();
            for entry in queue.range((t, "", "")..).map_err(backend)? {
                let (key, _) = entry.map_err(backend)?;
                let (kt, since, user) = key.value();
                if kt != t || out.len() >= limit {
                    break;
                }
                out.push(Waiting {
                    since: since.to_owned(),
                    user: user.to_owned(),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn apply_pool(
        &self,
        tenant: &TenantId,
        ops: &[PoolOp],
        audit: &[AuditRecord],
    ) -> Result<(), StoreError> {
        let (tenant, ops, audit) = (tenant.clone(), ops.to_vec(), audit.to_vec());
        self.write(move |w| {
            w.apply_pool(tenant.as_str(), &ops)?;
            w.record(tenant.as_str(), &audit)
        })
        .await
    }

    async fn put_audit(
        &self,
        tenant: &TenantId,
        records: &[AuditRecord],
    ) -> Result<(), StoreError> {
        let (tenant, records) = (tenant.clone(), records.to_vec());
        self.write(move |w| w.record(tenant.as_str(), &records))
            .await
    }

    async fn audit_range(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        until: Option<&str>,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let tenant = tenant.clone();
        let (after, until) = (after.map(str::to_owned), until.map(str::to_owned));
        self.read(move |txn| {
            let audit = txn.open_table(AUDIT).map_err(backend)?;
            let t = tenant.as_str();
            let mut out: Vec<AuditRecord> = Vec::new();
            // Times start with a digit: ("A") bounds this tenant's records.
            let range = audit.range((t, "", "")..(t, "A", "")).map_err(backend)?;
            let entries: Box<dyn Iterator<Item = _>> = if forward {
                Box::new(range)
            } else {
                Box::new(range.rev())
            };
            for entry in entries {
                let (key, json) = entry.map_err(backend)?;
                let (kt, time, id) = key.value();
                if kt != t {
                    if forward {
                        break;
                    }
                    continue;
                }
                // Positions are `{time}#{id}`.
                let pos = format!("{time}#{id}");
                let below = until.as_deref().is_none_or(|u| pos.as_str() <= u);
                let above = after.as_deref().is_none_or(|a| pos.as_str() > a);
                if below && above {
                    out.push(serde_json::from_str(json.value()).map_err(corrupt)?);
                    if out.len() >= limit {
                        break;
                    }
                } else if (forward && !below) || (!forward && !above) {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn sweep_audit(&self, now_unix: i64) -> Result<u64, StoreError> {
        self.write(move |w| {
            let mut expired = Vec::new();
            for entry in w.audit.iter().map_err(backend)? {
                let (key, json) = entry.map_err(backend)?;
                let r: AuditRecord = serde_json::from_str(json.value()).map_err(corrupt)?;
                if r.expires_at <= now_unix {
                    let (t, time, id) = key.value();
                    expired.push((t.to_owned(), time.to_owned(), id.to_owned()));
                }
            }
            for (t, time, id) in &expired {
                w.audit
                    .remove((t.as_str(), time.as_str(), id.as_str()))
                    .map_err(backend)?;
            }
            Ok(expired.len() as u64)
        })
        .await
    }

    async fn delete_reveal(&self, tenant: &TenantId, ref_hash: &str) -> Result<(), StoreError> {
        let (tenant, hash) = (tenant.clone(), ref_hash.to_owned());
        self.write(move |w| {
            w.reveals
                .remove((tenant.as_str(), hash.as_str()))
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use crate::store::contract::{
        add, add_user, group, ids, key, member, member_ids, resource, tenant, update, user,
    };

    /// A store in a fresh temporary directory, which outlives it.
    fn open() -> (EmbeddedStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("nested/dir/scim.redb")).unwrap();
        (store, dir)
    }

    crate::store::contract::store_contract_tests!(async || open());

    /// The embedded store has no TTL: the sweep removes records whose
    /// retention ended and keeps the rest, in order.
    #[tokio::test]
    async fn the_sweep_removes_only_expired_audit_records() {
        use crate::audit::{Operation, Origin, ResourceType};
        let (s, _dir) = open();
        let t = tenant("t1");
        let origin = Origin::service(1);
        let now = OffsetDateTime::now_utc();
        let rec = |minutes: i64, expires_in: i64| {
            let mut r = origin.record(
                &t,
                ResourceType::User,
                "u1",
                Operation::Updated,
                now + time::Duration::minutes(minutes),
            );
            r.expires_at = now.unix_timestamp() + expires_in;
            r
        };
        let (old, kept, newest) = (rec(0, -10), rec(1, 3600), rec(2, 3600));
        s.put_audit(&t, &[old, kept.clone(), newest.clone()])
            .await
            .unwrap();
        s.put_audit(&tenant("t2"), &[rec(3, -10)]).await.unwrap();
        assert_eq!(s.sweep_audit(now.unix_timestamp()).await.unwrap(), 2);
        let left = s.audit_range(&t, None, None, true, 10).await.unwrap();
        assert_eq!(left, [kept.clone(), newest.clone()]);
        let newest_first = s.audit_range(&t, None, None, false, 10).await.unwrap();
        assert_eq!(newest_first, [newest.clone(), kept.clone()]);
        let after = s
            .audit_range(&t, Some(&kept.position()), None, true, 10)
            .await
            .unwrap();
        assert_eq!(after, [newest]);
        assert_eq!(s.sweep_audit(now.unix_timestamp()).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scim.redb");
        let t = tenant("t1");
        let rec = crate::store::contract::tenant_record("t1");
        {
            let s = EmbeddedStore::open(&path).unwrap();
            add_user(&s, &t, "u1").await;
            s.create(&t, &group("g"), &[], &[member("u1")])
                .await
                .unwrap();
            s.put_tenant(&rec, None).await.unwrap();
        }
        let s = EmbeddedStore::open(&path).unwrap();
        assert_eq!(s.get(&t, Kind::User, "u1").await.unwrap(), Some(user("u1")));
        assert_eq!(s.count(&t, Kind::User).await.unwrap(), 1);
        assert_eq!(member_ids(&s, &t, "g").await, ["u1"]);
        assert_eq!(s.groups_of(&t, "u1").await.unwrap(), ["g"]);
        assert_eq!(s.get_tenant(&t).await.unwrap(), Some(rec));
        let taken = s
            .create(&t, &user("u2"), &[key("userName", "u1")], &[])
            .await;
        assert!(matches!(taken, Err(StoreError::Conflict { .. })));
    }

    /// A small deterministic PRNG (xorshift64*), so failures replay.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    /// What the store should hold: ids per (tenant, kind), each id's kind
    /// and the holder of each `userName` key, per tenant.
    #[derive(Default)]
    struct Model {
        lists: BTreeMap<(String, Kind), BTreeSet<String>>,
        kinds: HashMap<(String, String), Kind>,
        keys: HashMap<(String, Kind, String), String>,
    }

    impl Model {
        fn list(&self, t: &str, kind: Kind) -> Vec<String> {
            self.lists
                .get(&(t.to_owned(), kind))
                .map(|ids| ids.iter().cloned().collect())
                .unwrap_or_default()
        }
    }

    /// Checks the `blocks` table against `resources`: every block's count
    /// is exact, no block is empty or above 2·`block`, two neighbours hold
    /// more than `block` together, and the first block starts at or below
    /// the first id. Returns the number of blocks.
    fn check_blocks(s: &EmbeddedStore) -> usize {
        let txn = s.db.begin_read().unwrap();
        let mut ids: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for entry in txn.open_table(RESOURCES).unwrap().iter().unwrap() {
            let (key, _) = entry.unwrap();
            let (t, k, id) = key.value();
            ids.entry((t.into(), k.into())).or_default().push(id.into());
        }
        let mut blocks: BTreeMap<(String, String), Vec<(String, u64)>> = BTreeMap::new();
        for entry in txn.open_table(BLOCKS).unwrap().iter().unwrap() {
            let (key, n) = entry.unwrap();
            let (t, k, first) = key.value();
            blocks
                .entry((t.into(), k.into()))
                .or_default()
                .push((first.into(), n.value()));
        }
        assert_eq!(
            blocks.keys().collect::<Vec<_>>(),
            ids.keys().collect::<Vec<_>>(),
            "blocks for exactly the non-empty slices"
        );
        let mut total = 0;
        for (prefix, runs) in &blocks {
            let ids = &ids[prefix];
            assert!(
                runs[0].0.as_str() <= ids[0].as_str(),
                "{prefix:?} starts late"
            );
            for (i, (first, n)) in runs.iter().enumerate() {
                let next = runs.get(i + 1).map(|(f, _)| f.as_str());
                let held = ids
                    .iter()
                    .filter(|id| {
                        id.as_str() >= first.as_str() && next.is_none_or(|f| id.as_str() < f)
                    })
                    .count() as u64;
                assert_eq!(*n, held, "{prefix:?} block {first:?}");
                assert!(
                    *n >= 1 && *n <= 2 * s.block,
                    "{prefix:?} block {first:?} holds {n}"
                );
                if let Some((_, m)) = runs.get(i + 1) {
                    assert!(
                        n + m > s.block,
                        "{prefix:?} neighbours at {first:?}: {n} + {m}"
                    );
                }
            }
            total += runs.len();
        }
        total
    }

    /// `list_at` for every offset (and past the end, and limit 0) against
    /// the model.
    async fn check_pages(s: &EmbeddedStore, model: &Model, rng: &mut Rng) {
        for t in ["t1", "t2"] {
            for kind in [Kind::User, Kind::Group] {
                let want = model.list(t, kind);
                let tid = tenant(t);
                for offset in 0..=want.len() + 2 {
                    let limit = 1 + rng.below(5) as usize;
                    let page = s.list_at(&tid, kind, offset as u64, limit).await.unwrap();
                    let expected: Vec<&str> = want
                        .iter()
                        .skip(offset)
                        .take(limit)
                        .map(String::as_str)
                        .collect();
                    assert_eq!(ids(&page), expected, "{t} {kind:?} at {offset}, {limit}");
                    assert!(page.iter().all(|r| r.kind == kind));
                }
                let far = s.list_at(&tid, kind, u64::MAX, 10).await.unwrap();
                assert!(far.is_empty());
                assert!(s.list_at(&tid, kind, 0, 0).await.unwrap().is_empty());
                let count = s.count(&tid, kind).await.unwrap();
                assert_eq!(count, want.len() as u64);
            }
        }
    }

    /// Random creates and deletes (some failing: an id taken in either
    /// kind, a `userName` taken, a missing id, a stale version) across two
    /// tenants and both kinds, with blocks small enough to split and merge
    /// all the time.
    #[tokio::test]
    async fn list_at_matches_a_model_under_random_creates_and_deletes() {
        for block in [1, 2, 5] {
            let dir = tempfile::tempdir().unwrap();
            let s = EmbeddedStore::open_with_blocks(&dir.path().join("scim.redb"), block).unwrap();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ block);
            let mut model = Model::default();
            let (mut failed_creates, mut failed_deletes) = (0, 0);
            for step in 1..=900 {
                let t = ["t1", "t2"][rng.below(2) as usize];
                let kind = [Kind::User, Kind::Group][rng.below(2) as usize];
                let id = format!("id-{:03}", rng.below(60));
                let tid = tenant(t);
                if rng.below(100) < 60 {
                    let name = format!("n{}", rng.below(40));
                    let result = s
                        .create(
                            &tid,
                            &resource(kind, &id, &name),
                            &[key("userName", &name)],
                            &[],
                        )
                        .await;
                    let id_free = !model.kinds.contains_key(&(t.into(), id.clone()));
                    let name_key = (t.to_owned(), kind, name);
                    let name_free = !model.keys.contains_key(&name_key);
                    if id_free && name_free {
                        result.unwrap();
                        model.kinds.insert((t.into(), id.clone()), kind);
                        model.keys.insert(name_key, id.clone());
                        model.lists.entry((t.into(), kind)).or_default().insert(id);
                    } else {
                        assert!(
                            matches!(result, Err(StoreError::Conflict { .. })),
                            "{result:?}"
                        );
                        failed_creates += 1;
                    }
                } else {
                    let stale = rng.below(10) == 0;
                    let expected = stale.then_some(2);
                    let result = s.delete(&tid, kind, &id, expected).await;
                    let held = model.kinds.get(&(t.into(), id.clone())) == Some(&kind);
                    if held && !stale {
                        result.unwrap();
                        model.kinds.remove(&(t.into(), id.clone()));
                        model.keys.retain(|(kt, kk, _), holder| {
                            !(kt == t && *kk == kind && *holder == id)
                        });
                        if let Some(ids) = model.lists.get_mut(&(t.into(), kind)) {
                            ids.remove(&id);
                        }
                    } else {
                        assert!(result.is_err(), "{t} {kind:?} {id}");
                        failed_deletes += 1;
                    }
                }
                if step % 60 == 0 {
                    check_blocks(&s);
                    check_pages(&s, &model, &mut rng).await;
                }
            }
            assert!(failed_creates > 50 && failed_deletes > 50);
        }
    }

    /// More than 2·BLOCK resources at the real block size, created out of
    /// order, then most of them deleted: splits, then drops and merges.
    #[tokio::test]
    async fn blocks_split_and_merge_at_the_real_block_size() {
        let (s, _dir) = open();
        let t = tenant("t1");
        let mut rng = Rng(42);
        let n = 4 * BLOCK;
        // Descending then ascending halves: new firsts and new lasts.
        let mut order: Vec<u64> = (0..n / 2).rev().chain(n / 2..n).collect();
        let mut model = Model::default();
        for i in &order {
            let id = format!("u{i:05}");
            add_user(&s, &t, &id).await;
            model
                .lists
                .entry(("t1".into(), Kind::User))
                .or_default()
                .insert(id);
        }
        assert!(check_blocks(&s) >= 3, "split more than once");
        check_pages(&s, &model, &mut rng).await;
        // Delete all but 20, in a shuffled order.
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for (done, i) in order.iter().take(order.len() - 20).enumerate() {
            let id = format!("u{i:05}");
            s.delete(&t, Kind::User, &id, None).await.unwrap();
            if let Some(ids) = model.lists.get_mut(&("t1".into(), Kind::User)) {
                ids.remove(&id);
            }
            if done % 97 == 0 {
                check_blocks(&s);
            }
        }
        assert_eq!(check_blocks(&s), 1);
        check_pages(&s, &model, &mut rng).await;
    }

    /// A data dir made before blocks existed (no `blocks`, no `meta`), or
    /// whose `blocks` is not marked built, gets them built on open.
    #[tokio::test]
    async fn blocks_are_built_on_open_for_a_database_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scim.redb");
        let mut model = Model::default();
        {
            let s = EmbeddedStore::open(&path).unwrap();
            for (t, kind, n) in [
                ("t1", Kind::User, 23),
                ("t1", Kind::Group, 7),
                ("t2", Kind::User, 11),
            ] {
                for i in 0..n {
                    let id = format!("{}-{i:02}", kind.name());
                    s.create(&tenant(t), &resource(kind, &id, &id), &[], &[])
                        .await
                        .unwrap();
                    model.lists.entry((t.into(), kind)).or_default().insert(id);
                }
            }
        }
        // 0: no blocks at all; 1: marked not built, with a wrong block left
        // behind; 2: marked built, but out of step with the resources (a
        // binary that did not keep blocks wrote in between).
        let strip = |mode: u8| {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            if mode > 0 {
                txn.open_table(BLOCKS)
                    .unwrap()
                    .insert(("t1", "User", "User-05"), 99)
                    .unwrap();
                if mode == 1 {
                    txn.open_table(META).unwrap().remove(BLOCKS_BUILT).unwrap();
                }
            } else {
                assert!(txn.delete_table(BLOCKS).unwrap());
                assert!(txn.delete_table(META).unwrap());
            }
            txn.commit().unwrap();
        };
        let mut rng = Rng(7);
        for mode in [0u8, 1, 2] {
            strip(mode);
            let s = EmbeddedStore::open_with_blocks(&path, 4).unwrap();
            assert!(check_blocks(&s) >= 5);
            check_pages(&s, &model, &mut rng).await;
            // And it keeps up with writes afterwards.
            let (gone, new) = match mode {
                0 => ("User-03", "User-99"),
                1 => ("User-04", "User-98"),
                _ => ("User-06", "User-97"),
            };
            s.delete(&tenant("t1"), Kind::User, gone, None)
                .await
                .unwrap();
            add_user(&s, &tenant("t1"), new).await;
            let users = model.lists.get_mut(&("t1".into(), Kind::User)).unwrap();
            users.remove(gone);
            users.insert(new.into());
            check_blocks(&s);
            check_pages(&s, &model, &mut rng).await;
        }
    }

    /// A member's kind is the stored resource's, whatever the caller says
    /// (the DynamoDB store refuses a member of the wrong kind instead).
    #[tokio::test]
    async fn a_members_kind_is_the_stored_one() {
        let (s, _dir) = open();
        let t = tenant("t1");
        let g = group("g");
        s.create(&t, &g, &[], &[]).await.unwrap();
        s.create(&t, &group("inner"), &[], &[]).await.unwrap();
        // `add` names "inner" as a user.
        s.update(&t, &update(&g, g.clone(), add(&["inner"])))
            .await
            .unwrap();
        let inner = MemberRef {
            id: "inner".into(),
            kind: Kind::Group,
        };
        assert_eq!(s.members(&t, "g", None, 10).await.unwrap(), [inner]);
        assert_eq!(s.groups_of(&t, "inner").await.unwrap(), ["g"]);
    }
}
