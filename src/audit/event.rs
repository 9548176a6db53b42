//! Audit records as change events: CloudEvents 1.0 JSON, schema version 1
//! (`events/v1/` holds a JSON Schema per type). The record's id is the
//! event id, so a consumer de-duplicates redeliveries by it; one
//! resource's events order by `data.version` (by `time` where a change has
//! no version, such as a member-only group change).

use serde_json::{Value, json};

use super::{AuditRecord, Outcome, ResourceType};

pub const SPEC_VERSION: &str = "1.0";
/// Prefix of every event type.
pub const TYPE_PREFIX: &str = "com.scim-provisioning";
/// The version of the `data` layout; bumped on an incompatible change.
pub const DATA_VERSION: &str = "1";

/// `com.scim-provisioning.scim.user.deactivated`, `….scim.group.members.changed`,
/// `….tenant.updated`, `….credentials.revealed`, `….scim.request.refused`.
pub fn event_type(r: &AuditRecord) -> String {
    if r.outcome == Outcome::Refused {
        return format!("{TYPE_PREFIX}.scim.request.refused");
    }
    let area = match r.resource_type {
        ResourceType::User => "scim.user",
        ResourceType::Group => "scim.group",
        ResourceType::Tenant => "tenant",
        ResourceType::Credentials => "credentials",
    };
    format!("{TYPE_PREFIX}.{area}.{}", r.operation.name())
}

/// Every type an event can have (the catalogue; one schema file each).
pub fn all_types() -> Vec<String> {
    let mut out = Vec::new();
    for op in [
        "created",
        "updated",
        "deactivated",
        "reactivated",
        "deleted",
        "licence.assigned",
        "licence.released",
        "admin.granted",
        "admin.revoked",
    ] {
        out.push(format!("{TYPE_PREFIX}.scim.user.{op}"));
    }
    for op in ["created", "updated", "deleted", "members.changed"] {
        out.push(format!("{TYPE_PREFIX}.scim.group.{op}"));
    }
    for op in ["created", "updated"] {
        out.push(format!("{TYPE_PREFIX}.tenant.{op}"));
    }
    for op in ["created", "revealed", "link_expired"] {
        out.push(format!("{TYPE_PREFIX}.credentials.{op}"));
    }
    out.push(format!("{TYPE_PREFIX}.scim.request.refused"));
    out
}

/// The record as a CloudEvent. `source` identifies this deployment
/// (a URI reference such as `/scim-provisioning/prod`).
pub fn to_cloud_event(r: &AuditRecord, source: &str) -> Value {
    let mut data = json!({
        "dataVersion": DATA_VERSION,
        "tenant": r.tenant.as_str(),
        "resourceType": r.resource_type.name(),
        "resourceId": r.resource_id,
        "operation": r.operation.name(),
        "outcome": match r.outcome { Outcome::Committed => "committed", Outcome::Refused => "refused" },
        "actor": r.actor,
        "transitions": r.transitions,
    });
    if let Some(obj) = data.as_object_mut() {
        let mut put = |k: &str, v: Value| {
            if !v.is_null() {
                obj.insert(k.into(), v);
            }
        };
        put("name", json!(r.name));
        put("version", json!(r.version));
        put("requestId", json!(r.request_id));
        put("status", json!(r.status));
        put("scimType", json!(r.scim_type));
        if !r.changed.is_empty() {
            put("changed", json!(r.changed));
        }
    }
    json!({
        "specversion": SPEC_VERSION,
        "id": r.id,
        "source": source,
        "type": event_type(r),
        "subject": r.resource_id,
        "time": r.time,
        "datacontenttype": "application/json",
        "tenantid": r.tenant.as_str(),
        "data": data,
    })
}
