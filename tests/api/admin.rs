//! The admin API (`/admin/v1`) and its CLI, on the store the run selects:
//! tenants created, listed page by page, shown and changed; every bad input
//! a JSON 4xx with a stable code that leaves data untouched.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "CLI failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test]
async fn tenants_are_created_shown_and_changed() {
    let s = TestServer::start().await;
    let r = s
        .admin(
            Method::POST,
            "/tenants",
            Some(json!({"id": "umbrella", "name": "Umbrella Corp", "adminEmail": "it@umbrella.example"})),
        )
        .await
        .expect(201);
    assert_eq!(
        r.header("location").as_deref(),
        Some("/admin/v1/tenants/umbrella")
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let t = &r.body;
    assert_eq!(t["id"], "umbrella");
    assert_eq!(t["name"], "Umbrella Corp");
    assert_eq!(t["adminEmail"], "it@umbrella.example");
    assert_eq!(
        t["tenantUrl"],
        json!(format!("{}/scim/v2/umbrella", s.origin))
    );
    assert_eq!(t["credentials"], Value::Null);

    let got = s
        .admin(Method::GET, "/tenants/umbrella", None)
        .await
        .expect(200);
    assert_eq!(&got.body, t);

    let changed = s
        .admin(
            Method::PATCH,
            "/tenants/umbrella",
            Some(json!({"name": "Umbrella", "adminEmail": "sec@umbrella.example"})),
        )
        .await
        .expect(200);
    assert_eq!(changed.body["name"], "Umbrella");
    assert_eq!(changed.body["adminEmail"], "sec@umbrella.example");
    let only_name = s
        .admin(
            Method::PATCH,
            "/tenants/umbrella",
            Some(json!({"name": "U"})),
        )
        .await
        .expect(200);
    assert_eq!(only_name.body["adminEmail"], "sec@umbrella.example");

    // A tenant without credentials cannot be reached over SCIM yet.
    let url = format!("{}/scim/v2/umbrella/Users", s.origin);
    s.call_with(Method::GET, &url, &s.token, None, &[])
        .await
        .expect_error(401, None);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let s = TestServer::start().await;
    s.create_tenant("acme-two", "it@acme.example").await;
    let before = s
        .admin(Method::GET, "/tenants/acme-two", None)
        .await
        .expect(200)
        .body;
    let cases: Vec<(Method, &str, Option<Value>, u16, &str)> = vec![
        (
            Method::POST,
            "/tenants",
            Some(json!({"id": "acme-two", "name": "X", "adminEmail": "a@b.example"})),
            409,
            "conflict",
        ),
        (
            Method::POST,
            "/tenants",
            Some(json!({"id": "no spaces", "name": "X", "adminEmail": "a@b.example"})),
            400,
            "invalid_id",
        ),
        (
            Method::POST,
            "/tenants",
            Some(json!({"id": "ok", "name": " ", "adminEmail": "a@b.example"})),
            400,
            "invalid_name",
        ),
        (
            Method::POST,
            "/tenants",
            Some(json!({"id": "ok", "name": "X", "adminEmail": "not-an-email"})),
            400,
            "invalid_email",
        ),
        (
            Method::POST,
            "/tenants",
            Some(json!({"id": "ok", "name": "X"})),
            400,
            "invalid_json",
        ),
        (
            Method::POST,
            "/tenants",
            Some(json!({"id": "ok", "name": "X", "adminEmail": "a@b.example", "plan": "gold"})),
            400,
            "invalid_json",
        ),
        (
            Method::PATCH,
            "/tenants/acme-two",
            Some(json!({})),
            400,
            "invalid_request",
        ),
        (
            Method::PATCH,
            "/tenants/acme-two",
            Some(json!({"adminEmail": "nope"})),
            400,
            "invalid_email",
        ),
        (
            Method::PATCH,
            "/tenants/acme-two",
            Some(json!({"id": "renamed"})),
            400,
            "invalid_json",
        ),
        (
            Method::PATCH,
            "/tenants/ghost",
            Some(json!({"name": "X"})),
            404,
            "not_found",
        ),
        (Method::GET, "/tenants/ghost", None, 404, "not_found"),
        (Method::GET, "/tenants/bad%20id", None, 404, "not_found"),
        (
            Method::POST,
            "/tenants/ghost/credentials",
            None,
            404,
            "not_found",
        ),
        (Method::GET, "/tenants?limit=0", None, 400, "invalid_limit"),
        (
            Method::GET,
            "/tenants?limit=1000",
            None,
            400,
            "invalid_limit",
        ),
        (
            Method::GET,
            "/tenants?colour=red",
            None,
            400,
            "invalid_request",
        ),
        (Method::GET, "/nothing-here", None, 404, "not_found"),
        (
            Method::DELETE,
            "/tenants/acme-two",
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let r = s.admin(method.clone(), path, body.clone()).await;
        assert_eq!(r.status, status, "{method} {path} {body:?}: {}", r.body);
        r.expect_admin_error(status, code);
    }
    // Not JSON, or declared as something else.
    let key = s.admin_key();
    for (ct, body) in [
        ("application/json", "{not json"),
        ("text/plain", "{}"),
        ("application/x-www-form-urlencoded", "id=x"),
    ] {
        let r = s
            .client
            .post(format!("{}/admin/v1/tenants", s.origin))
            .bearer_auth(&key)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let r = Resp::read(r).await;
        let code = if ct == "application/json" {
            "invalid_json"
        } else {
            "unsupported_media_type"
        };
        let status = if ct == "application/json" { 400 } else { 415 };
        r.expect_admin_error(status, code);
    }
    assert_eq!(
        s.admin(Method::GET, "/tenants/acme-two", None)
            .await
            .expect(200)
            .body,
        before
    );
    let all = s
        .admin(Method::GET, "/tenants?limit=100", None)
        .await
        .expect(200);
    let ids: Vec<&str> = all.body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "acme-two", "globex"]);
}

#[tokio::test]
async fn tenants_list_page_by_page_in_id_order() {
    let s = TestServer::start().await;
    for id in ["t-e", "t-a", "t-d", "t-c", "t-b"] {
        s.create_tenant(id, "it@example.com").await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/tenants?limit=2&cursor={c}"),
            None => "/tenants?limit=2".into(),
        };
        let page = s.admin(Method::GET, &path, None).await.expect(200);
        pages += 1;
        for t in page.body["tenants"].as_array().unwrap() {
            seen.push(t["id"].as_str().unwrap().to_owned());
        }
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["acme", "globex", "t-a", "t-b", "t-c", "t-d", "t-e"]);
    assert!(pages >= 4, "{pages} pages");
}

#[tokio::test]
async fn concurrent_creates_of_one_tenant_make_exactly_one() {
    let s = TestServer::start().await;
    let creates = (0..12).map(|i| {
        s.admin(
            Method::POST,
            "/tenants",
            Some(json!({"id": "racy", "name": format!("Racer {i}"), "adminEmail": "it@racy.example"})),
        )
    });
    let statuses: Vec<u16> = futures::future::join_all(creates)
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&c| c == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&c| c == 201 || c == 409),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn concurrent_credential_creations_leave_one_working_token() {
    let s = TestServer::start().await;
    let path = format!("/tenants/{TENANT}/credentials");
    let creates = (0..6).map(|_| s.admin(Method::POST, &path, None));
    let answers = futures::future::join_all(creates).await;
    let won = answers.iter().filter(|r| r.status == 201).count();
    assert!(
        won >= 1,
        "{:?}",
        answers.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    for r in answers.iter().filter(|r| r.status != 201) {
        assert_eq!(r.status, 409, "{}", r.body);
    }
    // Of all links mailed, exactly one reveals (the current generation's).
    let mut revealed = Vec::new();
    for mail in s.outbox() {
        let (status, page) = s.page(Method::POST, &link_in(&mail)).await;
        if status == 200 {
            revealed.push(token_in(&page).unwrap());
        }
    }
    assert_eq!(revealed.len(), 1, "{revealed:?}");
    let url = s.url("/Users");
    s.call_with(Method::GET, &url, &revealed[0], None, &[])
        .await
        .expect(200);
    s.call_with(Method::GET, &url, &s.token, None, &[])
        .await
        .expect(401);
}

#[tokio::test]
async fn the_cli_manages_tenants_and_credentials() {
    let s = TestServer::start().await;
    let created = stdout(&s.cli(&[
        "tenants",
        "create",
        "wayne",
        "--name",
        "Wayne Enterprises",
        "--admin-email",
        "it@wayne.example",
    ]));
    assert!(
        created.contains("wayne") && created.contains("Wayne Enterprises"),
        "{created}"
    );
    let shown: Value =
        serde_json::from_str(&stdout(&s.cli(&["--json", "tenants", "show", "wayne"]))).unwrap();
    assert_eq!(shown["adminEmail"], "it@wayne.example");
    stdout(&s.cli(&["tenants", "update", "wayne", "--name", "Wayne"]));
    let table = stdout(&s.cli(&["tenants", "list", "--page-size", "1"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("ADMIN EMAIL"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "a header and one line per tenant: {table}");
    assert!(
        table.contains("Wayne ") || table.contains("Wayne\n"),
        "{table}"
    );

    let issued = stdout(&s.cli(&["credentials", "create", "wayne"]));
    assert!(issued.contains("it@wayne.example"), "{issued}");
    assert!(
        !issued.contains("scim_"),
        "the CLI printed a token: {issued}"
    );
    let issued: Value = serde_json::from_str(&stdout(&s.cli(&[
        "--json",
        "credentials",
        "create",
        "wayne",
    ])))
    .unwrap();
    assert_eq!(
        issued["tenantUrl"],
        json!(format!("{}/scim/v2/wayne", s.origin))
    );
    let mails = s.outbox();
    assert_eq!(mails.len(), 2);
    let (status, page) = s.page(Method::POST, &link_in(&mails[1])).await;
    assert_eq!(status, 200);
    let token = token_in(&page).unwrap();
    let url = format!("{}/scim/v2/wayne/Users", s.origin);
    s.call_with(Method::GET, &url, &token, None, &[])
        .await
        .expect(200);

    // Errors: a message and a failing exit code.
    let dup = s.cli(&[
        "tenants",
        "create",
        "wayne",
        "--name",
        "W",
        "--admin-email",
        "it@wayne.example",
    ]);
    assert!(!dup.status.success());
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("already exists"),
        "{dup:?}"
    );
    let unknown = s.cli(&["credentials", "create", "nobody"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));
    // A wrong key is refused.
    let wrong = std::process::Command::new(env!("CARGO_BIN_EXE_scim-provisioning"))
        .args([
            "admin",
            "--endpoint",
            &s.origin,
            "--admin-key",
            "scimadm_wrong",
            "tenants",
            "list",
        ])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"));
}
