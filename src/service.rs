//! The application layer: runs SCIM operations against a [`Store`].
//!
//! It owns the read-modify-write loops (optimistic concurrency with
//! retries, `If-Match`), the query planner (index lookups for the equality
//! filters IdPs send, scans otherwise) and pagination. SCIM rules
//! themselves live in `crate::scim`; this layer only sequences them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::audit::{self, AuditRecord, Operation};
use crate::rules::{self, Plan, PoolView, RuleError};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::filter::{self, CompareOp, Filter, Literal};
use crate::scim::list::{
    CURSOR_TTL_SECS, CursorCodec, CursorState, ListQuery, PagingParam, RawQuery, list_response,
};
use crate::scim::model::{
    MemberDelta, MemberRef, SeatPool, StoredResource, TenantId, UniqueKey, Waiting,
};
use crate::scim::patch::{self, MemberOp};
use crate::scim::render::{self, GroupRef, Projection};
use crate::scim::resource::{self, MemberInput};
use crate::scim::schema::{self, Kind};
use crate::store::{Store, StoreError, Update};

mod members;

/// How often a write is retried after losing a race with another writer.
const MAX_ATTEMPTS: u32 = 40;
/// Resources read per store call while scanning.
const SCAN_BATCH: usize = 500;
/// Members read per store call.
const MEMBER_BATCH: usize = 1000;
/// Most members one response shows: at about 270 bytes each in a Lambda
/// answer, 10,000 keep it far below Lambda's 6 MB response limit, whatever
/// the ids and Tenant URL.
pub const MAX_MEMBERS_PER_RESPONSE: u64 = 10_000;
/// Most bytes of resources one list page carries, counted as they travel
/// in a Lambda answer (see [`json_len`]; Lambda's limit is 6 MB for the
/// whole answer).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Who is asking and under which URL their resources live.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub tenant: TenantId,
    /// The Tenant URL, e.g. `https://host/scim/v2/acme`.
    pub base_url: String,
    /// Who asks, as the audit trail records it.
    pub origin: audit::Origin,
}

/// A single-resource answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub etag: Option<String>,
    pub location: Option<String>,
}

/// Conditional request headers.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
}

pub struct Service {
    store: Arc<dyn Store>,
    cursors: CursorCodec,
    retention_days: i64,
    member_indexes: members::MemberIndexes,
}

pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_millisecond(now.millisecond()).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A timestamp that sorts as text in time order (fixed-width microseconds),
/// for the waiting line: `2026-01-01T00:00:00.123456Z`.
pub fn now_sortable() -> String {
    audit::sortable(time::OffsetDateTime::now_utc())
}

fn now_unix() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

/// Maps a storage failure; conflicts get a detail naming the value.
fn store_err(kind: Kind, e: StoreError) -> ScimError {
    match e {
        StoreError::Conflict { attr, value } => ScimError::uniqueness(format!(
            "{attr} {value:?} is already used by another {} of this tenant{}",
            kind.name(),
            if attr == "externalId" {
                ""
            } else {
                " (compared case-insensitively)"
            }
        )),
        StoreError::VersionMismatch => ScimError::PreconditionFailed(
            "the resource changed since the version given in If-Match".into(),
        ),
        StoreError::NotFound => ScimError::NotFound(format!("{} not found", kind.name())),
        StoreError::MemberNotFound(id) => ScimError::invalid_value(format!(
            "member {id:?} is not a User or Group of this tenant"
        )),
        // Re-planned by the callers; only a pool that keeps changing ends here.
        StoreError::PoolChanged => ScimError::Unavailable {
            detail: "licences are being reassigned concurrently; retry shortly".into(),
            retry_after_secs: 1,
        },
        StoreError::Unavailable(msg) => {
            tracing::warn!(error = %msg, "store unavailable");
            ScimError::Unavailable {
                detail: "the service is busy; retry shortly".into(),
                retry_after_secs: 1,
            }
        }
        StoreError::Backend(msg) => {
            tracing::error!(error = %msg, "store failure");
            ScimError::Internal("internal storage error".into())
        }
    }
}

/// A product rule that refuses a SCIM write.
fn rule_err(e: RuleError) -> ScimError {
    match e {
        RuleError::AdminProtected => ScimError::Forbidden(e.to_string()),
        RuleError::NoSeat | RuleError::Inactive => ScimError::Conflict(e.to_string()),
    }
}

/// The pool as last read, with the head of the line, for re-planning.
pub type PoolState = (SeatPool, Option<Waiting>);

fn view(known: &Option<PoolState>) -> PoolView<'_> {
    match known {
        None => PoolView::Guess,
        Some((pool, head)) => PoolView::Known {
            pool,
            head: head.as_ref(),
        },
    }
}

/// Why a product-rule change of a user did not happen.
#[derive(Debug)]
pub enum ChangeError {
    Rule(RuleError),
    Store(StoreError),
}

impl From<StoreError> for ChangeError {
    fn from(e: StoreError) -> Self {
        ChangeError::Store(e)
    }
}

fn not_found(kind: Kind, id: &str) -> ScimError {
    ScimError::NotFound(format!("{} {id:?} not found", kind.name()))
}

/// `If-Match` against the current ETag `tag` of version `version`:
/// `Ok(Some(version))` pins the write to that version.
fn check_if_match(cond: &Conditions, version: u64, tag: &str) -> ScimResult<Option<u64>> {
    let Some(h) = &cond.if_match else {
        return Ok(None);
    };
    if render::etag_matches(h, tag) {
        Ok(Some(version))
    } else {
        Err(ScimError::PreconditionFailed(format!(
            "If-Match does not match the current version {tag}"
        )))
    }
}

async fn backoff(attempt: u32) {
    let jitter = u64::from(rand::random::<u8>() % 8);
    tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(10)) + jitter)).await;
}

impl Service {
    pub fn new(store: Arc<dyn Store>, cursor_key: &[u8]) -> Service {
        Service {
            store,
            cursors: CursorCodec::new(cursor_key),
            retention_days: audit::DEFAULT_RETENTION_DAYS,
            member_indexes: members::MemberIndexes::default(),
        }
    }

    /// How long audit records are kept (days).
    pub fn with_retention_days(mut self, days: i64) -> Service {
        self.retention_days = days.max(1);
        self
    }

    pub fn retention_days(&self) -> i64 {
        self.retention_days
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn load(&self, ctx: &Ctx, kind: Kind, id: &str) -> ScimResult<StoredResource> {
        self.store
            .get(&ctx.tenant, kind, id)
            .await
            .map_err(|e| store_err(kind, e))?
            .ok_or_else(|| not_found(kind, id))
    }

    /// `If-Match` checked against the resource's current ETag; for a user
    /// that needs its groups, read only when the header is there. The
    /// write is then conditioned on the user's own version: a membership
    /// change landing between this read and the write is not part of the
    /// write, so it is not lost, only not refused.
    async fn pin(
        &self,
        ctx: &Ctx,
        cur: &StoredResource,
        cond: &Conditions,
    ) -> ScimResult<Option<u64>> {
        if cond.if_match.is_none() {
            return Ok(None);
        }
        let groups = match cur.kind {
            Kind::User => Some(self.groups_of(ctx, &cur.id).await?),
            Kind::Group => None,
        };
        let tag = render::etag_of(cur, groups.as_deref());
        check_if_match(cond, cur.version, &tag)
    }

    async fn all_members(&self, ctx: &Ctx, group_id: &str) -> ScimResult<Vec<MemberRef>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .members(&ctx.tenant, group_id, after.as_deref(), MEMBER_BATCH)
                .await
                .map_err(|e| store_err(Kind::Group, e))?;
            let done = page.len() < MEMBER_BATCH;
            after = page.last().map(|m| m.id.clone());
            out.extend(page);
            if done || after.is_none() {
                return Ok(out);
            }
        }
    }

    async fn groups_of(&self, ctx: &Ctx, user_id: &str) -> ScimResult<Vec<GroupRef>> {
        Ok(self
            .groups_of_many(ctx, &[user_id.to_owned()])
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// The `groups` of several users: one membership read and one batch
    /// read of the groups' names, whatever the number of users.
    async fn groups_of_many(
        &self,
        ctx: &Ctx,
        user_ids: &[String],
    ) -> ScimResult<Vec<Vec<GroupRef>>> {
        let per_user = self
            .store
            .groups_of_many(&ctx.tenant, user_ids)
            .await
            .map_err(|e| store_err(Kind::User, e))?;
        let mut all: Vec<String> = per_user.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        let groups = if all.is_empty() {
            Vec::new()
        } else {
            self.store
                .get_many(&ctx.tenant, &all)
                .await
                .map_err(|e| store_err(Kind::Group, e))?
        };
        let name = |id: &str| {
            groups
                .iter()
                .find(|g| g.id == id && g.kind == Kind::Group)
                .map(|g| {
                    g.attrs
                        .get("displayName")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
        };
        Ok(per_user
            .into_iter()
            .map(|ids| {
                let mut refs: Vec<GroupRef> = ids
                    .into_iter()
                    .filter_map(|id| name(&id).map(|display| GroupRef { id, display }))
                    .collect();
                refs.sort_by(|a, b| a.id.cmp(&b.id));
                refs
            })
            .collect())
    }

    /// Renders a page: computed attributes loaded in batches. The page
    /// ends early (RFC 7644 lets `itemsPerPage` be under `count`) where
    /// the next resource would take the answer over what one response may
    /// carry: [`MAX_MEMBERS_PER_RESPONSE`] members or
    /// [`MAX_RESPONSE_BYTES`]; a first resource that alone is too big is
    /// `tooMany`.
    async fn represent_page(
        &self,
        ctx: &Ctx,
        page: &[StoredResource],
        projs: &[(Kind, Projection)],
    ) -> ScimResult<Vec<Value>> {
        let proj_of = |k: Kind| {
            projs
                .iter()
                .find(|(pk, _)| *pk == k)
                .map(|(_, p)| p.clone())
                .unwrap_or_default()
        };
        // A user's `meta.version` depends on its groups too.
        let user_proj = proj_of(Kind::User);
        let user_ids: Vec<String> =
            if user_proj.wants(Kind::User, "groups") || user_proj.wants(Kind::User, "meta") {
                page.iter()
                    .filter(|r| r.kind == Kind::User)
                    .map(|r| r.id.clone())
                    .collect()
            } else {
                Vec::new()
            };
        let mut groups = self.groups_of_many(ctx, &user_ids).await?.into_iter();
        let mut out = Vec::with_capacity(page.len());
        let (mut members, mut bytes) = (0u64, 0usize);
        for r in page {
            let proj = proj_of(r.kind);
            let shown = if r.kind == Kind::Group && proj.wants(Kind::Group, "members") {
                r.member_count
            } else {
                0
            };
            if shown > MAX_MEMBERS_PER_RESPONSE && out.is_empty() {
                return Err(too_many_members(r));
            }
            if members + shown > MAX_MEMBERS_PER_RESPONSE {
                break;
            }
            members += shown;
            let doc = match r.kind {
                Kind::User if !user_ids.is_empty() => {
                    let g = groups.next().unwrap_or_default();
                    render::render(r.kind, r, &ctx.base_url, None, Some(&g))
                }
                Kind::User => render::render(r.kind, r, &ctx.base_url, None, None),
                Kind::Group => self.represent(ctx, r, &proj, false).await?,
            };
            let doc = proj.apply(r.kind, doc);
            bytes += json_len(&doc);
            if bytes > MAX_RESPONSE_BYTES && !out.is_empty() {
                break;
            }
            out.push(doc);
        }
        Ok(out)
    }

    /// The full representation, loading computed attributes only if shown.
    async fn represent(
        &self,
        ctx: &Ctx,
        r: &StoredResource,
        proj: &Projection,
        need_all: bool,
    ) -> ScimResult<Value> {
        let members = match r.kind {
            Kind::Group if need_all || proj.wants(Kind::Group, "members") => {
                Some(self.all_members(ctx, &r.id).await?)
            }
            _ => None,
        };
        // A user's ETag covers its groups, so they are read even when the
        // answer leaves them out.
        let groups = match r.kind {
            Kind::User => Some(self.groups_of(ctx, &r.id).await?),
            Kind::Group => None,
        };
        Ok(render::render(
            r.kind,
            r,
            &ctx.base_url,
            members.as_deref(),
            groups.as_deref(),
        ))
    }

    async fn reply(
        &self,
        ctx: &Ctx,
        status: u16,
        r: &StoredResource,
        proj: &Projection,
    ) -> ScimResult<Reply> {
        let proj = &fit_members(r, proj);
        let doc = self.represent(ctx, r, proj, false).await?;
        Ok(rendered(ctx, status, r, doc, proj))
    }

    /// Members named by a client, with their kinds; all must exist.
    async fn resolve_members(
        &self,
        ctx: &Ctx,
        inputs: &[MemberInput],
    ) -> ScimResult<Vec<MemberRef>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = inputs.iter().map(|m| m.id.clone()).collect();
        let found = self
            .store
            .get_many(&ctx.tenant, &ids)
            .await
            .map_err(|e| store_err(Kind::Group, e))?;
        inputs
            .iter()
            .map(|m| {
                let r = found.iter().find(|r| r.id == m.id).ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "member {:?} is not a User or Group of this tenant",
                        m.id
                    ))
                })?;
                if m.kind.is_some_and(|k| k != r.kind) {
                    return Err(ScimError::invalid_value(format!(
                        "member {:?} is a {}, not a {}",
                        m.id,
                        r.kind.name(),
                        m.kind.map(Kind::name).unwrap_or_default()
                    )));
                }
                Ok(MemberRef {
                    id: m.id.clone(),
                    kind: r.kind,
                })
            })
            .collect()
    }

    /// A refused SCIM write leaves a record of why (not atomic with
    /// anything: nothing changed), so an admin can see why a user never
    /// arrived.
    pub async fn note_refusal(
        &self,
        ctx: &Ctx,
        kind: Kind,
        id: &str,
        body: Option<&Value>,
        e: &ScimError,
    ) {
        if !matches!(e.status(), 400 | 403 | 409 | 412) {
            return;
        }
        let name_key = match kind {
            Kind::User => "userName",
            Kind::Group => "displayName",
        };
        let name = body
            .and_then(|b| b.get(name_key))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let r = audit::refused(
            &ctx.origin,
            &ctx.tenant,
            kind,
            id,
            name,
            e.status(),
            e.scim_type().map(|t| t.as_str().to_owned()),
        );
        if let Err(err) = self.store.put_audit(&ctx.tenant, &[r]).await {
            tracing::warn!(error = %err, "recording a refused write failed");
        }
    }

    pub async fn create(
        &self,
        ctx: &Ctx,
        kind: Kind,
        body: &Value,
        proj: &Projection,
    ) -> ScimResult<Reply> {
        let out = self.create_inner(ctx, kind, body, proj).await;
        self.recorded(ctx, kind, "", Some(body), out).await
    }

    pub async fn replace(
        &self,
        ctx: &Ctx,
        kind: Kind,
        id: &str,
        body: &Value,
        cond: &Conditions,
        proj: &Projection,
    ) -> ScimResult<Reply> {
        let out = self.replace_inner(ctx, kind, id, body, cond, proj).await;
        self.recorded(ctx, kind, id, Some(body), out).await
    }

    pub async fn patch(
        &self,
        ctx: &Ctx,
        kind: Kind,
        id: &str,
        body: &Value,
        cond: &Conditions,
        proj: &Projection,
    ) -> ScimResult<Reply> {
        let out = self.patch_inner(ctx, kind, id, body, cond, proj).await;
        self.recorded(ctx, kind, id, None, out).await
    }

    pub async fn delete(
        &self,
        ctx: &Ctx,
        kind: Kind,
        id: &str,
        cond: &Conditions,
    ) -> ScimResult<Reply> {
        let out = self.delete_inner(ctx, kind, id, cond).await;
        self.recorded(ctx, kind, id, None, out).await
    }

    /// A write's outcome, its refusal (if it is one) recorded first.
    async fn recorded(
        &self,
        ctx: &Ctx,
        kind: Kind,
        id: &str,
        body: Option<&Value>,
        out: ScimResult<Reply>,
    ) -> ScimResult<Reply> {
        if let Err(e) = &out {
            self.note_refusal(ctx, kind, id, body, e).await;
        }
        out
    }

    async fn create_inner(
        &self,
        ctx: &Ctx,
        kind: Kind,
        body: &Value,
        proj: &Projection,
    ) -> ScimResult<Reply> {
        let input = resource::parse_input(kind, body)?;
        resource::check_size(&input.attrs)?;
        let members = match &input.members {
            Some(m) => self.resolve_members(ctx, m).await?,
            None => Vec::new(),
        };
        let now = now_rfc3339();
        let mut r = StoredResource {
            product: Default::default(),
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            version: 1,
            created: now.clone(),
            last_modified: now.clone(),
            attrs: input.attrs,
            member_count: members.len() as u64,
            settling: false,
        };
        let keys = resource::unique_keys(kind, &r.attrs);
        if kind == Kind::Group {
            let mut rec = audit::describe(
                &ctx.origin,
                &ctx.tenant,
                None,
                &r,
                time::OffsetDateTime::now_utc(),
            );
            rec.transitions.members_added = members.iter().map(|m| m.id.clone()).collect();
            self.store
                .create_with(&ctx.tenant, &r, &keys, &members, &[], &[rec])
                .await
                .map_err(|e| store_err(kind, e))?;
        } else {
            self.create_user(ctx, &mut r, &keys, &now).await?;
        }
        let doc = render::render(kind, &r, &ctx.base_url, Some(&members), Some(&[]));
        Ok(rendered(ctx, 201, &r, doc, &fit_members(&r, proj)))
    }

    /// A SCIM-created user: labelled, and licensed or in line, in the same
    /// write; re-planned with the pool read only when the guess was wrong.
    async fn create_user(
        &self,
        ctx: &Ctx,
        r: &mut StoredResource,
        keys: &[UniqueKey],
        now: &str,
    ) -> ScimResult<()> {
        let mut known = None;
        for attempt in 0..MAX_ATTEMPTS {
            let plan = rules::on_scim_create(
                &r.id,
                rules::is_active(&r.attrs),
                now,
                &now_sortable(),
                view(&known),
            );
            r.product = plan.product;
            let mut records = vec![audit::describe(
                &ctx.origin,
                &ctx.tenant,
                None,
                r,
                time::OffsetDateTime::now_utc(),
            )];
            records.extend(audit::pool_records(&ctx.origin, &ctx.tenant, &plan.ops));
            match self
                .store
                .create_with(&ctx.tenant, r, keys, &[], &plan.ops, &records)
                .await
            {
                Ok(()) => {
                    self.heal_line(ctx, &known).await;
                    return Ok(());
                }
                Err(StoreError::PoolChanged) => {
                    known = Some(
                        self.pool_state(&ctx.tenant)
                            .await
                            .map_err(|e| store_err(Kind::User, e))?,
                    );
                    backoff(attempt).await;
                }
                Err(e) => return Err(store_err(Kind::User, e)),
            }
        }
        Err(contention())
    }

    /// A user added in the admin console ("add user"): no SCIM label, no
    /// licence until an admin assigns one.
    pub async fn create_from_console(&self, ctx: &Ctx, body: &Value) -> ScimResult<StoredResource> {
        let input = resource::parse_input(Kind::User, body)?;
        resource::check_size(&input.attrs)?;
        let now = now_rfc3339();
        let r = StoredResource {
            product: rules::on_console_create(),
            id: uuid::Uuid::now_v7().to_string(),
            kind: Kind::User,
            version: 1,
            created: now.clone(),
            last_modified: now,
            attrs: input.attrs,
            member_count: 0,
            settling: false,
        };
        let keys = resource::unique_keys(Kind::User, &r.attrs);
        let rec = audit::describe(
            &ctx.origin,
            &ctx.tenant,
            None,
            &r,
            time::OffsetDateTime::now_utc(),
        );
        self.store
            .create_with(&ctx.tenant, &r, &keys, &[], &[], &[rec])
            .await
            .map_err(|e| store_err(Kind::User, e))?;
        Ok(r)
    }

    /// The tenant's pool (set up with the defaults if it never was) and the
    /// head of its line, read together.
    pub async fn pool_state(&self, t: &TenantId) -> Result<PoolState, StoreError> {
        let (pool, head) = tokio::try_join!(self.store.get_pool(t), self.store.waiting(t, 1))?;
        let pool = match pool {
            Some(p) => p,
            None => {
                let fresh = rules::new_pool(rules::DEFAULT_SEATS, true);
                self.store.init_pool(t, &fresh).await?;
                self.store.get_pool(t).await?.unwrap_or(fresh)
            }
        };
        Ok((pool, head.into_iter().next()))
    }

    /// Seats free while someone waits (auto-assignment on) only happen when
    /// serving the line stopped halfway (a crash, a timeout): a write that
    /// saw it serves the line, so the gap closes with the next change.
    async fn heal_line(&self, ctx: &Ctx, known: &Option<PoolState>) {
        let Some((pool, Some(_))) = known else {
            return;
        };
        if pool.auto && pool.used < pool.seats {
            if let Err(e) = self.serve_line(&ctx.tenant, &ctx.origin).await {
                tracing::warn!(tenant = %ctx.tenant, error = %e, "serving the waiting line failed");
            }
        }
    }

    /// Hands spare seats to the line, longest-waiting first, one atomic
    /// step each, while auto-assignment is on and seats are free. Returns
    /// how many were served.
    pub async fn serve_line(
        &self,
        t: &TenantId,
        origin: &audit::Origin,
    ) -> Result<u64, StoreError> {
        let mut served = 0;
        let mut conflicts = 0;
        loop {
            let (pool, head) = self.pool_state(t).await?;
            let Some(op) = rules::serve_step(&pool, head.as_ref(), &now_sortable()) else {
                return Ok(served);
            };
            let records = audit::pool_records(origin, t, std::slice::from_ref(&op));
            match self.store.apply_pool(t, &[op], &records).await {
                Ok(()) => served += 1,
                Err(StoreError::PoolChanged) if conflicts < MAX_ATTEMPTS => {
                    backoff(conflicts).await;
                    conflicts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A product-rule change of one user (licence by hand, admin role):
    /// `decide` sees the user and the pool and returns the new product
    /// state and pool changes, or `None` for no change; written with a
    /// version condition, re-decided after any race.
    pub async fn change_user<F>(
        &self,
        t: &TenantId,
        id: &str,
        origin: &audit::Origin,
        operation: Operation,
        decide: F,
    ) -> Result<StoredResource, ChangeError>
    where
        F: Fn(&StoredResource, PoolView<'_>) -> Result<Option<Plan>, RuleError>,
    {
        let mut known: Option<PoolState> = None;
        for attempt in 0..MAX_ATTEMPTS {
            let cur = self
                .store
                .get(t, Kind::User, id)
                .await?
                .ok_or(StoreError::NotFound)?;
            let Some(plan) = decide(&cur, view(&known)).map_err(ChangeError::Rule)? else {
                return Ok(cur);
            };
            let keys = resource::unique_keys(Kind::User, &cur.attrs);
            let new = StoredResource {
                product: plan.product,
                version: cur.version + 1,
                last_modified: now_rfc3339(),
                ..cur.clone()
            };
            let mut rec =
                audit::describe(origin, t, Some(&cur), &new, time::OffsetDateTime::now_utc());
            rec.operation = operation;
            let mut records = vec![rec];
            records.extend(audit::pool_records(origin, t, &plan.ops));
            let update = Update {
                resource: new.clone(),
                expected_version: cur.version,
                old_keys: keys.clone(),
                new_keys: keys,
                members: MemberDelta::default(),
                pool: plan.ops,
                audit: records,
            };
            match self.store.update(t, &update).await {
                Ok(()) => return Ok(new),
                Err(StoreError::VersionMismatch) => backoff(attempt).await,
                Err(StoreError::PoolChanged) => {
                    known = Some(self.pool_state(t).await?);
                    backoff(attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ChangeError::Store(StoreError::Unavailable(
            "the user keeps changing; retry".into(),
        )))
    }

    pub async fn get(
        &self,
        ctx: &Ctx,
        kind: Kind,
        id: &str,
        proj: &Projection,
        cond: &Conditions,
    ) -> ScimResult<Reply> {
        // A user's groups are part of its ETag: read alongside the user
        // (one round trip, not two), whether or not the answer shows them.
        let (r, groups) = if kind == Kind::User {
            let (r, g) = tokio::try_join!(self.load(ctx, kind, id), self.groups_of(ctx, id))?;
            (r, Some(g))
        } else {
            (self.load(ctx, kind, id).await?, None)
        };
        let tag = render::etag_of(&r, groups.as_deref());
        if let Some(h) = &cond.if_none_match
            && render::etag_matches(h, &tag)
        {
            return Ok(Reply {
                status: 304,
                body: None,
                etag: Some(tag),
                location: None,
            });
        }
        match groups {
            Some(g) => {
                let doc = render::render(kind, &r, &ctx.base_url, None, Some(&g));
                Ok(rendered(ctx, 200, &r, doc, proj))
            }
            None => {
                if proj.wants(Kind::Group, "members") && r.member_count > MAX_MEMBERS_PER_RESPONSE {
                    return Err(too_many_members(&r));
                }
                self.reply(ctx, 200, &r, proj).await
            }
        }
    }

    /// PUT: replaces every writable attribute. A group's members are
    /// replaced when `members` is given and left alone when it is omitted
    /// (RFC 7644 §3.5.1 lets a server treat omitted attributes as not asserted).
    async fn replace_inner(
        &self,
        ctx: &Ctx,
        kind: Kind,
        id: &str,
        body: &Value,
        cond: &Conditions,
        proj: &Projection,
    ) -> ScimResult<Reply> {
        let input = resource::parse_input(kind, body)?;
        resource::check_size(&input.attrs)?;
        if input
            .members
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m.id == id))
        {
            return Err(ScimError::invalid_value(
                "a group cannot be a member of itself",
            ));
        }
        let members = match &input.members {
            Some(m) => Some(self.resolve_members(ctx, m).await?),
            None => None,
        };
        let mut known = None;
        // After a pool change only the plan is redone: the resource is unchanged.
        let mut reuse = None;
        for attempt in 0..MAX_ATTEMPTS {
            let cur = match reuse.take() {
                Some(c) => c,
                None => self.load(ctx, kind, id).await?,
            };
            let pinned = self.pin(ctx, &cur, cond).await?;
            resource::check_immutable(kind, &cur.attrs, &input.attrs)?;
            let delta = match &members {
                Some(m) => MemberDelta {
                    clear: true,
                    remove: Vec::new(),
                    add: m.clone(),
                },
                None => MemberDelta::default(),
            };
            let plan = user_plan(&cur, &input.attrs, &known)?;
            match self
                .write(ctx, &cur, input.attrs.clone(), delta, plan)
                .await
            {
                Ok(mut new) => {
                    // The written state carries the old member count; the
                    // answer (and whether it may list them) needs the new.
                    if let Some(m) = &members {
                        let unique: std::collections::HashSet<&str> =
                            m.iter().map(|r| r.id.as_str()).collect();
                        new.member_count = unique.len() as u64;
                    }
                    return self.reply(ctx, 200, &new, proj).await;
                }
                Err(StoreError::VersionMismatch) if pinned.is_none() => backoff(attempt).await,
                Err(StoreError::PoolChanged) => {
                    known = Some(
                        self.pool_state(&ctx.tenant)
                            .await
                            .map_err(|e| store_err(kind, e))?,
                    );
                    reuse = Some(cur);
                }
                Err(e) => return Err(store_err(kind, e)),
            }
        }
        Err(contention())
    }

    /// Conditional write of new attributes and member changes over `cur`,
    /// with a user's product plan (label, licence) in the same write.
    async fn write(
        &self,
        ctx: &Ctx,
        cur: &StoredResource,
        attrs: serde_json::Map<String, Value>,
        members: MemberDelta,
        plan: Option<Plan>,
    ) -> Result<StoredResource, StoreError> {
        let (product, pool) = match plan {
            Some(p) => (p.product, p.ops),
            None => (cur.product.clone(), Vec::new()),
        };
        let new = StoredResource {
            product,
            id: cur.id.clone(),
            kind: cur.kind,
            version: cur.version + 1,
            created: cur.created.clone(),
            last_modified: now_rfc3339(),
            attrs,
            member_count: cur.member_count,
            settling: false,
        };
        let mut rec = audit::describe(
            &ctx.origin,
            &ctx.tenant,
            Some(cur),
            &new,
            time::OffsetDateTime::now_utc(),
        );
        member_transitions(&mut rec, &members);
        let mut records = vec![rec];
        records.extend(audit::pool_records(&ctx.origin, &ctx.tenant, &pool));
        let update = Update {
            pool,
            audit: records,
            old_keys: resource::unique_keys(cur.kind, &cur.attrs),
            new_keys: resource::unique_keys(cur.kind, &new.attrs),
            resource: new.clone(),
            expected_version: cur.version,
            members,
        };
        self.store.update(&ctx.tenant, &update).await?;
        Ok(new)
    }

    async fn patch_inner(
        &self,
        ctx: &Ctx,
        kind: Kind,
        id: &str,
        body: &Value,
        cond: &Conditions,
        proj: &Projection,
    ) -> ScimResult<Reply> {
        let ops = patch::parse(body)?;
        if ops.len() > crate::scim::discovery::MAX_PATCH_OPERATIONS {
            return Err(ScimError::bad(
                crate::scim::error::ScimType::TooMany,
                format!(
                    "a PATCH may carry at most {} operations",
                    crate::scim::discovery::MAX_PATCH_OPERATIONS
                ),
            ));
        }
        let mut known = None;
        // After a pool change only the plan is redone: the resource is unchanged.
        let mut reuse = None;
        for attempt in 0..MAX_ATTEMPTS {
            let cur = match reuse.take() {
                Some(c) => c,
                None => self.load(ctx, kind, id).await?,
            };
            let pinned = self.pin(ctx, &cur, cond).await?;
            let patched = patch::apply(kind, id, &cur.attrs, &ops)?;
            resource::check_size(&patched.attrs)?;
            let delta = self.member_delta(ctx, id, &patched.member_ops).await?;
            let written = if patched.attrs == cur.attrs {
                if delta.is_empty() {
                    // Nothing changes (e.g. Entra's periodic active=true): no write, same version.
                    return self
                        .reply(ctx, 200, &cur, &patch_projection(kind, &cur, proj))
                        .await;
                }
                // Members only: no read-modify-write of the group, so
                // concurrent member changes never conflict.
                let now = now_rfc3339();
                let mut rec = ctx.origin.now_record(
                    &ctx.tenant,
                    audit::ResourceType::Group,
                    id,
                    Operation::MembersChanged,
                );
                rec.name = audit::display_name(&cur);
                member_transitions(&mut rec, &delta);
                match self
                    .store
                    .update_members_with(&ctx.tenant, id, &delta, pinned, &now, Some(&rec))
                    .await
                {
                    Err(StoreError::NotFound) => return Err(not_found(kind, id)),
                    other => other,
                }
            } else {
                let with_members = !delta.is_empty();
                let plan = user_plan(&cur, &patched.attrs, &known)?;
                match self.write(ctx, &cur, patched.attrs, delta, plan).await {
                    // The store owns member_count; read it back when it changed.
                    Ok(_) if with_members => Ok(self.load(ctx, kind, id).await?),
                    other => other,
                }
            };
            match written {
                Ok(new) => {
                    return self
                        .reply(ctx, 200, &new, &patch_projection(kind, &new, proj))
                        .await;
                }
                Err(StoreError::VersionMismatch) if pinned.is_none() => backoff(attempt).await,
                Err(StoreError::PoolChanged) => {
                    known = Some(
                        self.pool_state(&ctx.tenant)
                            .await
                            .map_err(|e| store_err(kind, e))?,
                    );
                    reuse = Some(cur);
                }
                Err(e) => return Err(store_err(kind, e)),
            }
        }
        Err(contention())
    }

    /// Folds the member operations of one PATCH into one store delta. Only
    /// `remove members[<filter>]` with a filter other than `value eq` reads
    /// the member list.
    async fn member_delta(
        &self,
        ctx: &Ctx,
        group_id: &str,
        ops: &[MemberOp],
    ) -> ScimResult<MemberDelta> {
        use std::collections::BTreeMap;
        let mut clear = false;
        // Final state per member id: Some = present, None = absent.
        let mut changes: BTreeMap<String, Option<MemberInput>> = BTreeMap::new();
        for op in ops {
            match op {
                MemberOp::Add(list) => {
                    for m in list {
                        changes.insert(m.id.clone(), Some(m.clone()));
                    }
                }
                MemberOp::Remove(ids) => {
                    for id in ids {
                        changes.insert(id.clone(), None);
                    }
                }
                MemberOp::RemoveAll => {
                    clear = true;
                    changes.clear();
                }
                MemberOp::Replace(list) => {
                    clear = true;
                    changes = list
                        .iter()
                        .map(|m| (m.id.clone(), Some(m.clone())))
                        .collect();
                }
                MemberOp::RemoveWhere(f) => {
                    let stored = if clear {
                        Vec::new()
                    } else {
                        self.all_members(ctx, group_id).await?
                    };
                    let mut present: Vec<MemberRef> = stored
                        .into_iter()
                        .filter(|m| !matches!(changes.get(&m.id), Some(None)))
                        .collect();
                    for (id, m) in &changes {
                        if let Some(m) = m
                            && !present.iter().any(|p| &p.id == id)
                        {
                            present.push(MemberRef {
                                id: m.id.clone(),
                                kind: m.kind.unwrap_or(Kind::User),
                            });
                        }
                    }
                    let vp = Filter::ValuePath {
                        path: filter::AttrPath {
                            urn: None,
                            name: "members".into(),
                            sub: None,
                        },
                        filter: Box::new(f.clone()),
                    };
                    for m in present {
                        let doc = serde_json::json!({"members": [{"value": m.id, "type": m.kind.name(),
                            "$ref": render::location(&ctx.base_url, m.kind, &m.id)}]});
                        if filter::matches(&vp, Kind::Group, &doc)? {
                            changes.insert(m.id, None);
                        }
                    }
                }
            }
        }
        let adds: Vec<MemberInput> = changes.values().flatten().cloned().collect();
        let add = self.resolve_members(ctx, &adds).await?;
        if add.iter().any(|m| m.id == group_id) {
            return Err(ScimError::invalid_value(
                "a group cannot be a member of itself",
            ));
        }
        let remove = changes
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        Ok(MemberDelta { clear, remove, add })
    }

    async fn delete_inner(
        &self,
        ctx: &Ctx,
        kind: Kind,
        id: &str,
        cond: &Conditions,
    ) -> ScimResult<Reply> {
        if kind == Kind::User {
            return self.delete_user(ctx, id, cond).await;
        }
        let expected = match &cond.if_match {
            Some(_) => {
                let cur = self.load(ctx, kind, id).await?;
                self.pin(ctx, &cur, cond).await?
            }
            None => None,
        };
        // The group's name is not read (a DELETE costs no extra call for it).
        let rec = ctx.origin.now_record(
            &ctx.tenant,
            audit::ResourceType::Group,
            id,
            Operation::Deleted,
        );
        self.store
            .delete_with(&ctx.tenant, kind, id, expected, &[], &[rec])
            .await
            .map_err(|e| match e {
                StoreError::NotFound => not_found(kind, id),
                other => store_err(kind, other),
            })?;
        Ok(Reply {
            status: 204,
            body: None,
            etag: None,
            location: None,
        })
    }

    /// A user's DELETE: refused for an admin; its licence freed (handed to
    /// the line) in the same write, conditioned on the version read.
    async fn delete_user(&self, ctx: &Ctx, id: &str, cond: &Conditions) -> ScimResult<Reply> {
        let mut known = None;
        let mut reuse = None;
        for attempt in 0..MAX_ATTEMPTS {
            let cur = match reuse.take() {
                Some(c) => c,
                None => self.load(ctx, Kind::User, id).await?,
            };
            let pinned = self.pin(ctx, &cur, cond).await?;
            let ops = rules::on_scim_delete(id, &cur.product, &now_sortable(), view(&known))
                .map_err(rule_err)?;
            match self
                .store
                .delete_with(
                    &ctx.tenant,
                    Kind::User,
                    id,
                    Some(cur.version),
                    &ops,
                    &deleted_records(ctx, &cur, &ops),
                )
                .await
            {
                Ok(()) => {
                    return Ok(Reply {
                        status: 204,
                        body: None,
                        etag: None,
                        location: None,
                    });
                }
                Err(StoreError::VersionMismatch) if pinned.is_none() => backoff(attempt).await,
                Err(StoreError::PoolChanged) => {
                    known = Some(
                        self.pool_state(&ctx.tenant)
                            .await
                            .map_err(|e| store_err(Kind::User, e))?,
                    );
                    reuse = Some(cur);
                }
                Err(StoreError::NotFound) => return Err(not_found(Kind::User, id)),
                Err(e) => return Err(store_err(Kind::User, e)),
            }
        }
        Err(contention())
    }

    /// GET on a resource endpoint, `POST .search`, and root searches.
    pub async fn list(&self, ctx: &Ctx, kinds: &[Kind], raw: RawQuery) -> ScimResult<Value> {
        let q = raw.parse()?;
        let scope: String = kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",");
        if let Some(f) = &q.filter {
            // For a root search an attribute need exist in only one type.
            let errs: Vec<ScimError> = kinds
                .iter()
                .filter_map(|k| filter::validate(f, *k).err())
                .collect();
            if errs.len() == kinds.len()
                && let Some(e) = errs.into_iter().next()
            {
                return Err(e);
            }
        }
        if let Some(s) = &q.sort_by
            && !kinds
                .iter()
                .any(|k| schema::resolve(*k, s.urn.as_deref(), &s.name, s.sub.as_deref()).is_some())
        {
            return Err(ScimError::Invalid(format!(
                "sortBy '{}' is not an attribute",
                q.sort_text.as_deref().unwrap_or("")
            )));
        }
        let projs: Vec<(Kind, Projection)> = kinds
            .iter()
            .map(|k| {
                Projection::parse(
                    *k,
                    q.attributes.as_deref(),
                    q.excluded_attributes.as_deref(),
                )
                .map(|p| (*k, p))
            })
            .collect::<ScimResult<_>>()?;
        let fingerprint = q.fingerprint(&scope);
        let cursor = match &q.paging {
            PagingParam::Cursor(Some(c)) => {
                Some(
                    self.cursors
                        .decode(c, ctx.tenant.as_str(), &fingerprint, now_unix())?,
                )
            }
            _ => None,
        };
        let offset = match (&q.paging, &cursor) {
            (PagingParam::Index(s), _) => s - 1,
            (_, Some(c)) => c.o,
            _ => 0,
        };

        // `groups.value eq "{group}"` on /Users: the group's membership records.
        let member_filter = match (kinds, &q.filter, &q.sort_by) {
            ([Kind::User], Some(f), None) => members::group_filter(f),
            _ => None,
        };
        // Where the member page's records end: its cursor's key when the
        // whole page is shown (some records may name no user any more).
        let mut member_last: Option<String> = None;
        let (total, page, more): (u64, Vec<StoredResource>, bool) =
            if let Some(group) = &member_filter {
                let after = cursor.as_ref().and_then(|c| c.k.as_deref());
                let p = self
                    .member_page(ctx, group, offset, after, q.count as usize)
                    .await?;
                member_last = p.last;
                (p.total, p.users, p.more)
            } else {
                match (kinds, &q.filter, &q.sort_by) {
                    // Unfiltered, unsorted listing of one type: count plus one page.
                    ([kind], None, None) => {
                        let total = self
                            .store
                            .count(&ctx.tenant, *kind)
                            .await
                            .map_err(|e| store_err(*kind, e))?;
                        let keyset = matches!(q.paging, PagingParam::Cursor(_));
                        let (page, more) = if q.count == 0 {
                            (Vec::new(), offset < total)
                        } else if keyset {
                            // Cursor pages continue after the last id seen, so deletes
                            // between pages neither skip nor repeat anyone; one extra
                            // item tells whether another page exists.
                            let after = cursor.as_ref().and_then(|c| c.k.as_deref());
                            let mut page = self
                                .store
                                .list(&ctx.tenant, *kind, after, q.count as usize + 1)
                                .await
                                .map_err(|e| store_err(*kind, e))?;
                            let more = page.len() > q.count as usize;
                            page.truncate(q.count as usize);
                            (page, more)
                        } else {
                            let page = self
                                .store
                                .list_at(&ctx.tenant, *kind, offset, q.count as usize)
                                .await
                                .map_err(|e| store_err(*kind, e))?;
                            let more = offset + (page.len() as u64) < total;
                            (page, more)
                        };
                        (total, page, more)
                    }
                    _ => {
                        let mut matched = self.matching(ctx, kinds, &q).await?;
                        if let Some(sort) = &q.sort_by {
                            matched = sort_docs(matched, sort, q.descending);
                        }
                        let total = matched.len() as u64;
                        let page: Vec<StoredResource> = matched
                            .into_iter()
                            .skip(offset as usize)
                            .take(q.count as usize)
                            .map(|(r, _)| r)
                            .collect();
                        let more = offset + (page.len() as u64) < total;
                        (total, page, more)
                    }
                }
            };

        // A page may come back shorter than read, to fit one response.
        let resources = self.represent_page(ctx, &page, &projs).await?;
        let shown = &page[..resources.len()];
        let more = more || shown.len() < page.len();
        let end = offset + shown.len() as u64;
        match q.paging {
            PagingParam::Index(start) => Ok(list_response(resources, total, Some(start), None)),
            PagingParam::Cursor(_) => {
                let last = match member_last {
                    Some(id) if shown.len() == page.len() => Some(id),
                    _ => shown.last().map(|r| r.id.clone()),
                };
                let next = if more && last.is_some() {
                    let keyset = member_filter.is_some()
                        || (kinds.len() == 1 && q.filter.is_none() && q.sort_by.is_none());
                    Some(self.cursors.encode(&CursorState {
                        t: ctx.tenant.as_str().to_owned(),
                        q: fingerprint,
                        o: end,
                        k: if keyset { last } else { None },
                        e: now_unix() + CURSOR_TTL_SECS,
                    })?)
                } else {
                    None
                };
                Ok(list_response(resources, total, None, next))
            }
        }
    }

    /// Every resource matching the filter, with its full representation,
    /// in id order per type. Equality on an indexed attribute is one lookup.
    async fn matching(
        &self,
        ctx: &Ctx,
        kinds: &[Kind],
        q: &ListQuery,
    ) -> ScimResult<Vec<(StoredResource, Value)>> {
        let mut out = Vec::new();
        for &kind in kinds {
            if let Some(f) = &q.filter
                && filter::validate(f, kind).is_err()
            {
                continue;
            }
            let needs_computed = q
                .filter
                .as_ref()
                .is_some_and(|f| mentions_computed(f, kind))
                || q.sort_by.as_ref().is_some_and(|s| is_computed(kind, s));
            // Equality on an indexed attribute: one lookup instead of a scan.
            let lookup = q.filter.as_ref().and_then(|f| index_lookup(kind, f));
            let mut after: Option<String> = None;
            loop {
                let (batch, done) = match &lookup {
                    Some(l) => (
                        self.lookup(ctx, kind, l.clone())
                            .await?
                            .into_iter()
                            .collect(),
                        true,
                    ),
                    None => {
                        let batch = self
                            .store
                            .list(&ctx.tenant, kind, after.as_deref(), SCAN_BATCH)
                            .await
                            .map_err(|e| store_err(kind, e))?;
                        after = batch.last().map(|r| r.id.clone());
                        let done = batch.len() < SCAN_BATCH || after.is_none();
                        (batch, done)
                    }
                };
                for r in batch {
                    // Computed attributes are loaded only when the filter or
                    // sort needs them; the page is rendered fully later.
                    let doc = if needs_computed {
                        self.represent(ctx, &r, &Projection::default(), true)
                            .await?
                    } else {
                        render::render(kind, &r, &ctx.base_url, None, None)
                    };
                    let keep = match &q.filter {
                        Some(f) => filter::matches(f, kind, &doc)?,
                        None => true,
                    };
                    if keep {
                        out.push((r, doc));
                    }
                }
                if done {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn lookup(
        &self,
        ctx: &Ctx,
        kind: Kind,
        lookup: Lookup,
    ) -> ScimResult<Option<StoredResource>> {
        match lookup {
            Lookup::Id(id) => self.store.get(&ctx.tenant, kind, &id).await,
            Lookup::Key(key) => self.store.find_by_key(&ctx.tenant, kind, &key).await,
        }
        .map_err(|e| store_err(kind, e))
    }
}

/// A single-resource answer from its full representation.
fn rendered(ctx: &Ctx, status: u16, r: &StoredResource, doc: Value, proj: &Projection) -> Reply {
    // The header is the representation's own `meta.version`.
    let etag = doc
        .pointer("/meta/version")
        .and_then(Value::as_str)
        .map_or_else(|| render::etag(r.version), str::to_owned);
    Reply {
        status,
        body: Some(proj.apply(r.kind, doc)),
        etag: Some(etag),
        location: Some(render::location(&ctx.base_url, r.kind, &r.id)),
    }
}

/// The records of a user's DELETE: its own, and a hand-over of its seat.
fn deleted_records(
    ctx: &Ctx,
    cur: &StoredResource,
    ops: &[crate::scim::model::PoolOp],
) -> Vec<AuditRecord> {
    let mut rec = ctx.origin.now_record(
        &ctx.tenant,
        audit::ResourceType::User,
        &cur.id,
        Operation::Deleted,
    );
    rec.name = audit::display_name(cur);
    rec.version = Some(cur.version + 1);
    if cur.product.licence != crate::scim::model::Licence::None {
        rec.transitions.licence = Some([cur.product.licence, crate::scim::model::Licence::None]);
    }
    if cur.product.admin {
        rec.transitions.admin = Some([true, false]);
    }
    let mut out = vec![rec];
    out.extend(audit::pool_records(&ctx.origin, &ctx.tenant, ops));
    out
}

/// A membership change in a record: who was added and removed.
fn member_transitions(rec: &mut AuditRecord, delta: &MemberDelta) {
    rec.transitions.members_added = delta.add.iter().map(|m| m.id.clone()).collect();
    rec.transitions.members_removed = delta.remove.clone();
    rec.transitions.members_cleared = delta.clear;
    if !delta.is_empty() && !rec.changed.iter().any(|c| c == "members") {
        rec.changed.push("members".into());
    }
}

/// The product side of a SCIM write of a user (`None` for a group).
fn user_plan(
    cur: &StoredResource,
    new_attrs: &serde_json::Map<String, Value>,
    known: &Option<PoolState>,
) -> ScimResult<Option<Plan>> {
    if cur.kind != Kind::User {
        return Ok(None);
    }
    rules::on_scim_update(
        &cur.id,
        &cur.product,
        rules::is_active(&cur.attrs),
        rules::is_active(new_attrs),
        &now_rfc3339(),
        &now_sortable(),
        view(known),
    )
    .map(Some)
    .map_err(rule_err)
}

fn contention() -> ScimError {
    ScimError::Unavailable {
        detail: "too many concurrent changes to this resource; retry shortly".into(),
        retry_after_secs: 1,
    }
}

/// The length of `v` as JSON in a Lambda answer, without building the
/// text. The runtime sends the body as a JSON string, so every `"` and `\`
/// of the body takes two bytes there: text full of them (escaped JSON in an
/// attribute, say) would otherwise double past the 6 MB limit.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let escaped = b.iter().filter(|&&c| c == b'"' || c == b'\\').count();
            self.0 += b.len() + escaped;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The answer to a write leaves out `members` that one response could not
/// carry (the write is done; the group is read by pages instead).
fn fit_members(r: &StoredResource, proj: &Projection) -> Projection {
    if r.kind == Kind::Group && r.member_count > MAX_MEMBERS_PER_RESPONSE {
        return proj.without("members");
    }
    proj.clone()
}

fn too_many_members(r: &StoredResource) -> ScimError {
    ScimError::bad(
        crate::scim::error::ScimType::TooMany,
        format!(
            "group {} has {} members, more than the {MAX_MEMBERS_PER_RESPONSE} one response may carry: \
             read it with excludedAttributes=members, and its members page by page with \
             GET /Users?filter=groups.value eq \"{}\" (startIndex and count, or cursor)",
            r.id, r.member_count, r.id
        ),
    )
}

/// A group PATCH answer leaves out a large member list unless asked for.
fn patch_projection(kind: Kind, r: &StoredResource, proj: &Projection) -> Projection {
    const INLINE_MEMBERS: u64 = 1000;
    if kind == Kind::Group
        && r.member_count > INLINE_MEMBERS
        && !proj.explicitly_requests("members")
    {
        return proj.without("members");
    }
    proj.clone()
}

#[derive(Clone)]
enum Lookup {
    Id(String),
    Key(UniqueKey),
}

/// An equality on an indexed attribute that every match must satisfy
/// (the filter itself, or one side of a top-level `and`).
fn index_lookup(kind: Kind, f: &Filter) -> Option<Lookup> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Literal::String(v),
        } if path.sub.is_none() => {
            let r = schema::resolve(kind, path.urn.as_deref(), &path.name, None)?;
            if r.extension.is_some() {
                return None;
            }
            match (kind, r.attr.name) {
                (_, "id") => Some(Lookup::Id(v.clone())),
                (_, "externalId") => Some(Lookup::Key(UniqueKey {
                    attr: "externalId",
                    value: v.clone(),
                })),
                (Kind::User, "userName") => Some(Lookup::Key(UniqueKey {
                    attr: "userName",
                    value: resource::fold_case(v),
                })),
                (Kind::Group, "displayName") => Some(Lookup::Key(UniqueKey {
                    attr: "displayName",
                    value: resource::fold_case(v),
                })),
                _ => None,
            }
        }
        Filter::And(a, b) => index_lookup(kind, a).or_else(|| index_lookup(kind, b)),
        _ => None,
    }
}

/// Whether `path` names a value the resource's item does not hold: a
/// group's members, a user's groups, and a user's `meta.version`, whose
/// tag covers its groups (`meta` alone may mean its version too).
fn is_computed(kind: Kind, path: &filter::AttrPath) -> bool {
    if path.urn.is_some() {
        return false;
    }
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    match (kind, path.name.to_ascii_lowercase().as_str()) {
        (Kind::Group, "members") | (Kind::User, "groups") => true,
        (Kind::User, "meta") => matches!(sub.as_deref(), None | Some("version")),
        _ => false,
    }
}

fn mentions_computed(f: &Filter, kind: Kind) -> bool {
    match f {
        Filter::Compare { path, .. } | Filter::Present(path) | Filter::ValuePath { path, .. } => {
            is_computed(kind, path)
        }
        Filter::And(a, b) | Filter::Or(a, b) => {
            mentions_computed(a, kind) || mentions_computed(b, kind)
        }
        Filter::Not(a) => mentions_computed(a, kind),
    }
}

/// Sorts by the attribute's (primary) value; resources without one sort last
/// ascending and first descending; ties by id, so pages are stable.
fn sort_docs(
    docs: Vec<(StoredResource, Value)>,
    sort: &filter::AttrPath,
    descending: bool,
) -> Vec<(StoredResource, Value)> {
    use std::cmp::Ordering;
    type SortKey = Option<(Value, &'static schema::AttrDef)>;
    let mut keyed: Vec<(SortKey, (StoredResource, Value))> = docs
        .into_iter()
        .map(|(r, doc)| {
            let key = filter::leaf_of(r.kind, sort).ok().and_then(|leaf| {
                let v = filter::sort_value(r.kind, &doc, sort).ok()??;
                Some((v.clone(), leaf))
            });
            (key, (r, doc))
        })
        .collect();
    keyed.sort_by(|(a, (ra, _)), (b, (rb, _))| {
        let ord = match (a, b) {
            (Some((x, def)), Some((y, _))) => {
                let o = filter::compare(x, y, def);
                if descending { o.reverse() } else { o }
            }
            // Missing values sort last ascending, first descending.
            (Some(_), None) if descending => Ordering::Greater,
            (None, Some(_)) if descending => Ordering::Less,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        ord.then_with(|| ra.id.cmp(&rb.id))
    });
    keyed.into_iter().map(|(_, d)| d).collect()
}
