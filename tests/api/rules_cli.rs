//! The admin CLI for seats, licences, the admin role and the console's user
//! and group views, against the running server (`scim-provisioning admin
//! --endpoint … --data-dir …`). Errors: a non-zero exit with the API's
//! detail on stderr.

use std::collections::BTreeSet;
use std::process::Output;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;
use crate::rules::{Off, Scim};

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "CLI failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A failing exit whose stderr carries the detail the API gives for the
/// same request.
#[track_caller]
fn fails_with(out: &Output, api: &Resp) {
    assert!(!out.status.success(), "the CLI succeeded: {out:?}");
    let detail = api.body["detail"].as_str().expect("API detail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(detail),
        "stderr lacks the API's detail {detail:?}: {stderr}"
    );
}

/// `--json` output: one JSON object per line.
fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ids(users: &[Value]) -> BTreeSet<String> {
    users
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn the_cli_creates_and_updates_tenants_with_seats_and_auto_assignment() {
    let s = TestServer::start().await;
    stdout(&s.cli(&[
        "tenants",
        "create",
        "seated",
        "--name",
        "Seated",
        "--admin-email",
        "it@seated.example",
        "--seats",
        "3",
        "--no-auto-assign",
    ]));
    let t = s
        .admin(Method::GET, "/tenants/seated", None)
        .await
        .expect(200);
    assert_eq!(t.body["seats"], json!(3), "{}", t.body);
    assert_eq!(t.body["autoAssignLicences"], json!(false));

    stdout(&s.cli(&[
        "tenants",
        "create",
        "plain",
        "--name",
        "Plain",
        "--admin-email",
        "it@plain.example",
    ]));
    let t = s
        .admin(Method::GET, "/tenants/plain", None)
        .await
        .expect(200);
    assert_eq!(t.body["seats"], json!(25), "{}", t.body);
    assert_eq!(t.body["autoAssignLicences"], json!(true));

    stdout(&s.cli(&["tenants", "update", "seated", "--seats", "5"]));
    let t = s
        .admin(Method::GET, "/tenants/seated", None)
        .await
        .expect(200);
    assert_eq!(t.body["seats"], json!(5));
    assert_eq!(t.body["autoAssignLicences"], json!(false));
    stdout(&s.cli(&["tenants", "update", "seated", "--auto-assign", "true"]));
    let t = s
        .admin(Method::GET, "/tenants/seated", None)
        .await
        .expect(200);
    assert_eq!(t.body["autoAssignLicences"], json!(true));
    assert_eq!(t.body["seats"], json!(5));
    stdout(&s.cli(&[
        "tenants",
        "update",
        "seated",
        "--seats",
        "4",
        "--auto-assign",
        "false",
    ]));
    let t = s
        .admin(Method::GET, "/tenants/seated", None)
        .await
        .expect(200);
    assert_eq!(
        (&t.body["seats"], &t.body["autoAssignLicences"]),
        (&json!(4), &json!(false))
    );
    assert_eq!(t.body["name"], json!("Seated"));

    // Below the seats in use: refused with the API's detail, nothing changes.
    s.create_user("one@example.com").await;
    s.create_user("two@example.com").await;
    let api = s
        .admin(
            Method::PATCH,
            &format!("/tenants/{TENANT}"),
            Some(json!({"seats": 1})),
        )
        .await
        .expect_admin_error(409, "seats_in_use");
    fails_with(&s.cli(&["tenants", "update", TENANT, "--seats", "1"]), &api);
    let t = s
        .admin(Method::GET, &format!("/tenants/{TENANT}"), None)
        .await
        .expect(200);
    assert_eq!(t.body["seats"], json!(1000));
    assert_eq!(t.body["seatsUsed"], json!(2));
}

#[tokio::test]
async fn the_cli_lists_creates_and_shows_users() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice@example.com").await;
    let bob = s.create_user("bob@example.com").await;
    let mut off = user("carol@example.com");
    off["active"] = json!(false);
    let carol = s.post("/Users", off).await.expect(201).id();
    stdout(&s.cli(&[
        "users",
        "create",
        TENANT,
        "manual@example.com",
        "--display-name",
        "Manual Person",
        "--email",
        "manual@example.com",
    ]));

    let all = json_lines(&s.cli(&["users", "list", TENANT, "--json"]));
    assert_eq!(all.len(), 4, "{all:?}");
    let manual = all
        .iter()
        .find(|u| u["userName"] == json!("manual@example.com"))
        .expect("the console user");
    let mid = manual["id"].as_str().expect("id").to_owned();
    assert_eq!(manual["displayName"], json!("Manual Person"));
    assert_eq!(manual["provisionedBy"], json!("manual"));
    assert_eq!(manual["licence"], json!("none"));
    assert_eq!(manual["admin"], json!(false));
    let api = s
        .admin(Method::GET, &format!("/tenants/{TENANT}/users/{mid}"), None)
        .await
        .expect(200);
    assert_eq!(&api.body, manual);
    let doc = s.get(&format!("/Users/{mid}")).await.expect(200).body;
    assert_eq!(doc[PRODUCT_URN]["provisionedBy"], json!("manual"), "{doc}");

    // The table: a header, then one line per user.
    let table = stdout(&s.cli(&["users", "list", TENANT]));
    let lines: Vec<&str> = table.lines().filter(|l| !l.trim().is_empty()).collect();
    let header = lines[0];
    assert!(header.starts_with("ID"), "{table}");
    for col in ["USERNAME", "LICENCE", "ADMIN", "PROVISIONED"] {
        assert!(header.contains(col), "{col} missing: {table}");
    }
    assert_eq!(lines.len(), 5, "{table}");
    for (id, name) in [
        (&alice, "alice@example.com"),
        (&bob, "bob@example.com"),
        (&carol, "carol@example.com"),
        (&mid, "manual@example.com"),
    ] {
        let line = lines
            .iter()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("{id} missing: {table}"));
        assert!(line.contains(name), "{line}");
    }

    // Filters.
    let q = |extra: &[&str]| {
        let mut args = vec!["users", "list", TENANT, "--json"];
        args.extend_from_slice(extra);
        ids(&json_lines(&s.cli(&args)))
    };
    let set = |xs: &[&String]| xs.iter().map(|x| (*x).clone()).collect::<BTreeSet<_>>();
    assert_eq!(q(&["--provisioned", "manual"]), set(&[&mid]));
    assert_eq!(q(&["--provisioned", "scim"]), set(&[&alice, &bob, &carol]));
    assert_eq!(q(&["--licence", "assigned"]), set(&[&alice, &bob]));
    assert_eq!(q(&["--licence", "none"]), set(&[&carol, &mid]));
    assert_eq!(q(&["--licence", "waiting"]), set(&[]));
    assert_eq!(
        q(&["--provisioned", "scim", "--licence", "none"]),
        set(&[&carol])
    );

    // One user.
    let shown = stdout(&s.cli(&["users", "show", TENANT, &alice]));
    assert!(
        shown.contains(&alice) && shown.contains("alice@example.com"),
        "{shown}"
    );
    let api = s
        .admin(
            Method::GET,
            &format!("/tenants/{TENANT}/users/no-such-user"),
            None,
        )
        .await
        .expect_admin_error(404, "not_found");
    fails_with(&s.cli(&["users", "show", TENANT, "no-such-user"]), &api);
    let api = s
        .admin(Method::GET, "/tenants/ghost/users", None)
        .await
        .expect_admin_error(404, "not_found");
    fails_with(&s.cli(&["users", "list", "ghost"]), &api);

    // A duplicate name is refused.
    let dup = s.cli(&["users", "create", TENANT, "ALICE@example.com"]);
    assert!(!dup.status.success(), "{dup:?}");
    assert_eq!(
        json_lines(&s.cli(&["users", "list", TENANT, "--json"])).len(),
        4
    );
}

#[tokio::test]
async fn the_cli_assigns_and_removes_licences() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "byhand", 1, false).await;
    let u1 = t.create("u1@byhand.example").await;
    let u2 = t.create("u2@byhand.example").await;
    assert_eq!(t.licence(&u1).await, "waiting");

    stdout(&s.cli(&["licence", "assign", "byhand", &u1]));
    assert_eq!(t.licence(&u1).await, "assigned");
    let api = t
        .assign_licence(&u2)
        .await
        .expect_admin_error(409, "no_seat_free");
    fails_with(&s.cli(&["licence", "assign", "byhand", &u2]), &api);
    assert_eq!(t.licence(&u2).await, "waiting");
    let waiting =
        json_lines(&s.cli(&["users", "list", "byhand", "--licence", "waiting", "--json"]));
    assert_eq!(ids(&waiting), BTreeSet::from([u2.clone()]));

    // Auto is off: the freed seat stays free.
    stdout(&s.cli(&["licence", "remove", "byhand", &u1]));
    assert_eq!(t.licence(&u1).await, "none");
    assert_eq!(t.licence(&u2).await, "waiting");
    t.expect_seats(0, 1).await;

    // Turning auto on serves the line.
    stdout(&s.cli(&["tenants", "update", "byhand", "--auto-assign", "true"]));
    assert_eq!(t.licence(&u2).await, "assigned");
    t.expect_seats(1, 0).await;
}

#[tokio::test]
async fn the_cli_grants_and_revokes_the_admin_role() {
    let s = TestServer::start().await;
    let t = Scim::demo(&s);
    let a = t.create("a@example.com").await;
    let b = t.create("b@example.com").await;

    stdout(&s.cli(&["admins", "grant", TENANT, &a]));
    assert_eq!(t.view(&a).await["admin"], json!(true));
    let admins = json_lines(&s.cli(&["users", "list", TENANT, "--admin", "--json"]));
    assert_eq!(ids(&admins), BTreeSet::from([a.clone()]));
    let table = stdout(&s.cli(&["users", "list", TENANT, "--admin"]));
    assert_eq!(
        table.lines().filter(|l| !l.trim().is_empty()).count(),
        2,
        "{table}"
    );
    assert!(table.contains(&a) && !table.contains(&b), "{table}");
    t.deactivate(&a, "a@example.com", Off::Patch)
        .await
        .expect_error(403, None);

    t.deactivate(&b, "b@example.com", Off::Patch)
        .await
        .expect(200);
    let api = t
        .grant_admin(&b)
        .await
        .expect_admin_error(409, "user_inactive");
    fails_with(&s.cli(&["admins", "grant", TENANT, &b]), &api);
    assert_eq!(t.view(&b).await["admin"], json!(false));

    stdout(&s.cli(&["admins", "revoke", TENANT, &a]));
    assert_eq!(t.view(&a).await["admin"], json!(false));
    assert!(json_lines(&s.cli(&["users", "list", TENANT, "--admin", "--json"])).is_empty());
    t.deactivate(&a, "a@example.com", Off::Patch)
        .await
        .expect(200);
}

#[tokio::test]
async fn the_cli_lists_groups_and_their_members() {
    let s = TestServer::start().await;
    let u1 = s.create_user("g1@example.com").await;
    let u2 = s.create_user("g2@example.com").await;
    let eng = s.create_group("Engineering", &[&u1, &u2]).await;
    let empty = s.create_group("Nobody", &[]).await;

    let listed = stdout(&s.cli(&["groups", "list", TENANT]));
    for (id, name) in [(&eng, "Engineering"), (&empty, "Nobody")] {
        let line = listed
            .lines()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("{id} missing: {listed}"));
        assert!(line.contains(name), "{line}");
    }
    let members = stdout(&s.cli(&["groups", "members", TENANT, &eng]));
    assert!(members.contains(&u1) && members.contains(&u2), "{members}");
    let none = stdout(&s.cli(&["groups", "members", TENANT, &empty]));
    assert!(!none.contains(&u1), "{none}");

    let api = s
        .admin(
            Method::GET,
            &format!("/tenants/{TENANT}/groups/no-such-group/members"),
            None,
        )
        .await
        .expect_admin_error(404, "not_found");
    fails_with(
        &s.cli(&["groups", "members", TENANT, "no-such-group"]),
        &api,
    );
}
