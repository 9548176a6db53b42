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
