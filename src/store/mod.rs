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

pub use crate::scim::model::{MemberDelta, MemberRef, StoredResource, TenantId, UniqueKey};

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
    /// Throttled or temporarily unreachable; worth retrying later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Backend(String),
}

/// Credential material of a tenant: only a hash of the bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: TenantId,
    /// Hex SHA-256 of the current token; earlier tokens are not kept.
    pub token_sha256: String,
    pub created: String,
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
    ) -> Result<(), StoreError>;

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

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, StoreError>;
    async fn put_tenant(&self, record: &TenantRecord) -> Result<(), StoreError>;
}
