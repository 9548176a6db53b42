//! Error responses (RFC 7644 §3.12): status, Error schema, scimType,
//! content type, authentication failures, and that a failed request
//! changes nothing.

// Test helpers fail loudly, like the tests that call them.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// A request with a raw body and a raw `Authorization` header (or none).
async fn raw(
    s: &TestServer,
    method: Method,
    url: &str,
    authorization: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Resp {
    let mut req = s.client.request(method, url);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if let Some((ct, bytes)) = body {
        req = req.header("content-type", ct).body(bytes);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn bearer(s: &TestServer) -> String {
    format!("Bearer {}", s.token)
}

/// Asserts a SCIM Error with this status, whatever its scimType.
#[track_caller]
fn expect_scim_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR_URN]), "{}", r.body);
    assert_eq!(r.body["status"], json!(status.to_string()), "{}", r.body);
    assert!(
        r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "detail: {}",
        r.body
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json"),
        "content-type of a {status}"
    );
}

#[track_caller]
fn expect_401(r: &Resp) {
    expect_scim_error(r, 401);
    let www = r
        .header("www-authenticate")
        .expect("WWW-Authenticate header");
    assert!(
        www.to_ascii_lowercase().starts_with("bearer"),
        "WWW-Authenticate: {www}"
    );
}

// ---------------------------------------------------------------------------
// Malformed requests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_json_is_400_invalid_syntax() {
    let s = TestServer::start().await;
    let id = s.create_user("alice@example.com").await;
    let gid = s.create_group("G", &[]).await;
    let auth = bearer(&s);
    for (method, path) in [
        (Method::POST, "/Users".to_owned()),
        (Method::PUT, format!("/Users/{id}")),
        (Method::PATCH, format!("/Users/{id}")),
        (Method::POST, "/Groups".to_owned()),
        (Method::PUT, format!("/Groups/{gid}")),
        (Method::PATCH, format!("/Groups/{gid}")),
        (Method::POST, "/Users/.search".to_owned()),
        (Method::POST, "/.search".to_owned()),
    ] {
        for body in [
            r#"{"schemas": ["#.as_bytes().to_vec(),
            b"not json at all".to_vec(),
            br#"{"userName": "x",}"#.to_vec(),
            b"\xff\xfe\x00".to_vec(),
        ] {
            let r = raw(
                &s,
                method.clone(),
                &s.url(&path),
                Some(&auth),
                Some(("application/scim+json", body)),
            )
            .await;
            assert_eq!(r.status, 400, "{method} {path}: {}", r.body);
            r.expect_error(400, Some("invalidSyntax"));
        }
    }
    // Nothing was created or changed.
    let r = s.get("/Users").await.expect(200);
    assert_eq!(r.total(), 1);
    let r = s.get("/Groups").await.expect(200);
    assert_eq!(r.total(), 1);
}

#[tokio::test]
async fn empty_body_is_400() {
    let s = TestServer::start().await;
    let auth = bearer(&s);
    let r = raw(
        &s,
        Method::POST,
        &s.url("/Users"),
        Some(&auth),
        Some(("application/scim+json", Vec::new())),
    )
    .await;
    r.expect_error(400, Some("invalidSyntax"));
}

#[tokio::test]
async fn non_object_json_body_is_400() {
    let s = TestServer::start().await;
    for body in [json!([]), json!("x"), json!(42), json!(null)] {
        let r = s.post("/Users", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        expect_scim_error(&r, 400);
    }
    assert_eq!(s.get("/Users").await.expect(200).total(), 0);
}

#[tokio::test]
async fn plain_application_json_is_accepted() {
    // RFC 7644 §3.1: clients may send application/json.
    let s = TestServer::start().await;
    let auth = bearer(&s);
    let r = raw(
        &s,
        Method::POST,
        &s.url("/Users"),
        Some(&auth),
        Some((
            "application/json",
            user("json@example.com").to_string().into_bytes(),
        )),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn body_over_one_mib_is_413() {
    let s = TestServer::start().await;
    let auth = bearer(&s);
    // Valid JSON, just too big.
    let mut u = user("big@example.com");
    u["displayName"] = json!("x".repeat(1024 * 1024 + 16));
    let bytes = u.to_string().into_bytes();
    assert!(bytes.len() > 1024 * 1024);
    let r = raw(
        &s,
        Method::POST,
        &s.url("/Users"),
        Some(&auth),
        Some(("application/scim+json", bytes)),
    )
    .await;
    expect_scim_error(&r, 413);
    // Not created.
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName eq "big@example.com""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 0);

    // The limit is on bytes, whatever the JSON: a PATCH too.
    let id = s.create_user("small@example.com").await;
    let p = patch_op(json!([{"op": "replace", "path": "title", "value": "y".repeat(1100 * 1024)}]));
    let r = raw(
        &s,
        Method::PATCH,
        &s.url(&format!("/Users/{id}")),
        Some(&auth),
        Some(("application/scim+json", p.to_string().into_bytes())),
    )
    .await;
    expect_scim_error(&r, 413);
    let got = s.get(&format!("/Users/{id}")).await.expect(200);
    assert!(got.body.get("title").is_none());

    // Just under the body limit is not a 413, but a resource that large
    // fits no store: a clear 400 on every store, nothing written.
    let mut u = user("almost@example.com");
    u["displayName"] = json!("x".repeat(1000 * 1000));
    let r = s.post("/Users", u).await;
    r.expect_error(400, Some("invalidValue"));
    let found = s
        .get(&format!(
            "/Users?filter={}",
            enc("userName eq \"almost@example.com\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.total(), 0);
    // Large but within the resource limit is stored.
    let mut u = user("big@example.com");
    u["displayName"] = json!("x".repeat(200 * 1024));
    s.post("/Users", u).await.expect(201);
    // A PATCH that would grow a resource past the limit changes nothing.
    let p = patch_op(json!([{"op": "replace", "path": "title", "value": "y".repeat(300 * 1024)}]));
    s.patch(&format!("/Users/{id}"), p)
        .await
        .expect_error(400, Some("invalidValue"));
    assert!(
        s.get(&format!("/Users/{id}"))
            .await
            .expect(200)
            .body
            .get("title")
            .is_none()
    );
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_token_is_401_with_www_authenticate() {
    let s = TestServer::start().await;
    let id = s.create_user("alice@example.com").await;
    for (method, path) in [
        (Method::GET, "/Users".to_owned()),
        (Method::GET, format!("/Users/{id}")),
        (Method::POST, "/Users".to_owned()),
        (Method::DELETE, format!("/Users/{id}")),
        (Method::GET, "/Groups".to_owned()),
        (Method::POST, "/.search".to_owned()),
    ] {
        let body = (method == Method::POST).then(|| {
            (
                "application/scim+json",
                user("z@example.com").to_string().into_bytes(),
            )
        });
        let r = raw(&s, method.clone(), &s.url(&path), None, body).await;
        assert_eq!(r.status, 401, "{method} {path}");
        expect_401(&r);
    }
    // Still there.
    s.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(s.get("/Users").await.expect(200).total(), 1);
}

#[tokio::test]
async fn wrong_token_is_401() {
    let s = TestServer::start().await;
    let id = s.create_user("alice@example.com").await;
    for auth in [
        "Bearer wrong".to_owned(),
        format!("Bearer {}x", s.token),
        format!("Bearer {}", &s.token[..s.token.len() - 1]),
        format!("Bearer {}", s.token.to_ascii_uppercase()),
        "Bearer ".to_owned(),
        "Bearer".to_owned(),
        s.token.clone(),
        format!("Token {}", s.token),
    ] {
        let r = raw(
            &s,
            Method::GET,
            &s.url(&format!("/Users/{id}")),
            Some(&auth),
            None,
        )
        .await;
        assert_eq!(r.status, 401, "Authorization: {auth:?}: {}", r.body);
        expect_401(&r);
    }
    // The scheme name is case-insensitive (RFC 7235 §2.1).
    let r = raw(
        &s,
        Method::GET,
        &s.url(&format!("/Users/{id}")),
        Some(&format!("bearer {}", s.token)),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn basic_scheme_is_401() {
    let s = TestServer::start().await;
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("acme:{}", s.token));
    for auth in [format!("Basic {basic}"), format!("Basic {}", s.token)] {
        let r = raw(&s, Method::GET, &s.url("/Users"), Some(&auth), None).await;
        expect_401(&r);
    }
}

#[tokio::test]
async fn unauthorized_write_changes_nothing() {
    let s = TestServer::start().await;
    let id = s.create_user("alice@example.com").await;
    let before = s.get(&format!("/Users/{id}")).await.expect(200);
    let r = s
        .call_with(
            Method::PUT,
            &s.url(&format!("/Users/{id}")),
            "wrong-token",
            Some(json!({"schemas": [USER_URN], "userName": "hacked@example.com"})),
            &[],
        )
        .await;
    expect_401(&r);
    let r = s
        .call_with(
            Method::DELETE,
            &s.url(&format!("/Users/{id}")),
            "wrong-token",
            None,
            &[],
        )
        .await;
    expect_401(&r);
    let after = s.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(before.body, after.body);
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unknown_endpoint_is_404_scim_error() {
    let s = TestServer::start().await;
    for url in [
        s.url("/Nope"),
        s.url("/Users/abc/def"),
        format!("{}/nothing/here", s.origin),
        format!("{}/scim/v2", s.origin),
        format!("{}/", s.origin),
    ] {
        let r = s.call_with(Method::GET, &url, &s.token, None, &[]).await;
        assert_eq!(r.status, 404, "{url}: {}", r.body);
        expect_scim_error(&r, 404);
    }
}

#[tokio::test]
async fn unknown_resource_is_404_scim_error() {
    let s = TestServer::start().await;
    for path in [
        "/Users/00000000-0000-0000-0000-000000000000",
        "/Groups/00000000-0000-0000-0000-000000000000",
        "/Users/not-an-id",
    ] {
        let r = s.get(path).await;
        expect_scim_error(&r, 404);
        let r = s.delete(path).await;
        expect_scim_error(&r, 404);
        let r = s
            .patch(
                path,
                patch_op(json!([{"op": "replace", "path": "displayName", "value": "x"}])),
            )
            .await;
        expect_scim_error(&r, 404);
    }
}

#[tokio::test]
async fn wrong_method_is_405_scim_error() {
    let s = TestServer::start().await;
    let id = s.create_user("alice@example.com").await;
    for (method, path) in [
        (Method::PUT, "/Users".to_owned()),
        (Method::PATCH, "/Users".to_owned()),
        (Method::DELETE, "/Users".to_owned()),
        (Method::DELETE, "/Groups".to_owned()),
        (Method::POST, format!("/Users/{id}")),
        (Method::GET, "/Users/.search".to_owned()),
        (Method::GET, "/.search".to_owned()),
        (Method::POST, "/ServiceProviderConfig".to_owned()),
        (Method::DELETE, "/Schemas".to_owned()),
        (Method::GET, "/Bulk".to_owned()),
    ] {
        let body = matches!(method, Method::PUT | Method::PATCH | Method::POST)
            .then(|| user("x@example.com"));
        let r = s.call(method.clone(), &path, body).await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
        expect_scim_error(&r, 405);
    }
    // Nothing happened to the collection.
    assert_eq!(s.get("/Users").await.expect(200).total(), 1);
}

#[tokio::test]
async fn me_is_501() {
    let s = TestServer::start().await;
    // /Me is not supported (RFC 7644 §3.11: 501); Bulk is, see bulk.rs.
    let r = s.get("/Me").await;
    expect_scim_error(&r, 501);
}

// ---------------------------------------------------------------------------
// Conflicts and failed writes leave data untouched
// ---------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_is_409_uniqueness() {
    let s = TestServer::start().await;
    s.create_user("alice@example.com").await;
    let r = s.post("/Users", user("alice@example.com")).await;
    r.expect_error(409, Some("uniqueness"));
    let r = s.post("/Users", user("ALICE@example.COM")).await;
    r.expect_error(409, Some("uniqueness"));
    assert_eq!(s.get("/Users").await.expect(200).total(), 1);
    s.create_group("G", &[]).await;
    let r = s.post("/Groups", group("G", &[])).await;
    r.expect_error(409, Some("uniqueness"));
}

#[tokio::test]
async fn failed_put_leaves_resource_unchanged() {
    let s = TestServer::start().await;
    let other = s.create_user("bob@example.com").await;
    let mut body = user("alice@example.com");
    body["title"] = json!("Engineer");
    let created = s.post("/Users", body).await.expect(201);
    let id = created.id();
    let before = s.get(&format!("/Users/{id}")).await.expect(200);
    let etag = before.etag();

    // Missing required userName.
    let r = s
        .put(
            &format!("/Users/{id}"),
            json!({"schemas": [USER_URN], "title": "Changed", "displayName": "Changed"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    expect_scim_error(&r, 400);
    // Wrong type.
    let r = s
        .put(
            &format!("/Users/{id}"),
            json!({"schemas": [USER_URN], "userName": "alice@example.com", "title": "Changed", "active": "maybe"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    expect_scim_error(&r, 400);
    // userName of another user.
    let r = s
        .put(
            &format!("/Users/{id}"),
            json!({"schemas": [USER_URN], "userName": "BOB@example.com", "title": "Changed"}),
        )
        .await;
    r.expect_error(409, Some("uniqueness"));

    let after = s.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(after.body, before.body);
    assert_eq!(after.etag(), etag);
    // bob is untouched as well.
    let bob = s.get(&format!("/Users/{other}")).await.expect(200);
    assert_eq!(bob.body["userName"], json!("bob@example.com"));
}

#[tokio::test]
async fn failed_patch_is_atomic() {
    // RFC 7644 §3.5.2: on an error the resource MUST NOT be modified,
    // even if earlier operations of the same PATCH were valid.
    let s = TestServer::start().await;
    s.create_user("bob@example.com").await;
    let id = s.create_user("alice@example.com").await;
    let before = s.get(&format!("/Users/{id}")).await.expect(200);
    for ops in [
        json!([
            {"op": "replace", "path": "title", "value": "Changed"},
            {"op": "replace", "path": "noSuchAttribute", "value": "x"},
        ]),
        json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "frobnicate", "path": "title", "value": "x"},
        ]),
        json!([
            {"op": "add", "path": "nickName", "value": "Changed"},
            {"op": "replace", "path": "userName", "value": "bob@example.com"},
        ]),
        json!([
            {"op": "replace", "path": "title", "value": "Changed"},
            {"op": "replace", "path": "id", "value": "new-id"},
        ]),
    ] {
        let r = s
            .patch(&format!("/Users/{id}"), patch_op(ops.clone()))
            .await;
        assert!(
            r.status == 400 || r.status == 409,
            "{ops}: {} {}",
            r.status,
            r.body
        );
        expect_scim_error(&r, r.status);
        let after = s.get(&format!("/Users/{id}")).await.expect(200);
        assert_eq!(after.body, before.body, "after {ops}");
    }
}

#[tokio::test]
async fn failed_group_write_leaves_members_unchanged() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let gid = s.create_group("G", &[&a]).await;
    let before = s.get(&format!("/Groups/{gid}")).await.expect(200);
    // A member that does not exist.
    let r = s
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([
                {"op": "add", "path": "members", "value": [{"value": "00000000-0000-0000-0000-00000000dead"}]},
            ])),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    expect_scim_error(&r, 400);
    let r = s
        .put(
            &format!("/Groups/{gid}"),
            group("G", &["00000000-0000-0000-0000-00000000dead"]),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let after = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(after.body, before.body);
}

#[tokio::test]
async fn error_content_type_everywhere() {
    let s = TestServer::start().await;
    let mut seen = Vec::new();
    let checks: Vec<Resp> = vec![
        s.get("/Users/nope").await,
        s.get(&format!("/Users?filter={}", enc("userName eq")))
            .await,
        s.call_with(Method::GET, &s.url("/Users"), "bad", None, &[])
            .await,
        s.call(Method::PUT, "/Users", Some(json!({}))).await,
        s.get("/Me").await,
        s.post("/Users", json!({"schemas": [USER_URN]})).await,
    ];
    for r in checks {
        seen.push(r.status);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/scim+json"),
            "{} {}",
            r.status,
            r.body
        );
        assert_eq!(r.body["schemas"], json!([ERROR_URN]));
        assert!(r.body["status"].is_string(), "{}", r.body);
    }
    assert_eq!(seen, vec![404, 400, 401, 405, 501, 400]);
}

/// Sends raw HTTP/1.1 bytes and returns (status, headers text, body text).
async fn raw_http(s: &TestServer, head: &str, body: &[u8]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.origin.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer and close before everything is sent.
    let _ = tcp.write_all(body).await;
    // No half-close: hyper drops the answer when the client stops sending.
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, headers.to_owned(), body.to_owned())
}

#[tokio::test]
async fn chunked_body_over_one_mib_is_413() {
    let s = TestServer::start().await;
    let addr = s.origin.trim_start_matches("http://").to_owned();
    let mut u = user("chunked@example.com");
    u["displayName"] = json!("x".repeat(1100 * 1024));
    let payload = u.to_string().into_bytes();
    let mut body = Vec::new();
    for chunk in payload.chunks(64 * 1024) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /scim/v2/{TENANT}/Users HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/scim+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        s.token
    );
    let (status, headers, text) = raw_http(&s, &head, &body).await;
    assert_eq!(status, 413, "{headers}\n{text}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/scim+json"),
        "{headers}"
    );
    let err: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        // A chunked answer: take the JSON object out of the framing.
        let start = text.find('{').expect("json body");
        let end = text.rfind('}').expect("json body");
        serde_json::from_str(&text[start..=end]).expect("json")
    });
    assert_eq!(err["schemas"], json!([ERROR_URN]));
    assert_eq!(err["status"], json!("413"));
    assert_eq!(s.get("/Users").await.expect(200).total(), 0);
}

#[tokio::test]
async fn method_not_allowed_lists_allowed_methods() {
    // RFC 9110 §15.5.6: a 405 MUST carry an Allow header.
    let s = TestServer::start().await;
    let r = s.call(Method::PUT, "/Users", Some(json!({}))).await;
    expect_scim_error(&r, 405);
    let allow = r
        .header("allow")
        .expect("Allow header")
        .to_ascii_uppercase();
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "Allow: {allow}"
    );
    assert!(!allow.contains("PUT"), "Allow: {allow}");
}

#[tokio::test]
async fn body_without_content_type_is_still_json() {
    // Some clients omit Content-Type; the body is still SCIM JSON.
    let s = TestServer::start().await;
    let addr = s.origin.trim_start_matches("http://").to_owned();
    let body = user("noct@example.com").to_string();
    let head = format!(
        "POST /scim/v2/{TENANT}/Users HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        s.token,
        body.len()
    );
    let (status, headers, text) = raw_http(&s, &head, body.as_bytes()).await;
    assert_eq!(status, 201, "{headers}\n{text}");
}
