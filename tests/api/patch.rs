//! PATCH (RFC 7644 §3.5.2) on users and groups, the dialects of Entra ID,
//! Okta and JumpCloud (`shared/idp-dialects.md`), atomicity, and
//! conditional requests with ETags (RFC 7644 §3.14).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const NO_SUCH_ID: &str = "00000000-0000-0000-0000-000000000000";

async fn patch_user(s: &TestServer, id: &str, ops: Value) -> Resp {
    s.patch(&format!("/Users/{id}"), patch_op(ops)).await
}

async fn patch_group(s: &TestServer, id: &str, ops: Value) -> Resp {
    s.patch(&format!("/Groups/{id}"), patch_op(ops)).await
}

async fn get_user(s: &TestServer, id: &str) -> Resp {
    s.get(&format!("/Users/{id}")).await.expect(200)
}

async fn get_group(s: &TestServer, id: &str) -> Resp {
    s.get(&format!("/Groups/{id}")).await.expect(200)
}

/// A request on the main tenant with extra headers.
async fn call_h(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Resp {
    s.call_with(method, &s.url(path), &s.token, body, headers)
        .await
}

/// A 400 SCIM Error whose scimType is one of `types`.
#[track_caller]
fn expect_400_one_of(r: Resp, types: &[&str]) -> Resp {
    assert_eq!(r.status, 400, "unexpected status; body: {}", r.body);
    assert_eq!(
        r.body["schemas"],
        json!([ERROR_URN]),
        "not a SCIM error: {}",
        r.body
    );
    assert_eq!(r.body["status"], json!("400"), "{}", r.body);
    assert!(
        r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        r.body
    );
    let t = r.body["scimType"].as_str().unwrap_or("");
    assert!(
        types.contains(&t),
        "scimType {t:?} not one of {types:?}: {}",
        r.body
    );
    r
}

/// The emails of a user, as (type, value, primary) triples in order.
fn emails(doc: &Value) -> Vec<(String, String, bool)> {
    doc["emails"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    (
                        e["type"].as_str().unwrap_or("").to_owned(),
                        e["value"].as_str().unwrap_or("").to_owned(),
                        e["primary"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn em(ty: &str, value: &str, primary: bool) -> (String, String, bool) {
    (ty.to_owned(), value.to_owned(), primary)
}

/// A user with the enterprise extension, as Entra ID creates one.
fn entra_user(user_name: &str) -> Value {
    let mut u = user(user_name);
    u["schemas"] = json!([USER_URN, ENTERPRISE_URN]);
    u["externalId"] = json!(format!("ext-{user_name}"));
    u[ENTERPRISE_URN] = json!({"employeeNumber": "100", "department": "Sales"});
    u
}

// ================================================================ users: basics

#[tokio::test]
async fn add_with_path_sets_the_attribute_and_answers_200_with_the_resource() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("add@example.com")).await.expect(201);
    let id = created.id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "add", "path": "displayName", "value": "Added"}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["displayName"], json!("Added"));
    assert_eq!(r.body["id"], json!(id));
    assert_eq!(r.body["schemas"], json!([USER_URN, PRODUCT_URN]));
    assert_eq!(r.body["userName"], json!("add@example.com"));
    assert_eq!(r.body["meta"]["version"], json!(r.etag()));
    assert_ne!(r.etag(), created.etag());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    assert_eq!(get_user(&s, &id).await.body["displayName"], json!("Added"));
}

#[tokio::test]
async fn add_without_path_merges_attributes_and_appends_to_multi_valued_ones() {
    let s = TestServer::start().await;
    let id = s.create_user("merge@example.com").await;
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "add", "value": {
            "title": "Boss",
            "emails": [{"value": "home@example.com", "type": "home"}],
            "name": {"middleName": "M"},
        }}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["title"], json!("Boss"));
    assert_eq!(
        emails(&r.body),
        vec![
            em("work", "merge@example.com", true),
            em("home", "home@example.com", false)
        ]
    );
    // Sub-attributes not given are left alone.
    assert_eq!(
        r.body["name"],
        json!({"givenName": "Given", "familyName": "Family", "middleName": "M"})
    );
    assert_eq!(get_user(&s, &id).await.body["title"], json!("Boss"));
}

#[tokio::test]
async fn add_of_an_existing_email_value_does_not_duplicate_it() {
    let s = TestServer::start().await;
    let created = s
        .post("/Users", user("dupmail@example.com"))
        .await
        .expect(201);
    let id = created.id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "add", "path": "emails",
                "value": [{"value": "dupmail@example.com", "type": "work", "primary": true}]}]),
    )
    .await
    .expect(200);
    assert_eq!(
        emails(&r.body),
        vec![em("work", "dupmail@example.com", true)],
        "{}",
        r.body
    );
    // RFC 7644 §3.5.2.1: a value already present changes nothing.
    assert_eq!(r.etag(), created.etag());
}

#[tokio::test]
async fn replace_with_path_on_simple_and_sub_attributes() {
    let s = TestServer::start().await;
    let id = s.create_user("rep@example.com").await;
    let r = patch_user(
        &s,
        &id,
        json!([
            {"op": "replace", "path": "name.givenName", "value": "Neo"},
            {"op": "replace", "path": "userName", "value": "neo@example.com"},
            {"op": "replace", "path": "externalId", "value": "ext-neo"},
        ]),
    )
    .await
    .expect(200);
    assert_eq!(
        r.body["name"],
        json!({"givenName": "Neo", "familyName": "Family"})
    );
    assert_eq!(r.body["userName"], json!("neo@example.com"));
    assert_eq!(r.body["externalId"], json!("ext-neo"));
    let got = get_user(&s, &id).await;
    assert_eq!(got.body["userName"], json!("neo@example.com"));
    // The old userName is free, the new one is taken.
    s.post("/Users", user("rep@example.com")).await.expect(201);
    s.post("/Users", user("NEO@example.com"))
        .await
        .expect_error(409, Some("uniqueness"));
}

#[tokio::test]
async fn replace_of_a_complex_attribute_keeps_sub_attributes_not_given() {
    let s = TestServer::start().await;
    let id = s.create_user("cplx@example.com").await;
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": "name", "value": {"givenName": "Only"}}]),
    )
    .await
    .expect(200);
    assert_eq!(
        r.body["name"],
        json!({"givenName": "Only", "familyName": "Family"})
    );
}

#[tokio::test]
async fn replace_of_a_multi_valued_attribute_replaces_all_values() {
    let s = TestServer::start().await;
    let id = s.create_user("all@example.com").await;
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": "emails",
                "value": [{"value": "new@example.com", "type": "home"}]}]),
    )
    .await
    .expect(200);
    assert_eq!(emails(&r.body), vec![em("home", "new@example.com", false)]);
    assert_eq!(
        emails(&get_user(&s, &id).await.body),
        vec![em("home", "new@example.com", false)]
    );
}

#[tokio::test]
async fn remove_with_path_unassigns_attributes_and_sub_attributes() {
    let s = TestServer::start().await;
    let mut body = user("rm@example.com");
    body["title"] = json!("T");
    body["phoneNumbers"] = json!([{"value": "+1", "type": "work"}]);
    let id = s.post("/Users", body).await.expect(201).id();
    let r = patch_user(
        &s,
        &id,
        json!([
            {"op": "remove", "path": "title"},
            {"op": "remove", "path": "name.givenName"},
            {"op": "remove", "path": "phoneNumbers"},
        ]),
    )
    .await
    .expect(200);
    assert!(r.body.get("title").is_none(), "{}", r.body);
    assert!(r.body.get("phoneNumbers").is_none(), "{}", r.body);
    assert_eq!(r.body["name"], json!({"familyName": "Family"}));
    let got = get_user(&s, &id).await;
    assert!(got.body.get("title").is_none());
    assert_eq!(got.body["name"], json!({"familyName": "Family"}));

    // Removing the last sub-attribute leaves no empty object behind.
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "remove", "path": "name.familyName"}]),
    )
    .await
    .expect(200);
    assert!(r.body.get("name").is_none(), "{}", r.body);
}

#[tokio::test]
async fn okta_deactivate_is_a_pathless_replace_of_active() {
    let s = TestServer::start().await;
    let id = s.create_user("okta@example.com").await;
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["active"], json!(false));
    assert_eq!(get_user(&s, &id).await.body["active"], json!(false));
    // And back.
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "value": {"active": true}}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["active"], json!(true));
}

#[tokio::test]
async fn attribute_names_in_paths_are_case_insensitive() {
    let s = TestServer::start().await;
    let id = s.create_user("ci@example.com").await;
    let r = patch_user(
        &s,
        &id,
        json!([
            {"op": "replace", "path": "Name.GivenName", "value": "Ci"},
            {"op": "replace", "path": "EMAILS[TYPE eq \"work\"].VALUE", "value": "ci2@example.com"},
            {"op": "add", "path": "DISPLAYNAME", "value": "Shown"},
        ]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["name"]["givenName"], json!("Ci"));
    assert_eq!(r.body["emails"][0]["value"], json!("ci2@example.com"));
    assert_eq!(r.body["displayName"], json!("Shown"));
    assert!(r.body.get("DISPLAYNAME").is_none());
    assert!(r.body["name"].get("GivenName").is_none());
}

#[tokio::test]
async fn path_with_the_core_schema_urn_prefix_is_accepted() {
    let s = TestServer::start().await;
    let id = s.create_user("coreurn@example.com").await;
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": format!("{USER_URN}:name.givenName"), "value": "Urn"}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["name"]["givenName"], json!("Urn"));
}

#[tokio::test]
async fn patch_of_an_unknown_user_is_404() {
    let s = TestServer::start().await;
    patch_user(
        &s,
        NO_SUCH_ID,
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await
    .expect_error(404, None);
}

#[tokio::test]
async fn patch_with_a_password_is_accepted_but_never_returned() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("pwd@example.com")).await.expect(201);
    let id = created.id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": "password", "value": "s3cr3t!"}]),
    )
    .await
    .expect(200);
    assert!(r.body.get("password").is_none(), "{}", r.body);
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "value": {"password": "an0ther"}}]),
    )
    .await
    .expect(200);
    assert!(r.body.get("password").is_none(), "{}", r.body);
    assert!(get_user(&s, &id).await.body.get("password").is_none());
}

#[tokio::test]
async fn patch_answer_honours_attributes_and_excluded_attributes() {
    let s = TestServer::start().await;
    let id = s.create_user("projp@example.com").await;
    let r = s
        .patch(
            &format!("/Users/{id}?attributes=displayName"),
            patch_op(json!([{"op": "add", "path": "displayName", "value": "P"}])),
        )
        .await
        .expect(200);
    let mut keys: Vec<&String> = r.body.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, vec!["displayName", "id", "schemas"], "{}", r.body);
    assert!(r.header("etag").is_some());

    let r = s
        .patch(
            &format!("/Users/{id}?excludedAttributes=emails,name"),
            patch_op(json!([{"op": "add", "path": "title", "value": "T"}])),
        )
        .await
        .expect(200);
    assert!(r.body.get("emails").is_none(), "{}", r.body);
    assert!(r.body.get("name").is_none(), "{}", r.body);
    assert_eq!(r.body["title"], json!("T"));
    assert_eq!(r.body["userName"], json!("projp@example.com"));
}

// ================================================================ Entra ID dialect

#[tokio::test]
async fn entra_capitalised_ops_are_accepted() {
    let s = TestServer::start().await;
    let id = s
        .post("/Users", entra_user("cap@example.com"))
        .await
        .expect(201)
        .id();
    let r = patch_user(
        &s,
        &id,
        json!([
            {"op": "Replace", "path": "displayName", "value": "Cap"},
            {"op": "Add", "path": "title", "value": "Lead"},
            {"op": "Remove", "path": "externalId"},
            {"op": "REPLACE", "path": "name.familyName", "value": "Upper"},
        ]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["displayName"], json!("Cap"));
    assert_eq!(r.body["title"], json!("Lead"));
    assert!(r.body.get("externalId").is_none(), "{}", r.body);
    assert_eq!(r.body["name"]["familyName"], json!("Upper"));
}

#[tokio::test]
async fn entra_booleans_as_strings_are_accepted() {
    let s = TestServer::start().await;
    let id = s
        .post("/Users", entra_user("bool@example.com"))
        .await
        .expect(201)
        .id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["active"], json!(false), "a real boolean: {}", r.body);
    assert_eq!(get_user(&s, &id).await.body["active"], json!(false));
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["active"], json!(true));
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Replace", "value": {"active": "false"}}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["active"], json!(false));
    // Strings other than true/false are still not booleans.
    patch_user(
        &s,
        &id,
        json!([{"op": "Replace", "path": "active", "value": "Maybe"}]),
    )
    .await
    .expect_error(400, Some("invalidValue"));
}

#[tokio::test]
async fn entra_replace_work_email_value_through_a_filter_path() {
    let s = TestServer::start().await;
    let mut body = entra_user("wk@example.com");
    body["emails"] = json!([
        {"value": "wk@example.com", "type": "work", "primary": true},
        {"value": "hm@example.com", "type": "home"},
    ]);
    let id = s.post("/Users", body).await.expect(201).id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "wk2@example.com"}]),
    )
    .await
    .expect(200);
    assert_eq!(
        emails(&r.body),
        vec![
            em("work", "wk2@example.com", true),
            em("home", "hm@example.com", false)
        ]
    );
    assert_eq!(emails(&get_user(&s, &id).await.body), emails(&r.body));
}

#[tokio::test]
async fn entra_add_work_email_value_creates_the_entry_when_missing() {
    let s = TestServer::start().await;
    let mut body = entra_user("nowork@example.com");
    body["emails"] = json!([{"value": "home@example.com", "type": "home"}]);
    let id = s.post("/Users", body).await.expect(201).id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "work@example.com"}]),
    )
    .await
    .expect(200);
    assert_eq!(
        emails(&r.body),
        vec![
            em("home", "home@example.com", false),
            em("work", "work@example.com", false)
        ]
    );
    let work: Vec<&Value> = r.body["emails"]
        .as_array()
        .expect("emails")
        .iter()
        .filter(|e| e["type"] == json!("work"))
        .collect();
    assert_eq!(
        work,
        vec![&json!({"type": "work", "value": "work@example.com"})]
    );

    // A user without any email gets one too.
    let mut bare = entra_user("bare@example.com");
    bare.as_object_mut().expect("object").remove("emails");
    let bid = s.post("/Users", bare).await.expect(201).id();
    let r = patch_user(
        &s,
        &bid,
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "bare@example.com"}]),
    )
    .await
    .expect(200);
    assert_eq!(
        r.body["emails"],
        json!([{"type": "work", "value": "bare@example.com"}])
    );
    assert_eq!(get_user(&s, &bid).await.body["emails"], r.body["emails"]);
}

#[tokio::test]
async fn replace_through_a_filter_that_matches_nothing_and_cannot_create_is_no_target() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("nt@example.com")).await.expect(201);
    let id = created.id();
    patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": "emails[value co \"nomatch\"].type", "value": "home"}]),
    )
    .await
    .expect_error(400, Some("noTarget"));
    assert_eq!(get_user(&s, &id).await.etag(), created.etag());
}

#[tokio::test]
async fn entra_pathless_replace_with_dotted_and_urn_prefixed_keys() {
    let s = TestServer::start().await;
    let id = s
        .post("/Users", entra_user("dots@example.com"))
        .await
        .expect(201)
        .id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "value": {
            "name.givenName": "Dotted",
            "name.familyName": "Keys",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "E-9",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter": "CC-9",
            "active": false,
        }}]),
    )
    .await
    .expect(200);
    for doc in [&r.body, &get_user(&s, &id).await.body] {
        assert_eq!(
            doc["name"],
            json!({"givenName": "Dotted", "familyName": "Keys"}),
            "{doc}"
        );
        let ext = &doc[ENTERPRISE_URN];
        assert_eq!(ext["employeeNumber"], json!("E-9"), "{doc}");
        assert_eq!(ext["costCenter"], json!("CC-9"));
        assert_eq!(
            ext["department"],
            json!("Sales"),
            "other extension attributes stay"
        );
        assert_eq!(doc["active"], json!(false));
        for bad in [
            "name.givenName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2",
        ] {
            assert!(doc.get(bad).is_none(), "{bad} stored literally: {doc}");
        }
        assert!(
            doc["schemas"]
                .as_array()
                .expect("schemas")
                .contains(&json!(ENTERPRISE_URN))
        );
    }
}

#[tokio::test]
async fn pathless_replace_with_the_extension_object_merges_its_attributes() {
    let s = TestServer::start().await;
    let id = s
        .post("/Users", entra_user("extobj@example.com"))
        .await
        .expect(201)
        .id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "value": {ENTERPRISE_URN: {"department": "Support"}}}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body[ENTERPRISE_URN]["department"], json!("Support"));
    assert_eq!(r.body[ENTERPRISE_URN]["employeeNumber"], json!("100"));
}

#[tokio::test]
async fn extension_attribute_paths_are_not_split_on_the_dots_of_2_0() {
    let s = TestServer::start().await;
    let plain = s.create_user("noext@example.com").await;
    let r = patch_user(
        &s,
        &plain,
        json!([{"op": "Add", "path": format!("{ENTERPRISE_URN}:department"), "value": "New"}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body[ENTERPRISE_URN], json!({"department": "New"}));
    assert!(
        r.body["schemas"]
            .as_array()
            .expect("schemas")
            .contains(&json!(ENTERPRISE_URN))
    );

    // Removing the last extension attribute drops the extension from schemas.
    let r = patch_user(
        &s,
        &plain,
        json!([{"op": "Remove", "path": format!("{ENTERPRISE_URN}:department")}]),
    )
    .await
    .expect(200);
    assert!(r.body.get(ENTERPRISE_URN).is_none(), "{}", r.body);
    assert_eq!(r.body["schemas"], json!([USER_URN, PRODUCT_URN]));
}

#[tokio::test]
async fn entra_manager_given_as_a_plain_string_becomes_manager_value() {
    let s = TestServer::start().await;
    let boss = s.create_user("boss@example.com").await;
    let boss2 = s.create_user("boss2@example.com").await;
    let id = s
        .post("/Users", entra_user("report@example.com"))
        .await
        .expect(201)
        .id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Add",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "value": boss}]),
    )
    .await
    .expect(200);
    assert_eq!(
        r.body[ENTERPRISE_URN]["manager"]["value"],
        json!(boss),
        "{}",
        r.body
    );
    assert_eq!(
        get_user(&s, &id).await.body[ENTERPRISE_URN]["manager"]["value"],
        json!(boss)
    );

    // The same key in a path-less replace.
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Replace", "value": {
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager": boss2}}]),
    )
    .await
    .expect(200);
    assert_eq!(
        r.body[ENTERPRISE_URN]["manager"]["value"],
        json!(boss2),
        "{}",
        r.body
    );

    // The object form works as well; removing the manager clears it.
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": format!("{ENTERPRISE_URN}:manager"), "value": {"value": boss}}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body[ENTERPRISE_URN]["manager"]["value"], json!(boss));
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Remove", "path": format!("{ENTERPRISE_URN}:manager")}]),
    )
    .await
    .expect(200);
    assert!(
        r.body[ENTERPRISE_URN].get("manager").is_none(),
        "{}",
        r.body
    );
    assert_eq!(r.body[ENTERPRISE_URN]["employeeNumber"], json!("100"));
}

#[tokio::test]
async fn remove_work_email_through_a_filter_keeps_the_others() {
    let s = TestServer::start().await;
    let mut body = user("rmwork@example.com");
    body["emails"] = json!([
        {"value": "w@example.com", "type": "work", "primary": true},
        {"value": "h@example.com", "type": "home"},
    ]);
    let id = s.post("/Users", body).await.expect(201).id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Remove", "path": "emails[type eq \"work\"]"}]),
    )
    .await
    .expect(200);
    assert_eq!(emails(&r.body), vec![em("home", "h@example.com", false)]);
    assert_eq!(
        emails(&get_user(&s, &id).await.body),
        vec![em("home", "h@example.com", false)]
    );

    let r = patch_user(
        &s,
        &id,
        json!([{"op": "remove", "path": "emails[value eq \"h@example.com\"]"}]),
    )
    .await
    .expect(200);
    assert!(r.body.get("emails").is_none(), "{}", r.body);
}

#[tokio::test]
async fn adding_a_primary_email_demotes_the_old_primary() {
    let s = TestServer::start().await;
    let id = s.create_user("prim@example.com").await;
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "add", "path": "emails",
                "value": [{"value": "new@example.com", "type": "home", "primary": true}]}]),
    )
    .await
    .expect(200);
    assert_eq!(
        emails(&r.body),
        vec![
            em("work", "prim@example.com", false),
            em("home", "new@example.com", true)
        ]
    );
    let primaries = r.body["emails"]
        .as_array()
        .expect("emails")
        .iter()
        .filter(|e| e["primary"] == json!(true))
        .count();
    assert_eq!(primaries, 1);
}

#[tokio::test]
async fn two_primaries_in_one_patch_value_are_rejected() {
    let s = TestServer::start().await;
    let created = s
        .post("/Users", user("twoprim@example.com"))
        .await
        .expect(201);
    let id = created.id();
    patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": "emails", "value": [
            {"value": "a@example.com", "type": "work", "primary": true},
            {"value": "b@example.com", "type": "home", "primary": true},
        ]}]),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    assert_eq!(get_user(&s, &id).await.etag(), created.etag());
}

#[tokio::test]
async fn canonical_values_in_patch_are_normalised_and_unknown_ones_rejected() {
    let s = TestServer::start().await;
    let created = s
        .post("/Users", user("pcanon@example.com"))
        .await
        .expect(201);
    let id = created.id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "add", "path": "emails", "value": [{"value": "o@example.com", "type": "OTHER"}]}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["emails"][1]["type"], json!("other"));
    let before = get_user(&s, &id).await;
    patch_user(
        &s,
        &id,
        json!([{"op": "add", "path": "emails", "value": [{"value": "x@example.com", "type": "office"}]}]),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    assert_eq!(get_user(&s, &id).await.etag(), before.etag());
}

// ================================================================ users: errors

#[tokio::test]
async fn removing_the_required_user_name_is_400_and_changes_nothing() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("req@example.com")).await.expect(201);
    let id = created.id();
    expect_400_one_of(
        patch_user(&s, &id, json!([{"op": "remove", "path": "userName"}])).await,
        &["invalidValue", "mutability"],
    );
    expect_400_one_of(
        patch_user(
            &s,
            &id,
            json!([{"op": "replace", "path": "userName", "value": ""}]),
        )
        .await,
        &["invalidValue", "mutability"],
    );
    let got = get_user(&s, &id).await;
    assert_eq!(got.body["userName"], json!("req@example.com"));
    assert_eq!(got.etag(), created.etag());
}

#[tokio::test]
async fn read_only_paths_are_400_mutability() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("ro@example.com")).await.expect(201);
    let id = created.id();
    let gid = s.create_group("G", &[]).await;
    for (op, path, value) in [
        ("replace", "id", json!("other")),
        ("replace", "meta.created", json!("2001-01-01T00:00:00Z")),
        (
            "replace",
            "meta.lastModified",
            json!("2001-01-01T00:00:00Z"),
        ),
        ("add", "groups", json!([{"value": gid}])),
        ("remove", "groups", Value::Null),
        ("remove", "id", Value::Null),
    ] {
        let mut o = json!({"op": op, "path": path});
        if !value.is_null() {
            o["value"] = value;
        }
        let r = patch_user(&s, &id, json!([o])).await;
        assert_eq!(r.status, 400, "{op} {path}: {}", r.body);
        r.expect_error(400, Some("mutability"));
    }
    // Nor through a path-less value.
    patch_user(
        &s,
        &id,
        json!([{"op": "add", "value": {"groups": [{"value": gid}]}}]),
    )
    .await
    .expect_error(400, Some("mutability"));
    // A path-less replace may not change the id either.
    patch_user(
        &s,
        &id,
        json!([{"op": "replace", "value": {"id": "other"}}]),
    )
    .await
    .expect_error(400, Some("mutability"));
    let got = get_user(&s, &id).await;
    assert_eq!(got.etag(), created.etag());
    assert!(got.body.get("groups").is_none_or(|g| g == &json!([])));
}

#[tokio::test]
async fn unknown_path_is_400_invalid_path() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("up@example.com")).await.expect(201);
    let id = created.id();
    for path in [
        "favouriteColour",
        "name.nickname",
        "emails[type eq \"work\"].colour",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:shoeSize",
        "urn:example:unknown:1.0:User:thing",
    ] {
        let r = patch_user(
            &s,
            &id,
            json!([{"op": "replace", "path": path, "value": "x"}]),
        )
        .await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        r.expect_error(400, Some("invalidPath"));
    }
    // An unknown key in a path-less value is refused as well.
    expect_400_one_of(
        patch_user(
            &s,
            &id,
            json!([{"op": "replace", "value": {"favouriteColour": "x"}}]),
        )
        .await,
        &["invalidPath", "invalidSyntax", "invalidValue"],
    );
    assert_eq!(get_user(&s, &id).await.etag(), created.etag());
}

#[tokio::test]
async fn malformed_filter_in_path_is_400() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("mf@example.com")).await.expect(201);
    let id = created.id();
    for path in [
        "emails[type eq]",
        "emails[type eq \"work\"",
        "emails[type zz \"work\"]",
        "emails[]",
        "emails[type eq \"work\"]]",
        "name[givenName eq \"x\"]",
    ] {
        let r = patch_user(
            &s,
            &id,
            json!([{"op": "replace", "path": path, "value": "x@example.com"}]),
        )
        .await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        expect_400_one_of(r, &["invalidPath", "invalidFilter"]);
    }
    assert_eq!(get_user(&s, &id).await.etag(), created.etag());
}

#[tokio::test]
async fn missing_operations_or_wrong_schemas_is_400_invalid_syntax() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("syn@example.com")).await.expect(201);
    let id = created.id();
    let path = format!("/Users/{id}");
    let op = json!([{"op": "replace", "path": "active", "value": false}]);
    s.patch(&path, json!({"schemas": [PATCH_URN]}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    s.patch(&path, json!({"Operations": op}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    s.patch(&path, json!({"schemas": [USER_URN], "Operations": op}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    s.patch(
        &path,
        json!({"schemas": [PATCH_URN], "Operations": {"op": "replace"}}),
    )
    .await
    .expect_error(400, Some("invalidSyntax"));
    s.patch(&path, json!({"schemas": [PATCH_URN], "Operations": []}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    s.patch(&path, json!([op]))
        .await
        .expect_error(400, Some("invalidSyntax"));
    // A full resource instead of a PatchOp.
    s.patch(&path, user("syn@example.com"))
        .await
        .expect_error(400, Some("invalidSyntax"));
    assert_eq!(get_user(&s, &id).await.etag(), created.etag());
}

#[tokio::test]
async fn operations_key_and_patch_urn_are_case_insensitive() {
    let s = TestServer::start().await;
    let id = s.create_user("opsci@example.com").await;
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH_URN.to_uppercase()],
                   "operations": [{"OP": "replace", "PATH": "active", "VALUE": false}]}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["active"], json!(false));
}

#[tokio::test]
async fn unknown_op_is_400() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("op@example.com")).await.expect(201);
    let id = created.id();
    for op in ["move", "copy", "test", ""] {
        let r = patch_user(
            &s,
            &id,
            json!([{"op": op, "path": "active", "value": false}]),
        )
        .await;
        assert_eq!(r.status, 400, "op {op:?}: {}", r.body);
        expect_400_one_of(r, &["invalidSyntax", "invalidValue"]);
    }
    expect_400_one_of(
        patch_user(&s, &id, json!([{"path": "active", "value": false}])).await,
        &["invalidSyntax", "invalidValue"],
    );
    assert_eq!(get_user(&s, &id).await.etag(), created.etag());
}

#[tokio::test]
async fn add_or_replace_without_a_value_is_400() {
    let s = TestServer::start().await;
    let created = s
        .post("/Users", user("noval@example.com"))
        .await
        .expect(201);
    let id = created.id();
    expect_400_one_of(
        patch_user(&s, &id, json!([{"op": "add", "path": "title"}])).await,
        &["invalidValue", "invalidSyntax"],
    );
    expect_400_one_of(
        patch_user(
            &s,
            &id,
            json!([{"op": "replace", "value": "not an object"}]),
        )
        .await,
        &["invalidValue", "invalidSyntax"],
    );
    assert_eq!(get_user(&s, &id).await.etag(), created.etag());
}

#[tokio::test]
async fn remove_without_path_is_400_no_target() {
    let s = TestServer::start().await;
    let created = s
        .post("/Users", user("nopath@example.com"))
        .await
        .expect(201);
    let id = created.id();
    patch_user(&s, &id, json!([{"op": "remove"}]))
        .await
        .expect_error(400, Some("noTarget"));
    patch_user(&s, &id, json!([{"op": "remove", "value": {"title": "x"}}]))
        .await
        .expect_error(400, Some("noTarget"));
    assert_eq!(get_user(&s, &id).await.etag(), created.etag());
}

#[tokio::test]
async fn wrong_value_types_in_patch_are_400_invalid_value() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("pt@example.com")).await.expect(201);
    let id = created.id();
    for (path, value) in [
        ("active", json!(3)),
        ("name", json!("A String")),
        ("name.givenName", json!(7)),
        ("userName", json!(["a"])),
    ] {
        let r = patch_user(
            &s,
            &id,
            json!([{"op": "replace", "path": path, "value": value}]),
        )
        .await;
        assert_eq!(r.status, 400, "{path} = {value}: {}", r.body);
        r.expect_error(400, Some("invalidValue"));
    }
    assert_eq!(get_user(&s, &id).await.etag(), created.etag());
}

#[tokio::test]
async fn patch_is_atomic_an_invalid_second_op_leaves_the_first_unapplied() {
    let s = TestServer::start().await;
    let mut body = user("atom@example.com");
    body["displayName"] = json!("Before");
    let created = s.post("/Users", body).await.expect(201);
    let id = created.id();
    patch_user(
        &s,
        &id,
        json!([
            {"op": "replace", "path": "displayName", "value": "After"},
            {"op": "replace", "path": "noSuchAttribute", "value": "x"},
        ]),
    )
    .await
    .expect_error(400, Some("invalidPath"));
    patch_user(
        &s,
        &id,
        json!([
            {"op": "replace", "path": "displayName", "value": "After"},
            {"op": "replace", "path": "active", "value": "not a bool"},
        ]),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    patch_user(
        &s,
        &id,
        json!([
            {"op": "replace", "path": "userName", "value": "renamed@example.com"},
            {"op": "remove", "path": "userName"},
        ]),
    )
    .await
    .expect(400);
    let got = get_user(&s, &id).await;
    assert_eq!(got.body["displayName"], json!("Before"));
    assert_eq!(got.body["userName"], json!("atom@example.com"));
    assert_eq!(got.etag(), created.etag());
    // The attempted rename did not take the name.
    s.post("/Users", user("renamed@example.com"))
        .await
        .expect(201);
}

#[tokio::test]
async fn a_no_op_patch_leaves_the_version_unchanged() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("noop@example.com")).await.expect(201);
    let id = created.id();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": "active", "value": true}]),
    )
    .await
    .expect(200);
    assert_eq!(r.etag(), created.etag());
    assert_eq!(r.body["meta"], created.body["meta"]);
    // Entra's periodic string form.
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    )
    .await
    .expect(200);
    assert_eq!(r.etag(), created.etag());
    let got = get_user(&s, &id).await;
    assert_eq!(got.etag(), created.etag());
    assert_eq!(
        got.body["meta"]["lastModified"],
        created.body["meta"]["lastModified"]
    );
}

#[tokio::test]
async fn a_real_change_bumps_version_and_last_modified() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("bump@example.com")).await.expect(201);
    let id = created.id();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await
    .expect(200);
    assert_ne!(r.etag(), created.etag());
    assert_ne!(
        r.body["meta"]["lastModified"],
        created.body["meta"]["lastModified"]
    );
    assert_eq!(r.body["meta"]["created"], created.body["meta"]["created"]);
}

// ================================================================ groups

#[tokio::test]
async fn okta_group_rename_with_pathless_replace_repeating_the_id() {
    let s = TestServer::start().await;
    let u = s.create_user("m@example.com").await;
    let gid = s.create_group("Old Name", &[&u]).await;
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "replace", "value": {"id": gid, "displayName": "New Name"}}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["displayName"], json!("New Name"));
    assert_eq!(member_ids(&r.body), vec![u.clone()]);
    assert_eq!(
        get_group(&s, &gid).await.body["displayName"],
        json!("New Name")
    );

    // Another id is not a rename.
    patch_group(
        &s,
        &gid,
        json!([{"op": "replace", "value": {"id": "some-other-id", "displayName": "X"}}]),
    )
    .await
    .expect_error(400, Some("mutability"));
    assert_eq!(
        get_group(&s, &gid).await.body["displayName"],
        json!("New Name")
    );
}

#[tokio::test]
async fn entra_replace_display_name_of_a_group() {
    let s = TestServer::start().await;
    let gid = s.create_group("Entra Old", &[]).await;
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "Replace", "path": "displayName", "value": "Entra New"}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["displayName"], json!("Entra New"));
    // The old name is free again.
    s.post("/Groups", group("entra old", &[])).await.expect(201);
}

#[tokio::test]
async fn add_members_adds_to_existing_ones_and_bumps_the_group_version() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let c = s.create_user("c@example.com").await;
    let created = s.post("/Groups", group("Grow", &[&a])).await.expect(201);
    let gid = created.id();
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "add", "path": "members", "value": [{"value": b}, {"value": c, "type": "User"}]}]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), sorted(&[&a, &b, &c]), "{}", r.body);
    for m in r.body["members"].as_array().expect("members") {
        let id = m["value"].as_str().expect("value");
        assert_eq!(m["type"], json!("User"));
        assert_eq!(m["$ref"], json!(s.url(&format!("/Users/{id}"))));
    }
    assert_ne!(r.etag(), created.etag());
    assert_eq!(r.body["meta"]["version"], json!(r.etag()));
    let got = get_group(&s, &gid).await;
    assert_eq!(member_ids(&got.body), sorted(&[&a, &b, &c]));
    assert_eq!(got.etag(), r.etag());
    let bdoc = get_user(&s, &b).await;
    assert_eq!(bdoc.body["groups"][0]["value"], json!(gid));

    // Adding a member that is already there changes nothing visible.
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "Add", "path": "members", "value": [{"value": a}]}]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), sorted(&[&a, &b, &c]));
}

#[tokio::test]
async fn add_members_without_path_and_nested_groups() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let child = s.create_group("Child", &[]).await;
    let gid = s.create_group("Parent", &[]).await;
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "add", "value": {"members": [{"value": a}, {"value": child}]}}]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), sorted(&[&a, &child]));
    let child_entry = r.body["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["value"] == json!(child))
        .cloned()
        .expect("child listed");
    assert_eq!(child_entry["type"], json!("Group"));
    assert_eq!(
        child_entry["$ref"],
        json!(s.url(&format!("/Groups/{child}")))
    );
}

#[tokio::test]
async fn add_of_an_unknown_member_is_400_and_changes_nothing() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let created = s.post("/Groups", group("Strict", &[&a])).await.expect(201);
    let gid = created.id();
    patch_group(
        &s,
        &gid,
        json!([
            {"op": "add", "path": "members", "value": [{"value": b}]},
            {"op": "add", "path": "members", "value": [{"value": NO_SUCH_ID}]},
        ]),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    let got = get_group(&s, &gid).await;
    assert_eq!(member_ids(&got.body), vec![a]);
    assert_eq!(got.etag(), created.etag());
}

#[tokio::test]
async fn entra_remove_members_with_a_value_array_removes_only_those() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let c = s.create_user("c@example.com").await;
    let created = s
        .post("/Groups", group("Shrink", &[&a, &b, &c]))
        .await
        .expect(201);
    let gid = created.id();
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "Remove", "path": "members", "value": [{"value": b}]}]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), sorted(&[&a, &c]), "{}", r.body);
    assert_ne!(r.etag(), created.etag());
    assert_eq!(
        member_ids(&get_group(&s, &gid).await.body),
        sorted(&[&a, &c])
    );
    assert!(
        get_user(&s, &b)
            .await
            .body
            .get("groups")
            .is_none_or(|g| g == &json!([]))
    );

    // JumpCloud's lowercase form, with two members at once.
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "remove", "path": "members", "value": [{"value": a}, {"value": c}]}]),
    )
    .await
    .expect(200);
    assert!(member_ids(&r.body).is_empty(), "{}", r.body);
}

#[tokio::test]
async fn remove_members_by_value_filter_removes_only_that_member() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let c = s.create_user("c@example.com").await;
    let created = s
        .post("/Groups", group("Filter", &[&a, &b, &c]))
        .await
        .expect(201);
    let gid = created.id();
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")}]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), sorted(&[&b, &c]));
    assert_ne!(r.etag(), created.etag());

    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "remove", "path": format!("members[value eq \"{b}\" or value eq \"{c}\"]")}]),
    )
    .await
    .expect(200);
    assert!(member_ids(&r.body).is_empty(), "{}", r.body);
}

#[tokio::test]
async fn remove_members_by_type_filter_removes_only_matching_members() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let child = s.create_group("Child", &[]).await;
    let gid = s.create_group("Mixed", &[&a, &child]).await;
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "remove", "path": "members[type eq \"Group\"]"}]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), vec![a]);
}

#[tokio::test]
async fn okta_remove_and_add_members_in_one_patch() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let c = s.create_user("c@example.com").await;
    let gid = s.create_group("Okta", &[&a, &b]).await;
    let r = patch_group(
        &s,
        &gid,
        json!([
            {"op": "remove", "path": format!("members[value eq \"{a}\"]")},
            {"op": "add", "path": "members", "value": [{"value": c, "display": "c@example.com"}]},
        ]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), sorted(&[&b, &c]), "{}", r.body);
    assert_eq!(
        member_ids(&get_group(&s, &gid).await.body),
        sorted(&[&b, &c])
    );
    assert!(
        get_user(&s, &a)
            .await
            .body
            .get("groups")
            .is_none_or(|g| g == &json!([]))
    );
    assert_eq!(
        get_user(&s, &c).await.body["groups"][0]["value"],
        json!(gid)
    );
}

#[tokio::test]
async fn remove_then_add_the_same_member_keeps_it_and_add_then_remove_drops_it() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let gid = s.create_group("Order", &[&a]).await;
    let r = patch_group(
        &s,
        &gid,
        json!([
            {"op": "remove", "path": format!("members[value eq \"{a}\"]")},
            {"op": "add", "path": "members", "value": [{"value": a}]},
        ]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), vec![a.clone()]);
    let r = patch_group(
        &s,
        &gid,
        json!([
            {"op": "add", "path": "members", "value": [{"value": b}]},
            {"op": "remove", "path": "members", "value": [{"value": b}]},
        ]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), vec![a]);
}

#[tokio::test]
async fn replace_members_sets_the_full_list() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let c = s.create_user("c@example.com").await;
    let created = s
        .post("/Groups", group("Full", &[&a, &b]))
        .await
        .expect(201);
    let gid = created.id();
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "replace", "path": "members", "value": [{"value": b}, {"value": c}]}]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), sorted(&[&b, &c]), "{}", r.body);
    assert_ne!(r.etag(), created.etag());
    assert_eq!(
        member_ids(&get_group(&s, &gid).await.body),
        sorted(&[&b, &c])
    );
    assert!(
        get_user(&s, &a)
            .await
            .body
            .get("groups")
            .is_none_or(|g| g == &json!([]))
    );

    // A path-less replace carrying members does the same.
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "replace", "value": {"displayName": "Full", "members": [{"value": a}]}}]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), vec![a]);

    // Replacing with an empty list empties the group.
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "replace", "path": "members", "value": []}]),
    )
    .await
    .expect(200);
    assert!(member_ids(&r.body).is_empty(), "{}", r.body);
    assert!(member_ids(&get_group(&s, &gid).await.body).is_empty());
}

#[tokio::test]
async fn remove_members_without_a_value_removes_all_members() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let created = s
        .post("/Groups", group("Empty me", &[&a, &b]))
        .await
        .expect(201);
    let gid = created.id();
    let r = patch_group(&s, &gid, json!([{"op": "remove", "path": "members"}]))
        .await
        .expect(200);
    assert!(member_ids(&r.body).is_empty(), "{}", r.body);
    assert_ne!(r.etag(), created.etag());
    assert!(member_ids(&get_group(&s, &gid).await.body).is_empty());
    assert_eq!(
        get_group(&s, &gid).await.body["displayName"],
        json!("Empty me")
    );
    for u in [&a, &b] {
        assert!(
            get_user(&s, u)
                .await
                .body
                .get("groups")
                .is_none_or(|g| g == &json!([]))
        );
    }
}

#[tokio::test]
async fn group_patch_answers_with_members_unless_excluded() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let gid = s.create_group("Answer", &[&a]).await;
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "add", "path": "members", "value": [{"value": b}]}]),
    )
    .await
    .expect(200);
    assert_eq!(r.body["displayName"], json!("Answer"));
    assert_eq!(member_ids(&r.body), sorted(&[&a, &b]));

    let r = s
        .patch(
            &format!("/Groups/{gid}?excludedAttributes=members"),
            patch_op(json!([{"op": "Remove", "path": "members", "value": [{"value": b}]}])),
        )
        .await
        .expect(200);
    assert!(r.body.get("members").is_none(), "{}", r.body);
    assert_eq!(r.body["displayName"], json!("Answer"));
    assert_eq!(r.body["id"], json!(gid));
    assert_eq!(member_ids(&get_group(&s, &gid).await.body), vec![a]);
}

#[tokio::test]
async fn member_sub_attributes_and_filtered_replace_are_refused() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let created = s.post("/Groups", group("Subs", &[&a])).await.expect(201);
    let gid = created.id();
    expect_400_one_of(
        patch_group(
            &s,
            &gid,
            json!([{"op": "replace", "path": format!("members[value eq \"{a}\"].value"), "value": NO_SUCH_ID}]),
        )
        .await,
        &["mutability", "invalidPath"],
    );
    expect_400_one_of(
        patch_group(
            &s,
            &gid,
            json!([{"op": "replace", "path": "members.display", "value": "x"}]),
        )
        .await,
        &["mutability", "invalidPath"],
    );
    let got = get_group(&s, &gid).await;
    assert_eq!(member_ids(&got.body), vec![a]);
    assert_eq!(got.etag(), created.etag());
}

#[tokio::test]
async fn removing_the_required_display_name_of_a_group_is_400() {
    let s = TestServer::start().await;
    let created = s.post("/Groups", group("Named", &[])).await.expect(201);
    let gid = created.id();
    expect_400_one_of(
        patch_group(&s, &gid, json!([{"op": "remove", "path": "displayName"}])).await,
        &["invalidValue", "mutability"],
    );
    assert_eq!(get_group(&s, &gid).await.etag(), created.etag());
}

#[tokio::test]
async fn group_patch_is_atomic_across_attribute_and_member_ops() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let created = s.post("/Groups", group("Atomic", &[&a])).await.expect(201);
    let gid = created.id();
    patch_group(
        &s,
        &gid,
        json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "add", "path": "members", "value": [{"value": b}]},
            {"op": "replace", "path": "nope", "value": 1},
        ]),
    )
    .await
    .expect_error(400, Some("invalidPath"));
    let got = get_group(&s, &gid).await;
    assert_eq!(got.body["displayName"], json!("Atomic"));
    assert_eq!(member_ids(&got.body), vec![a]);
    assert_eq!(got.etag(), created.etag());
}

// ================================================================ ETags

#[tokio::test]
async fn if_match_with_the_current_etag_succeeds_and_stale_is_412() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("etag@example.com")).await.expect(201);
    let id = created.id();
    let v1 = created.etag();
    let path = format!("/Users/{id}");
    let op =
        |name: &str| patch_op(json!([{"op": "replace", "path": "displayName", "value": name}]));

    let r = call_h(
        &s,
        Method::PATCH,
        &path,
        Some(op("one")),
        &[("if-match", &v1)],
    )
    .await
    .expect(200);
    let v2 = r.etag();
    assert_ne!(v1, v2);

    call_h(
        &s,
        Method::PATCH,
        &path,
        Some(op("stale")),
        &[("if-match", &v1)],
    )
    .await
    .expect_error(412, None);
    let got = get_user(&s, &id).await;
    assert_eq!(got.body["displayName"], json!("one"));
    assert_eq!(got.etag(), v2);

    let r = call_h(
        &s,
        Method::PATCH,
        &path,
        Some(op("star")),
        &[("if-match", "*")],
    )
    .await
    .expect(200);
    assert_eq!(r.body["displayName"], json!("star"));

    // A list holding the current tag matches.
    let cur = r.etag();
    let list = format!("{v1}, {cur}");
    call_h(
        &s,
        Method::PATCH,
        &path,
        Some(op("listed")),
        &[("if-match", &list)],
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn if_match_on_a_group_patch() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let created = s.post("/Groups", group("Cond", &[])).await.expect(201);
    let gid = created.id();
    let path = format!("/Groups/{gid}");
    let add = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": a}]}]));
    let r = call_h(
        &s,
        Method::PATCH,
        &path,
        Some(add.clone()),
        &[("if-match", &created.etag())],
    )
    .await
    .expect(200);
    assert_ne!(r.etag(), created.etag());
    let remove = patch_op(json!([{"op": "remove", "path": "members"}]));
    call_h(
        &s,
        Method::PATCH,
        &path,
        Some(remove),
        &[("if-match", &created.etag())],
    )
    .await
    .expect_error(412, None);
    let got = get_group(&s, &gid).await;
    assert_eq!(member_ids(&got.body), vec![a]);
    assert_eq!(got.etag(), r.etag());
}

#[tokio::test]
async fn if_none_match_current_is_304_and_stale_is_200() {
    let s = TestServer::start().await;
    let created = s.post("/Users", user("inm@example.com")).await.expect(201);
    let id = created.id();
    let path = format!("/Users/{id}");
    let v1 = created.etag();
    let r = call_h(&s, Method::GET, &path, None, &[("if-none-match", &v1)]).await;
    assert_eq!(r.status, 304, "{}", r.body);
    assert_eq!(r.body, Value::Null);
    assert_eq!(r.header("etag"), Some(v1.clone()));

    patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await
    .expect(200);
    let r = call_h(&s, Method::GET, &path, None, &[("if-none-match", &v1)])
        .await
        .expect(200);
    assert_eq!(r.body["active"], json!(false));
    assert_ne!(r.etag(), v1);

    let gid = s.create_group("INM", &[]).await;
    let g = get_group(&s, &gid).await;
    let r = call_h(
        &s,
        Method::GET,
        &format!("/Groups/{gid}"),
        None,
        &[("if-none-match", &g.etag())],
    )
    .await;
    assert_eq!(r.status, 304);
}

#[tokio::test]
async fn stale_if_match_on_put_and_delete_is_412_and_changes_nothing() {
    let s = TestServer::start().await;
    let created = s
        .post("/Users", user("guard@example.com"))
        .await
        .expect(201);
    let id = created.id();
    let path = format!("/Users/{id}");
    let v1 = created.etag();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": "title", "value": "Now"}]),
    )
    .await
    .expect(200);
    let v2 = r.etag();

    let mut body = user("guard@example.com");
    body["title"] = json!("Overwritten");
    call_h(
        &s,
        Method::PUT,
        &path,
        Some(body.clone()),
        &[("if-match", &v1)],
    )
    .await
    .expect_error(412, None);
    call_h(&s, Method::DELETE, &path, None, &[("if-match", &v1)])
        .await
        .expect_error(412, None);
    let got = get_user(&s, &id).await;
    assert_eq!(got.body["title"], json!("Now"));
    assert_eq!(got.etag(), v2);

    // With the current tag both go through.
    let r = call_h(&s, Method::PUT, &path, Some(body), &[("if-match", &v2)])
        .await
        .expect(200);
    assert_eq!(r.body["title"], json!("Overwritten"));
    call_h(&s, Method::DELETE, &path, None, &[("if-match", &r.etag())])
        .await
        .expect(204);
    s.get(&path).await.expect_error(404, None);
}

// ================================================================ more edge cases

#[tokio::test]
async fn patch_to_a_taken_user_name_or_external_id_is_409_and_changes_nothing() {
    let s = TestServer::start().await;
    let mut other = user("taken@example.com");
    other["externalId"] = json!("ext-taken");
    s.post("/Users", other).await.expect(201);
    let created = s.post("/Users", user("mine@example.com")).await.expect(201);
    let id = created.id();
    patch_user(
        &s,
        &id,
        json!([
            {"op": "replace", "path": "displayName", "value": "Should not stick"},
            {"op": "replace", "path": "userName", "value": "TAKEN@example.com"},
        ]),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    patch_user(
        &s,
        &id,
        json!([{"op": "add", "path": "externalId", "value": "ext-taken"}]),
    )
    .await
    .expect_error(409, Some("uniqueness"));
    let got = get_user(&s, &id).await;
    assert_eq!(got.body["userName"], json!("mine@example.com"));
    assert!(got.body.get("displayName").is_none());
    assert!(got.body.get("externalId").is_none());
    assert_eq!(got.etag(), created.etag());
}

#[tokio::test]
async fn entra_add_through_a_filter_path_sets_the_existing_entry() {
    let s = TestServer::start().await;
    let id = s.create_user("exists@example.com").await;
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "changed@example.com"}]),
    )
    .await
    .expect(200);
    assert_eq!(
        emails(&r.body),
        vec![em("work", "changed@example.com", true)]
    );
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0199"}]),
    )
    .await
    .expect(200);
    assert_eq!(
        r.body["phoneNumbers"],
        json!([{"type": "mobile", "value": "+1 555 0199"}])
    );
}

#[tokio::test]
async fn setting_primary_through_a_filter_demotes_the_other_primary() {
    let s = TestServer::start().await;
    let mut body = user("fprim@example.com");
    body["emails"] = json!([
        {"value": "w@example.com", "type": "work", "primary": true},
        {"value": "h@example.com", "type": "home"},
    ]);
    let id = s.post("/Users", body).await.expect(201).id();
    let r = patch_user(
        &s,
        &id,
        json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "True"}]),
    )
    .await
    .expect(200);
    assert_eq!(
        emails(&r.body),
        vec![
            em("work", "w@example.com", false),
            em("home", "h@example.com", true)
        ]
    );
}

#[tokio::test]
async fn entra_remove_of_a_non_member_succeeds_and_keeps_the_members() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let outsider = s.create_user("out@example.com").await;
    let gid = s.create_group("Keep", &[&a]).await;
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "Remove", "path": "members", "value": [{"value": outsider}]}]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), vec![a.clone()]);
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "remove", "path": format!("members[value eq \"{NO_SUCH_ID}\"]")}]),
    )
    .await
    .expect(200);
    assert_eq!(member_ids(&r.body), vec![a.clone()]);
    assert_eq!(member_ids(&get_group(&s, &gid).await.body), vec![a]);
}

#[tokio::test]
async fn member_changes_update_the_group_last_modified() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let created = s.post("/Groups", group("Clock", &[])).await.expect(201);
    let gid = created.id();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let r = patch_group(
        &s,
        &gid,
        json!([{"op": "add", "path": "members", "value": [{"value": a}]}]),
    )
    .await
    .expect(200);
    assert_ne!(
        r.body["meta"]["lastModified"],
        created.body["meta"]["lastModified"]
    );
    assert_eq!(r.body["meta"]["created"], created.body["meta"]["created"]);
    let got = get_group(&s, &gid).await;
    assert_eq!(got.body["meta"], r.body["meta"]);
}

#[tokio::test]
async fn members_of_another_tenant_cannot_be_added() {
    let s = TestServer::start().await;
    let foreign = s
        .call_with(
            Method::POST,
            &format!("{}/scim/v2/{OTHER_TENANT}/Users", s.origin),
            &s.other_token,
            Some(user("foreign@example.com")),
            &[],
        )
        .await
        .expect(201)
        .id();
    let created = s.post("/Groups", group("Local", &[])).await.expect(201);
    let gid = created.id();
    patch_group(
        &s,
        &gid,
        json!([{"op": "add", "path": "members", "value": [{"value": foreign}]}]),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    assert_eq!(get_group(&s, &gid).await.etag(), created.etag());
}

#[tokio::test]
async fn stale_or_malformed_if_match_is_412_even_for_a_no_op_patch() {
    let s = TestServer::start().await;
    let created = s
        .post("/Users", user("noopim@example.com"))
        .await
        .expect(201);
    let id = created.id();
    let path = format!("/Users/{id}");
    let noop = patch_op(json!([{"op": "replace", "path": "active", "value": true}]));
    for tag in ["W/\"999\"", "\"garbage\"", "nonsense"] {
        let r = call_h(
            &s,
            Method::PATCH,
            &path,
            Some(noop.clone()),
            &[("if-match", tag)],
        )
        .await;
        assert_eq!(r.status, 412, "If-Match {tag}: {}", r.body);
        r.expect_error(412, None);
    }
    // Weak and strong forms of the current tag both match.
    let cur = created.etag();
    let strong = cur.trim_start_matches("W/").to_owned();
    call_h(
        &s,
        Method::PATCH,
        &path,
        Some(noop),
        &[("if-match", &strong)],
    )
    .await
    .expect(200);
}
