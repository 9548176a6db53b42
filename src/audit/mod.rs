//! The audit trail: one record per change made through SCIM or the admin
//! API (and per refused SCIM write), written in the same atomic store
//! write as the change it describes. Each committed record is also a
//! change event (CloudEvents 1.0, [`event`]). Pure data and decisions; the
//! stores persist records, the service and admin layers build them.

pub mod event;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::scim::model::{Licence, Product, StoredResource, TenantId};
use crate::scim::schema::Kind;

/// How long records are kept unless configured (`AUDIT_RETENTION_DAYS`).
pub const DEFAULT_RETENTION_DAYS: i64 = 180;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceType {
    User,
    Group,
    Tenant,
    Credentials,
}

impl ResourceType {
    pub fn of(kind: Kind) -> ResourceType {
        match kind {
            Kind::User => ResourceType::User,
            Kind::Group => ResourceType::Group,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::User => "User",
            ResourceType::Group => "Group",
            ResourceType::Tenant => "Tenant",
            ResourceType::Credentials => "Credentials",
        }
    }
}

/// What happened. One per record; the record's transitions tell the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    Created,
    Updated,
    Deactivated,
    Reactivated,
    Deleted,
    MembersChanged,
    LicenceAssigned,
    LicenceReleased,
    AdminGranted,
    AdminRevoked,
    CredentialsCreated,
    CredentialsRevealed,
    /// An expired "Get Secret Token" link was opened.
    CredentialsLinkExpired,
    /// A SCIM write the service refused (see `status`, `scimType`).
    Refused,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Created => "created",
            Operation::Updated => "updated",
            Operation::Deactivated => "deactivated",
            Operation::Reactivated => "reactivated",
            Operation::Deleted => "deleted",
            Operation::MembersChanged => "members.changed",
            Operation::LicenceAssigned => "licence.assigned",
            Operation::LicenceReleased => "licence.released",
            Operation::AdminGranted => "admin.granted",
            Operation::AdminRevoked => "admin.revoked",
            Operation::CredentialsCreated => "created",
            Operation::CredentialsRevealed => "revealed",
            Operation::CredentialsLinkExpired => "link_expired",
            Operation::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        use Operation::*;
        [
            Created,
            Updated,
            Deactivated,
            Reactivated,
            Deleted,
            MembersChanged,
            LicenceAssigned,
            LicenceReleased,
            AdminGranted,
            AdminRevoked,
            Refused,
        ]
        .into_iter()
        .find(|o| o.name() == s)
        .or(match s {
            "credentials.created" => Some(CredentialsCreated),
            "credentials.revealed" => Some(CredentialsRevealed),
            "credentials.link_expired" => Some(CredentialsLinkExpired),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Committed,
    Refused,
}

/// Who made the change. Never a token or key: the SCIM credential's
/// generation, or the admin's IAM ARN (`admin-key` locally).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Actor {
    /// An IdP with the tenant's SCIM token of this credential generation.
    Scim {
        generation: u64,
    },
    Admin {
        principal: String,
    },
    /// The service itself.
    Service,
    /// Whoever holds the emailed "Get Secret Token" link.
    Link,
}

/// Lifecycle changes in full, `[before, after]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transitions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<[bool; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<[Licence; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<[bool; 2]>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members_added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members_removed: Vec<String>,
    /// Every earlier member was removed first (a PUT or `replace members`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub members_cleared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// UUID v7: unique, the event's id (stable across redeliveries).
    pub id: String,
    /// Sortable RFC 3339 with microseconds; orders the trail and the feed.
    pub time: String,
    pub tenant: TenantId,
    pub resource_type: ResourceType,
    pub resource_id: String,
    /// `userName` or `displayName` at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The resource's version after the change (orders one resource's
    /// changes); `None` where the change does not version it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub operation: Operation,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Names of the attributes that changed (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    #[serde(default)]
    pub transitions: Transitions,
    /// Unix seconds after which the record is removed (retention).
    pub expires_at: i64,
}

/// Who and under which request: what every record of one request shares.
#[derive(Debug, Clone)]
pub struct Origin {
    pub actor: Actor,
    pub request_id: Option<String>,
    pub retention_days: i64,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.actor {
            Actor::Scim { generation } => write!(f, "scim-token#{generation}"),
            Actor::Admin { principal } => f.write_str(principal),
            Actor::Service => f.write_str("service"),
            Actor::Link => f.write_str("reveal-link"),
        }
    }
}

impl Origin {
    /// An origin for work nobody asked for in a request (startup).
    pub fn service(retention_days: i64) -> Origin {
        Origin {
            actor: Actor::Service,
            request_id: None,
            retention_days,
        }
    }

    pub fn admin(
        actor: &crate::auth::AdminActor,
        request_id: Option<String>,
        retention_days: i64,
    ) -> Origin {
        Origin {
            actor: Actor::Admin {
                principal: actor.to_string(),
            },
            request_id,
            retention_days,
        }
    }

    pub fn now_record(
        &self,
        tenant: &TenantId,
        resource_type: ResourceType,
        resource_id: &str,
        operation: Operation,
    ) -> AuditRecord {
        self.record(
            tenant,
            resource_type,
            resource_id,
            operation,
            time::OffsetDateTime::now_utc(),
        )
    }

    pub fn record(
        &self,
        tenant: &TenantId,
        resource_type: ResourceType,
        resource_id: &str,
        operation: Operation,
        now: time::OffsetDateTime,
    ) -> AuditRecord {
        let expires = now + time::Duration::days(self.retention_days.max(1));
        AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            time: sortable(now),
            tenant: tenant.clone(),
            resource_type,
            resource_id: resource_id.to_owned(),
            name: None,
            version: None,
            operation,
            outcome: Outcome::Committed,
            status: None,
            scim_type: None,
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
            changed: Vec::new(),
            transitions: Transitions::default(),
            expires_at: expires.unix_timestamp(),
        }
    }
}

/// `2026-01-01T00:00:00.123456Z`: sorts as text in time order.
pub fn sortable(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

/// The names of the attributes that differ, extension attributes as
/// `urn:…:name`; values are never recorded.
pub fn changed_attributes(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (b, a) = (before.get(name), after.get(name));
        if b == a {
            continue;
        }
        match (b, a) {
            (Some(Value::Object(bo)), Some(Value::Object(ao))) if name.starts_with("urn:") => {
                for sub in changed_attributes(bo, ao) {
                    out.push(format!("{name}:{sub}"));
                }
            }
            _ => out.push(name.clone()),
        }
    }
    out
}

/// The record of a committed write of `after` over `before` (`None`: a
/// create): operation, changed attribute names, lifecycle transitions.
pub fn describe(
    origin: &Origin,
    tenant: &TenantId,
    before: Option<&StoredResource>,
    after: &StoredResource,
    now: time::OffsetDateTime,
) -> AuditRecord {
    let active = |r: &StoredResource| r.attrs.get("active") != Some(&Value::Bool(false));
    let op = match before {
        None => Operation::Created,
        Some(b) if after.kind == Kind::User && active(b) && !active(after) => {
            Operation::Deactivated
        }
        Some(b) if after.kind == Kind::User && !active(b) && active(after) => {
            Operation::Reactivated
        }
        Some(_) => Operation::Updated,
    };
    let mut r = origin.record(tenant, ResourceType::of(after.kind), &after.id, op, now);
    r.name = display_name(after);
    r.version = Some(after.version);
    let empty = Map::new();
    r.changed = changed_attributes(before.map_or(&empty, |b| &b.attrs), &after.attrs);
    if after.kind == Kind::User {
        let was = before.map(active);
        if was != Some(active(after)) {
            r.transitions.active = was
                .map(|w| [w, active(after)])
                .or(Some([false, active(after)]));
        }
        let prior = before.map(|b| b.product.clone()).unwrap_or_default();
        r.transitions = Transitions {
            licence: licence_change(&prior, &after.product),
            admin: (prior.admin != after.product.admin)
                .then_some([prior.admin, after.product.admin]),
            ..r.transitions
        };
    }
    r
}

fn licence_change(before: &Product, after: &Product) -> Option<[Licence; 2]> {
    (before.licence != after.licence).then_some([before.licence, after.licence])
}

impl AuditRecord {
    /// Where the record sits in its tenant's trail (and the feed).
    pub fn position(&self) -> String {
        format!("{}#{}", self.time, self.id)
    }

    /// The record of one part of a membership change written in several
    /// transactions: the same change, its own id, only that part's members.
    pub fn for_part(&self, index: usize, added: Vec<String>, removed: Vec<String>) -> AuditRecord {
        let mut r = self.clone();
        if index > 0 {
            r.id = uuid::Uuid::now_v7().to_string();
            r.operation = Operation::MembersChanged;
            r.changed = vec!["members".into()];
            r.version = None;
        }
        r.transitions.members_added = added;
        r.transitions.members_removed = removed;
        r
    }
}

/// A refused SCIM write: status and `scimType`, no change.
pub fn refused(
    origin: &Origin,
    tenant: &TenantId,
    kind: Kind,
    resource_id: &str,
    name: Option<String>,
    status: u16,
    scim_type: Option<String>,
) -> AuditRecord {
    let mut r = origin.now_record(
        tenant,
        ResourceType::of(kind),
        resource_id,
        Operation::Refused,
    );
    r.outcome = Outcome::Refused;
    r.status = Some(status);
    r.scim_type = scim_type;
    r.name = name;
    r
}

/// A seat handed to a waiting user by someone else's change.
pub fn handed_over(origin: &Origin, tenant: &TenantId, user: &str) -> AuditRecord {
    let mut r = origin.now_record(tenant, ResourceType::User, user, Operation::LicenceAssigned);
    r.transitions.licence = Some([Licence::Waiting, Licence::Assigned]);
    r
}

/// The records a write's pool changes imply for other users (hand-overs).
pub fn pool_records(
    origin: &Origin,
    tenant: &TenantId,
    ops: &[crate::scim::model::PoolOp],
) -> Vec<AuditRecord> {
    ops.iter()
        .filter_map(|op| match op {
            crate::scim::model::PoolOp::HandOver { who, .. } => {
                Some(handed_over(origin, tenant, &who.user))
            }
            _ => None,
        })
        .collect()
}

/// `userName` of a user, `displayName` of a group.
pub fn display_name(r: &StoredResource) -> Option<String> {
    let key = match r.kind {
        Kind::User => "userName",
        Kind::Group => "displayName",
    };
    r.attrs.get(key).and_then(Value::as_str).map(str::to_owned)
}
