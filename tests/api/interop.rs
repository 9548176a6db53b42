//! What real IdPs and the RFCs send that needs care: Entra's group schema,
//! strict content types, ETags that follow a user's `groups`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// Entra ID's documented `POST /Groups` body (provisioning docs, "Create
/// Group"): its ADSCIM Group schema is listed, with nothing under it.
fn entra_group(name: &str) -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:Group",
            "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
        ],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": name,
        "meta": {"resourceType": "Group"}
    })
}

#[tokio::test]
async fn entra_group_create_with_its_adscim_schema_is_201() {
    let s = TestServer::start().await;
    let r = s
        .post("/Groups", entra_group("Group1DisplayName"))
        .await
        .expect(201);
    assert_eq!(r.body["displayName"], "Group1DisplayName");
    assert_eq!(r.body["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
    // Accepted, not stored: the group shows only the schemas it has.
    let got = s.get(&format!("/Groups/{}", r.id())).await.expect(200);
    assert_eq!(got.body["schemas"], json!([GROUP_URN]));
    // Entra's follow-up lookup finds it.
    let found = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            enc("displayName eq \"Group1DisplayName\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.total(), 1);
    // PUT with the same schemas list works too.
    let mut put = entra_group("Group1DisplayName");
    put["members"] = json!([]);
    s.put(&format!("/Groups/{}", r.id()), put).await.expect(200);
}

#[tokio::test]
async fn attributes_under_an_unknown_schema_are_400_naming_it() {
    let s = TestServer::start().await;
    let urn = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";
    let mut body = entra_group("Has Extension Attributes");
    body[urn] = json!({"description": "kept nowhere"});
    let r = s
        .post("/Groups", body)
        .await
        .expect_error(400, Some("invalidValue"));
    assert!(
        r.body["detail"].as_str().unwrap().contains(urn),
        "{}",
        r.body
    );
    let mut body = entra_group("Has Extension Attributes");
    body[format!("{urn}:description")] = json!("kept nowhere");
    s.post("/Groups", body)
        .await
        .expect_error(400, Some("invalidValue"));
    assert_eq!(s.get("/Groups?count=0").await.expect(200).total(), 0);
}

/// A body sent with `content_type` (none when `None`).
async fn send(
    s: &TestServer,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Resp {
    let mut req = s
        .client
        .request(method, s.url(path))
        .bearer_auth(&s.token)
        .body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    Resp::read(req.send().await.expect("request")).await
}

#[tokio::test]
async fn json_bodies_are_accepted_with_any_parameters_or_no_content_type() {
    let s = TestServer::start().await;
    for (i, ct) in [
        Some("application/scim+json"),
        Some("application/scim+json; charset=utf-8"),
        Some("application/json"),
        Some("Application/JSON;charset=UTF-8"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let body = user(&format!("ct{i}@example.com")).to_string();
        send(&s, Method::POST, "/Users", ct, &body)
            .await
            .expect(201);
    }
    assert_eq!(s.get("/Users?count=0").await.expect(200).total(), 5);
}

#[tokio::test]
async fn other_content_types_are_415_and_write_nothing() {
    let s = TestServer::start().await;
    let id = s.create_user("kept@example.com").await;
    let before = s.get(&format!("/Users/{id}")).await.expect(200);
    let patch = patch_op(json!([{"op": "replace", "path": "displayName", "value": "Changed"}]));
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "text/xml",
        "multipart/form-data; boundary=x",
        "application/scim+xml",
        "not a media type",
    ] {
        let body = user("refused@example.com").to_string();
        for (method, path, body) in [
            (Method::POST, "/Users".to_owned(), body.clone()),
            (Method::PUT, format!("/Users/{id}"), body.clone()),
            (Method::PATCH, format!("/Users/{id}"), patch.to_string()),
            (
                Method::POST,
                "/Groups".to_owned(),
                group("Refused", &[]).to_string(),
            ),
            (Method::POST, "/Users/.search".to_owned(), "{}".to_owned()),
        ] {
            let r = send(&s, method.clone(), &path, Some(ct), &body)
                .await
                .expect_error(415, None);
            let detail = r.body["detail"].as_str().unwrap();
            assert!(
                detail.contains("application/scim+json") && detail.contains("application/json"),
                "{method} {path} as {ct}: {detail}"
            );
        }
    }
    assert_eq!(s.get("/Users?count=0").await.expect(200).total(), 1);
    assert_eq!(s.get("/Groups?count=0").await.expect(200).total(), 0);
    let after = s.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(after.body, before.body);
}

async fn get_if_none_match(s: &TestServer, path: &str, etag: &str) -> Resp {
    s.call_with(
        Method::GET,
        &s.url(path),
        &s.token,
        None,
        &[("If-None-Match", etag)],
    )
    .await
}

#[tokio::test]
async fn a_users_etag_changes_when_it_joins_leaves_or_its_group_is_renamed() {
    let s = TestServer::start().await;
    let uid = s.create_user("etag-groups@example.com").await;
    let path = format!("/Users/{uid}");
    let v0 = s.get(&path).await.expect(200).etag();
    get_if_none_match(&s, &path, &v0).await.expect(304);

    // Joins a group: the user item is not written, its representation is.
    let gid = s.create_group("Etag Group", &[]).await;
    s.patch(
        &format!("/Groups/{gid}"),
        patch_op(json!([{"op": "add", "path": "members", "value": [{"value": uid}]}])),
    )
    .await
    .expect(200);
    let r = get_if_none_match(&s, &path, &v0).await.expect(200);
    let v1 = r.etag();
    assert_ne!(v1, v0);
    assert_eq!(r.body["meta"]["version"], v1.as_str());
    assert_eq!(r.body["groups"][0]["value"], gid.as_str());
    get_if_none_match(&s, &path, &v1).await.expect(304);
    // The same tag in list pages and with groups left out of the answer.
    let listed = s
        .get(&format!(
            "/Users?filter={}",
            enc(&format!("id eq \"{uid}\""))
        ))
        .await
        .expect(200);
    assert_eq!(listed.resources()[0]["meta"]["version"], v1.as_str());
    // A filter on the tag compares the tag the user has, groups included.
    for (tag, found) in [(&v1, 1), (&v0, 0)] {
        let by_tag = enc(&format!("meta.version eq {}", json!(tag)));
        let r = s.get(&format!("/Users?filter={by_tag}")).await.expect(200);
        assert_eq!(r.total(), found, "meta.version eq {tag}: {}", r.body);
    }
    let slim = s
        .get(&format!("{path}?excludedAttributes=groups"))
        .await
        .expect(200);
    assert_eq!(slim.etag(), v1);
    assert_eq!(slim.body["meta"]["version"], v1.as_str());

    // Its group is renamed: `groups[].display` changes, so does the tag.
    s.patch(
        &format!("/Groups/{gid}"),
        patch_op(json!([{"op": "replace", "path": "displayName", "value": "Renamed"}])),
    )
    .await
    .expect(200);
    let r = get_if_none_match(&s, &path, &v1).await.expect(200);
    let v2 = r.etag();
    assert_ne!(v2, v1);
    assert_eq!(r.body["groups"][0]["display"], "Renamed");

    // If-Match works against the new tag, and refuses the old ones.
    let rename = patch_op(json!([{"op": "replace", "path": "displayName", "value": "Etag"}]));
    for stale in [&v0, &v1] {
        s.call_with(
            Method::PATCH,
            &s.url(&path),
            &s.token,
            Some(rename.clone()),
            &[("If-Match", stale)],
        )
        .await
        .expect_error(412, None);
    }
    let r = s
        .call_with(
            Method::PATCH,
            &s.url(&path),
            &s.token,
            Some(rename),
            &[("If-Match", &v2)],
        )
        .await
        .expect(200);
    let v3 = r.etag();
    assert_ne!(v3, v2);

    // Leaves the group: the tag changes again, and If-Match on DELETE follows.
    s.patch(
        &format!("/Groups/{gid}"),
        patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}])),
    )
    .await
    .expect(200);
    let r = get_if_none_match(&s, &path, &v3).await.expect(200);
    assert!(r.body.get("groups").is_none(), "{}", r.body);
    let v4 = r.etag();
    assert_ne!(v4, v3);
    s.call_with(
        Method::DELETE,
        &s.url(&path),
        &s.token,
        None,
        &[("If-Match", &v3)],
    )
    .await
    .expect_error(412, None);
    s.call_with(
        Method::DELETE,
        &s.url(&path),
        &s.token,
        None,
        &[("If-Match", &v4)],
    )
    .await
    .expect(204);
}

/// A member add to a big group and a PATCH of that member at the same
/// time: they write different items, so both succeed at once, however
/// often they race.
#[tokio::test]
async fn a_member_add_and_a_patch_of_that_user_never_conflict() {
    let s = TestServer::start().await;
    let members: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(s.create_user(&format!("crowd{i}@example.com")).await);
        }
        ids
    };
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let gid = s.create_group("Crowd", &refs).await;
    for round in 0..8 {
        let uid = s.create_user(&format!("racer{round}@example.com")).await;
        let (gpath, upath) = (format!("/Groups/{gid}"), format!("/Users/{uid}"));
        let add = s.patch(
            &gpath,
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": uid}]}])),
        );
        let rename = s.patch(
            &upath,
            patch_op(json!([{"op": "replace", "path": "displayName", "value": format!("Racer {round}")}])),
        );
        let (a, b) = tokio::join!(add, rename);
        a.expect(200);
        b.expect(200);
        let user = s.get(&format!("/Users/{uid}")).await.expect(200);
        assert_eq!(user.body["displayName"], format!("Racer {round}"));
        assert_eq!(user.body["groups"][0]["value"], gid.as_str());
    }
    let g = s
        .get(&format!("/Groups/{gid}?attributes=id"))
        .await
        .expect(200);
    assert_eq!(g.body["id"], gid.as_str());
    let total = s
        .get(&format!(
            "/Users?count=0&filter={}",
            enc(&format!("groups.value eq \"{gid}\""))
        ))
        .await
        .expect(200)
        .total();
    assert_eq!(total, 48);
}

/// A group's members page by page through `groups.value eq`: index and
/// cursor pages, nested groups left out, and a cursor that keeps its place
/// when members before it leave.
#[tokio::test]
async fn a_groups_members_page_through_the_groups_value_filter() {
    let s = TestServer::start().await;
    let mut users = Vec::new();
    for i in 0..5 {
        users.push(s.create_user(&format!("paged{i}@example.com")).await);
    }
    users.sort();
    let nested = s.create_group("Nested", &[]).await;
    let mut all: Vec<&str> = users.iter().map(String::as_str).collect();
    all.push(&nested);
    let gid = s.create_group("Paged", &all).await;
    let filter = enc(&format!("groups.value eq \"{gid}\""));
    let ids = |r: &Resp| -> Vec<String> {
        r.resources()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect()
    };

    // Index pages: users only, in id order; the id matches in any case.
    let upper = enc(&format!("groups.value eq \"{}\"", gid.to_uppercase()));
    let r = s
        .get(&format!("/Users?filter={upper}&startIndex=2&count=2"))
        .await
        .expect(200);
    assert_eq!(r.total(), 5);
    assert_eq!(ids(&r), users[1..3]);
    assert_eq!(r.resources()[0]["groups"][0]["value"], gid.as_str());
    let r = s
        .get(&format!("/Users?filter={filter}&startIndex=5&count=2"))
        .await
        .expect(200);
    assert_eq!(ids(&r), users[4..]);
    let r = s
        .get(&format!("/Users?filter={filter}&startIndex=6&count=2"))
        .await
        .expect(200);
    assert_eq!((r.total(), r.resources().len()), (5, 0));

    // Cursor pages; the first member leaves between pages 1 and 2.
    let first = s
        .get(&format!("/Users?filter={filter}&count=2&cursor"))
        .await
        .expect(200);
    assert_eq!(ids(&first), users[..2]);
    s.patch(
        &format!("/Groups/{gid}"),
        patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", users[0])}])),
    )
    .await
    .expect(200);
    let next = first.body["nextCursor"].as_str().unwrap();
    let second = s
        .get(&format!(
            "/Users?filter={filter}&count=2&cursor={}",
            enc(next)
        ))
        .await
        .expect(200);
    assert_eq!(second.total(), 4);
    assert_eq!(ids(&second), users[2..4]);
    let next = second.body["nextCursor"].as_str().unwrap();
    let third = s
        .get(&format!(
            "/Users?filter={filter}&count=2&cursor={}",
            enc(next)
        ))
        .await
        .expect(200);
    assert_eq!(ids(&third), users[4..]);
    assert!(third.body.get("nextCursor").is_none(), "{}", third.body);

    // A group of another tenant, or none: no members.
    let none = s
        .get(&format!(
            "/Users?filter={}",
            enc("groups.value eq \"00000000-0000-0000-0000-000000000000\"")
        ))
        .await
        .expect(200);
    assert_eq!(none.total(), 0);
}
