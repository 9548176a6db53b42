//! The audit trail and the change-event feed, over HTTP and the CLI, on the
//! store the run selects: what each change records (with its actor), that
//! refusals are recorded as such, that a failed write leaves no record,
//! that nothing secret is in a record, and that a consumer of the feed
//! misses no event of concurrent writers.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

async fn trail(s: &TestServer, query: &str) -> Vec<Value> {
    s.audit_trail(query).await
}

fn ops(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["operation"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test]
async fn a_users_lifecycle_is_recorded_with_its_actor_and_transitions() {
    let s = TestServer::start().await;
    let id = s.create_user("trail@example.com").await;
    let path = format!("/Users/{id}");
    s.patch(
        &path,
        patch_op(json!([{"op": "replace", "path": "displayName", "value": "Trail"}])),
    )
    .await
    .expect(200);
    s.patch(
        &path,
        patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .await
    .expect(200);
    s.patch(
        &path,
        patch_op(json!([{"op": "replace", "path": "active", "value": true}])),
    )
    .await
    .expect(200);
    s.delete(&path).await.expect(204);

    let records = trail(&s, &format!("resource={id}&order=asc")).await;
    assert_eq!(
        ops(&records),
        [
            "created",
            "updated",
            "deactivated",
            "reactivated",
            "deleted"
        ],
        "{records:#?}"
    );
    for r in &records {
        assert_eq!(r["resourceType"], "User");
        assert_eq!(r["name"], "trail@example.com");
        assert_eq!(r["actor"]["kind"], "scim", "{r}");
        assert!(r["actor"]["generation"].as_u64().is_some(), "{r}");
        assert!(r["requestId"].is_string(), "{r}");
        assert_eq!(r["outcome"], "committed");
    }
    let versions: Vec<u64> = records
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert_eq!(records[1]["changed"], json!(["displayName"]));
    assert_eq!(records[2]["transitions"]["active"], json!([true, false]));
    assert_eq!(
        records[2]["transitions"]["licence"],
        json!(["assigned", "none"])
    );
    assert_eq!(
        records[3]["transitions"]["licence"],
        json!(["none", "assigned"])
    );
    assert_eq!(
        records[0]["transitions"]["licence"],
        json!(["none", "assigned"])
    );
    // Newest first by default.
    let newest = trail(&s, &format!("resource={id}")).await;
    assert_eq!(ops(&newest)[0], "deleted");
}

#[tokio::test]
async fn group_member_changes_record_who_was_added_and_removed() {
    let s = TestServer::start().await;
    let a = s.create_user("a@members.example").await;
    let b = s.create_user("b@members.example").await;
    let g = s.create_group("Recorded", &[&a]).await;
    let path = format!("/Groups/{g}");
    s.patch(
        &path,
        patch_op(json!([{"op": "add", "path": "members", "value": [{"value": b}]}])),
    )
    .await
    .expect(200);
    s.patch(
        &path,
        patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")}])),
    )
    .await
    .expect(200);
    let records = trail(&s, &format!("resource={g}&order=asc")).await;
    assert_eq!(
        ops(&records),
        ["created", "members.changed", "members.changed"]
    );
    assert_eq!(records[0]["transitions"]["membersAdded"], json!([a]));
    assert_eq!(records[1]["transitions"]["membersAdded"], json!([b]));
    assert_eq!(records[2]["transitions"]["membersRemoved"], json!([a]));
    assert_eq!(records[1]["name"], "Recorded");
}

#[tokio::test]
async fn admin_changes_and_credentials_are_recorded_with_the_admin_as_actor() {
    let s = TestServer::start().await;
    s.admin(
        Method::PATCH,
        &format!("/tenants/{TENANT}"),
        Some(json!({"seats": 999})),
    )
    .await
    .expect(200);
    s.admin(
        Method::POST,
        &format!("/tenants/{TENANT}/credentials"),
        None,
    )
    .await
    .expect(201);
    let link = link_in(&s.outbox().pop().unwrap());
    let (status, page) = s.page(Method::POST, &link).await;
    assert_eq!(status, 200);
    let token = token_in(&page).unwrap();
    let id = s
        .call_with(
            Method::POST,
            &s.url("/Users"),
            &token,
            Some(user("admin-made@example.com")),
            &[],
        )
        .await
        .expect(201)
        .id();
    s.admin(
        Method::PUT,
        &format!("/tenants/{TENANT}/users/{id}/admin"),
        None,
    )
    .await
    .expect(200);

    let records = trail(&s, "order=asc").await;
    // The latest of each kind (the demo tenant's preset credential was
    // recorded at startup, by the service).
    let find = |ty: &str, op: &str| {
        records
            .iter()
            .rev()
            .find(|r| r["resourceType"] == ty && r["operation"] == op)
            .cloned()
            .unwrap_or_else(|| panic!("no {ty} {op} in {records:#?}"))
    };
    let seats = find("Tenant", "updated");
    assert_eq!(
        seats["actor"],
        json!({"kind": "admin", "principal": "admin-key"})
    );
    assert_eq!(seats["changed"], json!(["seats"]));
    let created = find("Credentials", "created");
    assert_eq!(created["actor"]["kind"], "admin");
    assert_eq!(created["version"], 2, "the demo tenant's second credential");
    assert_eq!(find("Credentials", "revealed")["actor"]["kind"], "link");
    let granted = find("User", "admin.granted");
    assert_eq!(granted["transitions"]["admin"], json!([false, true]));
    // The user created with the new token names that credential generation.
    let by_token = records
        .iter()
        .find(|r| r["resourceId"] == id.as_str() && r["operation"] == "created")
        .unwrap();
    assert_eq!(by_token["actor"], json!({"kind": "scim", "generation": 2}));

    // No record holds a token, the admin key or a password.
    let all = serde_json::to_string(&records).unwrap();
    for secret in [
        token.as_str(),
        s.token.as_str(),
        s.admin_key().as_str(),
        "scim_",
        "scimadm_",
    ] {
        assert!(!all.contains(secret), "a secret in the trail");
    }
}

#[tokio::test]
async fn refused_writes_are_recorded_and_failed_writes_leave_no_change_record() {
    let s = TestServer::start().await;
    let id = s.create_user("keeper@example.com").await;
    s.admin(
        Method::PUT,
        &format!("/tenants/{TENANT}/users/{id}/admin"),
        None,
    )
    .await
    .expect(200);
    // 403: protected admin; 409: uniqueness; 412: stale If-Match; 400: bad member.
    s.patch(
        &format!("/Users/{id}"),
        patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .await
    .expect_error(403, None);
    let mut dup = user("KEEPER@example.com");
    dup["password"] = json!("hunter2-secret");
    s.post("/Users", dup)
        .await
        .expect_error(409, Some("uniqueness"));
    s.call_with(
        Method::PUT,
        &s.url(&format!("/Users/{id}")),
        &s.token,
        Some(user("keeper@example.com")),
        &[("If-Match", "W/\"1\"")],
    )
    .await
    .expect(412);
    s.post("/Groups", group("Bad", &["no-such-user"]))
        .await
        .expect(400);

    let refused = trail(&s, "outcome=refused&order=asc").await;
    let statuses: Vec<u64> = refused
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [403, 409, 412, 400], "{refused:#?}");
    assert_eq!(refused[0]["resourceId"], id.as_str());
    assert_eq!(refused[1]["scimType"], "uniqueness");
    assert_eq!(refused[1]["name"], "KEEPER@example.com");
    let all = serde_json::to_string(&trail(&s, "limit=100").await).unwrap();
    assert!(!all.contains("hunter2"), "a password in the trail");
    // None of the refused writes left a change record.
    let committed = trail(&s, &format!("resource={id}&outcome=committed&order=asc")).await;
    assert_eq!(ops(&committed), ["created", "admin.granted"]);
}

#[tokio::test]
async fn the_cli_prints_the_trail_as_a_table_or_json() {
    let s = TestServer::start().await;
    let id = s.create_user("cli-trail@example.com").await;
    s.patch(
        &format!("/Users/{id}"),
        patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .await
    .expect(200);
    let out = s.cli(&["audit", TENANT, "--user", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("OPERATION"),
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].contains("deactivated") && lines[1].contains("active true→false"),
        "{table}"
    );
    let out = s.cli(&["--json", "audit", TENANT, "--user", &id, "--asc"]);
    let records: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ops(&records), ["created", "deactivated"]);
}

/// Pages through the feed from the start until it is quiet.
async fn read_feed(
    s: &TestServer,
    mut after: Option<String>,
    expect: usize,
) -> (Vec<Value>, Option<String>) {
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let path = match &after {
            Some(p) => format!("/tenants/{TENANT}/events?limit=100&after={}", enc(p)),
            None => format!("/tenants/{TENANT}/events?limit=100"),
        };
        let page = s.admin(Method::GET, &path, None).await.expect(200);
        let got = page.body["events"].as_array().cloned().unwrap_or_default();
        after = page.body["position"].as_str().map(str::to_owned);
        let n = got.len();
        events.extend(got);
        if n < 100 {
            if events.len() >= expect || std::time::Instant::now() > deadline {
                return (events, after);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn a_feed_consumer_misses_no_event_of_concurrent_writers() {
    let s = TestServer::start_with(backend(), &[("SCIM_EVENTS_HOLDBACK_SECS", "2")]).await;
    // 10,000 changes on the embedded store; fewer on the single-threaded
    // emulator, which serves one request at a time.
    let n = if backend() == Backend::DynamoDb {
        400
    } else {
        10_000
    };
    let writers = 16;
    // Start past what the server recorded at startup (its tenants).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (_, start) = read_feed(&s, None, 0).await;
    // Concurrent writers: each creates users and patches them; a reader
    // follows the feed meanwhile and resumes from its last position.
    let write = |w: usize| {
        let s = &s;
        async move {
            for i in 0..n / writers / 2 {
                let id = s.create_user(&format!("feed-{w}-{i}@example.com")).await;
                s.patch(
                    &format!("/Users/{id}"),
                    patch_op(json!([{"op": "replace", "path": "displayName", "value": "x"}])),
                )
                .await
                .expect(200);
            }
        }
    };
    let reader = async {
        let mut seen = Vec::new();
        let mut after = start.clone();
        // Read while writing, in several resumptions.
        for _ in 0..5 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let (page, pos) = read_feed(&s, after.clone(), 0).await;
            seen.extend(page);
            after = pos;
        }
        (seen, after)
    };
    let (_, (mut seen, after)) =
        futures::future::join(futures::future::join_all((0..writers).map(write)), reader).await;
    let total = writers * (n / writers / 2) * 2;
    let (rest, _) = read_feed(&s, after, total.saturating_sub(seen.len())).await;
    seen.extend(rest);

    let ids: Vec<&str> = seen.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), total, "events missed or extra");
    assert_eq!(ids.len(), total, "an event was served twice");
    // Each resource's events come in version order.
    let mut per: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &seen {
        assert_eq!(e["specversion"], "1.0");
        per.entry(e["subject"].as_str().unwrap())
            .or_default()
            .push(e["data"]["version"].as_u64().unwrap());
    }
    for (subject, versions) in per {
        assert_eq!(versions, [1, 2], "{subject}");
    }
}

/// Every event type, produced through the public surface, read from the
/// feed, and validated against its JSON Schema in `infra/events/v1/`.
#[tokio::test]
async fn every_event_type_is_emitted_and_matches_its_schema() {
    let s = TestServer::start_with(
        backend(),
        &[("SCIM_EVENTS_HOLDBACK_SECS", "0"), ("REVEAL_TTL_SECS", "3")],
    )
    .await;
    let t = format!("/tenants/{TENANT}");
    // User lifecycle, licences by hand, the admin role.
    s.admin(
        Method::PATCH,
        &t,
        Some(json!({"seats": 1, "autoAssignLicences": false})),
    )
    .await
    .expect(200);
    let u = s.create_user("catalogue@example.com").await;
    let p = format!("/Users/{u}");
    s.patch(
        &p,
        patch_op(json!([{"op": "replace", "path": "displayName", "value": "C"}])),
    )
    .await
    .expect(200);
    s.admin(Method::DELETE, &format!("{t}/users/{u}/licence"), None)
        .await
        .expect(200);
    s.admin(Method::PUT, &format!("{t}/users/{u}/licence"), None)
        .await
        .expect(200);
    s.admin(Method::PUT, &format!("{t}/users/{u}/admin"), None)
        .await
        .expect(200);
    s.patch(
        &p,
        patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .await
    .expect_error(403, None);
    s.admin(Method::DELETE, &format!("{t}/users/{u}/admin"), None)
        .await
        .expect(200);
    s.patch(
        &p,
        patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .await
    .expect(200);
    s.patch(
        &p,
        patch_op(json!([{"op": "replace", "path": "active", "value": true}])),
    )
    .await
    .expect(200);
    // Groups.
    let g = s.create_group("Catalogue", &[&u]).await;
    let gp = format!("/Groups/{g}");
    s.patch(
        &gp,
        patch_op(json!([{"op": "replace", "path": "displayName", "value": "Catalogue 2"}])),
    )
    .await
    .expect(200);
    s.patch(
        &gp,
        patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{u}\"]")}])),
    )
    .await
    .expect(200);
    s.delete(&gp).await.expect(204);
    s.delete(&p).await.expect(204);
    // Tenants and credentials.
    s.admin(Method::PATCH, &t, Some(json!({"name": "Renamed"})))
        .await
        .expect(200);
    s.admin(Method::POST, &format!("{t}/credentials"), None)
        .await
        .expect(201);
    let link = link_in(&s.outbox().pop().unwrap());
    assert_eq!(s.page(Method::POST, &link).await.0, 200);
    // A link left to expire, then opened.
    s.admin(Method::POST, &format!("{t}/credentials"), None)
        .await
        .expect(201);
    let stale = link_in(&s.outbox().pop().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    assert_eq!(s.page(Method::GET, &stale).await.0, 410);

    let (events, _) = read_feed(&s, None, 1).await;
    let types: BTreeSet<String> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    // The tenant's creation is in the trail of its own partition too.
    let expected: BTreeSet<String> = scim_provisioning::audit::event::all_types()
        .into_iter()
        .collect();
    let missing: Vec<&String> = expected.difference(&types).collect();
    assert!(
        missing.is_empty(),
        "no event of types {missing:?}; saw {types:?}"
    );

    let file = s.data_dir().join("events.jsonl");
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/validate_events.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&file)
        .output()
        .expect("the test venv's python (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_event_type_has_a_schema_file() {
    for t in scim_provisioning::audit::event::all_types() {
        let path = format!("{}/infra/events/v1/{t}.json", env!("CARGO_MANIFEST_DIR"));
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["title"], t.as_str(), "{path}");
    }
}

/// A membership change too big for one DynamoDB transaction is written in
/// parts, each with its own record: together they name every member once.
#[tokio::test]
async fn a_big_membership_change_is_recorded_part_by_part() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..80 {
        ids.push(s.create_user(&format!("big{i:02}@members.example")).await);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let g = s.create_group("Big", &refs).await;
    let got = s.get(&format!("/Groups/{g}")).await.expect(200);
    assert_eq!(member_ids(&got.body).len(), 80);
    let records = trail(&s, &format!("resource={g}&order=asc")).await;
    assert_eq!(records[0]["operation"], "created");
    let mut named: Vec<String> = records
        .iter()
        .flat_map(|r| {
            r["transitions"]["membersAdded"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    named.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(named, all, "{records:#?}");
    if backend() == Backend::DynamoDb {
        assert!(records.len() > 1, "one transaction cannot hold 80 members");
    }
}
