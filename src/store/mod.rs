//! Persistence port. The SCIM core decides *what* to write; a store decides
//! *how*, atomically. The interface is shaped by DynamoDB's reality so that
//! both the embedded store and the DynamoDB store can implement it with the
//! same guarantees:
//!
//! * every resource carries a `version`; writes are conditional on it;
//! * uniqueness is enforced by the store, atomically with the write, through
//!   [`UniqueKey`]s the core computes (e.g. lower-cased `userName`);
//! * group membership is one record per (group, member) with a reverse index,
//!   so changing one member of a huge group touches O(1) records;
//! * the equality lookups IdPs use are index reads, never scans.

#[cfg(test)]
mod contract;
pub mod dynamodb;
pub mod embedded;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scim::schema::Kind;

pub use crate::audit::AuditRecord;
pub use crate::scim::model::{
    Licence, MemberDelta, MemberRef, PoolOp, Product, SeatPool, StoredResource, TenantId,
    UniqueKey, Waiting,
};

/// A conditional write of a resource.
#[derive(Debug, Clone)]
pub struct Update {
    /// The new state; its `version` must be `expected_version + 1`.
    pub resource: StoredResource,
    pub expected_version: u64,
    /// Keys of the stored state, to release.
    pub old_keys: Vec<UniqueKey>,
    /// Keys of the new state, to claim.
    pub new_keys: Vec<UniqueKey>,
    pub members: MemberDelta,
    /// Seat pool changes committed with it (users only).
    pub pool: Vec<PoolOp>,
    /// The change's audit records, committed with it.
    pub audit: Vec<AuditRecord>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A unique key is held by another resource.
    #[error("{attr} {value:?} is already taken")]
    Conflict { attr: &'static str, value: String },
    /// The stored version differs from the expected one (or the resource is gone).
    #[error("version mismatch")]
    VersionMismatch,
    #[error("not found")]
    NotFound,
    /// A member to add does not exist.
    #[error("member {0} does not exist")]
    MemberNotFound(String),
    /// A seat pool condition failed (a seat was taken, freed or the line
    /// changed since the caller looked): look again and re-plan.
    #[error("the seat pool changed")]
    PoolChanged,
    /// Throttled or temporarily unreachable; worth retrying later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Backend(String),
}

/// A tenant's entry in the registry the admin API manages. Holds no
/// secret: the credential names its verification material, which lives in
/// a [`crate::credentials::Vault`] (Secrets Manager on AWS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantRecord {
    pub id: TenantId,
    pub name: String,
    pub admin_email: String,
    pub created: String,
    pub last_modified: String,
    /// Bumped by every write; writes are conditional on it.
    pub version: u64,
    pub credential: Option<CredentialRecord>,
}

/// The tenant's current SCIM credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRecord {
    /// Increases with every new credential; instances compare it on each
    /// request, so a rotation is seen on the very next one.
    pub generation: u64,
    /// Where the verification material is (a Secrets Manager version id,
    /// or the hash itself); opaque outside the vault.
    pub material: String,
    pub created_at: String,
    pub revealed_at: Option<String>,
    /// When the "Get Secret Token" link stops working; `None` when the
    /// credential was not emailed (demo tenant, preset tokens).
    pub reveal_expires_at: Option<String>,
    /// The hash of the link this credential was mailed with: only that
    /// link reveals it.
    #[serde(default)]
    pub reveal_ref: Option<String>,
}

/// A pending "Get Secret Token" link: the token sealed under a key only the
/// link can derive, looked up by a hash of the link's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevealRecord {
    pub tenant: TenantId,
    /// Hex SHA-256 of the link's secret part.
    pub ref_hash: String,
    /// The credential generation it reveals; a newer one voids the link.
    pub generation: u64,
    pub tenant_url: String,
    /// Nonce and ciphertext of the token, base64.
    pub sealed: String,
    /// Unix seconds after which the link is void (and the record swept).
    pub expires_at: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(
        &self,
        tenant: &TenantId,
        kind: Kind,
        id: &str,
    ) -> Result<Option<StoredResource>, StoreError>;

    /// Resources with the given ids, of either kind, in no particular order;
    /// missing ids are skipped.
    async fn get_many(
        &self,
        tenant: &TenantId,
        ids: &[String],
    ) -> Result<Vec<StoredResource>, StoreError>;

    /// The resource holding a unique key, through the uniqueness index.
    async fn find_by_key(
        &self,
        tenant: &TenantId,
        kind: Kind,
        key: &UniqueKey,
    ) -> Result<Option<StoredResource>, StoreError>;

    /// Writes a new resource (version 1) with its keys and, for a group, its
    /// initial members; fails with `Conflict` if a key is taken.
    async fn create(
        &self,
        tenant: &TenantId,
        resource: &StoredResource,
        keys: &[UniqueKey],
        members: &[MemberRef],
    ) -> Result<(), StoreError> {
        self.create_with(tenant, resource, keys, members, &[], &[])
            .await
    }

    /// `create` with seat pool changes and audit records in the same
    /// atomic write.
    async fn create_with(
        &self,
        tenant: &TenantId,
        resource: &StoredResource,
        keys: &[UniqueKey],
        members: &[MemberRef],
        pool: &[PoolOp],
        audit: &[AuditRecord],
    ) -> Result<(), StoreError>;

    /// Conditional write; `VersionMismatch` if the stored version is not
    /// `expected_version`, `Conflict` if a new key is taken.
    async fn update(&self, tenant: &TenantId, update: &Update) -> Result<(), StoreError>;

    /// Changes a group's members without touching its attributes (so
    /// concurrent member changes never conflict), bumping its version and
    /// `last_modified`; returns the group as written. With
    /// `expected_version`, fails with `VersionMismatch` unless it matches;
    /// `NotFound` if the group does not exist.
    async fn update_members(
        &self,
        tenant: &TenantId,
        group_id: &str,
        delta: &MemberDelta,
        expected_version: Option<u64>,
        now: &str,
    ) -> Result<StoredResource, StoreError> {
        self.update_members_with(tenant, group_id, delta, expected_version, now, None)
            .await
    }

    /// `update_members` with its audit record: when the change is written in
    /// several transactions, each carries a record of its own part.
    async fn update_members_with(
        &self,
        tenant: &TenantId,
        group_id: &str,
        delta: &MemberDelta,
        expected_version: Option<u64>,
        now: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<StoredResource, StoreError>;

    /// Deletes a resource, its keys and its memberships in both directions
    /// (groups it belonged to get a new version). With `expected_version`,
    /// fails with `VersionMismatch` unless it matches.
    async fn delete(
        &self,
        tenant: &TenantId,
        kind: Kind,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.delete_with(tenant, kind, id, expected_version, &[], &[])
            .await
    }

    /// `delete` with seat pool changes in the same atomic write (the
    /// resource's own removal; memberships may follow in chunks).
    async fn delete_with(
        &self,
        tenant: &TenantId,
        kind: Kind,
        id: &str,
        expected_version: Option<u64>,
        pool: &[PoolOp],
        audit: &[AuditRecord],
    ) -> Result<(), StoreError>;

    /// The tenant's seat pool, if it was set up.
    async fn get_pool(&self, tenant: &TenantId) -> Result<Option<SeatPool>, StoreError>;

    /// Sets up the pool unless it exists (then it is left as it is).
    async fn init_pool(&self, tenant: &TenantId, pool: &SeatPool) -> Result<(), StoreError>;

    /// Changes the seat count and/or auto-assignment; `PoolChanged` if
    /// `seats` would fall below the seats in use, `NotFound` without a pool.
    async fn set_pool(
        &self,
        tenant: &TenantId,
        seats: Option<u64>,
        auto: Option<bool>,
        audit: &[AuditRecord],
    ) -> Result<SeatPool, StoreError>;

    /// The first `limit` places of the waiting line, in order.
    async fn waiting(&self, tenant: &TenantId, limit: usize) -> Result<Vec<Waiting>, StoreError>;

    /// Pool changes on their own (serving the line from spare seats).
    async fn apply_pool(
        &self,
        tenant: &TenantId,
        ops: &[PoolOp],
        audit: &[AuditRecord],
    ) -> Result<(), StoreError>;

    /// Audit records that go with no write (refused requests, reveals).
    async fn put_audit(&self, tenant: &TenantId, records: &[AuditRecord])
    -> Result<(), StoreError>;

    /// A tenant's audit records by position (`{time}#{id}`), after `after`
    /// and up to `until` (inclusive), ascending or descending.
    async fn audit_range(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        until: Option<&str>,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// Removes records whose retention ended; stores with their own expiry
    /// (DynamoDB TTL) do nothing. Returns how many went.
    async fn sweep_audit(&self, now_unix: i64) -> Result<u64, StoreError> {
        let _ = now_unix;
        Ok(0)
    }

    /// Number of resources of a kind.
    async fn count(&self, tenant: &TenantId, kind: Kind) -> Result<u64, StoreError>;

    /// Resources of a kind in ascending id order, starting after `after`.
    async fn list(
        &self,
        tenant: &TenantId,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredResource>, StoreError>;

    /// Resources of a kind in ascending id order, skipping the first `offset`.
    async fn list_at(
        &self,
        tenant: &TenantId,
        kind: Kind,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<StoredResource>, StoreError>;

    /// Members of a group in ascending member id order, after `after`.
    async fn members(
        &self,
        tenant: &TenantId,
        group_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MemberRef>, StoreError>;

    /// Whether `member_id` is a direct member of the group.
    async fn is_member(
        &self,
        tenant: &TenantId,
        group_id: &str,
        member_id: &str,
    ) -> Result<bool, StoreError>;

    /// Ids of the groups that `member_id` directly belongs to.
    async fn groups_of(
        &self,
        tenant: &TenantId,
        member_id: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// `groups_of` for many members at once, in the order given. Stores
    /// that can answer in one round trip override this.
    async fn groups_of_many(
        &self,
        tenant: &TenantId,
        member_ids: &[String],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let mut out = Vec::with_capacity(member_ids.len());
        for id in member_ids {
            out.push(self.groups_of(tenant, id).await?);
        }
        Ok(out)
    }

    /// Backend requests made so far, for stores that count them (DynamoDB),
    /// so tests can assert what each SCIM operation costs.
    fn backend_calls(&self) -> Option<u64> {
        None
    }

    /// A tenant's registry entry (strongly consistent: credential checks
    /// rely on seeing a rotation at once).
    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, StoreError>;

    /// Writes a tenant record. `expected_version: None` creates it
    /// (`Conflict` on `id` if it exists); `Some(v)` replaces it only if the
    /// stored version is `v` (`VersionMismatch` otherwise, or if missing).
    async fn put_tenant(
        &self,
        record: &TenantRecord,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.put_tenant_with(record, expected_version, &[]).await
    }

    /// `put_tenant` with audit records in the same atomic write.
    async fn put_tenant_with(
        &self,
        record: &TenantRecord,
        expected_version: Option<u64>,
        audit: &[AuditRecord],
    ) -> Result<(), StoreError>;

    /// Tenants in ascending id order, after `after`.
    async fn list_tenants(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TenantRecord>, StoreError>;

    /// Stores a pending reveal link (its `ref_hash` is unique).
    async fn put_reveal(&self, record: &RevealRecord) -> Result<(), StoreError>;

    /// Reads a reveal record without consuming it; expired ones are `None`.
    async fn get_reveal(
        &self,
        tenant: &TenantId,
        ref_hash: &str,
        now_unix: i64,
    ) -> Result<Option<RevealRecord>, StoreError>;

    /// Atomically deletes and returns an unexpired reveal record: of
    /// concurrent callers exactly one gets it.
    async fn take_reveal(
        &self,
        tenant: &TenantId,
        ref_hash: &str,
        now_unix: i64,
    ) -> Result<Option<RevealRecord>, StoreError>;

    /// Deletes a reveal record if present (an aborted credential creation).
    async fn delete_reveal(&self, tenant: &TenantId, ref_hash: &str) -> Result<(), StoreError>;
}
