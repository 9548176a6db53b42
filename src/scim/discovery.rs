//! `/ServiceProviderConfig`, `/Schemas`, `/ResourceTypes`: what this
//! service really supports, no more.

use serde_json::{Value, json};

use super::list::{CURSOR_TTL_SECS, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use super::schema::{ALL_SCHEMAS, Kind, SPC_URN};

/// Largest accepted request body, in bytes (larger ones get 413).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest stored representation of one resource (its attributes as
/// JSON), well under DynamoDB's 400 KB item limit, the same for every store.
pub const MAX_RESOURCE_BYTES: usize = 256 * 1024;
/// Most operations one PATCH may carry.
pub const MAX_PATCH_OPERATIONS: usize = 1000;
/// Most operations one BulkRequest may carry (more is a 413). They run one
/// after another, and on Lambda the whole request must answer within the
/// function's 28 s timeout: 100 operations of 2–7 DynamoDB calls at
/// 10–30 ms each take 2–21 s; a time budget (`crate::bulk`) cuts the tail.
pub const BULK_MAX_OPERATIONS: usize = 100;
/// Largest BulkRequest body, in bytes: the limit of every request body, so
/// one limit (and one 413) applies to all of them.
pub const BULK_MAX_PAYLOAD_BYTES: usize = MAX_BODY_BYTES;

pub fn service_provider_config(base_url: &str) -> Value {
    json!({
        "schemas": [SPC_URN],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": { "supported": true },
        "bulk": {
            "supported": true,
            "maxOperations": BULK_MAX_OPERATIONS,
            "maxPayloadSize": BULK_MAX_PAYLOAD_BYTES,
        },
        "filter": { "supported": true, "maxResults": MAX_PAGE_SIZE },
        "changePassword": { "supported": false },
        "sort": { "supported": true },
        "etag": { "supported": true },
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": DEFAULT_PAGE_SIZE,
            "maxPageSize": MAX_PAGE_SIZE,
            "cursorTimeout": CURSOR_TTL_SECS,
        },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with the tenant's Secret Token in an 'Authorization: Bearer' header.",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base_url}/ServiceProviderConfig"),
        },
    })
}

pub fn schemas(base_url: &str) -> Vec<Value> {
    ALL_SCHEMAS.iter().map(|s| s.to_json(base_url)).collect()
}

pub fn schema(base_url: &str, id: &str) -> Option<Value> {
    ALL_SCHEMAS
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .map(|s| s.to_json(base_url))
}

pub fn resource_types(base_url: &str) -> Vec<Value> {
    [Kind::User, Kind::Group]
        .iter()
        .map(|k| k.resource_type_json(base_url))
        .collect()
}

pub fn resource_type(base_url: &str, id: &str) -> Option<Value> {
    Kind::from_name(id).map(|k| k.resource_type_json(base_url))
}
