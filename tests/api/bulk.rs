//! Bulk (RFC 7644 §3.7): bulkId references in any order, cycles refused,
//! `failOnErrors`, the limits, per-operation status, version and location,
//! tenancy, product rules and races with single requests, on the store the
//! run selects.

use futures::future::{join, join_all};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const BULK_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

fn bulk(ops: Value) -> Value {
    json!({"schemas": [BULK_REQUEST_URN], "Operations": ops})
}

fn post_user(bulk_id: &str, user_name: &str) -> Value {
    json!({"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": user(user_name)})
}

fn post_group(bulk_id: &str, name: &str, members: &[&str]) -> Value {
    json!({"method": "POST", "path": "/Groups", "bulkId": bulk_id, "data": group(name, members)})
}

fn add_member(id: &str) -> Value {
    patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]))
}

/// `Operations` of a BulkResponse, after checking its shape.
#[track_caller]
fn ops(r: &Resp) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    assert_eq!(r.body["schemas"], json!([BULK_RESPONSE_URN]), "{}", r.body);
    r.body["Operations"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no Operations: {}", r.body))
}

/// Statuses of the operations, as the strings the response carries.
fn statuses(ops: &[Value]) -> Vec<String> {
    ops.iter()
        .map(|o| o["status"].as_str().expect("status string").to_owned())
        .collect()
}

/// The id at the end of an operation's `location`.
#[track_caller]
fn id_of(op: &Value) -> String {
    let loc = op["location"].as_str().expect("location");
    loc.rsplit('/').next().expect("id").to_owned()
}

/// Asserts a failed operation: this status, its SCIM Error `response`.
#[track_caller]
fn expect_op_error(op: &Value, status: u16, scim_type: Option<&str>) -> String {
    assert_eq!(op["status"], json!(status.to_string()), "{op}");
    let e = &op["response"];
    assert_eq!(e["schemas"], json!([ERROR_URN]), "{op}");
    assert_eq!(e["status"], json!(status.to_string()), "{op}");
    assert_eq!(e["scimType"].as_str(), scim_type, "{op}");
    let detail = e["detail"].as_str().expect("detail").to_owned();
    assert!(!detail.is_empty(), "{op}");
    assert!(
        op.get("version").is_none(),
        "a failure has no version: {op}"
    );
    detail
}

/// `userName`s of the tenant's users, sorted.
async fn user_names(s: &TestServer) -> Vec<String> {
    let r = s.get("/Users?count=200").await.expect(200);
    let mut v: Vec<String> = r
        .resources()
        .iter()
        .map(|u| u["userName"].as_str().expect("userName").to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn bulk_creates_users_and_a_group_whose_members_reference_them() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                post_user("u1", "ann@example.com"),
                post_user("u2", "bob@example.com"),
                post_group("g", "Engineering", &["bulkId:u1", "bulkId:u2"]),
            ])),
        )
        .await;
    let ops = ops(&r);
    assert_eq!(statuses(&ops), ["201", "201", "201"], "{}", r.body);
    for (op, (bulk_id, endpoint)) in
        ops.iter()
            .zip([("u1", "Users"), ("u2", "Users"), ("g", "Groups")])
    {
        assert_eq!(op["method"], json!("POST"));
        assert_eq!(op["bulkId"], json!(bulk_id));
        assert!(op.get("response").is_none(), "{op}");
        let id = id_of(op);
        assert_eq!(
            op["location"],
            json!(s.url(&format!("/{endpoint}/{id}"))),
            "{op}"
        );
        // `version` is the resource's ETag after the operation: a user's
        // changed since, when the group's POST made it a member.
        let got = s.get(&format!("/{endpoint}/{id}")).await.expect(200);
        if endpoint == "Groups" {
            assert_eq!(op["version"], json!(got.etag()), "{op}");
        } else {
            assert_ne!(op["version"], json!(got.etag()), "{op}");
            let unchanged = s
                .call_with(
                    Method::GET,
                    &s.url(&format!("/Users/{id}")),
                    &s.token,
                    None,
                    &[("If-None-Match", op["version"].as_str().unwrap())],
                )
                .await;
            assert_eq!(unchanged.status, 200, "the user's groups changed");
        }
        assert_eq!(got.body["meta"]["version"], json!(got.etag()));
    }
    let (a, b, g) = (id_of(&ops[0]), id_of(&ops[1]), id_of(&ops[2]));
    let doc = s.get(&format!("/Groups/{g}")).await.expect(200).body;
    assert_eq!(member_ids(&doc), sorted(&[&a, &b]));
    let ann = s.get(&format!("/Users/{a}")).await.expect(200).body;
    assert_eq!(ann["userName"], json!("ann@example.com"));
    assert_eq!(ann["groups"][0]["value"], json!(g), "{ann}");
}

#[tokio::test]
async fn forward_references_run_after_what_they_reference() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                post_group("g", "Sales", &["bulkId:u1", "bulkId:u2"]),
                {
                    "method": "PATCH", "path": "/Users/bulkId:u2",
                    "data": patch_op(json!([{"op": "replace", "path": "displayName", "value": "Dee"}])),
                },
                post_user("u1", "cy@example.com"),
                post_user("u2", "dee@example.com"),
            ])),
        )
        .await;
    let ops = ops(&r);
    // Reported in the request's order, whatever order they ran in.
    assert_eq!(statuses(&ops), ["201", "200", "201", "201"], "{}", r.body);
    assert_eq!(ops[0]["bulkId"], json!("g"));
    assert_eq!(ops[1]["method"], json!("PATCH"));
    assert_eq!(ops[2]["bulkId"], json!("u1"));
    let (g, u1, u2) = (id_of(&ops[0]), id_of(&ops[2]), id_of(&ops[3]));
    // The PATCH's location is the resolved resource.
    assert_eq!(ops[1]["location"], json!(s.url(&format!("/Users/{u2}"))));
    let doc = s.get(&format!("/Groups/{g}")).await.expect(200).body;
    assert_eq!(member_ids(&doc), sorted(&[&u1, &u2]));
    let dee = s.get(&format!("/Users/{u2}")).await.expect(200);
    assert_eq!(dee.body["displayName"], json!("Dee"));
    // The PATCH ran after the POST: its version is the later one.
    assert_eq!(ops[1]["version"], json!(dee.etag()));
    assert_ne!(ops[1]["version"], ops[3]["version"]);
}

#[tokio::test]
async fn a_cycle_of_references_refuses_the_whole_request() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                post_user("u", "eve@example.com"),
                post_group("ga", "Alpha", &["bulkId:gb", "bulkId:u"]),
                post_group("gb", "Beta", &["bulkId:ga"]),
            ])),
        )
        .await
        .expect_error(400, Some("invalidValue"));
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("cycle") && detail.contains("ga") && detail.contains("gb"),
        "the detail should name the bulkIds of the cycle: {detail}"
    );
    assert_eq!(s.get("/Groups").await.expect(200).total(), 0);
    assert_eq!(s.get("/Users").await.expect(200).total(), 0);
}

#[tokio::test]
async fn fail_on_errors_stops_after_that_many_failures() {
    let s = TestServer::start().await;
    s.create_user("taken@example.com").await;
    let mut req = bulk(json!([
        post_user("d1", "taken@example.com"),
        post_user("ok1", "fresh1@example.com"),
        post_user("d2", "TAKEN@example.com"),
        post_user("d3", "taken@example.com"),
        post_user("ok2", "fresh2@example.com"),
        post_user("ok3", "fresh3@example.com"),
    ]));
    req["failOnErrors"] = json!(3);
    let r = s.post("/Bulk", req).await;
    let ops = ops(&r);
    // Exactly the operations up to the third failure; the rest were not
    // attempted and are not reported.
    assert_eq!(statuses(&ops), ["409", "201", "409", "409"], "{}", r.body);
    for i in [0, 2, 3] {
        expect_op_error(&ops[i], 409, Some("uniqueness"));
        assert!(ops[i].get("location").is_none(), "{}", ops[i]);
    }
    assert_eq!(
        user_names(&s).await,
        ["fresh1@example.com", "taken@example.com"]
    );

    // Without failOnErrors every operation runs.
    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                post_user("a", "taken@example.com"),
                post_user("b", "fresh2@example.com"),
            ])),
        )
        .await;
    assert_eq!(statuses(&self::ops(&r)), ["409", "201"]);
}

#[tokio::test]
async fn unknown_and_failed_references_fail_only_their_operations() {
    let s = TestServer::start().await;
    s.create_user("taken@example.com").await;
    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                post_group("g1", "Ghosts", &["bulkId:nobody"]),
                post_user("dup", "taken@example.com"),
                post_group("g2", "Dependents", &["bulkId:dup"]),
                post_user("ok", "fine@example.com"),
                post_group("g3", "Fine", &["bulkId:ok"]),
            ])),
        )
        .await;
    let ops = ops(&r);
    assert_eq!(
        statuses(&ops),
        ["400", "409", "400", "201", "201"],
        "{}",
        r.body
    );
    let d = expect_op_error(&ops[0], 400, Some("invalidValue"));
    assert!(d.contains("nobody"), "{d}");
    let d = expect_op_error(&ops[2], 400, Some("invalidValue"));
    assert!(d.contains("dup") && d.contains("failed"), "{d}");
    let groups = s.get("/Groups").await.expect(200);
    assert_eq!(groups.total(), 1, "{}", groups.body);
    assert_eq!(groups.resources()[0]["displayName"], json!("Fine"));
    // Every refusal is in the audit trail, those decided before the
    // service (the references) as well as the 409.
    let records = s.audit_trail("outcome=refused&order=asc").await;
    let seen: Vec<(u64, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["status"].as_u64().unwrap_or_default(),
                r["resourceType"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (400, "Group", "Ghosts"),
            (409, "User", "taken@example.com"),
            (400, "Group", "Dependents"),
        ],
        "{records:#?}"
    );
}

#[tokio::test]
async fn malformed_requests_are_400_and_write_nothing() {
    let s = TestServer::start().await;
    let good = post_user("good", "good@example.com");
    let cases: Vec<(Value, &str)> = vec![
        (json!([good]), "invalidSyntax"),
        (
            json!({"schemas": [PATCH_URN], "Operations": [good]}),
            "invalidSyntax",
        ),
        (json!({"schemas": [BULK_REQUEST_URN]}), "invalidSyntax"),
        (
            json!({"schemas": [BULK_REQUEST_URN], "Operations": {"method": "POST"}}),
            "invalidSyntax",
        ),
        (bulk(json!([])), "invalidSyntax"),
        (bulk(json!([good, "POST /Users"])), "invalidSyntax"),
        (
            bulk(json!([good, post_user("good", "other@example.com")])),
            "invalidValue",
        ),
        (
            bulk(json!([good, {"method": "GET", "path": "/Users"}])),
            "invalidValue",
        ),
        (
            bulk(json!([good, {"path": "/Users", "bulkId": "x", "data": user("x@example.com")}])),
            "invalidValue",
        ),
        (
            bulk(
                json!([good, {"method": "POST", "path": "/Users", "data": user("x@example.com")}]),
            ),
            "invalidValue",
        ),
        (
            json!({"schemas": [BULK_REQUEST_URN], "failOnErrors": 0, "Operations": [good]}),
            "invalidValue",
        ),
        (
            json!({"schemas": [BULK_REQUEST_URN], "failOnErrors": "1", "Operations": [good]}),
            "invalidValue",
        ),
    ];
    for (body, scim_type) in cases {
        let r = s.post("/Bulk", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        r.expect_error(400, Some(scim_type));
    }
    let r = s
        .call_with(
            Method::POST,
            &s.url("/Bulk"),
            &s.token,
            None,
            &[("content-type", "application/scim+json")],
        )
        .await;
    r.expect_error(400, Some("invalidSyntax"));
    let r = s
        .client
        .post(s.url("/Bulk"))
        .bearer_auth(&s.token)
        .header("content-type", "application/scim+json")
        .body("{\"schemas\": [")
        .send()
        .await
        .expect("request");
    Resp::read(r).await.expect_error(400, Some("invalidSyntax"));
    // Without a token, nothing is looked at.
    let r = s
        .call_with(
            Method::POST,
            &s.url("/Bulk"),
            "wrong",
            Some(bulk(json!([good]))),
            &[],
        )
        .await;
    r.expect_error(401, None);
    assert_eq!(s.get("/Users").await.expect(200).total(), 0);

    // What one operation says about its resource fails that operation only.
    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                {"method": "POST", "path": "/Widgets", "bulkId": "w", "data": user("w@example.com")},
                {"method": "PATCH", "path": "/Users", "data": patch_op(json!([]))},
                {"method": "PUT", "path": "/Users/some-id"},
                {"method": "POST", "path": "/Users", "bulkId": "bad", "data": {"schemas": [USER_URN]}},
                good,
            ])),
        )
        .await;
    let ops = ops(&r);
    assert_eq!(
        statuses(&ops),
        ["400", "400", "400", "400", "201"],
        "{}",
        r.body
    );
    expect_op_error(&ops[0], 400, Some("invalidPath"));
    expect_op_error(&ops[1], 400, Some("invalidPath"));
    expect_op_error(&ops[2], 400, Some("invalidSyntax"));
    assert_eq!(ops[2]["location"], json!(s.url("/Users/some-id")));
    assert_eq!(ops[3]["response"]["status"], json!("400"));
    assert_eq!(user_names(&s).await, ["good@example.com"]);
}

#[tokio::test]
async fn oversized_requests_are_413_and_write_nothing() {
    let s = TestServer::start().await;
    let spc = s.get("/ServiceProviderConfig").await.expect(200).body;
    let max_ops = spc["bulk"]["maxOperations"]
        .as_u64()
        .expect("maxOperations");
    let max_bytes = spc["bulk"]["maxPayloadSize"]
        .as_u64()
        .expect("maxPayloadSize");

    let many: Vec<Value> = (0..=max_ops)
        .map(|i| post_user(&format!("u{i}"), &format!("many{i}@example.com")))
        .collect();
    let r = s
        .post("/Bulk", bulk(Value::Array(many)))
        .await
        .expect_error(413, None);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&max_ops.to_string()), "{detail}");

    let mut big = user("big@example.com");
    big["displayName"] = json!("x".repeat(max_bytes as usize));
    let r = s
        .post(
            "/Bulk",
            bulk(json!([post_user("small", "small@example.com"), {
                "method": "POST", "path": "/Users", "bulkId": "big", "data": big,
            }])),
        )
        .await
        .expect_error(413, None);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&max_bytes.to_string()), "{detail}");
    assert_eq!(s.get("/Users").await.expect(200).total(), 0);
}

#[tokio::test]
async fn operations_after_the_time_budget_are_503_and_not_attempted() {
    let s = TestServer::start_with(backend(), &[("SCIM_BULK_TIME_BUDGET_SECS", "0")]).await;
    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                post_user("a", "late-a@example.com"),
                post_user("b", "late-b@example.com"),
            ])),
        )
        .await;
    let ops = ops(&r);
    assert_eq!(statuses(&ops), ["503", "503"], "{}", r.body);
    for op in &ops {
        let d = expect_op_error(op, 503, None);
        assert!(d.contains("not attempted") && d.contains("resent"), "{d}");
        assert!(op["bulkId"].is_string());
    }
    assert_eq!(s.get("/Users").await.expect(200).total(), 0);
}

#[tokio::test]
async fn put_patch_delete_report_status_version_and_location() {
    let s = TestServer::start().await;
    let kept = s.post("/Users", user("kept@example.com")).await.expect(201);
    let gone = s.post("/Users", user("gone@example.com")).await.expect(201);
    let (k, g) = (kept.id(), gone.id());
    let v1 = kept.etag();
    let mut replaced = user("kept@example.com");
    replaced["displayName"] = json!("Kept");
    let deactivate = patch_op(json!([{"op": "replace", "path": "title", "value": "Boss"}]));
    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                {"method": "PUT", "path": format!("/Users/{k}"), "version": v1, "data": replaced},
                // Stale: the PUT above moved the version on.
                {"method": "PATCH", "path": format!("/Users/{k}"), "version": v1, "data": deactivate},
                {"method": "patch", "path": format!("/Users/{k}"), "bulkId": "p", "data": deactivate},
                {"method": "DELETE", "path": format!("/Users/{g}"), "version": "W/\"7\""},
                {"method": "Delete", "path": format!("/Users/{g}"), "version": gone.etag()},
                {"method": "DELETE", "path": "/Users/no-such-id"},
            ])),
        )
        .await;
    let ops = ops(&r);
    assert_eq!(
        statuses(&ops),
        ["200", "412", "200", "412", "204", "404"],
        "{}",
        r.body
    );
    let methods: Vec<&str> = ops.iter().map(|o| o["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        ["PUT", "PATCH", "PATCH", "DELETE", "DELETE", "DELETE"]
    );
    expect_op_error(&ops[1], 412, None);
    expect_op_error(&ops[3], 412, None);
    expect_op_error(&ops[5], 404, None);
    for op in &ops[..3] {
        assert_eq!(op["location"], json!(s.url(&format!("/Users/{k}"))), "{op}");
    }
    assert_eq!(ops[2]["bulkId"], json!("p"));
    assert_eq!(ops[4]["location"], json!(s.url(&format!("/Users/{g}"))));
    assert!(ops[4].get("version").is_none(), "{}", ops[4]);
    let now = s.get(&format!("/Users/{k}")).await.expect(200);
    assert_eq!(ops[2]["version"], json!(now.etag()));
    assert_ne!(ops[0]["version"], json!(v1));
    assert_ne!(ops[0]["version"], ops[2]["version"]);
    assert_eq!(now.body["displayName"], json!("Kept"));
    assert_eq!(now.body["title"], json!("Boss"));
    s.get(&format!("/Users/{g}")).await.expect_error(404, None);
}

#[tokio::test]
async fn another_tenants_resources_are_not_found_per_operation() {
    let s = TestServer::start().await;
    let globex = |path: &str| format!("{}/scim/v2/{OTHER_TENANT}{path}", s.origin);
    let theirs = s
        .call_with(
            Method::POST,
            &globex("/Users"),
            &s.other_token,
            Some(user("theirs@globex.example")),
            &[],
        )
        .await
        .expect(201)
        .id();
    let their_group = s
        .call_with(
            Method::POST,
            &globex("/Groups"),
            &s.other_token,
            Some(group("Theirs", &[&theirs])),
            &[],
        )
        .await
        .expect(201)
        .id();
    let read = |path: String| {
        let url = globex(&path);
        let token = s.other_token.clone();
        let s = &s;
        async move { s.call_with(Method::GET, &url, &token, None, &[]).await }
    };
    let before_user = read(format!("/Users/{theirs}")).await.expect(200).body;
    let before_group = read(format!("/Groups/{their_group}"))
        .await
        .expect(200)
        .body;

    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                {"method": "PATCH", "path": format!("/Users/{theirs}"),
                 "data": patch_op(json!([{"op": "replace", "path": "active", "value": false}]))},
                {"method": "PUT", "path": format!("/Users/{theirs}"), "data": user("theirs@globex.example")},
                {"method": "PATCH", "path": format!("/Groups/{their_group}"), "data": add_member(&theirs)},
                {"method": "DELETE", "path": format!("/Users/{theirs}")},
                {"method": "DELETE", "path": format!("/Groups/{their_group}")},
                // Nor can one of ours take theirs as a member.
                post_group("g", "Ours", &[&theirs]),
                post_user("u", "ours@acme.example"),
            ])),
        )
        .await;
    let ops = ops(&r);
    assert_eq!(
        statuses(&ops)[..5],
        ["404", "404", "404", "404", "404"],
        "{}",
        r.body
    );
    for op in &ops[..5] {
        expect_op_error(op, 404, None);
    }
    assert_ne!(ops[5]["status"], json!("201"), "{}", ops[5]);
    assert_eq!(ops[6]["status"], json!("201"));
    assert_eq!(
        read(format!("/Users/{theirs}")).await.expect(200).body,
        before_user
    );
    assert_eq!(
        read(format!("/Groups/{their_group}"))
            .await
            .expect(200)
            .body,
        before_group
    );
    assert_eq!(user_names(&s).await, ["ours@acme.example"]);
}

#[tokio::test]
async fn an_admin_cannot_be_deactivated_or_deleted_through_bulk() {
    let s = TestServer::start().await;
    let id = s.create_user("chief@example.com").await;
    s.admin(
        Method::PUT,
        &format!("/tenants/{TENANT}/users/{id}/admin"),
        None,
    )
    .await
    .expect(200);
    let before = s.get(&format!("/Users/{id}")).await.expect(200).body;
    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                {"method": "PATCH", "path": format!("/Users/{id}"),
                 "data": patch_op(json!([{"op": "replace", "path": "active", "value": false}]))},
                {"method": "DELETE", "path": format!("/Users/{id}")},
                post_user("u", "staff@example.com"),
            ])),
        )
        .await;
    let ops = ops(&r);
    assert_eq!(statuses(&ops), ["403", "403", "201"], "{}", r.body);
    for op in &ops[..2] {
        let d = expect_op_error(op, 403, None).to_lowercase();
        assert!(d.contains("admin") && d.contains("console"), "{d}");
    }
    assert_eq!(
        s.get(&format!("/Users/{id}")).await.expect(200).body,
        before
    );
}

#[tokio::test]
async fn a_user_name_raced_by_bulk_and_single_posts_exists_once() {
    let s = TestServer::start().await;
    let names: Vec<String> = (0..4).map(|i| format!("race{i}@example.com")).collect();
    let ops: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| post_user(&format!("b{i}"), n))
        .collect();
    let singles = join_all(
        names
            .iter()
            .flat_map(|n| [n.clone(), n.to_uppercase()])
            .map(|n| {
                let s = &s;
                async move { s.post("/Users", user(&n)).await }
            }),
    );
    let (r, singles) = join(s.post("/Bulk", bulk(Value::Array(ops))), singles).await;
    let bulk_ops = self::ops(&r);
    for (i, name) in names.iter().enumerate() {
        let mut wins = 0;
        let mut outcomes = vec![bulk_ops[i]["status"].as_str().unwrap().to_owned()];
        if bulk_ops[i]["status"] == json!("201") {
            wins += 1;
        } else {
            expect_op_error(&bulk_ops[i], 409, Some("uniqueness"));
        }
        for single in &singles[2 * i..2 * i + 2] {
            outcomes.push(single.status.to_string());
            match single.status {
                201 => wins += 1,
                409 => assert_eq!(single.body["scimType"], json!("uniqueness")),
                other => panic!("{name}: unexpected {other}: {}", single.body),
            }
        }
        assert_eq!(wins, 1, "{name}: {outcomes:?}");
        let found = s
            .get(&format!(
                "/Users?filter={}",
                enc(&format!("userName eq \"{name}\""))
            ))
            .await
            .expect(200);
        assert_eq!(found.total(), 1, "{name}: {}", found.body);
    }
    assert_eq!(
        s.get("/Users").await.expect(200).total(),
        names.len() as u64
    );
}

#[tokio::test]
async fn member_adds_of_a_bulk_and_of_single_patches_are_all_kept() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(s.create_user(&format!("m{i}@example.com")).await);
    }
    let g = s.create_group("Busy", &[]).await;
    let path = format!("/Groups/{g}");
    let ops: Vec<Value> = ids[..4]
        .iter()
        .map(|id| json!({"method": "PATCH", "path": path, "data": add_member(id)}))
        .collect();
    let singles = join_all(ids[4..].iter().map(|id| {
        let (s, path) = (&s, &path);
        async move { s.patch(path, add_member(id)).await }
    }));
    let (r, singles) = join(s.post("/Bulk", bulk(Value::Array(ops))), singles).await;
    assert_eq!(
        statuses(&self::ops(&r)),
        ["200", "200", "200", "200"],
        "{}",
        r.body
    );
    for single in singles {
        single.expect(200);
    }
    let doc = s.get(&path).await.expect(200).body;
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(member_ids(&doc), sorted(&all));
}

#[tokio::test]
async fn a_reference_in_a_patch_filter_path_names_the_created_member() {
    let s = TestServer::start().await;
    let keep = s.create_user("stays@example.com").await;
    let r = s
        .post(
            "/Bulk",
            bulk(json!([
                // Listed first: the PATCH's filter references a later POST.
                {"method": "PATCH", "path": "/Groups/bulkId:g", "data": {
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "remove", "path": "members[value eq \"bulkId:u\"]"}]}},
                post_user("u", "leaves@example.com"),
                post_group("g", "Filtered", &["bulkId:u", keep.as_str()]),
            ])),
        )
        .await;
    let ops = ops(&r);
    assert_eq!(statuses(&ops), ["200", "201", "201"], "{}", r.body);
    let g = id_of(&ops[2]);
    let doc = s.get(&format!("/Groups/{g}")).await.expect(200).body;
    assert_eq!(member_ids(&doc), [keep]);
}
