//! The store contract: what every [`Store`] promises, written once and run
//! against each implementation.
//!
//! Each `pub(crate) async fn` here is one behaviour, checked on a fresh, empty
//! store. A store's test module runs them all with
//! [`store_contract_tests!`], which expands to one `#[tokio::test]` per
//! behaviour, each on a store of its own:
//!
//! ```ignore
//! crate::store::contract::store_contract_tests!(async || open().await);
//! ```
//!
//! What only one store has (call counts, bookmarks, reopening a file, …)
//! stays in that store's tests, which share the helpers below.

use time::format_description::well_known::Rfc3339;

use serde_json::{Map, json};

use super::{
    CredentialRecord, MemberDelta, MemberRef, RevealRecord, Store, StoreError, StoredResource,
    TenantId, TenantRecord, UniqueKey, Update,
};
use crate::scim::schema::Kind;

/// A store under test, with whatever has to outlive it.
pub(crate) trait Fixture {
    fn store(&self) -> &dyn Store;
}

impl<S: Store> Fixture for S {
    fn store(&self) -> &dyn Store {
        self
    }
}

/// A store and what it needs while open (e.g. its temporary directory,
/// dropped after the store).
impl<S: Store, K> Fixture for (S, K) {
    fn store(&self) -> &dyn Store {
        &self.0
    }
}

/// Expands to a module `contract` of `#[tokio::test]`s, one per contract
/// function, each on a fresh store from `$fresh`: an async closure (or
/// function) returning a [`Fixture`], resolved in the calling module.
macro_rules! store_contract_tests {
    ($fresh:expr) => {
        $crate::store::contract::store_contract_tests!(@each $fresh;
            create_then_read_back,
            create_conflict_names_the_taken_key_and_writes_nothing,
            stale_update_fails_and_writes_nothing,
            rename_moves_the_key,
            membership_changes_are_idempotent_and_counted,
            member_only_changes_bump_the_version_and_honour_if_match,
            members_page_in_id_order,
            unknown_member_rolls_back_the_whole_update,
            deleting_a_user_removes_it_from_its_groups,
            deleting_a_group_clears_both_directions,
            tenants_are_isolated,
            list_pages_in_id_order,
            list_at_follows_creates_and_deletes,
            groups_of_many_answers_in_the_order_given,
            tenant_records_are_versioned,
            reveal_records_are_taken_once,
            concurrent_writers_do_not_lose_updates,
        );
    };
    (@each $fresh:expr; $($name:ident),+ $(,)?) => {
        mod contract {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = ($fresh)().await;
                    let store = $crate::store::contract::Fixture::store(&fixture);
                    $crate::store::contract::$name(store).await;
                }
            )+
        }
    };
}
pub(crate) use store_contract_tests;

// ---------------------------------------------------------------------------
// Helpers, shared with the stores' own tests.

pub(crate) fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

/// Version 1 of a resource whose `name` attribute is `name`.
pub(crate) fn resource(kind: Kind, id: &str, name: &str) -> StoredResource {
    let mut attrs = Map::new();
    attrs.insert("name".into(), json!(name));
    StoredResource {
        product: Default::default(),
        id: id.into(),
        kind,
        version: 1,
        created: "2024-01-01T00:00:00Z".into(),
        last_modified: "2024-01-01T00:00:00Z".into(),
        attrs,
        member_count: 0,
        settling: false,
    }
}

pub(crate) fn user(id: &str) -> StoredResource {
    resource(Kind::User, id, id)
}

pub(crate) fn group(id: &str) -> StoredResource {
    resource(Kind::Group, id, id)
}

pub(crate) fn key(attr: &'static str, value: &str) -> UniqueKey {
    UniqueKey {
        attr,
        value: value.into(),
    }
}

/// The `userName` key of a resource made by [`resource`].
pub(crate) fn name_key(r: &StoredResource) -> UniqueKey {
    key("userName", r.attrs["name"].as_str().unwrap())
}

/// The user `id` as a member.
pub(crate) fn member(id: &str) -> MemberRef {
    MemberRef {
        id: id.into(),
        kind: Kind::User,
    }
}

pub(crate) fn ids(v: &[StoredResource]) -> Vec<&str> {
    v.iter().map(|r| r.id.as_str()).collect()
}

/// Creates the user `id`, holding its `userName` key.
pub(crate) async fn add_user(s: &dyn Store, t: &TenantId, id: &str) -> StoredResource {
    let u = user(id);
    s.create(t, &u, &[name_key(&u)], &[]).await.unwrap();
    u
}

/// An update of `stored` to `new` (same id), with a member delta.
pub(crate) fn update(stored: &StoredResource, new: StoredResource, members: MemberDelta) -> Update {
    let mut resource = new;
    resource.version = stored.version + 1;
    Update {
        pool: Vec::new(),
        audit: Vec::new(),
        old_keys: vec![name_key(stored)],
        new_keys: vec![name_key(&resource)],
        resource,
        expected_version: stored.version,
        members,
    }
}

/// A delta adding the users `ids`.
pub(crate) fn add(ids: &[&str]) -> MemberDelta {
    MemberDelta {
        add: ids.iter().map(|id| member(id)).collect(),
        ..MemberDelta::default()
    }
}

/// A delta adding the group `id` as a member.
pub(crate) fn add_group(id: &str) -> MemberDelta {
    MemberDelta {
        add: vec![MemberRef {
            id: id.into(),
            kind: Kind::Group,
        }],
        ..MemberDelta::default()
    }
}

/// All member ids of a group, in order.
pub(crate) async fn member_ids(s: &dyn Store, t: &TenantId, g: &str) -> Vec<String> {
    let m = s.members(t, g, None, 100_000).await.unwrap();
    m.into_iter().map(|m| m.id).collect()
}

// ---------------------------------------------------------------------------
// The contract.

pub(crate) async fn create_then_read_back(s: &dyn Store) {
    let t = tenant("t1");
    let u = add_user(s, &t, "u1").await;

    assert_eq!(s.get(&t, Kind::User, "u1").await.unwrap(), Some(u.clone()));
    assert_eq!(s.get(&t, Kind::Group, "u1").await.unwrap(), None);
    assert_eq!(s.get(&t, Kind::User, "nope").await.unwrap(), None);
    let found = s.find_by_key(&t, Kind::User, &key("userName", "u1")).await;
    assert_eq!(found.unwrap(), Some(u.clone()));
    let missing = s.find_by_key(&t, Kind::User, &key("userName", "x")).await;
    assert_eq!(missing.unwrap(), None);
    assert_eq!(s.count(&t, Kind::User).await.unwrap(), 1);
    assert_eq!(s.count(&t, Kind::Group).await.unwrap(), 0);

    let g = group("g1");
    s.create(&t, &g, &[key("displayName", "g1")], &[])
        .await
        .unwrap();
    let wanted = ["u1".to_string(), "gone".into(), "g1".into(), "u1".into()];
    let mut many = s.get_many(&t, &wanted).await.unwrap();
    many.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&many), ["g1", "u1"]);

    // Ids too long to be DynamoDB keys are simply absent.
    let long = "x".repeat(5000);
    assert_eq!(s.get(&t, Kind::User, &long).await.unwrap(), None);
    assert!(
        s.get_many(&t, std::slice::from_ref(&long))
            .await
            .unwrap()
            .is_empty()
    );
    // Long unique values (DynamoDB hashes them into the marker key) are
    // still unique.
    let v = "v".repeat(3000);
    let u2 = user("u2");
    s.create(&t, &u2, &[key("userName", &v)], &[])
        .await
        .unwrap();
    let found = s.find_by_key(&t, Kind::User, &key("userName", &v)).await;
    assert_eq!(found.unwrap().map(|r| r.id), Some("u2".into()));
    let err = s
        .create(&t, &user("u3"), &[key("userName", &v)], &[])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::Conflict {
            attr: "userName",
            ..
        }
    ));
}

pub(crate) async fn create_conflict_names_the_taken_key_and_writes_nothing(s: &dyn Store) {
    let t = tenant("t1");
    let a = user("a");
    let keys = [key("userName", "alice"), key("externalId", "ext-1")];
    s.create(&t, &a, &keys, &[]).await.unwrap();

    let b = user("b");
    let keys = [key("userName", "bob"), key("externalId", "ext-1")];
    let err = s.create(&t, &b, &keys, &[]).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            attr: "externalId",
            value: "ext-1".into()
        }
    );
    // "bob" may be claimed before the conflict is found; it must not stay.
    assert_eq!(s.get(&t, Kind::User, "b").await.unwrap(), None);
    assert_eq!(s.count(&t, Kind::User).await.unwrap(), 1);
    let bob = s.find_by_key(&t, Kind::User, &key("userName", "bob")).await;
    assert_eq!(bob.unwrap(), None);

    // Keys are per kind: a group may use the same value.
    let g = group("g");
    s.create(&t, &g, &[key("userName", "alice")], &[])
        .await
        .unwrap();

    // Reusing an id is a conflict too, whatever the kind.
    let err = s.create(&t, &group("a"), &[], &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { attr: "id", .. }));
    let err = s.create(&t, &user("a"), &[], &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { attr: "id", .. }));
    assert_eq!(s.count(&t, Kind::Group).await.unwrap(), 1);
}

pub(crate) async fn stale_update_fails_and_writes_nothing(s: &dyn Store) {
    let t = tenant("t1");
    let u = add_user(s, &t, "u1").await;

    let mut stale = update(
        &u,
        resource(Kind::User, "u1", "renamed"),
        MemberDelta::default(),
    );
    stale.expected_version = 7;
    stale.resource.version = 8;
    let err = s.update(&t, &stale).await.unwrap_err();
    assert_eq!(err, StoreError::VersionMismatch);
    assert_eq!(s.get(&t, Kind::User, "u1").await.unwrap(), Some(u.clone()));
    let old = s.find_by_key(&t, Kind::User, &key("userName", "u1")).await;
    assert_eq!(old.unwrap().map(|r| r.id), Some("u1".into()));
    let new = s
        .find_by_key(&t, Kind::User, &key("userName", "renamed"))
        .await;
    assert_eq!(new.unwrap(), None);

    // A missing resource is a version mismatch as well, and is not created.
    let ghost = update(&user("ghost"), user("ghost"), MemberDelta::default());
    let err = s.update(&t, &ghost).await.unwrap_err();
    assert_eq!(err, StoreError::VersionMismatch);
    assert_eq!(s.get(&t, Kind::User, "ghost").await.unwrap(), None);
}

pub(crate) async fn rename_moves_the_key(s: &dyn Store) {
    let t = tenant("t1");
    let u = add_user(s, &t, "u1").await;
    add_user(s, &t, "u2").await;

    // Taking another resource's key fails, and nothing moves.
    let clash = update(&u, resource(Kind::User, "u1", "u2"), MemberDelta::default());
    let err = s.update(&t, &clash).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            attr: "userName",
            value: "u2".into()
        }
    );
    let still = s.find_by_key(&t, Kind::User, &key("userName", "u1")).await;
    assert_eq!(still.unwrap().map(|r| r.id), Some("u1".into()));
    assert_eq!(
        s.get(&t, Kind::User, "u1").await.unwrap().unwrap().version,
        1
    );

    // Keeping one's own key is fine.
    let same = update(&u, user("u1"), MemberDelta::default());
    s.update(&t, &same).await.unwrap();
    let u = s.get(&t, Kind::User, "u1").await.unwrap().unwrap();
    assert_eq!(u.version, 2);

    let rename = update(
        &u,
        resource(Kind::User, "u1", "alice"),
        MemberDelta::default(),
    );
    s.update(&t, &rename).await.unwrap();
    let new = s
        .find_by_key(&t, Kind::User, &key("userName", "alice"))
        .await;
    assert_eq!(new.unwrap().map(|r| r.version), Some(3));
    let old = s.find_by_key(&t, Kind::User, &key("userName", "u1")).await;
    assert_eq!(old.unwrap(), None);
    // The old value is free for someone else.
    let u3 = resource(Kind::User, "u3", "u1");
    s.create(&t, &u3, &[name_key(&u3)], &[]).await.unwrap();

    // A stale idea of the old keys never frees another resource's key.
    let u3 = s.get(&t, Kind::User, "u3").await.unwrap().unwrap();
    let mut confused = update(
        &u3,
        resource(Kind::User, "u3", "carol"),
        MemberDelta::default(),
    );
    confused.old_keys.push(key("userName", "alice"));
    s.update(&t, &confused).await.unwrap();
    let alice = s
        .find_by_key(&t, Kind::User, &key("userName", "alice"))
        .await;
    assert_eq!(alice.unwrap().map(|r| r.id), Some("u1".into()));

    // Delete releases the key the store recorded.
    s.delete(&t, Kind::User, "u1", Some(3)).await.unwrap();
    let u4 = resource(Kind::User, "u4", "alice");
    s.create(&t, &u4, &[name_key(&u4)], &[]).await.unwrap();
}

pub(crate) async fn membership_changes_are_idempotent_and_counted(s: &dyn Store) {
    let t = tenant("t1");
    for id in ["u1", "u2", "u3"] {
        add_user(s, &t, id).await;
    }
    let g = group("g");
    let initial = [member("u2"), member("u1"), member("u2")];
    s.create(&t, &g, &[], &initial).await.unwrap();
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!(g.member_count, 2);
    assert_eq!(member_ids(s, &t, "g").await, ["u1", "u2"]);

    // Adding present members and removing absent ones changes nothing.
    let mut delta = add(&["u2", "u3"]);
    delta.remove = vec!["u9".into()];
    let mut new = g.clone();
    new.member_count = 999; // the store owns the count
    s.update(&t, &update(&g, new, delta)).await.unwrap();
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (2, 3));
    assert_eq!(member_ids(s, &t, "g").await, ["u1", "u2", "u3"]);

    let delta = MemberDelta {
        remove: vec!["u1".into(), "u1".into()],
        ..MemberDelta::default()
    };
    s.update(&t, &update(&g, g.clone(), delta)).await.unwrap();
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!(g.member_count, 2);
    assert!(!s.is_member(&t, "g", "u1").await.unwrap());
    assert!(s.is_member(&t, "g", "u2").await.unwrap());
    assert_eq!(s.groups_of(&t, "u1").await.unwrap(), Vec::<String>::new());
    assert_eq!(s.groups_of(&t, "u2").await.unwrap(), ["g"]);

    // Clear, then remove, then add: u3 ends up the only member.
    let delta = MemberDelta {
        clear: true,
        remove: vec!["u3".into()],
        add: vec![member("u3")],
    };
    s.update(&t, &update(&g, g.clone(), delta)).await.unwrap();
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!(g.member_count, 1);
    assert_eq!(member_ids(s, &t, "g").await, ["u3"]);
    assert_eq!(s.groups_of(&t, "u2").await.unwrap(), Vec::<String>::new());

    // A nested group is a member too, recorded with its own kind.
    s.create(&t, &group("inner"), &[], &[]).await.unwrap();
    s.update(&t, &update(&g, g.clone(), add_group("inner")))
        .await
        .unwrap();
    let m = s.members(&t, "g", None, 10).await.unwrap();
    assert_eq!(m[0].id, "inner");
    assert_eq!(m[0].kind, Kind::Group);
    assert_eq!(s.groups_of(&t, "inner").await.unwrap(), ["g"]);
}

pub(crate) async fn member_only_changes_bump_the_version_and_honour_if_match(s: &dyn Store) {
    let t = tenant("t1");
    for id in ["u1", "u2"] {
        add_user(s, &t, id).await;
    }
    s.create(&t, &group("g"), &[], &[member("u1")])
        .await
        .unwrap();

    let now = "2025-05-05T05:05:05Z";
    let g = s
        .update_members(&t, "g", &add(&["u2"]), None, now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (2, 2));
    assert_eq!(g.last_modified, now);
    assert_eq!(g.attrs["name"], "g");
    assert_eq!(s.get(&t, Kind::Group, "g").await.unwrap(), Some(g.clone()));

    // A no-op still makes a new version.
    let g = s
        .update_members(&t, "g", &add(&["u2"]), Some(2), now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (3, 2));
    assert_eq!(s.get(&t, Kind::Group, "g").await.unwrap(), Some(g.clone()));

    let err = s
        .update_members(&t, "g", &add(&["u2"]), Some(2), now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::VersionMismatch);

    let g = s
        .update_members(&t, "g", &add(&["u1"]), None, now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (4, 2));
    let g = s
        .update_members(&t, "g", &MemberDelta::default(), None, now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (5, 2));
    // A missing group is not found, with If-Match or without; a user is
    // not a group.
    for (id, if_match) in [("nope", None), ("nope", Some(1)), ("u1", None)] {
        let err = s
            .update_members(&t, id, &add(&["u2"]), if_match, now)
            .await
            .unwrap_err();
        assert_eq!(err, StoreError::NotFound, "{id} {if_match:?}");
    }
    assert_eq!(s.get(&t, Kind::Group, "nope").await.unwrap(), None);
    assert!(s.members(&t, "nope", None, 10).await.unwrap().is_empty());
    let err = s
        .update_members(&t, "g", &add(&["ghost"]), None, now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::MemberNotFound("ghost".into()));
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (5, 2));
    assert_eq!(member_ids(s, &t, "g").await, ["u1", "u2"]);
}

pub(crate) async fn members_page_in_id_order(s: &dyn Store) {
    let t = tenant("t1");
    for id in ["c", "a", "e", "b", "d"] {
        add_user(s, &t, id).await;
    }
    let all: Vec<MemberRef> = ["e", "d", "c", "b", "a"]
        .iter()
        .map(|i| member(i))
        .collect();
    s.create(&t, &group("g"), &[], &all).await.unwrap();
    let page_ids = |page: Vec<MemberRef>| page.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let page = s.members(&t, "g", None, 2).await.unwrap();
    assert_eq!(page_ids(page), ["a", "b"]);
    let page = s.members(&t, "g", Some("b"), 2).await.unwrap();
    assert_eq!(page_ids(page), ["c", "d"]);
    let page = s.members(&t, "g", Some("d"), 2).await.unwrap();
    assert_eq!(page_ids(page), ["e"]);
    assert!(s.members(&t, "g", Some("e"), 2).await.unwrap().is_empty());
    assert!(s.members(&t, "g", None, 0).await.unwrap().is_empty());
    assert!(s.members(&t, "other", None, 9).await.unwrap().is_empty());
}

pub(crate) async fn unknown_member_rolls_back_the_whole_update(s: &dyn Store) {
    let t = tenant("t1");
    add_user(s, &t, "u1").await;
    add_user(s, &t, "u2").await;

    let err = s
        .create(&t, &group("bad"), &[], &[member("u1"), member("ghost")])
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::MemberNotFound("ghost".into()));
    assert_eq!(s.get(&t, Kind::Group, "bad").await.unwrap(), None);
    assert!(s.groups_of(&t, "u1").await.unwrap().is_empty());
    assert_eq!(s.count(&t, Kind::Group).await.unwrap(), 0);

    let g = group("g");
    s.create(&t, &g, &[name_key(&g)], &[member("u1")])
        .await
        .unwrap();
    let delta = MemberDelta {
        clear: true,
        remove: vec![],
        add: vec![member("u2"), member("ghost")],
    };
    let renamed = resource(Kind::Group, "g", "renamed");
    let err = s.update(&t, &update(&g, renamed, delta)).await.unwrap_err();
    assert_eq!(err, StoreError::MemberNotFound("ghost".into()));

    let mut expected = g.clone();
    expected.member_count = 1;
    assert_eq!(s.get(&t, Kind::Group, "g").await.unwrap(), Some(expected));
    assert_eq!(member_ids(s, &t, "g").await, ["u1"]);
    assert_eq!(s.groups_of(&t, "u1").await.unwrap(), ["g"]);
    assert!(s.groups_of(&t, "u2").await.unwrap().is_empty());
    let old = s.find_by_key(&t, Kind::Group, &key("userName", "g")).await;
    assert!(old.unwrap().is_some());
    let new = s
        .find_by_key(&t, Kind::Group, &key("userName", "renamed"))
        .await;
    assert_eq!(new.unwrap(), None);
}

pub(crate) async fn deleting_a_user_removes_it_from_its_groups(s: &dyn Store) {
    let t = tenant("t1");
    add_user(s, &t, "u1").await;
    add_user(s, &t, "u2").await;
    for g in ["g1", "g2"] {
        let members = [member("u1"), member("u2")];
        s.create(&t, &group(g), &[], &members).await.unwrap();
    }

    assert_eq!(
        s.delete(&t, Kind::User, "u1", Some(2)).await.unwrap_err(),
        StoreError::VersionMismatch
    );
    assert_eq!(
        s.delete(&t, Kind::Group, "u1", None).await.unwrap_err(),
        StoreError::NotFound
    );
    s.delete(&t, Kind::User, "u1", Some(1)).await.unwrap();

    assert_eq!(s.get(&t, Kind::User, "u1").await.unwrap(), None);
    assert_eq!(s.count(&t, Kind::User).await.unwrap(), 1);
    assert!(s.groups_of(&t, "u1").await.unwrap().is_empty());
    for id in ["g1", "g2"] {
        let g = s.get(&t, Kind::Group, id).await.unwrap().unwrap();
        assert_eq!((g.version, g.member_count), (2, 1));
        assert_ne!(g.last_modified, "2024-01-01T00:00:00Z");
        assert!(time::OffsetDateTime::parse(&g.last_modified, &Rfc3339).is_ok());
        assert_eq!(member_ids(s, &t, id).await, ["u2"]);
    }
    let freed = s.find_by_key(&t, Kind::User, &key("userName", "u1")).await;
    assert_eq!(freed.unwrap(), None);
    assert_eq!(
        s.delete(&t, Kind::User, "u1", None).await.unwrap_err(),
        StoreError::NotFound
    );
    // The id is free again too.
    add_user(s, &t, "u1").await;
    assert!(s.groups_of(&t, "u1").await.unwrap().is_empty());
}

pub(crate) async fn deleting_a_group_clears_both_directions(s: &dyn Store) {
    let t = tenant("t1");
    add_user(s, &t, "u1").await;
    let members = [member("u1")];
    s.create(&t, &group("g1"), &[], &members).await.unwrap();
    s.create(&t, &group("g2"), &[], &members).await.unwrap();
    // g1 is itself a member of g2.
    let g2 = s.get(&t, Kind::Group, "g2").await.unwrap().unwrap();
    s.update(&t, &update(&g2, g2.clone(), add_group("g1")))
        .await
        .unwrap();

    s.delete(&t, Kind::Group, "g1", None).await.unwrap();
    assert_eq!(s.groups_of(&t, "u1").await.unwrap(), ["g2"]);
    assert!(s.members(&t, "g1", None, 10).await.unwrap().is_empty());
    assert!(!s.is_member(&t, "g1", "u1").await.unwrap());
    let g2 = s.get(&t, Kind::Group, "g2").await.unwrap().unwrap();
    assert_eq!((g2.version, g2.member_count), (3, 1));
    assert_eq!(member_ids(s, &t, "g2").await, ["u1"]);
    assert_eq!(s.count(&t, Kind::Group).await.unwrap(), 1);

    // A re-created group with the same id starts empty.
    s.create(&t, &group("g1"), &[], &[]).await.unwrap();
    assert!(s.members(&t, "g1", None, 10).await.unwrap().is_empty());
}

pub(crate) async fn tenants_are_isolated(s: &dyn Store) {
    let (a, b) = (tenant("a"), tenant("b"));
    add_user(s, &a, "u1").await;
    s.create(&a, &group("g"), &[], &[member("u1")])
        .await
        .unwrap();

    // The same id and key in another tenant do not collide...
    let other = resource(Kind::User, "u1", "u1");
    s.create(&b, &other, &[name_key(&other)], &[])
        .await
        .unwrap();
    // ...and a member must exist in the group's own tenant.
    add_user(s, &a, "only-a").await;
    let err = s
        .create(&b, &group("g"), &[], &[member("only-a")])
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::MemberNotFound("only-a".into()));
    s.create(&b, &group("g"), &[], &[]).await.unwrap();

    assert_eq!(s.count(&a, Kind::User).await.unwrap(), 2);
    assert_eq!(s.count(&b, Kind::User).await.unwrap(), 1);
    assert_eq!(s.get(&b, Kind::User, "only-a").await.unwrap(), None);
    assert!(s.get_many(&b, &["only-a".into()]).await.unwrap().is_empty());
    let k = key("userName", "only-a");
    assert_eq!(s.find_by_key(&b, Kind::User, &k).await.unwrap(), None);
    assert_eq!(
        ids(&s.list(&b, Kind::User, None, 10).await.unwrap()),
        ["u1"]
    );
    assert!(s.members(&b, "g", None, 10).await.unwrap().is_empty());
    assert!(!s.is_member(&b, "g", "u1").await.unwrap());
    assert!(s.groups_of(&b, "u1").await.unwrap().is_empty());

    // Deleting in one tenant leaves the other alone.
    s.delete(&b, Kind::User, "u1", None).await.unwrap();
    assert!(s.get(&a, Kind::User, "u1").await.unwrap().is_some());
    assert_eq!(s.groups_of(&a, "u1").await.unwrap(), ["g"]);
    let g = s.get(&a, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (1, 1));
}

pub(crate) async fn list_pages_in_id_order(s: &dyn Store) {
    let t = tenant("t1");
    for id in ["d", "b", "e", "a", "c"] {
        add_user(s, &t, id).await;
    }
    // Neighbours in key order that must not show up.
    s.create(&t, &group("aa"), &[], &[]).await.unwrap();
    add_user(s, &tenant("t0"), "z").await;
    add_user(s, &tenant("t2"), "0").await;
    add_user(s, &tenant("t1-x"), "0").await;

    let all = s.list(&t, Kind::User, None, 100).await.unwrap();
    assert_eq!(ids(&all), ["a", "b", "c", "d", "e"]);
    let page = s.list(&t, Kind::User, None, 2).await.unwrap();
    assert_eq!(ids(&page), ["a", "b"]);
    let page = s.list(&t, Kind::User, Some("b"), 2).await.unwrap();
    assert_eq!(ids(&page), ["c", "d"]);
    // `after` need not be an existing id...
    let page = s.list(&t, Kind::User, Some("cc"), 10).await.unwrap();
    assert_eq!(ids(&page), ["d", "e"]);
    assert!(
        s.list(&t, Kind::User, Some("e"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.list(&t, Kind::User, None, 0).await.unwrap().is_empty());
    // ...even one too long to be a DynamoDB key.
    let long = format!("c{}", "z".repeat(3000));
    let page = s.list(&t, Kind::User, Some(&long), 10).await.unwrap();
    assert_eq!(ids(&page), ["d", "e"]);
    assert!(
        s.members(&t, "g", Some(&long), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let page = s.list_at(&t, Kind::User, 0, 2).await.unwrap();
    assert_eq!(ids(&page), ["a", "b"]);
    let page = s.list_at(&t, Kind::User, 3, 10).await.unwrap();
    assert_eq!(ids(&page), ["d", "e"]);
    assert!(s.list_at(&t, Kind::User, 5, 10).await.unwrap().is_empty());
    assert!(s.list_at(&t, Kind::User, 1, 0).await.unwrap().is_empty());
    let groups = s.list_at(&t, Kind::Group, 0, 10).await.unwrap();
    assert_eq!(ids(&groups), ["aa"]);
}

/// `list_at` stays exact through creates and deletes, failed ones
/// included (a taken `userName`, a taken id, a missing id, a stale
/// version), whatever the offset.
pub(crate) async fn list_at_follows_creates_and_deletes(s: &dyn Store) {
    let t = tenant("t1");
    let mut want: Vec<String> = Vec::new();
    for i in [7, 3, 11, 0, 5, 9, 1, 13, 2, 8] {
        let id = format!("u{i:02}");
        add_user(s, &t, &id).await;
        want.push(id);
    }
    s.create(&t, &group("g"), &[], &[]).await.unwrap();
    add_user(s, &tenant("t2"), "u04").await;
    // Nothing changes on these.
    let taken = s
        .create(&t, &user("u04"), &[key("userName", "u07")], &[])
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict { .. })));
    let id_taken = s.create(&t, &user("g"), &[], &[]).await;
    assert!(matches!(id_taken, Err(StoreError::Conflict { .. })));
    let missing = s.delete(&t, Kind::User, "u04", None).await;
    assert_eq!(missing, Err(StoreError::NotFound));
    let wrong_kind = s.delete(&t, Kind::Group, "u03", None).await;
    assert_eq!(wrong_kind, Err(StoreError::NotFound));
    let stale = s.delete(&t, Kind::User, "u03", Some(2)).await;
    assert_eq!(stale, Err(StoreError::VersionMismatch));
    for id in ["u00", "u09", "u13"] {
        s.delete(&t, Kind::User, id, None).await.unwrap();
        want.retain(|w| w != id);
    }
    add_user(s, &t, "u06").await;
    want.push("u06".into());
    want.sort();
    for offset in 0..=want.len() + 1 {
        for limit in [1, 3] {
            let page = s
                .list_at(&t, Kind::User, offset as u64, limit)
                .await
                .unwrap();
            let expected: Vec<&str> = want
                .iter()
                .skip(offset)
                .take(limit)
                .map(String::as_str)
                .collect();
            assert_eq!(ids(&page), expected, "offset {offset}, limit {limit}");
        }
    }
    assert_eq!(s.count(&t, Kind::User).await.unwrap(), want.len() as u64);
    let groups = s.list_at(&t, Kind::Group, 0, 10).await.unwrap();
    assert_eq!(ids(&groups), ["g"]);
}

pub(crate) async fn groups_of_many_answers_in_the_order_given(s: &dyn Store) {
    let t = tenant("t1");
    // More members than DynamoDB is asked about at once.
    let users: Vec<String> = (0..20).map(|i| format!("u{i:02}")).collect();
    for id in &users {
        add_user(s, &t, id).await;
    }
    s.create(&t, &group("g1"), &[], &[member("u01"), member("u02")])
        .await
        .unwrap();
    s.create(&t, &group("g2"), &[], &[member("u19"), member("u01")])
        .await
        .unwrap();
    s.create(&t, &group("g0"), &[], &[member("u19")])
        .await
        .unwrap();
    // A nested group has groups too.
    s.update_members(&t, "g2", &add_group("g1"), None, "2025-01-01T00:00:00Z")
        .await
        .unwrap();

    let mut asked: Vec<String> = users.iter().rev().cloned().collect();
    asked.extend(["ghost".into(), "g1".into(), "u01".into()]);
    let got = s.groups_of_many(&t, &asked).await.unwrap();
    assert_eq!(got.len(), asked.len());
    for (id, groups) in asked.iter().zip(&got) {
        assert_eq!(groups, &s.groups_of(&t, id).await.unwrap(), "{id}");
    }
    let sorted = |i: usize| {
        let mut v = got[i].clone();
        v.sort();
        v
    };
    assert_eq!(sorted(0), ["g0", "g2"]); // u19
    assert_eq!(sorted(17), ["g1"]); // u02
    assert_eq!(sorted(18), ["g1", "g2"]); // u01
    assert!(got[19].is_empty()); // u00
    assert!(got[20].is_empty()); // ghost
    assert_eq!(sorted(21), ["g2"]); // g1
    assert_eq!(sorted(22), ["g1", "g2"]); // u01 again

    assert!(s.groups_of_many(&t, &[]).await.unwrap().is_empty());
    // Another tenant's memberships are not seen.
    let elsewhere = s.groups_of_many(&tenant("t2"), &["u01".into()]).await;
    assert_eq!(elsewhere.unwrap(), [Vec::<String>::new()]);
}

pub(crate) fn tenant_record(id: &str) -> TenantRecord {
    TenantRecord {
        id: tenant(id),
        name: format!("Tenant {id}"),
        admin_email: format!("it@{id}.example"),
        created: "2024-01-01T00:00:00Z".into(),
        last_modified: "2024-01-01T00:00:00Z".into(),
        version: 1,
        credential: None,
    }
}

pub(crate) async fn tenant_records_are_versioned(s: &dyn Store) {
    let t = tenant("acme");
    assert_eq!(s.get_tenant(&t).await.unwrap(), None);
    let mut rec = tenant_record("acme");
    s.put_tenant(&rec, None).await.unwrap();
    // A second create of the same id is a conflict and writes nothing.
    let mut dup = rec.clone();
    dup.name = "Impostor".into();
    assert!(matches!(
        s.put_tenant(&dup, None).await,
        Err(StoreError::Conflict { attr: "id", .. })
    ));
    rec.version = 2;
    rec.credential = Some(CredentialRecord {
        generation: 1,
        material: "m1".into(),
        created_at: "2024-01-02T00:00:00Z".into(),
        revealed_at: None,
        reveal_expires_at: None,
        reveal_ref: None,
    });
    s.put_tenant(&rec, Some(1)).await.unwrap();
    // A writer that read version 1 loses.
    let mut stale = rec.clone();
    stale.name = "Stale".into();
    assert_eq!(
        s.put_tenant(&stale, Some(1)).await,
        Err(StoreError::VersionMismatch)
    );
    assert_eq!(s.get_tenant(&t).await.unwrap(), Some(rec.clone()));
    assert_eq!(
        s.put_tenant(&tenant_record("ghost"), Some(1)).await,
        Err(StoreError::VersionMismatch)
    );
    assert_eq!(s.get_tenant(&tenant("other")).await.unwrap(), None);

    for id in ["b", "a", "c"] {
        s.put_tenant(&tenant_record(id), None).await.unwrap();
    }
    let ids = |v: Vec<TenantRecord>| v.into_iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(s.list_tenants(None, 2).await.unwrap()), ["a", "acme"]);
    assert_eq!(
        ids(s.list_tenants(Some("acme"), 10).await.unwrap()),
        ["b", "c"]
    );
    assert_eq!(s.list_tenants(Some("c"), 10).await.unwrap(), []);
}

pub(crate) async fn reveal_records_are_taken_once(s: &dyn Store) {
    let t = tenant("acme");
    let rec = |hash: &str, expires_at: i64| RevealRecord {
        tenant: t.clone(),
        ref_hash: hash.into(),
        generation: 1,
        tenant_url: "http://x/scim/v2/acme".into(),
        sealed: "c2VhbGVk".into(),
        expires_at,
    };
    // Stores may sweep records that expired by the wall clock.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    s.put_reveal(&rec("h1", now + 60)).await.unwrap();
    s.put_reveal(&rec("h2", now - 1)).await.unwrap();
    s.put_reveal(&rec("h3", now + 60)).await.unwrap();
    // Reading consumes nothing.
    assert_eq!(
        s.get_reveal(&t, "h1", now).await.unwrap(),
        Some(rec("h1", now + 60))
    );
    assert_eq!(
        s.get_reveal(&t, "h1", now).await.unwrap(),
        Some(rec("h1", now + 60))
    );
    // Expired and unknown links look alike.
    assert_eq!(s.get_reveal(&t, "h2", now).await.unwrap(), None);
    assert_eq!(s.take_reveal(&t, "h2", now).await.unwrap(), None);
    assert_eq!(s.get_reveal(&t, "nope", now).await.unwrap(), None);
    // Another tenant cannot name it.
    assert_eq!(
        s.take_reveal(&tenant("other"), "h1", now).await.unwrap(),
        None
    );
    // Of concurrent takers exactly one wins.
    let takers = (0..8).map(|_| s.take_reveal(&t, "h1", now));
    let won: Vec<_> = futures::future::join_all(takers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .filter(Option::is_some)
        .collect();
    assert_eq!(won, [Some(rec("h1", now + 60))]);
    assert_eq!(s.get_reveal(&t, "h1", now).await.unwrap(), None);
    s.delete_reveal(&t, "h3").await.unwrap();
    s.delete_reveal(&t, "h3").await.unwrap();
    assert_eq!(s.take_reveal(&t, "h3", now).await.unwrap(), None);
}

pub(crate) async fn concurrent_writers_do_not_lose_updates(s: &dyn Store) {
    let t = tenant("t1");
    s.create(&t, &group("g"), &[], &[]).await.unwrap();
    let writers = (0..16).map(|i| {
        let t = &t;
        async move {
            let u = user(&format!("u{i:02}"));
            s.create(t, &u, &[name_key(&u)], &[]).await?;
            let delta = add(&[u.id.as_str()]);
            s.update_members(t, "g", &delta, None, "2025-01-01T00:00:00Z")
                .await
        }
    });
    for written in futures::future::join_all(writers).await {
        written.unwrap();
    }
    assert_eq!(s.count(&t, Kind::User).await.unwrap(), 16);
    assert_eq!(s.list(&t, Kind::User, None, 100).await.unwrap().len(), 16);
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (17, 16));
    assert_eq!(member_ids(s, &t, "g").await.len(), 16);
}
