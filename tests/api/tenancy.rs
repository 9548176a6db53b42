//! Tenant isolation: `acme` and `globex` share one server and nothing else.

// Test helpers fail loudly, like the tests that call them.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// Requests as tenant `globex`.
struct Globex<'a> {
    s: &'a TestServer,
}

impl Globex<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/scim/v2/{OTHER_TENANT}{path}", self.s.origin)
    }
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.s
            .call_with(method, &self.url(path), &self.s.other_token, body, &[])
            .await
    }
    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
}

#[track_caller]
fn expect_401(r: &Resp) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR_URN]), "{}", r.body);
    assert_eq!(r.body["status"], json!("401"));
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.to_ascii_lowercase().starts_with("bearer")),
        "WWW-Authenticate missing"
    );
}

fn ids(r: &Resp) -> Vec<String> {
    r.resources()
        .iter()
        .map(|x| x["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn acme_user_is_invisible_to_globex() {
    let s = TestServer::start().await;
    let g = Globex { s: &s };
    let id = s.create_user("secret@acme.example").await;
    let gid = s.create_group("Acme Admins", &[&id]).await;

    g.get(&format!("/Users/{id}")).await.expect_error(404, None);
    g.get(&format!("/Groups/{gid}"))
        .await
        .expect_error(404, None);

    let r = g
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName eq "secret@acme.example""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 0, "{}", r.body);
    let r = g
        .get(&format!(
            "/Users?filter={}",
            enc(&format!(r#"id eq "{id}""#))
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 0, "{}", r.body);
    let r = g
        .get(&format!("/Users?filter={}", enc(r#"userName co "acme""#)))
        .await
        .expect(200);
    assert_eq!(r.total(), 0, "{}", r.body);
    let r = g.get("/Users").await.expect(200);
    assert_eq!(r.total(), 0);
    assert!(r.resources().is_empty());
    let r = g.get("/Groups").await.expect(200);
    assert_eq!(r.total(), 0);
    let r = g
        .get(&format!(
            "/Groups?filter={}",
            enc(&format!(r#"members.value eq "{id}""#))
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 0);
    let r = g
        .post("/.search", json!({"schemas": [SEARCH_URN]}))
        .await
        .expect(200);
    assert_eq!(r.total(), 0, "{}", r.body);
    let r = g
        .post(
            "/Users/.search",
            json!({"schemas": [SEARCH_URN], "filter": "userName pr"}),
        )
        .await
        .expect(200);
    assert_eq!(r.total(), 0);

    // acme still sees its own.
    let r = s.get("/Users").await.expect(200);
    assert_eq!(ids(&r), vec![id]);
}

#[tokio::test]
async fn same_names_in_both_tenants() {
    let s = TestServer::start().await;
    let g = Globex { s: &s };
    let mut body = user("shared@example.com");
    body["externalId"] = json!("ext-1");
    let a = s.post("/Users", body.clone()).await.expect(201).id();
    let b = g.post("/Users", body).await.expect(201).id();
    assert_ne!(a, b);
    let ga = s.create_group("Admins", &[&a]).await;
    let gb = g
        .post("/Groups", group("Admins", &[&b]))
        .await
        .expect(201)
        .id();
    assert_ne!(ga, gb);

    // Each tenant finds exactly its own.
    let f = enc(r#"userName eq "SHARED@example.com""#);
    let r = s.get(&format!("/Users?filter={f}")).await.expect(200);
    assert_eq!(ids(&r), vec![a.clone()]);
    let r = g.get(&format!("/Users?filter={f}")).await.expect(200);
    assert_eq!(ids(&r), vec![b.clone()]);
    let f = enc(r#"externalId eq "ext-1""#);
    let r = g.get(&format!("/Users?filter={f}")).await.expect(200);
    assert_eq!(ids(&r), vec![b.clone()]);
    let f = enc(r#"displayName eq "Admins""#);
    let r = s.get(&format!("/Groups?filter={f}")).await.expect(200);
    assert_eq!(ids(&r), vec![ga.clone()]);
    let r = g.get(&format!("/Groups?filter={f}")).await.expect(200);
    assert_eq!(ids(&r), vec![gb.clone()]);

    // Uniqueness is still enforced within each tenant.
    g.post("/Users", user("Shared@Example.com"))
        .await
        .expect_error(409, Some("uniqueness"));
    s.post("/Users", user("shared@EXAMPLE.com"))
        .await
        .expect_error(409, Some("uniqueness"));

    // Deleting in one tenant leaves the other alone.
    s.delete(&format!("/Users/{a}")).await.expect(204);
    g.get(&format!("/Users/{b}")).await.expect(200);
    let gg = g.get(&format!("/Groups/{gb}")).await.expect(200);
    assert_eq!(gg.body["members"][0]["value"], json!(b));
}

#[tokio::test]
async fn tokens_are_not_interchangeable() {
    let s = TestServer::start().await;
    let g = Globex { s: &s };
    let a = s.create_user("a@example.com").await;
    let b = g
        .post("/Users", user("b@example.com"))
        .await
        .expect(201)
        .id();

    // acme's token on globex URLs.
    for (method, path) in [
        (Method::GET, "/Users".to_owned()),
        (Method::GET, format!("/Users/{b}")),
        (Method::DELETE, format!("/Users/{b}")),
        (Method::POST, "/Users".to_owned()),
    ] {
        let body = (method == Method::POST).then(|| user("intruder@example.com"));
        let r = s
            .call_with(method.clone(), &g.url(&path), &s.token, body, &[])
            .await;
        expect_401(&r);
    }
    // globex's token on acme URLs.
    for (method, path) in [
        (Method::GET, "/Users".to_owned()),
        (Method::GET, format!("/Users/{a}")),
        (Method::DELETE, format!("/Users/{a}")),
        (Method::POST, "/Groups".to_owned()),
    ] {
        let body = (method == Method::POST).then(|| group("Intruders", &[]));
        let r = s
            .call_with(method.clone(), &s.url(&path), &s.other_token, body, &[])
            .await;
        expect_401(&r);
    }
    // Nothing moved.
    s.get(&format!("/Users/{a}")).await.expect(200);
    g.get(&format!("/Users/{b}")).await.expect(200);
    assert_eq!(s.get("/Users").await.expect(200).total(), 1);
    assert_eq!(s.get("/Groups").await.expect(200).total(), 0);
    assert_eq!(g.get("/Users").await.expect(200).total(), 1);
}

#[tokio::test]
async fn writes_across_tenants_are_404_and_change_nothing() {
    let s = TestServer::start().await;
    let g = Globex { s: &s };
    let mut body = user("victim@acme.example");
    body["title"] = json!("Original");
    let id = s.post("/Users", body).await.expect(201).id();
    let gid = s.create_group("Acme Group", &[&id]).await;
    let user_before = s.get(&format!("/Users/{id}")).await.expect(200);
    let group_before = s.get(&format!("/Groups/{gid}")).await.expect(200);

    let r = g
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch_op(json!([
                {"op": "replace", "path": "title", "value": "Hacked"},
                {"op": "replace", "path": "active", "value": false},
            ]))),
        )
        .await;
    r.expect_error(404, None);
    let r = g
        .call(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(user("hacked@globex.example")),
        )
        .await;
    r.expect_error(404, None);
    let r = g.call(Method::DELETE, &format!("/Users/{id}"), None).await;
    r.expect_error(404, None);
    let r = g
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(patch_op(json!([
                {"op": "remove", "path": "members"},
                {"op": "replace", "path": "displayName", "value": "Hacked"},
            ]))),
        )
        .await;
    r.expect_error(404, None);
    let r = g
        .call(
            Method::PUT,
            &format!("/Groups/{gid}"),
            Some(group("Hacked", &[])),
        )
        .await;
    r.expect_error(404, None);
    let r = g
        .call(Method::DELETE, &format!("/Groups/{gid}"), None)
        .await;
    r.expect_error(404, None);

    let user_after = s.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(user_after.body, user_before.body);
    assert_eq!(user_after.etag(), user_before.etag());
    let group_after = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(group_after.body, group_before.body);
    assert_eq!(group_after.etag(), group_before.etag());
    // And nothing appeared in globex.
    assert_eq!(g.get("/Users").await.expect(200).total(), 0);
    assert_eq!(g.get("/Groups").await.expect(200).total(), 0);
}

#[tokio::test]
async fn a_group_cannot_reference_another_tenants_user() {
    let s = TestServer::start().await;
    let g = Globex { s: &s };
    let acme_user = s.create_user("a@acme.example").await;
    // At creation.
    let r = g.post("/Groups", group("Sneaky", &[&acme_user])).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR_URN]));
    assert_eq!(g.get("/Groups").await.expect(200).total(), 0);
    // By PATCH.
    let gid = g
        .post("/Groups", group("Plain", &[]))
        .await
        .expect(201)
        .id();
    let r = g
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(patch_op(json!([
                {"op": "add", "path": "members", "value": [{"value": acme_user}]},
            ]))),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let got = g.get(&format!("/Groups/{gid}")).await.expect(200);
    assert!(
        got.body["members"].as_array().is_none_or(|m| m.is_empty()),
        "{}",
        got.body
    );
    // acme's user shows no foreign group.
    let u = s.get(&format!("/Users/{acme_user}")).await.expect(200);
    assert!(
        u.body["groups"].as_array().is_none_or(|m| m.is_empty()),
        "{}",
        u.body
    );
}

#[tokio::test]
async fn unknown_tenant_is_401_like_a_bad_token() {
    let s = TestServer::start().await;
    s.create_user("a@example.com").await;
    let bad_token = s
        .call_with(Method::GET, &s.url("/Users"), "not-the-token", None, &[])
        .await;
    expect_401(&bad_token);
    for tenant in ["nosuch", "ACME-not", "initech", "a%20b", "acme%2Fx"] {
        let url = format!("{}/scim/v2/{tenant}/Users", s.origin);
        for token in [&s.token, &s.other_token] {
            let r = s.call_with(Method::GET, &url, token, None, &[]).await;
            assert_eq!(r.status, 401, "tenant {tenant}: {}", r.body);
            expect_401(&r);
            // Indistinguishable from a wrong token.
            assert_eq!(r.body, bad_token.body, "tenant {tenant}");
            assert_eq!(
                r.header("www-authenticate"),
                bad_token.header("www-authenticate")
            );
        }
        // And no token at all is the same answer.
        let r = s.client.get(&url).send().await.expect("request");
        assert_eq!(r.status().as_u16(), 401, "tenant {tenant} without a token");
    }
    // Writes to an unknown tenant too.
    let r = s
        .call_with(
            Method::POST,
            &format!("{}/scim/v2/nosuch/Users", s.origin),
            &s.token,
            Some(user("x@example.com")),
            &[],
        )
        .await;
    expect_401(&r);
}

#[tokio::test]
async fn tenant_path_is_case_sensitive_or_consistent() {
    // `/scim/v2/ACME` is either the same tenant (and then works with acme's
    // token and shows acme's data) or an unknown one (401); it must never
    // be a third place that accepts acme's token with other data.
    let s = TestServer::start().await;
    let id = s.create_user("case@example.com").await;
    let url = format!("{}/scim/v2/ACME/Users", s.origin);
    let r = s.call_with(Method::GET, &url, &s.token, None, &[]).await;
    match r.status {
        401 => expect_401(&r),
        200 => assert_eq!(ids(&r), vec![id]),
        other => panic!("unexpected {other}: {}", r.body),
    }
}
