//! Plain data shared by the core and the storage port: what a resource,
//! a unique key and a membership are. The store depends on these; they
//! depend on nothing but serde.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::schema::Kind;

/// A tenant id, validated at the HTTP edge (`[A-Za-z0-9_-]{1,64}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(s: &str) -> Option<TenantId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| TenantId(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A resource as stored: its attributes in canonical form (core attributes at
/// the top, extension attributes under their schema URN) without the
/// attributes the service computes (`id`, `meta`, `schemas`, `members`,
/// `groups`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResource {
    pub id: String,
    pub kind: Kind,
    pub version: u64,
    /// RFC 3339 timestamps.
    pub created: String,
    pub last_modified: String,
    pub attrs: Map<String, Value>,
    /// Number of members (groups only); maintained by the store.
    #[serde(default)]
    pub member_count: u64,
    /// Product state of a user (label, licence, admin role); not SCIM
    /// attributes, never written by an IdP.
    #[serde(default)]
    pub product: Product,
    /// A group change spread over several store transactions (DynamoDB
    /// writes big member changes in chunks) is under way: its members may
    /// still change without a new version, so nothing derived from them may
    /// be cached under this one. Never stored in the document.
    #[serde(skip)]
    pub settling: bool,
}

/// What the product keeps about a user beside its SCIM attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// When SCIM created (or adopted) the user; `None`: added in the console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_at: Option<String>,
    #[serde(default)]
    pub licence: Licence,
    /// When the licence was assigned, or when the user joined the waiting
    /// line (which orders the line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence_since: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Licence {
    #[default]
    None,
    Assigned,
    Waiting,
}

impl Licence {
    pub fn name(self) -> &'static str {
        match self {
            Licence::None => "none",
            Licence::Assigned => "assigned",
            Licence::Waiting => "waiting",
        }
    }
    pub fn parse(s: &str) -> Option<Licence> {
        match s {
            "none" => Some(Licence::None),
            "assigned" => Some(Licence::Assigned),
            "waiting" => Some(Licence::Waiting),
            _ => None,
        }
    }
}

/// A tenant's licences: `used` seats of `seats`, `waiting` users in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatPool {
    pub seats: u64,
    pub used: u64,
    pub waiting: u64,
    /// Assign licences to SCIM users automatically.
    pub auto: bool,
}

/// A place in the waiting line: users are served by `since`, then id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Waiting {
    pub since: String,
    pub user: String,
}

/// A change to the tenant's seat pool, committed atomically with the user
/// write it comes with; each carries the condition that keeps the pool
/// exact and the line fair. A failed condition is `StoreError::PoolChanged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolOp {
    /// Take a seat the automatic way: auto on, a seat free, nobody waiting.
    Take,
    /// Take a seat by hand (admin): a seat free.
    TakeAny,
    /// Give a seat back, when nobody is waiting for it (or auto is off).
    Free,
    /// Join the line: only when the seat could not be taken the automatic way.
    Enqueue(Waiting),
    /// Leave the line.
    Dequeue(Waiting),
    /// Give a seat to the user waiting at `who` (still waiting, auto on):
    /// the seat being freed by this write, or a spare one (`spare`).
    HandOver {
        who: Waiting,
        now: String,
        spare: bool,
    },
}

/// A value that must be unique per tenant and resource type, e.g.
/// `("userName", "alice@example.com")` (already case-folded by the core).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UniqueKey {
    pub attr: &'static str,
    pub value: String,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberRef {
    pub id: String,
    pub kind: Kind,
}

/// The change to a group's members made by one write, in this order: remove
/// every member if `clear`, then remove `remove`, then add `add`. Adding a
/// present member or removing an absent one is a no-op.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberDelta {
    pub clear: bool,
    pub remove: Vec<String>,
    pub add: Vec<MemberRef>,
}

impl MemberDelta {
    pub fn is_empty(&self) -> bool {
        !self.clear && self.remove.is_empty() && self.add.is_empty()
    }
}
