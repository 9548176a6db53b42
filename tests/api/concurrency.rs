//! Simultaneous writers: uniqueness under races, no lost updates, and
//! optimistic concurrency with `If-Match` (RFC 7644 §3.14).

// Test helpers fail loudly, like the tests that call them.

use std::collections::BTreeSet;

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// A request future, boxed so different requests fit in one `join_all`.
type BoxedCall<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// `name` with letter case varied by the bits of `i`.
fn vary_case(name: &str, i: usize) -> String {
    name.chars()
        .enumerate()
        .map(|(k, c)| {
            if (i >> (k % 12)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

async fn create_users(s: &TestServer, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(10) {
        let reqs = chunk
            .iter()
            .map(|i| s.post("/Users", user(&format!("{prefix}{i:03}@example.com"))));
        for r in join_all(reqs).await {
            ids.push(r.expect(201).id());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_creates_of_one_user_name() {
    let s = TestServer::start().await;
    let base = "race.condition@example.com";
    let reqs = (0..50).map(|i| {
        let name = vary_case(base, i);
        let s = &s;
        async move { s.post("/Users", user(&name)).await }
    });
    let results = join_all(reqs).await;
    let created: Vec<&Resp> = results.iter().filter(|r| r.status == 201).collect();
    let conflicts = results.iter().filter(|r| r.status == 409).count();
    let other: Vec<(u16, &Value)> = results
        .iter()
        .filter(|r| r.status != 201 && r.status != 409)
        .map(|r| (r.status, &r.body))
        .collect();
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert_eq!(created.len(), 1, "exactly one create must win");
    assert_eq!(conflicts, 49);
    for r in results.iter().filter(|r| r.status == 409) {
        assert_eq!(r.body["scimType"], json!("uniqueness"), "{}", r.body);
        assert_eq!(r.body["schemas"], json!([ERROR_URN]));
    }
    let winner = created[0].id();

    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(&format!(r#"userName eq "{}""#, base.to_ascii_uppercase()))
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1, "{}", r.body);
    assert_eq!(r.resources()[0]["id"], json!(winner));
    // Also by scan, not only by the index.
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName co "race.condition""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1, "{}", r.body);
    let r = s.get("/Users").await.expect(200);
    assert_eq!(r.total(), 1, "{}", r.body);
    assert_eq!(r.resources().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_creates_of_one_group_name() {
    let s = TestServer::start().await;
    let reqs = (0..20).map(|i| {
        let name = vary_case("Engineering Team", i);
        let s = &s;
        async move { s.post("/Groups", group(&name, &[])).await }
    });
    let results = join_all(reqs).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|&&c| c == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 409).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(s.get("/Groups").await.expect(200).total(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_member_adds_lose_nothing() {
    let s = TestServer::start().await;
    let users = create_users(&s, "member", 100).await;
    let gid = s.create_group("Everyone", &[]).await;
    let path = format!("/Groups/{gid}");
    let reqs = users.iter().map(|u| {
        let s = &s;
        let path = &path;
        async move {
            s.patch(
                path,
                patch_op(json!([{"op": "add", "path": "members", "value": [{"value": u}]}])),
            )
            .await
        }
    });
    let results = join_all(reqs).await;
    let bad: Vec<(u16, &Value)> = results
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| (r.status, &r.body))
        .collect();
    assert!(bad.is_empty(), "{} PATCHes failed: {bad:?}", bad.len());

    let g = s.get(&path).await.expect(200);
    let members = member_ids(&g.body);
    assert_eq!(members.len(), 100, "{}", g.body);
    let set: BTreeSet<String> = members.into_iter().collect();
    assert_eq!(set, users.iter().cloned().collect::<BTreeSet<_>>());

    // Seen from the users' side too.
    for u in users.iter().step_by(17) {
        let r = s.get(&format!("/Users/{u}")).await.expect(200);
        let groups: Vec<&str> = r.body["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(|x| x["value"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(groups, vec![gid.as_str()], "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_member_adds_and_removes() {
    let s = TestServer::start().await;
    let users = create_users(&s, "mix", 40).await;
    let initial: Vec<&str> = users[..20].iter().map(String::as_str).collect();
    let gid = s.create_group("Mixed", &initial).await;
    let path = format!("/Groups/{gid}");
    // Remove the first 20 (two dialects), add the last 20, all at once.
    let reqs = users.iter().enumerate().map(|(i, u)| {
        let s = &s;
        let path = &path;
        let body = if i >= 20 {
            patch_op(json!([{"op": "Add", "path": "members", "value": [{"value": u}]}]))
        } else if i % 2 == 0 {
            patch_op(json!([{"op": "Remove", "path": "members", "value": [{"value": u}]}]))
        } else {
            patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{u}\"]")}]))
        };
        async move { s.patch(path, body).await }
    });
    let results = join_all(reqs).await;
    for r in &results {
        assert!(
            r.status == 200 || r.status == 204,
            "{} {}",
            r.status,
            r.body
        );
    }
    let g = s.get(&path).await.expect(200);
    let set: BTreeSet<String> = member_ids(&g.body).into_iter().collect();
    assert_eq!(set, users[20..].iter().cloned().collect::<BTreeSet<_>>());
}

/// 20 attributes of one user, each replaced by its own PATCH, all at once.
const PATHS: [&str; 20] = [
    "title",
    "nickName",
    "displayName",
    "locale",
    "preferredLanguage",
    "timezone",
    "userType",
    "profileUrl",
    "externalId",
    "name.givenName",
    "name.familyName",
    "name.middleName",
    "name.honorificPrefix",
    "name.honorificSuffix",
    "name.formatted",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
];

fn value_for(path: &str) -> String {
    match path {
        "profileUrl" => "https://example.com/profile/jane".into(),
        "locale" => "en-US".into(),
        "preferredLanguage" => "en".into(),
        "timezone" => "Europe/Paris".into(),
        p => format!("v-{}", p.rsplit(':').next().unwrap_or(p)),
    }
}

fn read_path<'a>(doc: &'a Value, path: &str) -> &'a Value {
    if let Some(attr) = path.strip_prefix(&format!("{ENTERPRISE_URN}:")) {
        return &doc[ENTERPRISE_URN][attr];
    }
    match path.split_once('.') {
        Some((a, b)) => &doc[a][b],
        None => &doc[path],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_patches_of_different_attributes_lose_nothing() {
    let s = TestServer::start().await;
    let id = s.create_user("jane@example.com").await;
    let path = format!("/Users/{id}");
    let reqs = PATHS.iter().map(|p| {
        let s = &s;
        let path = &path;
        async move {
            let r = s
                .patch(
                    path,
                    patch_op(json!([{"op": "replace", "path": p, "value": value_for(p)}])),
                )
                .await;
            (*p, r)
        }
    });
    let results = join_all(reqs).await;
    for (p, r) in &results {
        assert_eq!(r.status, 200, "{p}: {}", r.body);
    }
    let got = s.get(&path).await.expect(200);
    for p in PATHS {
        assert_eq!(
            read_path(&got.body, p),
            &json!(value_for(p)),
            "{p} lost: {}",
            got.body
        );
    }
    // Untouched attributes survive as well.
    assert_eq!(got.body["userName"], json!("jane@example.com"));
    assert_eq!(got.body["emails"][0]["value"], json!("jane@example.com"));
    assert_eq!(got.body["active"], json!(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_multi_valued_adds_lose_nothing() {
    let s = TestServer::start().await;
    let id = s.create_user("roles@example.com").await;
    let path = format!("/Users/{id}");
    let reqs = (0..20).map(|i| {
        let s = &s;
        let path = &path;
        async move {
            let body = if i % 2 == 0 {
                patch_op(json!([{"op": "add", "path": "roles", "value": [{"value": format!("role-{i}")}]}]))
            } else {
                patch_op(json!([{"op": "add", "path": "addresses", "value": [{"locality": format!("city-{i}"), "type": "work"}]}]))
            };
            s.patch(path, body).await
        }
    });
    for r in join_all(reqs).await {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let got = s.get(&path).await.expect(200);
    let roles: BTreeSet<String> = got.body["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r["value"].as_str().expect("role").to_owned())
        .collect();
    let want: BTreeSet<String> = (0..20).step_by(2).map(|i| format!("role-{i}")).collect();
    assert_eq!(roles, want);
    let cities: BTreeSet<String> = got.body["addresses"]
        .as_array()
        .expect("addresses")
        .iter()
        .map(|a| a["locality"].as_str().expect("locality").to_owned())
        .collect();
    let want: BTreeSet<String> = (1..20).step_by(2).map(|i| format!("city-{i}")).collect();
    assert_eq!(cities, want);
}

async fn with_if_match(
    s: &TestServer,
    method: Method,
    path: &str,
    etag: &str,
    body: Option<Value>,
) -> Resp {
    s.call_with(method, &s.url(path), &s.token, body, &[("If-Match", etag)])
        .await
}

#[track_caller]
fn expect_412(r: &Resp) {
    assert_eq!(r.status, 412, "{}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR_URN]), "{}", r.body);
    assert_eq!(r.body["status"], json!("412"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
}

#[tokio::test]
async fn stale_if_match_is_412_fresh_succeeds() {
    let s = TestServer::start().await;
    let id = s.create_user("etag@example.com").await;
    let path = format!("/Users/{id}");
    let v1 = s.get(&path).await.expect(200).etag();
    let r = s
        .patch(
            &path,
            patch_op(json!([{"op": "replace", "path": "title", "value": "one"}])),
        )
        .await
        .expect(200);
    let v2 = r.etag();
    assert_ne!(v1, v2, "a change must change the ETag");
    let before = s.get(&path).await.expect(200);
    assert_eq!(before.etag(), v2);

    // Stale: PATCH, PUT and DELETE all refuse.
    let r = with_if_match(
        &s,
        Method::PATCH,
        &path,
        &v1,
        Some(patch_op(
            json!([{"op": "replace", "path": "title", "value": "stale"}]),
        )),
    )
    .await;
    expect_412(&r);
    let mut put = user("etag@example.com");
    put["title"] = json!("stale");
    let r = with_if_match(&s, Method::PUT, &path, &v1, Some(put.clone())).await;
    expect_412(&r);
    let r = with_if_match(&s, Method::DELETE, &path, &v1, None).await;
    expect_412(&r);
    let after = s.get(&path).await.expect(200);
    assert_eq!(after.body, before.body, "a 412 must change nothing");

    // Fresh: succeeds and yields a new ETag.
    let r = with_if_match(
        &s,
        Method::PATCH,
        &path,
        &v2,
        Some(patch_op(
            json!([{"op": "replace", "path": "title", "value": "two"}]),
        )),
    )
    .await
    .expect(200);
    let v3 = r.etag();
    assert_ne!(v3, v2);
    assert_eq!(r.body["title"], json!("two"));
    put["title"] = json!("three");
    let r = with_if_match(&s, Method::PUT, &path, &v3, Some(put))
        .await
        .expect(200);
    let v4 = r.etag();
    // `*` matches any current version.
    let r = with_if_match(
        &s,
        Method::PATCH,
        &path,
        "*",
        Some(patch_op(
            json!([{"op": "replace", "path": "title", "value": "four"}]),
        )),
    )
    .await
    .expect(200);
    let v5 = r.etag();
    let r = with_if_match(&s, Method::DELETE, &path, &v4, None).await;
    expect_412(&r);
    with_if_match(&s, Method::DELETE, &path, &v5, None)
        .await
        .expect(204);
    s.get(&path).await.expect(404);
}

#[tokio::test]
async fn if_none_match_gives_304_when_unchanged() {
    // RFC 7644 §3.14 (RFC 7232): a GET with the current ETag is 304.
    let s = TestServer::start().await;
    let id = s.create_user("cache@example.com").await;
    let path = format!("/Users/{id}");
    let etag = s.get(&path).await.expect(200).etag();
    let r = s
        .call_with(
            Method::GET,
            &s.url(&path),
            &s.token,
            None,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, 304, "{}", r.body);
    s.patch(
        &path,
        patch_op(json!([{"op": "replace", "path": "title", "value": "x"}])),
    )
    .await
    .expect(200);
    let r = s
        .call_with(
            Method::GET,
            &s.url(&path),
            &s.token,
            None,
            &[("If-None-Match", &etag)],
        )
        .await
        .expect(200);
    assert_eq!(r.body["title"], json!("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_pinned_to_one_etag_only_one_wins() {
    let s = TestServer::start().await;
    let id = s.create_user("pinned@example.com").await;
    let path = format!("/Users/{id}");
    let etag = s.get(&path).await.expect(200).etag();
    let reqs = (0..12).map(|i| {
        let s = &s;
        let path = &path;
        let etag = &etag;
        async move {
            with_if_match(
                s,
                Method::PATCH,
                path,
                etag,
                Some(patch_op(
                    json!([{"op": "replace", "path": "title", "value": format!("t{i}")}]),
                )),
            )
            .await
        }
    });
    let results = join_all(reqs).await;
    let winners: Vec<&Resp> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "statuses: {:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.status != 200) {
        expect_412(r);
    }
    let title = winners[0].body["title"].clone();
    let got = s.get(&path).await.expect(200);
    assert_eq!(got.body["title"], title);
    assert_eq!(got.etag(), winners[0].etag());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_group_patches_pinned_to_one_etag_only_one_wins() {
    let s = TestServer::start().await;
    let users = create_users(&s, "pin", 8).await;
    let gid = s.create_group("Pinned", &[]).await;
    let path = format!("/Groups/{gid}");
    let etag = s.get(&path).await.expect(200).etag();
    let reqs = users.iter().map(|u| {
        let s = &s;
        let path = &path;
        let etag = &etag;
        async move {
            with_if_match(
                s,
                Method::PATCH,
                path,
                etag,
                Some(patch_op(
                    json!([{"op": "add", "path": "members", "value": [{"value": u}]}]),
                )),
            )
            .await
        }
    });
    let results = join_all(reqs).await;
    let ok = results
        .iter()
        .filter(|r| r.status == 200 || r.status == 204)
        .count();
    assert_eq!(
        ok,
        1,
        "statuses: {:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in results
        .iter()
        .filter(|r| r.status != 200 && r.status != 204)
    {
        expect_412(r);
    }
    let g = s.get(&path).await.expect(200);
    assert_eq!(member_ids(&g.body).len(), 1, "{}", g.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_delete_and_patch() {
    // Whatever the interleaving, a deleted user stays deleted and no
    // request answers 5xx.
    let s = TestServer::start().await;
    let id = s.create_user("doomed@example.com").await;
    let path = format!("/Users/{id}");
    let mut futs = Vec::new();
    for i in 0..10 {
        let s = &s;
        let path = &path;
        futs.push(Box::pin(async move {
            if i == 5 {
                s.delete(path).await
            } else {
                s.patch(
                    path,
                    patch_op(json!([{"op": "replace", "path": "title", "value": format!("t{i}")}])),
                )
                .await
            }
        }) as BoxedCall<'_, Resp>);
    }
    let results = join_all(futs).await;
    for (i, r) in results.iter().enumerate() {
        if i == 5 {
            assert_eq!(r.status, 204, "{}", r.body);
        } else {
            assert!(
                r.status == 200 || r.status == 404,
                "{} {}",
                r.status,
                r.body
            );
        }
    }
    s.get(&path).await.expect(404);
    assert_eq!(s.get("/Users").await.expect(200).total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_renames_to_one_user_name() {
    let s = TestServer::start().await;
    let ids = create_users(&s, "rename", 20).await;
    let reqs = ids.iter().enumerate().map(|(i, id)| {
        let s = &s;
        let target = vary_case("taken.name@example.com", i);
        async move {
            s.patch(
                &format!("/Users/{id}"),
                patch_op(json!([{"op": "replace", "path": "userName", "value": target}])),
            )
            .await
        }
    });
    let results = join_all(reqs).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|&&c| c == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 409).count(),
        19,
        "{statuses:?}"
    );
    for r in results.iter().filter(|r| r.status == 409) {
        assert_eq!(r.body["scimType"], json!("uniqueness"));
    }
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName eq "taken.name@example.com""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1);
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName co "taken.name""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1, "{}", r.body);
    // The losers kept their names.
    let r = s
        .get(&format!("/Users?filter={}", enc(r#"userName sw "rename""#)))
        .await
        .expect(200);
    assert_eq!(r.total(), 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_group_renames_to_one_display_name() {
    let s = TestServer::start().await;
    let mut gids = Vec::new();
    for i in 0..10 {
        gids.push(s.create_group(&format!("team-{i}"), &[]).await);
    }
    let reqs = gids.iter().enumerate().map(|(i, id)| {
        let s = &s;
        let target = vary_case("the winners", i);
        async move {
            s.patch(
                &format!("/Groups/{id}"),
                patch_op(json!([{"op": "replace", "path": "displayName", "value": target}])),
            )
            .await
        }
    });
    let results = join_all(reqs).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|&&c| c == 200 || c == 204).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 409).count(),
        9,
        "{statuses:?}"
    );
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(r#"displayName co "winners""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_add_racing_user_delete_leaves_no_dangling_member() {
    let s = TestServer::start().await;
    let users = create_users(&s, "dangle", 30).await;
    let gid = s.create_group("Racing", &[]).await;
    let path = format!("/Groups/{gid}");
    let mut futs: Vec<BoxedCall<'_, (bool, Resp)>> = Vec::new();
    for u in &users {
        let s = &s;
        let path = &path;
        futs.push(Box::pin(async move {
            (
                false,
                s.patch(
                    path,
                    patch_op(json!([{"op": "add", "path": "members", "value": [{"value": u}]}])),
                )
                .await,
            )
        }));
        futs.push(Box::pin(async move {
            (true, s.delete(&format!("/Users/{u}")).await)
        }));
    }
    let results = join_all(futs).await;
    for (is_delete, r) in &results {
        if *is_delete {
            assert_eq!(r.status, 204, "{}", r.body);
        } else {
            // Added before the delete (200), or the user was already gone (400/404).
            assert!(
                [200, 400, 404].contains(&r.status),
                "{} {}",
                r.status,
                r.body
            );
        }
    }
    let g = s.get(&path).await.expect(200);
    let members = member_ids(&g.body);
    assert!(
        members.is_empty(),
        "deleted users still listed as members: {members:?}"
    );
    let r = s
        .get(&format!("/Groups?filter={}", enc("members pr")))
        .await
        .expect(200);
    assert_eq!(r.total(), 0, "{}", r.body);
}
