//! Every acknowledged write survives SIGKILL and a restart on the same data.

// Test helpers fail loudly, like the tests that call them.

use std::collections::BTreeSet;

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// The restarted server listens on another port: make documents from
/// before and after comparable.
fn normalize(v: &Value, origin: &str) -> Value {
    let text = v.to_string().replace(origin, "ORIGIN");
    serde_json::from_str(&text).expect("json")
}

fn member_set(g: &Value) -> BTreeSet<String> {
    g["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| x["value"].as_str().expect("value").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn group_set(u: &Value) -> BTreeSet<String> {
    u["groups"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| x["value"].as_str().expect("value").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let mut s = TestServer::start().await;

    // Users, one with the enterprise extension and an externalId.
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(s.create_user(&format!("durable{i}@example.com")).await);
    }
    let rich = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN, ENTERPRISE_URN],
                "userName": "Rich.User@Example.com",
                "externalId": "EXT-rich",
                "name": {"givenName": "Rich", "familyName": "User"},
                "emails": [{"value": "rich@example.com", "type": "work", "primary": true}],
                "active": true,
                ENTERPRISE_URN: {"department": "R&D", "manager": {"value": ids[0]}},
            }),
        )
        .await
        .expect(201)
        .id();

    let g_a = s
        .create_group("Group A", &[&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]])
        .await;
    let g_b = s.create_group("Group B", &[&ids[5], &ids[6]]).await;
    let g_gone = s.create_group("Doomed group", &[&ids[7]]).await;

    // Changes of every kind.
    s.patch(
        &format!("/Users/{}", ids[1]),
        patch_op(json!([{"op": "replace", "path": "title", "value": "Director"}])),
    )
    .await
    .expect(200);
    s.patch(
        &format!("/Users/{}", ids[3]),
        patch_op(json!([{"op": "Replace", "path": "active", "value": "False"}])),
    )
    .await
    .expect(200);
    let mut put = user("durable2@example.com");
    put["displayName"] = json!("Put Replaced");
    s.put(&format!("/Users/{}", ids[2]), put).await.expect(200);
    s.patch(
        &format!("/Groups/{g_a}"),
        patch_op(json!([
            {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])},
            {"op": "add", "path": "members", "value": [{"value": ids[7]}, {"value": rich}]},
        ])),
    )
    .await
    .expect(200);
    s.patch(
        &format!("/Groups/{g_b}"),
        patch_op(json!([{"op": "replace", "path": "displayName", "value": "Group B renamed"}])),
    )
    .await
    .expect(200);
    s.delete(&format!("/Users/{}", ids[9])).await.expect(204);
    s.delete(&format!("/Users/{}", ids[6])).await.expect(204); // a member of B
    s.delete(&format!("/Groups/{g_gone}")).await.expect(204);

    // Snapshot of everything acknowledged.
    let live_users: Vec<String> = ids[..9]
        .iter()
        .filter(|id| **id != ids[6])
        .cloned()
        .chain([rich.clone()])
        .collect();
    let mut before = Vec::new();
    for id in &live_users {
        let r = s.get(&format!("/Users/{id}")).await.expect(200);
        before.push((
            format!("/Users/{id}"),
            normalize(&r.body, &s.origin),
            r.etag(),
        ));
    }
    for id in [&g_a, &g_b] {
        let r = s.get(&format!("/Groups/{id}")).await.expect(200);
        before.push((
            format!("/Groups/{id}"),
            normalize(&r.body, &s.origin),
            r.etag(),
        ));
    }

    s.kill_and_restart();

    // Same token, same data, same versions.
    for (path, body, etag) in &before {
        let r = s.get(path).await.expect(200);
        assert_eq!(&normalize(&r.body, &s.origin), body, "{path} changed");
        assert_eq!(&r.etag(), etag, "{path} ETag changed");
    }
    for gone in [
        format!("/Users/{}", ids[9]),
        format!("/Users/{}", ids[6]),
        format!("/Groups/{g_gone}"),
    ] {
        s.get(&gone).await.expect(404);
    }

    // Totals.
    let r = s.get("/Users").await.expect(200);
    assert_eq!(r.total(), live_users.len() as u64);
    let listed: BTreeSet<String> = r
        .resources()
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(listed, live_users.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(s.get("/Groups").await.expect(200).total(), 2);

    // Memberships, both directions.
    let a = s.get(&format!("/Groups/{g_a}")).await.expect(200);
    assert_eq!(
        member_set(&a.body),
        BTreeSet::from([
            ids[1].clone(),
            ids[2].clone(),
            ids[3].clone(),
            ids[4].clone(),
            ids[7].clone(),
            rich.clone(),
        ])
    );
    let b = s.get(&format!("/Groups/{g_b}")).await.expect(200);
    assert_eq!(member_set(&b.body), BTreeSet::from([ids[5].clone()]));
    assert_eq!(b.body["displayName"], json!("Group B renamed"));
    let u7 = s.get(&format!("/Users/{}", ids[7])).await.expect(200);
    assert_eq!(group_set(&u7.body), BTreeSet::from([g_a.clone()]));
    let u0 = s.get(&format!("/Users/{}", ids[0])).await.expect(200);
    assert!(group_set(&u0.body).is_empty(), "{}", u0.body);
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(&format!(r#"members.value eq "{}""#, ids[5]))
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1);

    // Indexes survived: lookups, uniqueness, freed names.
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName eq "rich.user@example.com""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1);
    assert_eq!(r.resources()[0]["id"], json!(rich));
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(r#"externalId eq "EXT-rich""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1);
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(r#"displayName eq "group b renamed""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1);
    s.post("/Users", user("DURABLE1@example.com"))
        .await
        .expect_error(409, Some("uniqueness"));
    s.post("/Groups", group("Group A", &[]))
        .await
        .expect_error(409, Some("uniqueness"));
    // Names of deleted resources are free again.
    s.post("/Users", user("durable9@example.com"))
        .await
        .expect(201);
    s.post("/Groups", group("Doomed group", &[]))
        .await
        .expect(201);
    // The old rename freed the old group name.
    s.post("/Groups", group("Group B", &[])).await.expect(201);

    // Writes keep working after the restart, with versions moving on.
    let r = s
        .patch(
            &format!("/Users/{}", ids[1]),
            patch_op(json!([{"op": "replace", "path": "title", "value": "VP"}])),
        )
        .await
        .expect(200);
    let old_etag = &before
        .iter()
        .find(|(p, _, _)| *p == format!("/Users/{}", ids[1]))
        .expect("snapshot")
        .2;
    assert_ne!(&r.etag(), old_etag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn burst_of_writes_then_immediate_kill() {
    let mut s = TestServer::start().await;
    let gid = s.create_group("Burst", &[]).await;
    let reqs = (0..40).map(|i| {
        let s = &s;
        async move {
            s.post("/Users", user(&format!("burst{i:02}@example.com")))
                .await
        }
    });
    let ids: Vec<String> = join_all(reqs)
        .await
        .into_iter()
        .map(|r| r.expect(201).id())
        .collect();
    let reqs = ids.iter().map(|u| {
        let s = &s;
        let path = format!("/Groups/{gid}");
        async move {
            s.patch(
                &path,
                patch_op(json!([{"op": "add", "path": "members", "value": [{"value": u}]}])),
            )
            .await
        }
    });
    for r in join_all(reqs).await {
        r.expect(200);
    }
    // Kill right after the last acknowledgement.
    s.kill_and_restart();
    let r = s.get("/Users?count=100").await.expect(200);
    assert_eq!(r.total(), 40);
    let listed: BTreeSet<String> = r
        .resources()
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(listed, ids.iter().cloned().collect::<BTreeSet<_>>());
    let g = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(member_set(&g.body), listed);
    // Every acknowledged change has its audit record (written in the same
    // transaction): 40 creations and 40 member additions.
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!(
                "/tenants/{TENANT}/audit?limit=100&order=asc&cursor={}",
                enc(c)
            ),
            None => format!("/tenants/{TENANT}/audit?limit=100&order=asc"),
        };
        let page = s.admin(reqwest::Method::GET, &path, None).await.expect(200);
        records.extend(page.body["records"].as_array().cloned().unwrap_or_default());
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let created: BTreeSet<String> = records
        .iter()
        .filter(|r| r["resourceType"] == "User" && r["operation"] == "created")
        .map(|r| r["resourceId"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        created, listed,
        "an acknowledged creation without its record"
    );
    let added: BTreeSet<String> = records
        .iter()
        .filter(|r| r["resourceId"] == gid.as_str() && r["operation"] == "members.changed")
        .flat_map(|r| {
            r["transitions"]["membersAdded"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        added, listed,
        "an acknowledged member change without its record"
    );
}

#[tokio::test]
async fn tokens_and_tenants_work_after_restart() {
    let mut s = TestServer::start().await;
    let id = s.create_user("t@example.com").await;
    let globex = format!("{}/scim/v2/{OTHER_TENANT}/Users", s.origin);
    let gid = s
        .call_with(
            Method::POST,
            &globex,
            &s.other_token,
            Some(user("g@example.com")),
            &[],
        )
        .await
        .expect(201)
        .id();
    s.kill_and_restart();
    s.get(&format!("/Users/{id}")).await.expect(200);
    let globex = format!("{}/scim/v2/{OTHER_TENANT}/Users", s.origin);
    s.call_with(
        Method::GET,
        &format!("{globex}/{gid}"),
        &s.other_token,
        None,
        &[],
    )
    .await
    .expect(200);
    // Still isolated, still authenticated.
    s.call_with(
        Method::GET,
        &format!("{globex}/{id}"),
        &s.other_token,
        None,
        &[],
    )
    .await
    .expect(404);
    let r = s
        .call_with(Method::GET, &s.url("/Users"), "wrong", None, &[])
        .await;
    assert_eq!(r.status, 401);
    let r = s.call_with(Method::GET, &globex, &s.token, None, &[]).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn restart_twice_and_cursor_survives() {
    let mut s = TestServer::start().await;
    for i in 0..6 {
        s.create_user(&format!("c{i}@example.com")).await;
    }
    let first = s.get("/Users?cursor=&count=2").await.expect(200);
    let cursor = first.body["nextCursor"]
        .as_str()
        .expect("nextCursor")
        .to_owned();
    let first_ids: Vec<Value> = first.resources().iter().map(|u| u["id"].clone()).collect();
    s.kill_and_restart();
    s.kill_and_restart();
    // The cursor signing key is kept beside the data (documented).
    let r = s
        .get(&format!("/Users?count=2&cursor={}", enc(&cursor)))
        .await
        .expect(200);
    assert_eq!(r.resources().len(), 2);
    for u in r.resources() {
        assert!(!first_ids.contains(&u["id"]), "page repeated after restart");
    }
    assert_eq!(s.get("/Users").await.expect(200).total(), 6);
}
