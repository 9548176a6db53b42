//! Product rules on top of SCIM, on the store the run selects: which users
//! SCIM provisioned (and adoption of console users), licences (seats, the
//! waiting line, auto-assignment, hand-over in one atomic step), the admin
//! role that SCIM cannot take away, the admin console's user and group
//! views, offboarding (deactivate = suspend, delete = remove), the read-only
//! product extension, and group sync as a regression.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::{join, join_all};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// Creates tenant `id` with `seats` and `autoAssignLicences`, creates its
/// credentials and reveals the emailed link; returns the Secret Token.
pub(crate) async fn tenant(s: &TestServer, id: &str, seats: u64, auto: bool) -> String {
    s.admin(
        Method::POST,
        "/tenants",
        Some(json!({
            "id": id,
            "name": format!("Tenant {id}"),
            "adminEmail": format!("it@{id}.example"),
            "seats": seats,
            "autoAssignLicences": auto,
        })),
    )
    .await
    .expect(201);
    s.admin(Method::POST, &format!("/tenants/{id}/credentials"), None)
        .await
        .expect(201);
    let mark = format!("/credentials/{id}.");
    let mail = s
        .outbox()
        .into_iter()
        .rev()
        .find(|m| link_in(m).contains(&mark))
        .expect("the credentials email");
    let (status, page) = s.page(Method::POST, &link_in(&mail)).await;
    assert_eq!(status, 200, "{page}");
    token_in(&page).expect("token on the revealed page")
}

/// How an IdP deactivates a user.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Off {
    /// `{"op":"replace","path":"active","value":false}`
    Patch,
    /// Entra ID: `{"op":"Replace","path":"active","value":"False"}`
    Entra,
    /// Okta: `{"op":"replace","value":{"active":false}}`
    Okta,
    /// PUT of the full user with `"active": false`.
    Put,
}

pub(crate) const DIALECTS: [Off; 4] = [Off::Patch, Off::Entra, Off::Okta, Off::Put];

/// SCIM calls as one tenant (base URL + token), and the admin API calls
/// about that tenant.
pub(crate) struct Scim<'a> {
    pub s: &'a TestServer,
    pub tenant: String,
    pub base: String,
    pub token: String,
}

impl<'a> Scim<'a> {
    /// A new tenant with these licence settings, reached with its revealed token.
    pub(crate) async fn new(s: &'a TestServer, id: &str, seats: u64, auto: bool) -> Scim<'a> {
        let token = tenant(s, id, seats, auto).await;
        Scim {
            s,
            tenant: id.to_owned(),
            base: format!("{}/scim/v2/{id}", s.origin),
            token,
        }
    }

    /// The demo tenant `acme` (1000 seats, auto on).
    pub(crate) fn demo(s: &'a TestServer) -> Scim<'a> {
        Scim {
            s,
            tenant: TENANT.to_owned(),
            base: s.tenant_url(),
            token: s.token.clone(),
        }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let url = format!("{}{path}", self.base);
        self.s.call_with(method, &url, &self.token, body, &[]).await
    }
    pub(crate) async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    pub(crate) async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    pub(crate) async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub(crate) async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub(crate) async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }

    /// An admin API call under `/tenants/{tenant}`.
    pub(crate) async fn admin(&self, method: Method, rest: &str, body: Option<Value>) -> Resp {
        self.s
            .admin(method, &format!("/tenants/{}{rest}", self.tenant), body)
            .await
    }
    /// The tenant as the admin API shows it.
    pub(crate) async fn info(&self) -> Value {
        self.admin(Method::GET, "", None).await.expect(200).body
    }
    /// PATCH of the tenant (seats, autoAssignLicences, …).
    pub(crate) async fn set(&self, body: Value) -> Resp {
        self.admin(Method::PATCH, "", Some(body)).await
    }
    /// The admin console's view of one user.
    pub(crate) async fn view(&self, id: &str) -> Value {
        self.admin(Method::GET, &format!("/users/{id}"), None)
            .await
            .expect(200)
            .body
    }
    /// Every user of the admin listing with this query, page by page.
    pub(crate) async fn users(&self, query: &str, limit: u32) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut path = format!("/users?limit={limit}");
            if !query.is_empty() {
                path.push('&');
                path.push_str(query);
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", enc(c)));
            }
            let page = self.admin(Method::GET, &path, None).await.expect(200);
            let users = page.body["users"].as_array().expect("users").clone();
            assert!(users.len() <= limit as usize, "{}", page.body);
            all.extend(users);
            match page.body["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return all,
            }
        }
        panic!("the listing never ended");
    }
    /// Ids of the admin listing with this query.
    pub(crate) async fn ids(&self, query: &str) -> BTreeSet<String> {
        self.users(query, 100)
            .await
            .iter()
            .map(|u| u["id"].as_str().expect("id").to_owned())
            .collect()
    }

    /// Creates an active user; returns its id.
    pub(crate) async fn create(&self, name: &str) -> String {
        self.post("/Users", user(name)).await.expect(201).id()
    }
    /// The SCIM representation of a user.
    pub(crate) async fn doc(&self, id: &str) -> Value {
        self.get(&format!("/Users/{id}")).await.expect(200).body
    }
    /// The licence of a user, the same in the SCIM extension and the admin view.
    pub(crate) async fn licence(&self, id: &str) -> String {
        let doc = self.doc(id).await;
        let view = self.view(id).await;
        assert_eq!(
            doc[PRODUCT_URN]["licence"], view["licence"],
            "SCIM and admin view disagree: {doc} / {view}"
        );
        lic(&doc).to_owned()
    }
    pub(crate) async fn deactivate(&self, id: &str, user_name: &str, how: Off) -> Resp {
        let path = format!("/Users/{id}");
        match how {
            Off::Patch => {
                self.patch(
                    &path,
                    patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
                )
                .await
            }
            Off::Entra => {
                self.patch(
                    &path,
                    patch_op(json!([{"op": "Replace", "path": "active", "value": "False"}])),
                )
                .await
            }
            Off::Okta => {
                self.patch(
                    &path,
                    patch_op(json!([{"op": "replace", "value": {"active": false}}])),
                )
                .await
            }
            Off::Put => {
                let mut body = user(user_name);
                body["active"] = json!(false);
                self.put(&path, body).await
            }
        }
    }
    pub(crate) async fn reactivate(&self, id: &str) -> Resp {
        self.patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "path": "active", "value": true}])),
        )
        .await
    }
    pub(crate) async fn assign_licence(&self, id: &str) -> Resp {
        self.admin(Method::PUT, &format!("/users/{id}/licence"), None)
            .await
    }
    pub(crate) async fn remove_licence(&self, id: &str) -> Resp {
        self.admin(Method::DELETE, &format!("/users/{id}/licence"), None)
            .await
    }
    pub(crate) async fn revoke_admin(&self, id: &str) -> Resp {
        self.admin(Method::DELETE, &format!("/users/{id}/admin"), None)
            .await
    }
    pub(crate) async fn grant_admin(&self, id: &str) -> Resp {
        self.admin(Method::PUT, &format!("/users/{id}/admin"), None)
            .await
    }
    /// Asserts the tenant's counts and the invariant: `seatsUsed` users are
    /// "assigned" and `seatsWaiting` "waiting", in the listing too.
    pub(crate) async fn expect_seats(&self, used: u64, waiting: u64) {
        let t = self.info().await;
        assert_eq!(
            (t["seatsUsed"].as_u64(), t["seatsWaiting"].as_u64()),
            (Some(used), Some(waiting)),
            "tenant: {t}"
        );
        let all = self.users("", 100).await;
        let count = |l: &str| all.iter().filter(|u| u["licence"] == json!(l)).count() as u64;
        assert_eq!((count("assigned"), count("waiting")), (used, waiting));
        assert_eq!(self.ids("licence=assigned").await.len() as u64, used);
        assert_eq!(self.ids("licence=waiting").await.len() as u64, waiting);
    }
}

/// The product extension of a user representation.
pub(crate) fn ext(doc: &Value) -> &Value {
    &doc[PRODUCT_URN]
}

pub(crate) fn lic(doc: &Value) -> &str {
    doc[PRODUCT_URN]["licence"]
        .as_str()
        .unwrap_or("<no licence>")
}

fn rfc3339(v: &Value) -> time::OffsetDateTime {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn lists_product_schema(doc: &Value) -> bool {
    doc["schemas"]
        .as_array()
        .is_some_and(|s| s.contains(&json!(PRODUCT_URN)))
}

/// So that users start waiting at distinguishable times.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(30)).await;
}

/// The 403 that protects an admin from SCIM deactivation and delete.
#[track_caller]
fn expect_admin_protected(r: Resp) {
    let r = r.expect_error(403, None);
    let detail = r.body["detail"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        detail.contains("admin") && detail.contains("console"),
        "the detail should say to remove the admin role in the admin console first: {detail}"
    );
}

fn ids_of(users: &[Value]) -> Vec<String> {
    users
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect()
}

// ================================================================ tenants

#[tokio::test]
async fn tenants_default_to_25_seats_with_auto_assignment_and_show_seat_counts() {
    let s = TestServer::start().await;
    let t = s.create_tenant("plain", "it@plain.example").await;
    for (k, v) in [
        ("seats", json!(25)),
        ("seatsUsed", json!(0)),
        ("seatsWaiting", json!(0)),
        ("autoAssignLicences", json!(true)),
    ] {
        assert_eq!(t[k], v, "{k}: {t}");
    }
    for demo in [TENANT, OTHER_TENANT] {
        let d = s
            .admin(Method::GET, &format!("/tenants/{demo}"), None)
            .await
            .expect(200);
        assert_eq!(d.body["seats"], json!(1000), "{}", d.body);
        assert_eq!(d.body["autoAssignLicences"], json!(true));
    }

    let r = s
        .admin(
            Method::POST,
            "/tenants",
            Some(
                json!({"id": "seated", "name": "Seated", "adminEmail": "it@seated.example",
                         "seats": 7, "autoAssignLicences": false}),
            ),
        )
        .await
        .expect(201);
    assert_eq!(r.body["seats"], json!(7));
    assert_eq!(r.body["autoAssignLicences"], json!(false));
    let got = s
        .admin(Method::GET, "/tenants/seated", None)
        .await
        .expect(200);
    assert_eq!(got.body, r.body);

    let p = |body: Value| s.admin(Method::PATCH, "/tenants/seated", Some(body));
    let r = p(json!({"seats": 9})).await.expect(200);
    assert_eq!(
        (&r.body["seats"], &r.body["autoAssignLicences"]),
        (&json!(9), &json!(false))
    );
    let r = p(json!({"autoAssignLicences": true})).await.expect(200);
    assert_eq!(
        (&r.body["seats"], &r.body["autoAssignLicences"]),
        (&json!(9), &json!(true))
    );
    let r = p(json!({"name": "Seated Inc", "seats": 11, "autoAssignLicences": false}))
        .await
        .expect(200);
    assert_eq!(r.body["name"], json!("Seated Inc"));
    assert_eq!(r.body["seats"], json!(11));
    assert_eq!(r.body["autoAssignLicences"], json!(false));
    assert_eq!(r.body["adminEmail"], json!("it@seated.example"));

    // Values of the wrong type are refused and change nothing.
    let before = s
        .admin(Method::GET, "/tenants/seated", None)
        .await
        .expect(200)
        .body;
    for bad in [
        json!({"seats": -1}),
        json!({"seats": "ten"}),
        json!({"seats": 1.5}),
        json!({"autoAssignLicences": "yes"}),
    ] {
        let r = p(bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        let mut create = json!({"id": "badseats", "name": "B", "adminEmail": "it@b.example"});
        for (k, v) in bad.as_object().expect("object") {
            create[k] = v.clone();
        }
        let r = s.admin(Method::POST, "/tenants", Some(create)).await;
        assert_eq!(r.status, 400, "create with {bad}: {}", r.body);
    }
    let after = s
        .admin(Method::GET, "/tenants/seated", None)
        .await
        .expect(200)
        .body;
    assert_eq!(after, before);
    s.admin(Method::GET, "/tenants/badseats", None)
        .await
        .expect_admin_error(404, "not_found");
}

#[tokio::test]
async fn lowering_seats_below_those_in_use_is_refused_and_changes_nothing() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "lower", 3, true).await;
    let a = t.create("a@lower.example").await;
    let b = t.create("b@lower.example").await;
    t.create("c@lower.example").await;
    t.create("d@lower.example").await; // waits
    t.expect_seats(3, 1).await;

    let before = t.info().await;
    t.set(json!({"seats": 2}))
        .await
        .expect_admin_error(409, "seats_in_use");
    t.set(json!({"seats": 0}))
        .await
        .expect_admin_error(409, "seats_in_use");
    t.set(json!({"seats": 1, "name": "Renamed", "autoAssignLicences": false}))
        .await
        .expect_admin_error(409, "seats_in_use");
    assert_eq!(t.info().await, before, "a refused PATCH changed the tenant");
    t.expect_seats(3, 1).await;

    // Equal to the seats in use is fine.
    let r = t.set(json!({"seats": 3})).await.expect(200);
    assert_eq!(r.body["seatsUsed"], json!(3));

    // a's seat goes to d, b's is freed: then 2 is allowed, 1 is not.
    t.deactivate(&a, "a@lower.example", Off::Patch)
        .await
        .expect(200);
    t.expect_seats(3, 0).await;
    t.deactivate(&b, "b@lower.example", Off::Patch)
        .await
        .expect(200);
    t.expect_seats(2, 0).await;
    let r = t.set(json!({"seats": 2})).await.expect(200);
    assert_eq!(r.body["seats"], json!(2));
    t.set(json!({"seats": 1}))
        .await
        .expect_admin_error(409, "seats_in_use");
    assert_eq!(t.info().await["seats"], json!(2));
}

// ================================================================ the label

#[tokio::test]
async fn scim_users_are_labelled_and_console_users_are_manual_until_scim_adopts_them() {
    let s = TestServer::start().await;
    let t = Scim::demo(&s);
    let r = t
        .post("/Users", user("scim.made@example.com"))
        .await
        .expect(201);
    let id = r.id();
    assert!(lists_product_schema(&r.body), "{}", r.body);
    let e = ext(&r.body);
    assert_eq!(e["provisionedBy"], json!("scim"), "{e}");
    let at = rfc3339(&e["provisionedAt"]);
    assert_eq!(e["licence"], json!("assigned"));
    assert_eq!(e["admin"], json!(false));
    let v = t.view(&id).await;
    assert_eq!(v["provisionedBy"], json!("scim"));
    assert_eq!(rfc3339(&v["provisionedAt"]), at);
    assert_eq!(v["userName"], json!("scim.made@example.com"));
    assert_eq!(v["active"], json!(true));

    // "Add user" in the console: not marked as SCIM, no licence.
    let m = t
        .admin(
            Method::POST,
            "/users",
            Some(json!({"userName": "Console.Person@example.com",
                         "displayName": "Console Person",
                         "email": "console.person@example.com"})),
        )
        .await
        .expect(201);
    let mid = m.body["id"].as_str().expect("id").to_owned();
    assert_eq!(m.body["userName"], json!("Console.Person@example.com"));
    assert_eq!(m.body["displayName"], json!("Console Person"));
    assert_eq!(m.body["provisionedBy"], json!("manual"));
    assert!(m.body["provisionedAt"].is_null(), "{}", m.body);
    assert_eq!(m.body["licence"], json!("none"));
    assert_eq!(m.body["admin"], json!(false));
    assert_eq!(t.view(&mid).await, m.body);

    let doc = t.doc(&mid).await;
    assert!(lists_product_schema(&doc), "{doc}");
    assert_eq!(ext(&doc)["provisionedBy"], json!("manual"), "{doc}");
    assert!(ext(&doc)["provisionedAt"].is_null(), "{doc}");
    assert_eq!(ext(&doc)["licence"], json!("none"));
    assert_eq!(
        doc["emails"][0]["value"],
        json!("console.person@example.com")
    );

    // The name is taken, in any case, for SCIM and for the console.
    t.post("/Users", user("console.person@EXAMPLE.COM"))
        .await
        .expect_error(409, Some("uniqueness"));
    let dup = t
        .admin(
            Method::POST,
            "/users",
            Some(json!({"userName": "CONSOLE.person@example.com"})),
        )
        .await;
    assert_eq!(dup.status, 409, "{}", dup.body);

    // The IdP finds it by userName, which adopts nothing yet.
    let found = t
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName eq "Console.Person@example.com""#)
        ))
        .await
        .expect(200);
    assert_eq!(found.total(), 1, "{}", found.body);
    assert_eq!(found.resources()[0]["id"], json!(mid));
    assert_eq!(ext(&found.resources()[0])["provisionedBy"], json!("manual"));
    assert_eq!(t.view(&mid).await["provisionedBy"], json!("manual"));

    // The first PATCH adopts it.
    let r = t
        .patch(
            &format!("/Users/{mid}"),
            patch_op(json!([{"op": "replace", "path": "externalId", "value": "idp-1"}])),
        )
        .await
        .expect(200);
    assert_eq!(ext(&r.body)["provisionedBy"], json!("scim"), "{}", r.body);
    rfc3339(&ext(&r.body)["provisionedAt"]);
    let v = t.view(&mid).await;
    assert_eq!(v["provisionedBy"], json!("scim"));
    rfc3339(&v["provisionedAt"]);

    // A PUT adopts too.
    let m2 = t
        .admin(
            Method::POST,
            "/users",
            Some(json!({"userName": "console.two@example.com"})),
        )
        .await
        .expect(201);
    assert_eq!(m2.body["provisionedBy"], json!("manual"));
    let mid2 = m2.body["id"].as_str().expect("id").to_owned();
    let mut body = user("console.two@example.com");
    body["externalId"] = json!("idp-2");
    let r = t.put(&format!("/Users/{mid2}"), body).await.expect(200);
    assert_eq!(ext(&r.body)["provisionedBy"], json!("scim"), "{}", r.body);
    rfc3339(&ext(&r.body)["provisionedAt"]);

    assert!(t.ids("provisioned=manual").await.is_empty());
    assert_eq!(
        t.ids("provisioned=scim").await,
        BTreeSet::from([id, mid, mid2])
    );
}

#[tokio::test]
async fn every_user_representation_lists_the_product_extension() {
    let s = TestServer::start().await;
    let t = Scim::demo(&s);
    let name = "everywhere@example.com";
    let created = t.post("/Users", user(name)).await.expect(201);
    let id = created.id();
    let filter = format!(r#"userName eq "{name}""#);
    let listed = t
        .get(&format!("/Users?filter={}", enc(&filter)))
        .await
        .expect(200);
    let searched = t
        .post(
            "/Users/.search",
            json!({"schemas": [SEARCH_URN], "filter": filter}),
        )
        .await
        .expect(200);
    let root_search = t
        .post(
            "/.search",
            json!({"schemas": [SEARCH_URN], "filter": filter}),
        )
        .await
        .expect(200);
    let patched = t
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "path": "displayName", "value": "E"}])),
        )
        .await
        .expect(200);
    let put = t.put(&format!("/Users/{id}"), user(name)).await.expect(200);
    let docs = [
        ("POST", created.body),
        ("GET", t.doc(&id).await),
        ("list", listed.resources()[0].clone()),
        ("/Users/.search", searched.resources()[0].clone()),
        ("/.search", root_search.resources()[0].clone()),
        ("PATCH", patched.body),
        ("PUT", put.body),
    ];
    for (how, doc) in docs {
        assert!(lists_product_schema(&doc), "{how}: {doc}");
        let e = ext(&doc);
        assert_eq!(e["provisionedBy"], json!("scim"), "{how}: {doc}");
        assert_eq!(e["licence"], json!("assigned"), "{how}: {doc}");
        assert_eq!(e["admin"], json!(false), "{how}: {doc}");
        rfc3339(&e["provisionedAt"]);
    }
}

#[tokio::test]
async fn the_product_extension_sent_by_an_idp_changes_nothing() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "forged", 1, true).await;
    let forged = json!({"provisionedBy": "manual", "provisionedAt": "2001-01-01T00:00:00Z",
                        "licence": "none", "admin": true});
    let with_ext = |name: &str, e: &Value| {
        let mut b = user(name);
        b["schemas"] = json!([USER_URN, PRODUCT_URN]);
        b[PRODUCT_URN] = e.clone();
        b
    };
    let a = t
        .post("/Users", with_ext("a@forged.example", &forged))
        .await
        .expect(201);
    let id = a.id();
    let e = ext(&a.body).clone();
    assert_eq!(e["provisionedBy"], json!("scim"), "{e}");
    assert_eq!(e["licence"], json!("assigned"), "{e}");
    assert_eq!(e["admin"], json!(false), "{e}");
    assert!(rfc3339(&e["provisionedAt"]).year() > 2001, "{e}");

    // No free seat: asking for one in the extension does not get one.
    let b = t
        .post(
            "/Users",
            with_ext(
                "b@forged.example",
                &json!({"licence": "assigned", "admin": true}),
            ),
        )
        .await
        .expect(201);
    let bid = b.id();
    assert_eq!(ext(&b.body)["licence"], json!("waiting"), "{}", b.body);
    assert_eq!(ext(&b.body)["admin"], json!(false));

    let path = format!("/Users/{id}");
    let attempts = [
        t.put(&path, with_ext("a@forged.example", &forged)).await,
        t.patch(
            &path,
            patch_op(
                json!([{"op": "replace", "path": format!("{PRODUCT_URN}:admin"), "value": true}]),
            ),
        )
        .await,
        t.patch(
            &path,
            patch_op(json!([{"op": "add", "path": format!("{PRODUCT_URN}:admin"), "value": true}])),
        )
        .await,
        t.patch(
            &path,
            patch_op(json!([{"op": "replace", "value": {PRODUCT_URN: forged.clone()}}])),
        )
        .await,
        t.patch(
            &format!("/Users/{bid}"),
            patch_op(json!([{"op": "replace", "value": {PRODUCT_URN: {"licence": "assigned"}}}])),
        )
        .await,
    ];
    for r in attempts {
        let r = r.expect(200);
        assert!(lists_product_schema(&r.body), "{}", r.body);
        assert_eq!(ext(&r.body)["admin"], json!(false), "{}", r.body);
    }
    assert_eq!(ext(&t.doc(&id).await), &e);
    assert_eq!(t.licence(&bid).await, "waiting");
    assert_eq!(t.view(&id).await["admin"], json!(false));
    assert!(t.ids("admin=true").await.is_empty());
    t.expect_seats(1, 1).await;
}

#[tokio::test]
async fn schemas_and_resource_types_publish_the_product_extension() {
    let s = TestServer::start().await;
    let list = s.get("/Schemas").await.expect(200).resources();
    let schema = list
        .iter()
        .find(|sc| sc["id"] == json!(PRODUCT_URN))
        .unwrap_or_else(|| panic!("{PRODUCT_URN} not in /Schemas"))
        .clone();
    let one = s.get(&format!("/Schemas/{PRODUCT_URN}")).await.expect(200);
    assert_eq!(one.body, schema);
    let attrs = schema["attributes"].as_array().expect("attributes");
    for (name, ty, canonical) in [
        ("provisionedBy", "string", Some(json!(["scim", "manual"]))),
        ("provisionedAt", "dateTime", None),
        (
            "licence",
            "string",
            Some(json!(["assigned", "waiting", "none"])),
        ),
        ("admin", "boolean", None),
    ] {
        let a = attrs
            .iter()
            .find(|a| a["name"] == json!(name))
            .unwrap_or_else(|| panic!("{name} missing: {schema}"));
        assert_eq!(a["type"], json!(ty), "{a}");
        assert_eq!(a["mutability"], json!("readOnly"), "{a}");
        assert_eq!(a["multiValued"], json!(false), "{a}");
        if let (Some(c), Some(listed)) = (canonical, a.get("canonicalValues")) {
            let mut want: Vec<String> = serde_json::from_value(c).unwrap_or_default();
            let mut got: Vec<String> = serde_json::from_value(listed.clone()).unwrap_or_default();
            want.sort();
            got.sort();
            assert_eq!(got, want, "{a}");
        }
    }

    let rt = s.get("/ResourceTypes/User").await.expect(200);
    let exts = rt.body["schemaExtensions"]
        .as_array()
        .expect("schemaExtensions");
    let product = exts
        .iter()
        .find(|e| e["schema"] == json!(PRODUCT_URN))
        .unwrap_or_else(|| panic!("product extension missing: {}", rt.body));
    assert_eq!(product["required"], json!(false));
    assert!(
        exts.iter().any(|e| e["schema"] == json!(ENTERPRISE_URN)),
        "{}",
        rt.body
    );
    let all = s.get("/ResourceTypes").await.expect(200).resources();
    let user_rt = all.iter().find(|r| r["id"] == json!("User")).expect("User");
    assert_eq!(user_rt, &rt.body);
}

// ================================================================ licences

#[tokio::test]
async fn an_active_user_takes_a_free_seat_or_waits_and_an_inactive_one_takes_none() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "seats", 2, true).await;
    for (name, want) in [
        ("a@seats.example", "assigned"),
        ("b@seats.example", "assigned"),
        ("c@seats.example", "waiting"),
    ] {
        let r = t.post("/Users", user(name)).await.expect(201);
        assert_eq!(lic(&r.body), want, "{name}: {}", r.body);
        assert_eq!(t.licence(&r.id()).await, want);
    }
    let mut off = user("d@seats.example");
    off["active"] = json!(false);
    let r = t.post("/Users", off).await.expect(201);
    assert_eq!(lic(&r.body), "none", "{}", r.body);
    assert_eq!(t.view(&r.id()).await["active"], json!(false));
    t.expect_seats(2, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_against_ten_seats_assign_exactly_ten() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "rush", 10, true).await;
    let creates = (0..50).map(|i| t.post("/Users", user(&format!("u{i:02}@rush.example"))));
    let answers = join_all(creates).await;
    let mut assigned = BTreeSet::new();
    let mut waiting = BTreeSet::new();
    for r in answers {
        let r = r.expect(201);
        match lic(&r.body) {
            "assigned" => assigned.insert(r.id()),
            "waiting" => waiting.insert(r.id()),
            other => panic!("licence {other}: {}", r.body),
        };
    }
    assert_eq!((assigned.len(), waiting.len()), (10, 40));
    t.expect_seats(10, 40).await;
    assert_eq!(t.ids("licence=assigned").await, assigned);
    assert_eq!(t.ids("licence=waiting").await, waiting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_deactivations_hand_every_seat_to_the_waiting_line() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "handover", 20, true).await;
    let name = |i: usize| format!("u{i:02}@handover.example");
    let mut ids = Vec::new();
    for chunk in (0..40).collect::<Vec<_>>().chunks(10) {
        let creates = chunk.iter().map(|&i| t.post("/Users", user(&name(i))));
        for r in join_all(creates).await {
            ids.push(r.expect(201).id());
        }
    }
    let (licensed, waiting) = ids.split_at(20);
    t.expect_seats(20, 20).await;
    assert_eq!(
        t.ids("licence=assigned").await,
        licensed.iter().cloned().collect::<BTreeSet<_>>()
    );

    let names: Vec<String> = (0..20).map(name).collect();
    let offs = licensed
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, (id, n))| t.deactivate(id, n, DIALECTS[i % DIALECTS.len()]));
    for r in join_all(offs).await {
        let r = r.expect(200);
        assert_eq!(r.body["active"], json!(false), "{}", r.body);
        assert_eq!(lic(&r.body), "none", "{}", r.body);
    }
    t.expect_seats(20, 0).await;
    assert_eq!(
        t.ids("licence=assigned").await,
        waiting.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        t.ids("licence=none").await,
        licensed.iter().cloned().collect::<BTreeSet<_>>()
    );
}

#[tokio::test]
async fn the_waiting_line_is_served_longest_waiting_first_on_deactivate_delete_and_more_seats() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "line", 1, true).await;
    let a = t.create("a@line.example").await;
    let mut w = Vec::new();
    for n in ["b", "c", "d", "e"] {
        pause().await;
        w.push(t.create(&format!("{n}@line.example")).await);
    }
    let [b, c, d, e] = [&w[0], &w[1], &w[2], &w[3]];
    assert_eq!(t.licence(&a).await, "assigned");
    for x in [b, c, d, e] {
        assert_eq!(t.licence(x).await, "waiting");
    }
    t.expect_seats(1, 4).await;

    // Deactivating the licensed user hands its seat to b, who waited longest.
    let r = t
        .deactivate(&a, "a@line.example", Off::Patch)
        .await
        .expect(200);
    assert_eq!(lic(&r.body), "none", "{}", r.body);
    assert_eq!(t.licence(b).await, "assigned");
    for x in [c, d, e] {
        assert_eq!(t.licence(x).await, "waiting");
    }
    t.expect_seats(1, 3).await;

    // Deleting it hands the seat to c.
    t.delete(&format!("/Users/{b}")).await.expect(204);
    assert_eq!(t.licence(c).await, "assigned");
    t.expect_seats(1, 2).await;

    // One more seat: d, not e; the PATCH answer already shows it.
    let r = t.set(json!({"seats": 2})).await.expect(200);
    assert_eq!(
        (&r.body["seatsUsed"], &r.body["seatsWaiting"]),
        (&json!(2), &json!(1)),
        "{}",
        r.body
    );
    assert_eq!(t.licence(d).await, "assigned");
    assert_eq!(t.licence(e).await, "waiting");

    // Reactivated a queues behind e: the line is by when waiting started.
    pause().await;
    let r = t.reactivate(&a).await.expect(200);
    assert_eq!(lic(&r.body), "waiting", "{}", r.body);
    t.expect_seats(2, 2).await;
    let r = t.set(json!({"seats": 3})).await.expect(200);
    assert_eq!(
        (&r.body["seatsUsed"], &r.body["seatsWaiting"]),
        (&json!(3), &json!(1))
    );
    assert_eq!(t.licence(e).await, "assigned");
    assert_eq!(t.licence(&a).await, "waiting");
    let r = t.set(json!({"seats": 5})).await.expect(200);
    assert_eq!(
        (&r.body["seatsUsed"], &r.body["seatsWaiting"]),
        (&json!(4), &json!(0))
    );
    assert_eq!(t.licence(&a).await, "assigned");
    t.expect_seats(4, 0).await;
}

#[tokio::test]
async fn deactivated_or_deleted_waiting_users_leave_the_line_and_reactivated_ones_queue_again() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "leave", 1, true).await;
    let a = t.create("a@leave.example").await;
    pause().await;
    let b = t.create("b@leave.example").await;
    pause().await;
    let c = t.create("c@leave.example").await;
    pause().await;
    let d = t.create("d@leave.example").await;
    t.expect_seats(1, 3).await;

    let r = t
        .deactivate(&b, "b@leave.example", Off::Entra)
        .await
        .expect(200);
    assert_eq!(lic(&r.body), "none", "{}", r.body);
    t.expect_seats(1, 2).await;
    t.delete(&format!("/Users/{c}")).await.expect(204);
    t.expect_seats(1, 1).await;

    // a's seat skips b (inactive) and c (gone): d gets it.
    t.deactivate(&a, "a@leave.example", Off::Okta)
        .await
        .expect(200);
    assert_eq!(t.licence(&a).await, "none");
    assert_eq!(t.licence(&b).await, "none");
    assert_eq!(t.licence(&d).await, "assigned");
    t.expect_seats(1, 0).await;

    // Reactivating with PUT: no seat free, so b waits; a then waits behind it.
    let r = t
        .put(&format!("/Users/{b}"), user("b@leave.example"))
        .await
        .expect(200);
    assert_eq!(r.body["active"], json!(true));
    assert_eq!(lic(&r.body), "waiting", "{}", r.body);
    pause().await;
    let r = t
        .patch(
            &format!("/Users/{a}"),
            patch_op(json!([{"op": "Replace", "path": "active", "value": "True"}])),
        )
        .await
        .expect(200);
    assert_eq!(lic(&r.body), "waiting", "{}", r.body);
    t.expect_seats(1, 2).await;

    t.delete(&format!("/Users/{d}")).await.expect(204);
    assert_eq!(t.licence(&b).await, "assigned");
    assert_eq!(t.licence(&a).await, "waiting");
    t.expect_seats(1, 1).await;

    // With a seat free and nobody waiting, reactivation takes it at once.
    t.set(json!({"seats": 3})).await.expect(200);
    assert_eq!(t.licence(&a).await, "assigned");
    let mut off = user("e@leave.example");
    off["active"] = json!(false);
    let e = t.post("/Users", off).await.expect(201).id();
    assert_eq!(t.licence(&e).await, "none");
    let r = t
        .patch(
            &format!("/Users/{e}"),
            patch_op(json!([{"op": "replace", "value": {"active": true}}])),
        )
        .await
        .expect(200);
    assert_eq!(lic(&r.body), "assigned", "{}", r.body);
    t.expect_seats(3, 0).await;
}

#[tokio::test]
async fn with_auto_assignment_off_licences_are_assigned_by_hand_and_turning_it_on_serves_the_line()
{
    let s = TestServer::start().await;
    let t = Scim::new(&s, "manual", 2, false).await;
    let mut ids = Vec::new();
    for n in ["u1", "u2", "u3"] {
        pause().await;
        let r = t
            .post("/Users", user(&format!("{n}@manual.example")))
            .await
            .expect(201);
        assert_eq!(lic(&r.body), "waiting", "{}", r.body);
        ids.push(r.id());
    }
    let (u1, u2, u3) = (&ids[0], &ids[1], &ids[2]);
    t.expect_seats(0, 3).await;

    // By hand, in any order.
    let r = t.assign_licence(u2).await.expect(200);
    assert_eq!(r.body["id"], json!(u2));
    assert_eq!(r.body["licence"], json!("assigned"));
    t.assign_licence(u3).await.expect(200);
    t.expect_seats(2, 1).await;
    t.assign_licence(u1)
        .await
        .expect_admin_error(409, "no_seat_free");
    assert_eq!(t.licence(u1).await, "waiting");
    t.expect_seats(2, 1).await;

    // Freed seats stay free while auto is off.
    t.deactivate(u3, "u3@manual.example", Off::Patch)
        .await
        .expect(200);
    assert_eq!(t.licence(u3).await, "none");
    assert_eq!(t.licence(u1).await, "waiting");
    t.expect_seats(1, 1).await;
    let r = t.remove_licence(u2).await.expect(200);
    assert_eq!(r.body["licence"], json!("none"));
    assert_eq!(t.licence(u1).await, "waiting");
    t.expect_seats(0, 1).await;
    let r = t.set(json!({"seats": 3})).await.expect(200);
    assert_eq!(r.body["seatsUsed"], json!(0), "{}", r.body);
    let u4 = t
        .post("/Users", user("u4@manual.example"))
        .await
        .expect(201);
    assert_eq!(lic(&u4.body), "waiting", "{}", u4.body);
    let u4 = u4.id();
    t.expect_seats(0, 2).await;
    // The console may pick anyone from the line.
    t.assign_licence(&u4).await.expect(200);
    t.expect_seats(1, 1).await;

    // Auto on: the line is served at once, in the PATCH answer already.
    let r = t.set(json!({"autoAssignLicences": true})).await.expect(200);
    assert_eq!(r.body["autoAssignLicences"], json!(true));
    assert_eq!(
        (&r.body["seatsUsed"], &r.body["seatsWaiting"]),
        (&json!(2), &json!(0)),
        "{}",
        r.body
    );
    assert_eq!(t.licence(u1).await, "assigned");
    assert_eq!(
        t.licence(u2).await,
        "none",
        "a removed licence is not a place in line"
    );
    let r = t.reactivate(u3).await.expect(200);
    assert_eq!(lic(&r.body), "assigned", "{}", r.body);
    t.expect_seats(3, 0).await;

    // With auto on, a removed licence goes to the line.
    let u5 = t.create("u5@manual.example").await;
    assert_eq!(t.licence(&u5).await, "waiting");
    t.remove_licence(&u4).await.expect(200);
    assert_eq!(t.licence(&u4).await, "none");
    assert_eq!(t.licence(&u5).await, "assigned");
    t.expect_seats(3, 0).await;

    t.admin(Method::PUT, "/users/no-such-user/licence", None)
        .await
        .expect_admin_error(404, "not_found");
}

// ================================================================ the admin role

#[tokio::test]
async fn granting_the_admin_role_needs_an_active_user_and_shows_in_both_views() {
    let s = TestServer::start().await;
    let t = Scim::demo(&s);
    let id = t.create("boss@example.com").await;
    let r = t.grant_admin(&id).await.expect(200);
    assert_eq!(r.body["id"], json!(id));
    assert_eq!(r.body["admin"], json!(true));
    assert_eq!(t.view(&id).await["admin"], json!(true));
    assert_eq!(ext(&t.doc(&id).await)["admin"], json!(true));
    assert_eq!(t.ids("admin=true").await, BTreeSet::from([id.clone()]));
    // Granting again is harmless.
    t.grant_admin(&id).await.expect(200);

    let mut off = user("gone@example.com");
    off["active"] = json!(false);
    let inactive = t.post("/Users", off).await.expect(201).id();
    t.grant_admin(&inactive)
        .await
        .expect_admin_error(409, "user_inactive");
    assert_eq!(t.view(&inactive).await["admin"], json!(false));
    t.grant_admin("no-such-user")
        .await
        .expect_admin_error(404, "not_found");

    let r = t
        .admin(Method::DELETE, &format!("/users/{id}/admin"), None)
        .await
        .expect(200);
    assert_eq!(r.body["admin"], json!(false));
    assert_eq!(ext(&t.doc(&id).await)["admin"], json!(false));
    assert!(t.ids("admin=true").await.is_empty());
}

#[tokio::test]
async fn an_admin_cannot_be_deactivated_in_any_dialect_or_deleted_over_scim() {
    let s = TestServer::start().await;
    let t = Scim::demo(&s);
    let name = "protected@example.com";
    let id = t.create(name).await;
    t.grant_admin(&id).await.expect(200);
    let before = t.doc(&id).await;
    let seats = t.info().await["seatsUsed"].clone();
    for how in DIALECTS {
        let r = t.deactivate(&id, name, how).await;
        assert_eq!(r.status, 403, "{how:?}: {}", r.body);
        expect_admin_protected(r);
        assert_eq!(t.doc(&id).await, before, "{how:?} changed the admin");
    }
    expect_admin_protected(t.delete(&format!("/Users/{id}")).await);
    assert_eq!(t.doc(&id).await, before);
    let v = t.view(&id).await;
    assert_eq!((&v["active"], &v["admin"]), (&json!(true), &json!(true)));
    assert_eq!(v["licence"], json!("assigned"));
    assert_eq!(t.info().await["seatsUsed"], seats);
}

#[tokio::test]
async fn a_request_that_renames_and_deactivates_an_admin_changes_neither() {
    let s = TestServer::start().await;
    let t = Scim::demo(&s);
    let name = "both@example.com";
    let mut body = user(name);
    body["displayName"] = json!("Both");
    let id = t.post("/Users", body).await.expect(201).id();
    t.grant_admin(&id).await.expect(200);
    let before = t.doc(&id).await;
    let path = format!("/Users/{id}");

    let mut put = user("renamed@example.com");
    put["displayName"] = json!("Renamed");
    put["active"] = json!(false);
    let attempts = [
        t.patch(
            &path,
            patch_op(json!([
                {"op": "replace", "path": "displayName", "value": "Renamed"},
                {"op": "replace", "path": "userName", "value": "renamed@example.com"},
                {"op": "replace", "path": "active", "value": false},
            ])),
        )
        .await,
        t.patch(
            &path,
            patch_op(json!([
                {"op": "Replace", "path": "displayName", "value": "Renamed"},
                {"op": "Replace", "path": "active", "value": "False"},
            ])),
        )
        .await,
        t.patch(
            &path,
            patch_op(json!([{"op": "replace",
                             "value": {"displayName": "Renamed", "active": false}}])),
        )
        .await,
        t.put(&path, put).await,
    ];
    for r in attempts {
        expect_admin_protected(r);
        let now = t.doc(&id).await;
        assert_eq!(now["userName"], json!(name), "{now}");
        assert_eq!(now["displayName"], json!("Both"), "{now}");
        assert_eq!(now["active"], json!(true), "{now}");
        assert_eq!(now["meta"]["version"], before["meta"]["version"], "{now}");
    }
    let renamed = t
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName eq "renamed@example.com""#)
        ))
        .await
        .expect(200);
    assert_eq!(renamed.total(), 0);
}

#[tokio::test]
async fn other_updates_of_an_admin_go_through() {
    let s = TestServer::start().await;
    let t = Scim::demo(&s);
    let name = "editable@example.com";
    let id = t.create(name).await;
    t.grant_admin(&id).await.expect(200);
    let path = format!("/Users/{id}");
    let r = t
        .patch(
            &path,
            patch_op(json!([{"op": "replace", "path": "displayName", "value": "Edited"}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["displayName"], json!("Edited"));
    let r = t
        .patch(
            &path,
            patch_op(json!([{"op": "replace", "path": "emails",
                             "value": [{"value": "new@example.com", "type": "work", "primary": true}]}])),
        )
        .await
        .expect(200);
    assert_eq!(r.body["emails"][0]["value"], json!("new@example.com"));
    // Saying "active" without deactivating is not a deactivation.
    t.patch(
        &path,
        patch_op(json!([{"op": "Replace", "path": "active", "value": "True"}])),
    )
    .await
    .expect(200);
    let mut body = user(name);
    body["displayName"] = json!("Put Name");
    let r = t.put(&path, body).await.expect(200);
    assert_eq!(r.body["displayName"], json!("Put Name"));
    assert_eq!(r.body["active"], json!(true));
    assert_eq!(ext(&r.body)["admin"], json!(true), "{}", r.body);
    assert_eq!(t.view(&id).await["admin"], json!(true));
}

#[tokio::test]
async fn after_revoking_the_admin_role_deactivation_and_delete_work() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "revoke", 1, true).await;
    let name = "leaver@revoke.example";
    let id = t.create(name).await;
    pause().await;
    let next = t.create("next@revoke.example").await;
    t.grant_admin(&id).await.expect(200);
    expect_admin_protected(t.deactivate(&id, name, Off::Entra).await);
    t.revoke_admin(&id).await.expect(200);
    let r = t.deactivate(&id, name, Off::Entra).await.expect(200);
    assert_eq!(r.body["active"], json!(false));
    assert_eq!(t.licence(&next).await, "assigned");
    // Inactive: cannot become admin again until reactivated.
    t.grant_admin(&id)
        .await
        .expect_admin_error(409, "user_inactive");
    t.reactivate(&id).await.expect(200);
    t.grant_admin(&id).await.expect(200);
    expect_admin_protected(t.delete(&format!("/Users/{id}")).await);
    t.revoke_admin(&id).await.expect(200);
    t.delete(&format!("/Users/{id}")).await.expect(204);
    t.get(&format!("/Users/{id}")).await.expect_error(404, None);
    t.expect_seats(1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn granting_admin_while_scim_deactivates_never_leaves_an_inactive_admin() {
    let s = TestServer::start().await;
    let t = Scim::demo(&s);
    let mut outcomes = Vec::new();
    for round in 0..12 {
        let how = DIALECTS[round % DIALECTS.len()];
        let name = format!("race{round}@example.com");
        let id = t.create(&name).await;
        let (grant, off) = join(t.grant_admin(&id), t.deactivate(&id, &name, how)).await;
        let v = t.view(&id).await;
        let doc = t.doc(&id).await;
        assert_eq!(doc["active"], v["active"], "{doc} / {v}");
        assert_eq!(ext(&doc)["admin"], v["admin"], "{doc} / {v}");
        match (v["admin"].as_bool(), v["active"].as_bool()) {
            (Some(true), Some(true)) => {
                assert_eq!(grant.status, 200, "{how:?}: {}", grant.body);
                expect_admin_protected(off);
            }
            (Some(false), Some(false)) => {
                off.expect(200);
                grant.expect_admin_error(409, "user_inactive");
            }
            other => panic!("round {round} ({how:?}) ended as admin/active {other:?}: {v}"),
        }
        outcomes.push(v["admin"] == json!(true));
    }
    eprintln!(
        "admin won {} of 12 rounds",
        outcomes.iter().filter(|&&w| w).count()
    );
}

// ================================================================ offboarding

#[tokio::test]
async fn deactivation_suspends_and_keeps_groups_while_delete_removes_memberships() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "offboard", 2, true).await;
    let a = t.create("a@offboard.example").await;
    let b = t.create("b@offboard.example").await;
    pause().await;
    let c = t.create("c@offboard.example").await;
    let gid = t
        .post("/Groups", group("Team", &[&a, &b, &c]))
        .await
        .expect(201)
        .id();
    t.expect_seats(2, 1).await;

    t.deactivate(&a, "a@offboard.example", Off::Okta)
        .await
        .expect(200);
    let g = t.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(member_ids(&g.body), sorted(&[&a, &b, &c]), "{}", g.body);
    let doc = t.doc(&a).await;
    assert_eq!(doc["groups"][0]["value"], json!(gid), "{doc}");
    assert_eq!(lic(&doc), "none");
    assert_eq!(t.licence(&c).await, "assigned");
    t.expect_seats(2, 0).await;

    // Back from suspension: still in the group, asking for a licence again.
    let r = t.reactivate(&a).await.expect(200);
    assert_eq!(lic(&r.body), "waiting", "{}", r.body);
    let g = t.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(member_ids(&g.body), sorted(&[&a, &b, &c]));

    t.delete(&format!("/Users/{b}")).await.expect(204);
    let g = t.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(member_ids(&g.body), sorted(&[&a, &c]), "{}", g.body);
    assert_eq!(t.licence(&a).await, "assigned");
    t.expect_seats(2, 0).await;
    let groups = t.admin(Method::GET, "/groups", None).await.expect(200);
    assert_eq!(groups.body["groups"][0]["id"], json!(gid));
    assert_eq!(groups.body["groups"][0]["memberCount"], json!(2));
}

// ================================================================ group sync (regression)

#[tokio::test]
async fn group_sync_adds_removes_replaces_members_renames_and_deletes() {
    let s = TestServer::start().await;
    let u: Vec<String> = {
        let s = &s;
        join_all((1..=4).map(|i| async move { s.create_user(&format!("g{i}@example.com")).await }))
            .await
    };
    let gid = s.create_group("Sync", &[&u[0]]).await;
    let path = format!("/Groups/{gid}");
    let step = |ops: Value| s.patch(&path, patch_op(ops));
    let members = || async { member_ids(&s.get(&path).await.expect(200).body) };
    let ok = |r: Resp| assert!(r.status == 200 || r.status == 204, "{}", r.body);

    ok(step(json!([{"op": "add", "path": "members", "value": [{"value": u[1]}]}])).await);
    assert_eq!(members().await, sorted(&[&u[0], &u[1]]));
    ok(step(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", u[0])}])).await);
    assert_eq!(members().await, sorted(&[&u[1]]));
    ok(step(json!([{"op": "Remove", "path": "members", "value": [{"value": u[1]}]}])).await);
    assert_eq!(members().await, Vec::<String>::new());
    ok(step(json!([{"op": "add", "path": "members", "value": [{"value": u[0]}]}])).await);
    ok(step(json!([{"op": "replace", "path": "members",
                    "value": [{"value": u[2]}, {"value": u[3]}]}]))
    .await);
    assert_eq!(members().await, sorted(&[&u[2], &u[3]]));
    ok(step(json!([{"op": "replace", "path": "displayName", "value": "Synced"}])).await);
    let g = s.get(&path).await.expect(200);
    assert_eq!(g.body["displayName"], json!("Synced"));
    assert_eq!(member_ids(&g.body), sorted(&[&u[2], &u[3]]));
    let by_name = s
        .get(&format!(
            "/Groups?filter={}",
            enc(r#"displayName eq "Synced""#)
        ))
        .await
        .expect(200);
    assert_eq!(by_name.total(), 1);

    s.delete(&path).await.expect(204);
    s.get(&path).await.expect_error(404, None);
    for id in &u {
        let doc = s.get(&format!("/Users/{id}")).await.expect(200).body;
        assert!(doc.get("groups").is_none_or(|g| g == &json!([])), "{doc}");
    }
}

#[tokio::test]
async fn adding_an_unknown_member_is_400_and_leaves_members_unchanged() {
    let s = TestServer::start().await;
    let a = s.create_user("known@example.com").await;
    let b = s.create_user("other@example.com").await;
    let gid = s.create_group("Strict", &[&a]).await;
    let path = format!("/Groups/{gid}");
    let before = s.get(&path).await.expect(200).body;
    let ghost = "00000000-0000-0000-0000-000000000000";
    for ops in [
        json!([{"op": "add", "path": "members", "value": [{"value": ghost}]}]),
        json!([{"op": "add", "path": "members", "value": [{"value": b}, {"value": ghost}]}]),
        json!([{"op": "replace", "path": "members", "value": [{"value": ghost}]}]),
    ] {
        let r = s.patch(&path, patch_op(ops.clone())).await;
        assert_eq!(r.status, 400, "{ops}: {}", r.body);
        let now = s.get(&path).await.expect(200).body;
        assert_eq!(member_ids(&now), vec![a.clone()], "{ops}: {now}");
        assert_eq!(now["meta"]["version"], before["meta"]["version"]);
    }
}

// ================================================================ admin views

#[tokio::test]
async fn the_admin_user_listing_filters_and_pages_in_id_order() {
    let s = TestServer::start().await;
    let t = Scim::new(&s, "listing", 2, true).await;
    let mk = |name: &str, active: bool| {
        let mut b = user(name);
        b["displayName"] = json!(name.split('@').next().unwrap_or_default());
        b["active"] = json!(active);
        b
    };
    let s1 = t
        .post("/Users", mk("s1@listing.example", true))
        .await
        .expect(201)
        .id();
    let s2 = t
        .post("/Users", mk("s2@listing.example", true))
        .await
        .expect(201)
        .id();
    let s3 = t
        .post("/Users", mk("s3@listing.example", true))
        .await
        .expect(201)
        .id();
    let s4 = t
        .post("/Users", mk("s4@listing.example", false))
        .await
        .expect(201)
        .id();
    let mut manual = Vec::new();
    for n in ["m1", "m2"] {
        let r = t
            .admin(
                Method::POST,
                "/users",
                Some(json!({"userName": format!("{n}@listing.example"), "displayName": n})),
            )
            .await
            .expect(201);
        manual.push(r.body["id"].as_str().expect("id").to_owned());
    }
    let (m1, m2) = (&manual[0], &manual[1]);
    t.grant_admin(&s1).await.expect(200);
    // Users of other tenants never show.
    s.create_user("elsewhere@example.com").await;

    let all = t.users("", 100).await;
    let ids = ids_of(&all);
    let mut in_order = ids.clone();
    in_order.sort();
    assert_eq!(ids, in_order, "not in id order");
    let set = |xs: &[&String]| {
        xs.iter()
            .map(|x| (*x).clone())
            .collect::<BTreeSet<String>>()
    };
    assert_eq!(
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        set(&[&s1, &s2, &s3, &s4, m1, m2])
    );
    for u in &all {
        for key in [
            "id",
            "userName",
            "displayName",
            "active",
            "provisionedBy",
            "licence",
            "admin",
        ] {
            assert!(u.get(key).is_some(), "{key} missing: {u}");
        }
        assert_eq!(&t.view(u["id"].as_str().unwrap_or_default()).await, u);
    }
    let one = t.view(&s1).await;
    assert_eq!(one["userName"], json!("s1@listing.example"));
    assert_eq!(one["displayName"], json!("s1"));
    assert_eq!(one["active"], json!(true));
    assert_eq!(one["provisionedBy"], json!("scim"));
    rfc3339(&one["provisionedAt"]);
    assert_eq!(one["licence"], json!("assigned"));
    assert_eq!(one["admin"], json!(true));
    assert_eq!(t.view(&s4).await["active"], json!(false));

    for (query, want) in [
        ("provisioned=scim", set(&[&s1, &s2, &s3, &s4])),
        ("provisioned=manual", set(&[m1, m2])),
        ("licence=assigned", set(&[&s1, &s2])),
        ("licence=waiting", set(&[&s3])),
        ("licence=none", set(&[&s4, m1, m2])),
        ("admin=true", set(&[&s1])),
        ("admin=false", set(&[&s2, &s3, &s4, m1, m2])),
        ("provisioned=scim&licence=none", set(&[&s4])),
        ("admin=false&licence=assigned", set(&[&s2])),
        ("provisioned=manual&licence=assigned", set(&[])),
    ] {
        assert_eq!(t.ids(query).await, want, "{query}");
    }

    // Page by page: every user once, in id order.
    let mut pages = 0;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/users?limit=2&cursor={}", enc(c)),
            None => "/users?limit=2".to_owned(),
        };
        let page = t.admin(Method::GET, &path, None).await.expect(200);
        pages += 1;
        let users = page.body["users"].as_array().expect("users").clone();
        assert!(users.len() <= 2, "{}", page.body);
        seen.extend(ids_of(&users));
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging never ends");
    }
    assert_eq!(seen, ids);
    assert!(pages >= 3, "{pages} pages");
    assert_eq!(ids_of(&t.users("licence=none", 1).await).len(), 3);
    assert_eq!(
        ids_of(&t.users("provisioned=scim", 3).await),
        ids_of(&t.users("provisioned=scim", 100).await)
    );

    for (query, status) in [
        ("/users?limit=0", 400),
        ("/users?limit=101", 400),
        ("/users?cursor=not-a-cursor", 400),
        ("/users?licence=gold", 400),
        ("/users?provisioned=ldap", 400),
        ("/users?admin=maybe", 400),
    ] {
        let r = t.admin(Method::GET, query, None).await;
        assert_eq!(r.status, status, "{query}: {}", r.body);
        assert!(r.body["error"].is_string(), "{query}: {}", r.body);
    }
    t.admin(Method::GET, "/users?limit=0", None)
        .await
        .expect_admin_error(400, "invalid_limit");
    t.admin(Method::GET, "/users?cursor=not-a-cursor", None)
        .await
        .expect_admin_error(400, "invalid_cursor");
    t.admin(Method::GET, "/users/no-such-user", None)
        .await
        .expect_admin_error(404, "not_found");
    s.admin(Method::GET, "/tenants/ghost/users", None)
        .await
        .expect_admin_error(404, "not_found");
    // Another tenant's user is not found through this tenant.
    let acme = s
        .admin(Method::GET, &format!("/tenants/{TENANT}/users"), None)
        .await
        .expect(200);
    let acme_ids = ids_of(acme.body["users"].as_array().expect("users"));
    assert_eq!(acme_ids.len(), 1);
    t.admin(Method::GET, &format!("/users/{}", acme_ids[0]), None)
        .await
        .expect_admin_error(404, "not_found");
}

#[tokio::test]
async fn the_admin_group_views_page_groups_and_their_members() {
    let s = TestServer::start().await;
    let users: Vec<String> = {
        let s = &s;
        join_all((0..5).map(|i| async move { s.create_user(&format!("m{i}@example.com")).await }))
            .await
    };
    let inner = s.create_group("Inner", &[&users[0]]).await;
    let mut members: Vec<&str> = users.iter().map(String::as_str).collect();
    members.push(&inner);
    let outer = s.create_group("Outer", &members).await;
    let empty = s.create_group("Empty", &[]).await;

    let base = format!("/tenants/{TENANT}/groups");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}?limit=1&cursor={}", enc(c)),
            None => format!("{base}?limit=1"),
        };
        let page = s.admin(Method::GET, &path, None).await.expect(200);
        pages += 1;
        let gs = page.body["groups"].as_array().expect("groups").clone();
        assert!(gs.len() <= 1, "{}", page.body);
        seen.extend(gs);
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging never ends");
    }
    let ids: Vec<String> = seen
        .iter()
        .map(|g| g["id"].as_str().expect("id").to_owned())
        .collect();
    let mut in_order = ids.clone();
    in_order.sort();
    assert_eq!(ids, in_order, "not in id order");
    assert_eq!(
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([inner.clone(), outer.clone(), empty.clone()])
    );
    for g in &seen {
        let (name, count) = if g["id"] == json!(outer) {
            ("Outer", 6)
        } else if g["id"] == json!(inner) {
            ("Inner", 1)
        } else {
            ("Empty", 0)
        };
        assert_eq!(g["displayName"], json!(name), "{g}");
        assert_eq!(g["memberCount"], json!(count), "{g}");
    }

    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}/{outer}/members?limit=2&cursor={}", enc(c)),
            None => format!("{base}/{outer}/members?limit=2"),
        };
        let page = s.admin(Method::GET, &path, None).await.expect(200);
        pages += 1;
        let ms = page.body["members"].as_array().expect("members").clone();
        assert!(ms.len() <= 2, "{}", page.body);
        got.extend(ms);
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging never ends");
    }
    assert!(pages >= 3, "{pages} pages");
    let mut got_ids: Vec<String> = got
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect();
    got_ids.sort();
    assert_eq!(got_ids, sorted(&members));
    for m in &got {
        let want = if m["id"] == json!(inner) {
            "Group"
        } else {
            "User"
        };
        assert_eq!(m["type"], json!(want), "{m}");
    }
    let none = s
        .admin(Method::GET, &format!("{base}/{empty}/members"), None)
        .await
        .expect(200);
    assert_eq!(none.body["members"], json!([]));
    assert!(none.body["nextCursor"].is_null());

    s.admin(Method::GET, &format!("{base}/no-such-group/members"), None)
        .await
        .expect_admin_error(404, "not_found");
    s.admin(Method::GET, &format!("{base}?limit=0"), None)
        .await
        .expect_admin_error(400, "invalid_limit");
    // Tenants are apart.
    let other = s
        .admin(
            Method::GET,
            &format!("/tenants/{OTHER_TENANT}/groups"),
            None,
        )
        .await
        .expect(200);
    assert_eq!(other.body["groups"], json!([]));
    s.admin(
        Method::GET,
        &format!("/tenants/{OTHER_TENANT}/groups/{outer}/members"),
        None,
    )
    .await
    .expect_admin_error(404, "not_found");
}
