//! The table's key layout and the encoding of each item type. Every key
//! names its tenant first, and a tenant id cannot contain `#`
//! (`[A-Za-z0-9_-]`), so the first `#` after `T#` always ends the tenant: no
//! id, key value or offset chosen by a client can spell another tenant's key.
//! See `infra/dynamodb.md` for the design as a whole.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest, Sha256};

use super::super::{StoreError, StoredResource, TenantId, UniqueKey};
use crate::scim::schema::Kind;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const PK: &str = "PK";
pub(super) const SK: &str = "SK";

/// Attribute names. Expressions always refer to them through `#` aliases,
/// so DynamoDB's reserved words never matter.
pub(super) const ID: &str = "id";
pub(super) const DOC: &str = "doc";
pub(super) const VER: &str = "ver";
pub(super) const MC: &str = "mc";
pub(super) const LM: &str = "lm";
pub(super) const KEYS: &str = "keys";
pub(super) const KIND: &str = "k";
pub(super) const COUNT: &str = "n";
pub(super) const AFTER: &str = "after";
/// A user's licence (`none`/`assigned`/`waiting`) and since when: kept
/// beside the document so a hand-over can set them without rewriting it.
pub(super) const LIC: &str = "lic";
pub(super) const LIC_AT: &str = "licAt";
/// On a group: until when (epoch seconds) a member change written in
/// several transactions may still be adding its later chunks.
pub(super) const MW: &str = "mw";
/// Which change set `mw`: only that change removes it.
pub(super) const MW_TOKEN: &str = "mwt";
/// The table's TTL attribute (epoch seconds), declared in `template.yaml`.
pub(super) const EXPIRES_AT: &str = "expiresAt";

/// Counter shards per tenant and kind: concurrent creates spread their
/// increments over this many items instead of all conflicting on one.
pub(super) const COUNTER_SHARDS: u32 = 8;

/// Ids longer than this cannot exist: the service mints UUIDs, and sort keys
/// are limited to 1 KiB, so a longer id from a URL is simply not found.
pub(super) const MAX_ID_BYTES: usize = 512;

/// Unique values longer than this are replaced by their SHA-256 in the
/// marker's key, to stay within the sort key limit.
const MAX_MARKER_VALUE_BYTES: usize = 512;

/// DynamoDB's limit on a sort key.
const MAX_SK_BYTES: usize = 1024;

pub(super) fn id_ok(id: &str) -> bool {
    id.len() <= MAX_ID_BYTES
}

/// A sort key to start a Query after: `sk` itself or, if it is too long to
/// be a key, its longest prefix that is not. Whatever sorts between the two
/// starts with that prefix, so is longer than any id: nothing is skipped.
pub(super) fn start_after(mut sk: String) -> String {
    if sk.len() > MAX_SK_BYTES {
        let mut end = MAX_SK_BYTES;
        while !sk.is_char_boundary(end) {
            end -= 1;
        }
        sk.truncate(end);
    }
    sk
}

/// The partition of a tenant's resources, unique markers, counters and
/// bookmarks.
pub(super) fn tenant_pk(t: &TenantId) -> String {
    format!("T#{t}")
}

pub(super) fn resource_prefix(kind: Kind) -> String {
    format!("R#{}#", kind.name())
}

pub(super) fn resource_sk(kind: Kind, id: &str) -> String {
    format!("R#{}#{id}", kind.name())
}

pub(super) fn marker_sk(kind: Kind, attr: &str, value: &str) -> String {
    let kind = kind.name();
    if value.len() <= MAX_MARKER_VALUE_BYTES {
        format!("K#{kind}#{attr}#{value}")
    } else {
        let digest = Sha256::digest(value.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("K#{kind}#{attr}##{hex}")
    }
}

pub(super) fn counter_prefix(kind: Kind) -> String {
    format!("C#{}#", kind.name())
}

/// The counter shard a resource's create and delete adjust. Any shard would
/// keep the sum right; hashing the id just spreads concurrent creates.
pub(super) fn counter_sk(kind: Kind, id: &str) -> String {
    // FNV-1a: stable across builds, unlike std's randomised hasher.
    let hash = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{}{}", counter_prefix(kind), hash % COUNTER_SHARDS)
}

pub(super) fn bookmark_prefix(kind: Kind) -> String {
    format!("B#{}#", kind.name())
}

/// Zero-padded so that bookmarks sort by offset.
pub(super) fn bookmark_sk(kind: Kind, offset: u64) -> String {
    format!("{}{offset:020}", bookmark_prefix(kind))
}

pub(super) fn bookmark_offset(sk: &str, kind: Kind) -> Option<u64> {
    sk.strip_prefix(&bookmark_prefix(kind))?.parse().ok()
}

/// The partition holding one item per member of a group.
pub(super) fn group_pk(t: &TenantId, group: &str) -> String {
    format!("T#{t}#G#{group}")
}

pub(super) fn member_sk(member: &str) -> String {
    format!("M#{member}")
}

/// The partition holding one item per group a resource belongs to.
pub(super) fn member_of_pk(t: &TenantId, member: &str) -> String {
    format!("T#{t}#M#{member}")
}

pub(super) fn member_of_sk(group: &str) -> String {
    format!("G#{group}")
}

pub(super) fn tenant_record_pk(t: &TenantId) -> String {
    format!("TENANT#{t}")
}

pub(super) const TENANT_SK: &str = "TENANT";

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(pk: String, sk: String) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("undecodable item: {what}"))
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(format_args!("missing string {name}"))),
    }
}

/// A number attribute; absent counts as 0 (`ADD` creates it lazily).
pub(super) fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        None => Ok(0),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| corrupt(format_args!("number {name} = {v:?}"))),
        Some(_) => Err(corrupt(format_args!("{name} is not a number"))),
    }
}

pub(super) fn parse_kind(s: &str) -> Result<Kind, StoreError> {
    Kind::from_name(s).ok_or_else(|| corrupt(format_args!("unknown resource kind {s:?}")))
}

/// The id of an item whose sort key is `prefix` followed by the id.
pub(super) fn sk_suffix<'a>(item: &'a Item, prefix: &str) -> Result<&'a str, StoreError> {
    let sk = get_s(item, SK)?;
    sk.strip_prefix(prefix)
        .ok_or_else(|| corrupt(format_args!("sort key {sk:?} outside {prefix:?}")))
}

/// The keys a resource holds, kept on its item so that `delete` can release
/// them without the core recomputing them.
pub(super) fn encode_keys(keys: &[UniqueKey]) -> Result<String, StoreError> {
    let pairs: Vec<(&str, &str)> = keys.iter().map(|k| (k.attr, k.value.as_str())).collect();
    serde_json::to_string(&pairs).map_err(corrupt)
}

pub(super) fn decode_keys(item: &Item) -> Result<Vec<(String, String)>, StoreError> {
    match item.get(KEYS) {
        None => Ok(Vec::new()),
        Some(AttributeValue::S(json)) => serde_json::from_str(json).map_err(corrupt),
        Some(_) => Err(corrupt("keys is not a string")),
    }
}

/// A resource item. `ver`, `mc` and `lm` are authoritative and overlaid on
/// `doc` when reading: member changes update them without rewriting `doc`.
pub(super) fn resource_item(
    t: &TenantId,
    r: &StoredResource,
    keys: &[UniqueKey],
    member_count: u64,
) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(r).map_err(corrupt)?;
    let mut item = key(tenant_pk(t), resource_sk(r.kind, &r.id));
    item.insert(ID.into(), s(r.id.as_str()));
    item.insert(KIND.into(), s(r.kind.name()));
    item.insert(DOC.into(), s(doc));
    item.insert(VER.into(), n(r.version));
    item.insert(LM.into(), s(r.last_modified.as_str()));
    item.insert(KEYS.into(), s(encode_keys(keys)?));
    if r.kind == Kind::Group {
        item.insert(MC.into(), n(member_count));
    } else {
        item.insert(LIC.into(), s(r.product.licence.name()));
        if let Some(at) = &r.product.licence_since {
            item.insert(LIC_AT.into(), s(at.as_str()));
        }
    }
    Ok(item)
}

/// Epoch seconds now.
pub(super) fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(super) fn decode_resource(item: &Item) -> Result<StoredResource, StoreError> {
    let mut r: StoredResource = serde_json::from_str(get_s(item, DOC)?).map_err(corrupt)?;
    r.version = u64::try_from(get_n(item, VER)?).map_err(corrupt)?;
    // A count is never negative; clamp rather than fail a read over it.
    r.member_count = u64::try_from(get_n(item, MC)?.max(0)).unwrap_or(0);
    if let Ok(lm) = get_s(item, LM) {
        lm.clone_into(&mut r.last_modified);
    }
    // Set by the first transaction of a chunked member change, removed
    // after its last; the deadline outlives a writer that died between.
    r.settling = get_n(item, MW).is_ok_and(|until| until > unix_now());
    // A hand-over sets these without touching the document.
    if let Some(l) = get_s(item, LIC)
        .ok()
        .and_then(crate::scim::model::Licence::parse)
    {
        r.product.licence = l;
        r.product.licence_since = get_s(item, LIC_AT).ok().map(str::to_owned);
    }
    Ok(r)
}

/// A membership item in the group's partition, and its mirror in the
/// member's partition, both carrying the member's kind.
pub(super) fn membership_items(t: &TenantId, group: &str, member: &str, kind: Kind) -> [Item; 2] {
    let mut forward = key(group_pk(t, group), member_sk(member));
    forward.insert(KIND.into(), s(kind.name()));
    let mut reverse = key(member_of_pk(t, member), member_of_sk(group));
    reverse.insert(KIND.into(), s(kind.name()));
    [forward, reverse]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_hashed_and_short_ones_kept() {
        assert_eq!(
            marker_sk(Kind::User, "userName", "alice"),
            "K#User#userName#alice"
        );
        let sk = marker_sk(Kind::User, "userName", &"x".repeat(5000));
        assert!(sk.len() < 100, "{sk}");
        assert_ne!(sk, marker_sk(Kind::User, "userName", &"y".repeat(5000)));
    }

    #[test]
    fn keys_of_one_tenant_never_spell_another_tenants() {
        let a = TenantId::parse("a").unwrap();
        // Whatever an id contains, the tenant part ends at the first `#`.
        for id in ["x", "#", "b#R#User#u", "x#M#y"] {
            for k in [group_pk(&a, id), member_of_pk(&a, id), tenant_pk(&a)] {
                assert!(k.starts_with("T#a#") || k == "T#a", "{k}");
            }
        }
        assert_eq!(
            bookmark_offset(&bookmark_sk(Kind::User, 200), Kind::User),
            Some(200)
        );
        assert!(counter_sk(Kind::Group, "g").starts_with("C#Group#"));
        assert_eq!(start_after("R#User#u1".into()), "R#User#u1");
        let long = start_after(format!("R#User#{}", "é".repeat(2000)));
        assert!(long.len() <= MAX_SK_BYTES && long.len() > MAX_SK_BYTES - 2);
    }
}
