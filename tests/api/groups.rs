//! /Groups: members (users and nested groups), uniqueness of displayName,
//! member projection as Entra ID uses it, referential cleanup on delete,
//! and PUT semantics for `members`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// Group ids listed in a user's `groups`.
fn group_ids(doc: &Value) -> Vec<String> {
    let mut ids: Vec<String> = doc["groups"]
        .as_array()
        .map(|gs| {
            gs.iter()
                .map(|g| {
                    g["value"]
                        .as_str()
                        .map_or_else(|| format!("<group without value: {g}>"), str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

async fn group_count(s: &TestServer) -> u64 {
    s.get("/Groups").await.expect(200).total()
}

async fn tick() {
    tokio::time::sleep(Duration::from_millis(30)).await;
}

#[tokio::test]
async fn create_group_answers_201_with_location_etag_and_meta() {
    let s = TestServer::start().await;
    let r = s.post("/Groups", group("Empty", &[])).await.expect(201);
    let id = r.id();
    assert_eq!(r.body["schemas"], json!([GROUP_URN]));
    assert_eq!(r.body["displayName"], json!("Empty"));
    assert_eq!(r.body["meta"]["resourceType"], json!("Group"));
    let loc = s.url(&format!("/Groups/{id}"));
    assert_eq!(r.body["meta"]["location"], json!(loc));
    assert_eq!(r.header("location"), Some(loc));
    let etag = r.etag();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(r.body["meta"]["version"], json!(etag));
    assert!(r.body.get("members").is_none_or(|m| m == &json!([])));
}

#[tokio::test]
async fn create_group_with_users_and_a_nested_group_lists_members_with_ref_and_type() {
    let s = TestServer::start().await;
    let u1 = s.create_user("u1@example.com").await;
    let u2 = s.create_user("u2@example.com").await;
    let inner = s.create_group("Inner", &[&u2]).await;
    let r = s
        .post(
            "/Groups",
            json!({
                "schemas": [GROUP_URN],
                "displayName": "Outer",
                "members": [
                    {"value": u1},
                    {"value": u2, "type": "User"},
                    {"value": inner, "type": "Group"},
                ],
            }),
        )
        .await
        .expect(201);
    let gid = r.id();
    let got = s.get(&format!("/Groups/{gid}")).await.expect(200);
    for doc in [&r.body, &got.body] {
        assert_eq!(member_ids(doc), sorted(&[&u1, &u2, &inner]), "{doc}");
        let members = doc["members"].as_array().expect("members");
        for m in members {
            let id = m["value"].as_str().expect("value");
            let (ty, ep) = if id == inner {
                ("Group", "Groups")
            } else {
                ("User", "Users")
            };
            assert_eq!(m["type"], json!(ty), "{m}");
            assert_eq!(m["$ref"], json!(s.url(&format!("/{ep}/{id}"))), "{m}");
        }
    }
    // The nesting shows from the other side too.
    let u1doc = s.get(&format!("/Users/{u1}")).await.expect(200);
    assert_eq!(group_ids(&u1doc.body), vec![gid.clone()]);
}

#[tokio::test]
async fn member_ids_given_twice_are_listed_once() {
    let s = TestServer::start().await;
    let u = s.create_user("twice@example.com").await;
    let r = s
        .post("/Groups", group("Twice", &[&u, &u]))
        .await
        .expect(201);
    assert_eq!(member_ids(&r.body), vec![u]);
}

#[tokio::test]
async fn member_that_does_not_exist_is_400_invalid_value_and_no_group_is_created() {
    let s = TestServer::start().await;
    let u = s.create_user("real@example.com").await;
    s.post(
        "/Groups",
        group("Ghosts", &[&u, "00000000-0000-0000-0000-000000000000"]),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    assert_eq!(group_count(&s).await, 0);
    let found = s
        .get(&format!(
            "/Groups?filter={}",
            enc("displayName eq \"Ghosts\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.total(), 0);
    // The name is not reserved by the failed attempt.
    s.post("/Groups", group("Ghosts", &[&u])).await.expect(201);
    let udoc = s.get(&format!("/Users/{u}")).await.expect(200);
    assert_eq!(udoc.body["groups"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn member_with_a_wrong_type_is_rejected() {
    let s = TestServer::start().await;
    let u = s.create_user("typed@example.com").await;
    s.post(
        "/Groups",
        json!({"schemas": [GROUP_URN], "displayName": "Typed",
               "members": [{"value": u, "type": "Group"}]}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    assert_eq!(group_count(&s).await, 0);
}

#[tokio::test]
async fn member_of_another_tenant_is_rejected() {
    let s = TestServer::start().await;
    let foreign = s
        .call_with(
            reqwest::Method::POST,
            &format!("{}/scim/v2/{OTHER_TENANT}/Users", s.origin),
            &s.other_token,
            Some(user("foreign@example.com")),
            &[],
        )
        .await
        .expect(201)
        .id();
    s.post("/Groups", group("Mixed", &[&foreign]))
        .await
        .expect_error(400, Some("invalidValue"));
    assert_eq!(group_count(&s).await, 0);
}

#[tokio::test]
async fn missing_display_name_is_400_invalid_value() {
    let s = TestServer::start().await;
    s.post("/Groups", json!({"schemas": [GROUP_URN], "members": []}))
        .await
        .expect_error(400, Some("invalidValue"));
    s.post("/Groups", json!({"displayName": "NoSchemas"}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    s.post(
        "/Groups",
        json!({"schemas": [GROUP_URN], "displayName": "X", "owner": "me"}),
    )
    .await
    .expect_error(400, Some("invalidSyntax"));
    assert_eq!(group_count(&s).await, 0);
}

#[tokio::test]
async fn display_name_is_unique_case_insensitively() {
    let s = TestServer::start().await;
    s.create_group("Sales", &[]).await;
    s.post("/Groups", group("SALES", &[]))
        .await
        .expect_error(409, Some("uniqueness"));
    s.post("/Groups", group("sales", &[]))
        .await
        .expect_error(409, Some("uniqueness"));
    assert_eq!(group_count(&s).await, 1);
    // PUT/PATCH onto a taken name are conflicts too.
    let other = s.create_group("Marketing", &[]).await;
    s.put(&format!("/Groups/{other}"), group("sAlEs", &[]))
        .await
        .expect_error(409, Some("uniqueness"));
    s.patch(
        &format!("/Groups/{other}"),
        patch_op(json!([{"op": "replace", "path": "displayName", "value": "Sales"}])),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    let got = s.get(&format!("/Groups/{other}")).await.expect(200);
    assert_eq!(got.body["displayName"], json!("Marketing"));
}

#[tokio::test]
async fn a_group_may_change_the_letter_case_of_its_own_name() {
    let s = TestServer::start().await;
    let gid = s.create_group("devops", &[]).await;
    let r = s
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([{"op": "replace", "path": "displayName", "value": "DevOps"}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["displayName"], json!("DevOps"));
    let r = s
        .put(&format!("/Groups/{gid}"), group("DEVOPS", &[]))
        .await
        .expect(200);
    assert_eq!(r.body["displayName"], json!("DEVOPS"));
}

#[tokio::test]
async fn get_unknown_group_is_404() {
    let s = TestServer::start().await;
    s.get("/Groups/00000000-0000-0000-0000-000000000000")
        .await
        .expect_error(404, None);
    // A user id is not a group id.
    let u = s.create_user("notagroup@example.com").await;
    s.get(&format!("/Groups/{u}")).await.expect_error(404, None);
}

#[tokio::test]
async fn get_group_with_excluded_members_has_no_members_key() {
    let s = TestServer::start().await;
    let u = s.create_user("x@example.com").await;
    let gid = s.create_group("Hidden", &[&u]).await;
    let r = s
        .get(&format!("/Groups/{gid}?excludedAttributes=members"))
        .await
        .expect(200);
    assert!(r.body.get("members").is_none(), "{}", r.body);
    assert_eq!(r.body["displayName"], json!("Hidden"));
    assert_eq!(r.body["id"], json!(gid));
    assert_eq!(r.body["schemas"], json!([GROUP_URN]));
    assert!(r.body["meta"]["version"].is_string());

    let r = s
        .get(&format!("/Groups/{gid}?attributes=displayName"))
        .await
        .expect(200);
    assert!(r.body.get("members").is_none(), "{}", r.body);

    let r = s
        .get(&format!("/Groups/{gid}?attributes=members.value"))
        .await
        .expect(200);
    assert_eq!(r.body["members"], json!([{"value": u}]), "{}", r.body);
}

#[tokio::test]
async fn entra_lookup_by_display_name_with_excluded_members() {
    let s = TestServer::start().await;
    let u = s.create_user("e@example.com").await;
    let gid = s.create_group("Entra Group", &[&u]).await;
    s.create_group("Other", &[&u]).await;
    let r = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            enc("displayName eq \"entra group\"")
        ))
        .await
        .expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_URN]));
    assert_eq!(r.total(), 1);
    let res = r.resources();
    assert_eq!(res.len(), 1);
    assert_eq!(res[0]["id"], json!(gid));
    assert_eq!(res[0]["displayName"], json!("Entra Group"));
    assert!(res[0].get("members").is_none(), "{}", res[0]);

    let none = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            enc("displayName eq \"nope\"")
        ))
        .await
        .expect(200);
    assert_eq!(none.total(), 0);
    assert!(none.resources().is_empty());
}

#[tokio::test]
async fn deleting_a_user_removes_it_from_its_groups_and_changes_the_group_version() {
    let s = TestServer::start().await;
    let u1 = s.create_user("gone@example.com").await;
    let u2 = s.create_user("stays@example.com").await;
    let created = s
        .post("/Groups", group("Team", &[&u1, &u2]))
        .await
        .expect(201);
    let gid = created.id();
    let before = s.get(&format!("/Groups/{gid}")).await.expect(200);
    tick().await;

    s.delete(&format!("/Users/{u1}")).await.expect(204);

    let after = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(member_ids(&after.body), vec![u2.clone()], "{}", after.body);
    assert_ne!(after.etag(), before.etag());
    assert_ne!(
        after.body["meta"]["version"],
        before.body["meta"]["version"]
    );
    assert_eq!(after.body["meta"]["version"], json!(after.etag()));
    // A client caching the old ETag sees the change.
    let r = s
        .call_with(
            reqwest::Method::GET,
            &s.url(&format!("/Groups/{gid}")),
            &s.token,
            None,
            &[("if-none-match", &before.etag())],
        )
        .await;
    assert_eq!(r.status, 200);

    // Filtering on the member finds nothing any more.
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(&format!("members.value eq \"{u1}\""))
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 0);
}

#[tokio::test]
async fn deleting_a_group_removes_it_from_users_groups() {
    let s = TestServer::start().await;
    let u = s.create_user("u@example.com").await;
    let keep = s.create_group("Keep", &[&u]).await;
    let drop = s.create_group("Drop", &[&u]).await;
    let before = s.get(&format!("/Users/{u}")).await.expect(200);
    assert_eq!(group_ids(&before.body), sorted(&[&keep, &drop]));

    s.delete(&format!("/Groups/{drop}")).await.expect(204);
    s.get(&format!("/Groups/{drop}"))
        .await
        .expect_error(404, None);
    s.delete(&format!("/Groups/{drop}"))
        .await
        .expect_error(404, None);

    let after = s.get(&format!("/Users/{u}")).await.expect(200);
    assert_eq!(group_ids(&after.body), vec![keep.clone()], "{}", after.body);
    // The user itself still exists; the name of the deleted group is free.
    s.post("/Groups", group("drop", &[&u])).await.expect(201);
}

#[tokio::test]
async fn deleting_a_nested_group_removes_it_from_its_parent() {
    let s = TestServer::start().await;
    let child = s.create_group("Child", &[]).await;
    let parent = s.create_group("Parent", &[&child]).await;
    let before = s.get(&format!("/Groups/{parent}")).await.expect(200);
    s.delete(&format!("/Groups/{child}")).await.expect(204);
    let after = s.get(&format!("/Groups/{parent}")).await.expect(200);
    assert!(member_ids(&after.body).is_empty(), "{}", after.body);
    assert_ne!(after.etag(), before.etag());
}

#[tokio::test]
async fn put_with_members_replaces_them() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let c = s.create_user("c@example.com").await;
    let created = s
        .post("/Groups", group("Swap", &[&a, &b]))
        .await
        .expect(201);
    let gid = created.id();
    tick().await;
    let r = s
        .put(&format!("/Groups/{gid}"), group("Swapped", &[&b, &c]))
        .await
        .expect(200);
    assert_eq!(r.body["displayName"], json!("Swapped"));
    assert_eq!(member_ids(&r.body), sorted(&[&b, &c]), "{}", r.body);
    assert_ne!(r.etag(), created.etag());
    assert_eq!(r.body["meta"]["created"], created.body["meta"]["created"]);
    let got = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(member_ids(&got.body), sorted(&[&b, &c]));
    let adoc = s.get(&format!("/Users/{a}")).await.expect(200);
    assert!(group_ids(&adoc.body).is_empty(), "{}", adoc.body);

    // An empty list empties the group.
    let r = s
        .put(&format!("/Groups/{gid}"), group("Swapped", &[]))
        .await
        .expect(200);
    assert!(member_ids(&r.body).is_empty(), "{}", r.body);
    let got = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert!(member_ids(&got.body).is_empty(), "{}", got.body);
}

#[tokio::test]
async fn put_without_members_leaves_them_unchanged() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let gid = s.create_group("Stable", &[&a]).await;
    let r = s
        .put(
            &format!("/Groups/{gid}"),
            json!({"schemas": [GROUP_URN], "displayName": "Stable renamed"}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["displayName"], json!("Stable renamed"));
    assert_eq!(member_ids(&r.body), vec![a.clone()], "{}", r.body);
    let got = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(member_ids(&got.body), vec![a.clone()]);
    let udoc = s.get(&format!("/Users/{a}")).await.expect(200);
    assert_eq!(udoc.body["groups"][0]["display"], json!("Stable renamed"));
}

#[tokio::test]
async fn put_with_an_unknown_member_is_400_and_changes_nothing() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let created = s.post("/Groups", group("Careful", &[&a])).await.expect(201);
    let gid = created.id();
    s.put(
        &format!("/Groups/{gid}"),
        group("Careless", &["00000000-0000-0000-0000-000000000000"]),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    let got = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(got.body["displayName"], json!("Careful"));
    assert_eq!(member_ids(&got.body), vec![a]);
    assert_eq!(got.etag(), created.etag());
}

#[tokio::test]
async fn put_cannot_make_a_group_a_member_of_itself() {
    let s = TestServer::start().await;
    let created = s.post("/Groups", group("Narcissus", &[])).await.expect(201);
    let gid = created.id();
    s.put(&format!("/Groups/{gid}"), group("Narcissus", &[&gid]))
        .await
        .expect_error(400, Some("invalidValue"));
    let got = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert!(member_ids(&got.body).is_empty(), "{}", got.body);
    assert_eq!(got.etag(), created.etag());
}

#[tokio::test]
async fn patch_cannot_make_a_group_a_member_of_itself() {
    let s = TestServer::start().await;
    let created = s.post("/Groups", group("Echo", &[])).await.expect(201);
    let gid = created.id();
    s.patch(
        &format!("/Groups/{gid}"),
        patch_op(json!([{"op": "add", "path": "members", "value": [{"value": gid}]}])),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    s.patch(
        &format!("/Groups/{gid}"),
        patch_op(json!([{"op": "replace", "path": "members", "value": [{"value": gid}]}])),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    let got = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert!(member_ids(&got.body).is_empty(), "{}", got.body);
    assert_eq!(got.etag(), created.etag());
}

#[tokio::test]
async fn list_groups_shows_members_unless_excluded() {
    let s = TestServer::start().await;
    let u = s.create_user("l@example.com").await;
    let gid = s.create_group("Listed", &[&u]).await;
    let r = s.get("/Groups").await.expect(200);
    assert_eq!(r.total(), 1);
    assert_eq!(r.resources()[0]["id"], json!(gid));
    assert_eq!(member_ids(&r.resources()[0]), vec![u]);
    let r = s
        .get("/Groups?excludedAttributes=members")
        .await
        .expect(200);
    assert!(r.resources()[0].get("members").is_none());
}

#[tokio::test]
async fn excluded_members_applies_to_post_and_put_answers() {
    let s = TestServer::start().await;
    let u = s.create_user("pp@example.com").await;
    let r = s
        .post("/Groups?excludedAttributes=members", group("Quiet", &[&u]))
        .await
        .expect(201);
    assert!(r.body.get("members").is_none(), "{}", r.body);
    let gid = r.id();
    let r = s
        .put(
            &format!("/Groups/{gid}?excludedAttributes=members"),
            group("Quiet", &[&u]),
        )
        .await
        .expect(200);
    assert!(r.body.get("members").is_none(), "{}", r.body);
    assert_eq!(r.body["displayName"], json!("Quiet"));
    let got = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(member_ids(&got.body), vec![u]);
}

#[tokio::test]
async fn delete_group_with_stale_if_match_is_412_and_keeps_it() {
    let s = TestServer::start().await;
    let created = s.post("/Groups", group("Guarded", &[])).await.expect(201);
    let gid = created.id();
    s.patch(
        &format!("/Groups/{gid}"),
        patch_op(json!([{"op": "replace", "path": "displayName", "value": "Guarded 2"}])),
    )
    .await
    .expect(200);
    s.call_with(
        reqwest::Method::DELETE,
        &s.url(&format!("/Groups/{gid}")),
        &s.token,
        None,
        &[("if-match", &created.etag())],
    )
    .await
    .expect_error(412, None);
    s.get(&format!("/Groups/{gid}")).await.expect(200);
}
