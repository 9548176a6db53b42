//! /Users: creation, validation, uniqueness, replacement, deletion and the
//! `attributes`/`excludedAttributes` projection (RFC 7643 §4.1, RFC 7644 §3.3–3.6, §3.9).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// The top-level keys of a JSON object.
fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn key_set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// A 400 SCIM Error, whatever its scimType.
#[track_caller]
fn expect_bad_request(r: Resp) -> Resp {
    assert_eq!(r.status, 400, "unexpected status; body: {}", r.body);
    assert_eq!(
        r.body["schemas"],
        json!([ERROR_URN]),
        "not a SCIM error: {}",
        r.body
    );
    assert_eq!(
        r.body["status"],
        json!("400"),
        "status must be a string: {}",
        r.body
    );
    assert!(
        r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "detail missing: {}",
        r.body
    );
    r
}

/// Lets the clock move on so `lastModified` can differ.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(30)).await;
}

async fn user_count(s: &TestServer) -> u64 {
    s.get("/Users").await.expect(200).total()
}

// ---------------------------------------------------------------- create

#[tokio::test]
async fn create_answers_201_with_location_etag_schemas_and_meta() {
    let s = TestServer::start().await;
    let r = s
        .post("/Users", user("alice@example.com"))
        .await
        .expect(201);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    let id = r.id();
    assert!(!id.is_empty());
    assert_eq!(r.body["schemas"], json!([USER_URN, PRODUCT_URN]));
    assert_eq!(r.body["userName"], json!("alice@example.com"));

    let meta = &r.body["meta"];
    assert_eq!(meta["resourceType"], json!("User"));
    let location = s.url(&format!("/Users/{id}"));
    assert_eq!(meta["location"], json!(location));
    assert_eq!(r.header("location"), Some(location));

    let etag = r.etag();
    assert!(
        etag.starts_with("W/\"") && etag.ends_with('"'),
        "weak ETag: {etag}"
    );
    assert_eq!(meta["version"], json!(etag));

    let created = meta["created"].as_str().expect("meta.created");
    let modified = meta["lastModified"].as_str().expect("meta.lastModified");
    assert!(created.contains('T'), "xsd:dateTime: {created}");
    assert!(modified.contains('T'), "xsd:dateTime: {modified}");
    assert!(modified >= created);

    // The full resource comes back, as Okta expects.
    assert_eq!(r.body["name"]["givenName"], json!("Given"));
    assert_eq!(r.body["emails"][0]["value"], json!("alice@example.com"));
    assert_eq!(r.body["active"], json!(true));

    let got = s.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(got.etag(), etag);
    assert_eq!(got.body["meta"], r.body["meta"]);
}

#[tokio::test]
async fn enterprise_extension_round_trips_under_its_urn_and_is_listed_in_schemas() {
    let s = TestServer::start().await;
    let boss = s.create_user("boss@example.com").await;
    let mut body = user("emp@example.com");
    body["schemas"] = json!([USER_URN, ENTERPRISE_URN]);
    body[ENTERPRISE_URN] = json!({
        "employeeNumber": "E-42",
        "department": "Research",
        "costCenter": "CC1",
        "manager": {"value": boss},
    });
    let r = s.post("/Users", body).await.expect(201);
    let id = r.id();
    for doc in [
        r.body,
        s.get(&format!("/Users/{id}")).await.expect(200).body,
    ] {
        let schemas = doc["schemas"].as_array().expect("schemas");
        assert!(schemas.contains(&json!(USER_URN)), "{doc}");
        assert!(schemas.contains(&json!(ENTERPRISE_URN)), "{doc}");
        let ext = &doc[ENTERPRISE_URN];
        assert_eq!(ext["employeeNumber"], json!("E-42"), "{doc}");
        assert_eq!(ext["department"], json!("Research"));
        assert_eq!(ext["costCenter"], json!("CC1"));
        assert_eq!(ext["manager"]["value"], json!(boss));
        // Never flattened or split on the dots of "2.0".
        assert!(doc.get("employeeNumber").is_none());
        assert!(
            doc.get("urn:ietf:params:scim:schemas:extension:enterprise:2")
                .is_none()
        );
    }
}

#[tokio::test]
async fn user_without_extension_does_not_list_the_extension_schema() {
    let s = TestServer::start().await;
    let r = s
        .post("/Users", user("plain@example.com"))
        .await
        .expect(201);
    assert_eq!(r.body["schemas"], json!([USER_URN, PRODUCT_URN]));
    assert!(r.body.get(ENTERPRISE_URN).is_none());
}

#[tokio::test]
async fn password_is_accepted_but_never_returned() {
    let s = TestServer::start().await;
    let mut body = user("pw@example.com");
    body["password"] = json!("t1meMa$heen");
    let r = s.post("/Users", body).await.expect(201);
    assert!(r.body.get("password").is_none(), "{}", r.body);
    let id = r.id();

    let got = s.get(&format!("/Users/{id}")).await.expect(200);
    assert!(got.body.get("password").is_none(), "{}", got.body);

    let asked = s
        .get(&format!("/Users/{id}?attributes=password"))
        .await
        .expect(200);
    assert!(asked.body.get("password").is_none(), "{}", asked.body);
    assert_eq!(asked.body["id"], json!(id));

    let list = s.get("/Users").await.expect(200);
    assert_eq!(list.total(), 1);
    assert!(list.resources()[0].get("password").is_none());

    let list = s
        .get("/Users?attributes=password,userName")
        .await
        .expect(200);
    assert!(list.resources()[0].get("password").is_none());
    assert_eq!(list.resources()[0]["userName"], json!("pw@example.com"));

    // A PUT carrying a password is accepted too, and it stays hidden.
    let mut body = user("pw@example.com");
    body["password"] = json!("an0ther!");
    let put = s.put(&format!("/Users/{id}"), body).await.expect(200);
    assert!(put.body.get("password").is_none(), "{}", put.body);
}

#[tokio::test]
async fn read_only_input_id_meta_and_groups_is_ignored() {
    let s = TestServer::start().await;
    let mut body = user("ro@example.com");
    body["id"] = json!("chosen-by-client");
    body["meta"] = json!({
        "resourceType": "Group",
        "created": "2001-01-01T00:00:00Z",
        "lastModified": "2001-01-01T00:00:00Z",
        "version": "W/\"999\"",
        "location": "https://evil.example.com/x",
    });
    body["groups"] = json!([{"value": "some-group", "display": "Admins"}]);
    let r = s.post("/Users", body).await.expect(201);
    let id = r.id();
    assert_ne!(id, "chosen-by-client");
    assert_eq!(r.body["meta"]["resourceType"], json!("User"));
    assert_ne!(r.body["meta"]["created"], json!("2001-01-01T00:00:00Z"));
    assert_ne!(r.body["meta"]["version"], json!("W/\"999\""));
    assert_eq!(
        r.body["meta"]["location"],
        json!(s.url(&format!("/Users/{id}")))
    );
    assert!(
        r.body.get("groups").is_none_or(|g| g == &json!([])),
        "groups is computed: {}",
        r.body
    );
    s.get("/Users/chosen-by-client")
        .await
        .expect_error(404, None);
}

#[tokio::test]
async fn attribute_names_are_case_insensitive_and_stored_canonically() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/Users",
            json!({
                "SCHEMAS": [USER_URN],
                "USERNAME": "CaseUser@Example.com",
                "Name": {"GivenName": "Case", "FAMILYNAME": "User"},
                "Emails": [{"VALUE": "case@example.com", "Type": "work", "PRIMARY": true}],
                "ACTIVE": true,
                "DisplayName": "Case User",
            }),
        )
        .await
        .expect(201);
    let id = r.id();
    for doc in [
        r.body,
        s.get(&format!("/Users/{id}")).await.expect(200).body,
    ] {
        // Values are stored as sent.
        assert_eq!(doc["userName"], json!("CaseUser@Example.com"), "{doc}");
        assert_eq!(
            doc["name"],
            json!({"givenName": "Case", "familyName": "User"})
        );
        assert_eq!(
            doc["emails"],
            json!([{"value": "case@example.com", "type": "work", "primary": true}])
        );
        assert_eq!(doc["active"], json!(true));
        assert_eq!(doc["displayName"], json!("Case User"));
        for k in [
            "USERNAME",
            "Name",
            "Emails",
            "ACTIVE",
            "DisplayName",
            "SCHEMAS",
        ] {
            assert!(doc.get(k).is_none(), "{k} must be canonical: {doc}");
        }
    }
}

#[tokio::test]
async fn same_attribute_twice_in_different_case_is_rejected() {
    let s = TestServer::start().await;
    let mut body = user("twice@example.com");
    body["DISPLAYNAME"] = json!("One");
    body["displayName"] = json!("Two");
    expect_bad_request(s.post("/Users", body).await);
}

#[tokio::test]
async fn canonical_values_are_normalised_to_their_canonical_spelling() {
    let s = TestServer::start().await;
    let mut body = user("canon@example.com");
    body["emails"] = json!([
        {"value": "w@example.com", "type": "WORK", "primary": true},
        {"value": "h@example.com", "type": "Home"},
    ]);
    body["phoneNumbers"] = json!([{"value": "+1 555", "type": "Mobile"}]);
    let r = s.post("/Users", body).await.expect(201);
    assert_eq!(r.body["emails"][0]["type"], json!("work"));
    assert_eq!(r.body["emails"][1]["type"], json!("home"));
    assert_eq!(r.body["phoneNumbers"][0]["type"], json!("mobile"));
    let got = s.get(&format!("/Users/{}", r.id())).await.expect(200);
    assert_eq!(got.body["emails"][0]["type"], json!("work"));
}

#[tokio::test]
async fn unknown_canonical_value_is_rejected_with_invalid_value() {
    let s = TestServer::start().await;
    let mut body = user("canon@example.com");
    body["emails"] = json!([{"value": "w@example.com", "type": "office"}]);
    s.post("/Users", body)
        .await
        .expect_error(400, Some("invalidValue"));
    assert_eq!(user_count(&s).await, 0);
}

#[tokio::test]
async fn wrong_attribute_types_are_rejected_with_400() {
    let s = TestServer::start().await;
    let cases: Vec<(&str, Value)> = vec![
        ("active", json!("yes")),
        ("active", json!(1)),
        ("emails", json!({"value": "a@example.com"})),
        ("emails", json!("a@example.com")),
        ("name", json!("Alice Smith")),
        ("userName", json!(42)),
        ("displayName", json!(["a", "b"])),
        (
            "emails",
            json!([{"value": "a@example.com", "primary": "yes"}]),
        ),
    ];
    for (attr, value) in cases {
        let mut body = user("types@example.com");
        body[attr] = value.clone();
        let r = s.post("/Users", body).await;
        assert_eq!(
            r.status, 400,
            "{attr} = {value} must be refused: {}",
            r.body
        );
        r.expect_error(400, Some("invalidValue"));
    }
    assert_eq!(user_count(&s).await, 0);
}

#[tokio::test]
async fn unknown_attribute_is_rejected_with_invalid_syntax() {
    let s = TestServer::start().await;
    let mut body = user("unknown@example.com");
    body["favouriteColour"] = json!("blue");
    s.post("/Users", body)
        .await
        .expect_error(400, Some("invalidSyntax"));

    let mut body = user("unknown@example.com");
    body["name"]["nickname"] = json!("x");
    expect_bad_request(s.post("/Users", body).await);
    assert_eq!(user_count(&s).await, 0);
}

#[tokio::test]
async fn missing_or_empty_user_name_is_rejected_with_invalid_value() {
    let s = TestServer::start().await;
    let mut body = user("x@example.com");
    body.as_object_mut().expect("object").remove("userName");
    s.post("/Users", body)
        .await
        .expect_error(400, Some("invalidValue"));

    let mut body = user("x@example.com");
    body["userName"] = json!("");
    s.post("/Users", body)
        .await
        .expect_error(400, Some("invalidValue"));

    let mut body = user("x@example.com");
    body["userName"] = json!("   ");
    s.post("/Users", body)
        .await
        .expect_error(400, Some("invalidValue"));

    let mut body = user("x@example.com");
    body["userName"] = Value::Null;
    s.post("/Users", body)
        .await
        .expect_error(400, Some("invalidValue"));
    assert_eq!(user_count(&s).await, 0);
}

#[tokio::test]
async fn missing_or_wrong_schemas_is_rejected() {
    let s = TestServer::start().await;
    let mut body = user("schemas@example.com");
    body.as_object_mut().expect("object").remove("schemas");
    expect_bad_request(s.post("/Users", body).await);

    let mut body = user("schemas@example.com");
    body["schemas"] = json!([GROUP_URN]);
    expect_bad_request(s.post("/Users", body).await);

    let mut body = user("schemas@example.com");
    body["schemas"] = json!([]);
    expect_bad_request(s.post("/Users", body).await);

    let mut body = user("schemas@example.com");
    body["schemas"] = json!(USER_URN);
    expect_bad_request(s.post("/Users", body).await);

    // Attributes under a schema the service does not know cannot be kept.
    let mut body = user("schemas@example.com");
    body["schemas"] = json!([USER_URN, "urn:example:unknown:1.0:User"]);
    body["urn:example:unknown:1.0:User"] = json!({"costCentre": "4711"});
    let r = s
        .post("/Users", body)
        .await
        .expect_error(400, Some("invalidValue"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("urn:example:unknown:1.0:User")
    );
    let mut body = user("schemas@example.com");
    body["schemas"] = json!([USER_URN, "urn:example:unknown:1.0:User"]);
    body["urn:example:unknown:1.0:User:costCentre"] = json!("4711");
    s.post("/Users", body)
        .await
        .expect_error(400, Some("invalidValue"));

    assert_eq!(user_count(&s).await, 0);
}

#[tokio::test]
async fn schema_urns_are_case_insensitive() {
    let s = TestServer::start().await;
    let mut body = user("urncase@example.com");
    body["schemas"] = json!([USER_URN.to_uppercase()]);
    let r = s.post("/Users", body).await.expect(201);
    assert_eq!(r.body["schemas"], json!([USER_URN, PRODUCT_URN]));
}

#[tokio::test]
async fn two_primary_emails_are_rejected() {
    let s = TestServer::start().await;
    let mut body = user("prim@example.com");
    body["emails"] = json!([
        {"value": "a@example.com", "type": "work", "primary": true},
        {"value": "b@example.com", "type": "home", "primary": true},
    ]);
    s.post("/Users", body)
        .await
        .expect_error(400, Some("invalidValue"));
    assert_eq!(user_count(&s).await, 0);
}

#[tokio::test]
async fn body_that_is_not_a_json_object_is_invalid_syntax() {
    let s = TestServer::start().await;
    s.post("/Users", json!([user("arr@example.com")]))
        .await
        .expect_error(400, Some("invalidSyntax"));
}

#[tokio::test]
async fn okta_create_body_is_accepted_and_answered_in_full() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN],
                "userName": "okta.user@example.com",
                "name": {"givenName": "Okta", "familyName": "User"},
                "emails": [{"primary": true, "value": "okta.user@example.com", "type": "work"}],
                "displayName": "Okta User",
                "locale": "en-US",
                "externalId": "00u1abcd",
                "groups": [],
                "password": "1mP@ssw0rd",
                "active": true,
            }),
        )
        .await
        .expect(201);
    assert_eq!(r.body["userName"], json!("okta.user@example.com"));
    assert_eq!(r.body["displayName"], json!("Okta User"));
    assert_eq!(r.body["locale"], json!("en-US"));
    assert_eq!(r.body["externalId"], json!("00u1abcd"));
    assert_eq!(r.body["active"], json!(true));
    assert_eq!(r.body["name"]["familyName"], json!("User"));
    assert!(r.body.get("password").is_none());
}

#[tokio::test]
async fn entra_create_body_is_accepted() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN, ENTERPRISE_URN],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                "userName": "Test_User_ab6490ee@testuser.com",
                "active": true,
                "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea13b@testuser.com"}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
                "roles": [],
                ENTERPRISE_URN: {"employeeNumber": "E1", "department": "Dept"},
            }),
        )
        .await
        .expect(201);
    assert_eq!(r.body["userName"], json!("Test_User_ab6490ee@testuser.com"));
    assert_eq!(r.body["name"]["formatted"], json!("givenName familyName"));
    assert_eq!(r.body[ENTERPRISE_URN]["department"], json!("Dept"));
    assert!(r.body.get("roles").is_none_or(|v| v == &json!([])));
    // Entra's existence check with other letter case finds it.
    let found = s
        .get(&format!(
            "/Users?filter={}",
            enc("userName eq \"test_user_AB6490EE@testuser.com\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.total(), 1);
}

#[tokio::test]
async fn wrong_types_inside_the_enterprise_extension_are_rejected() {
    let s = TestServer::start().await;
    for ext in [
        json!({"employeeNumber": 42}),
        json!({"manager": 7}),
        json!({"shoeSize": "44"}),
        json!("not an object"),
    ] {
        let mut body = user("extbad@example.com");
        body["schemas"] = json!([USER_URN, ENTERPRISE_URN]);
        body[ENTERPRISE_URN] = ext.clone();
        let r = s.post("/Users", body).await;
        assert_eq!(r.status, 400, "{ext}: {}", r.body);
        expect_bad_request(r);
    }
    assert_eq!(user_count(&s).await, 0);
}

// ---------------------------------------------------------------- uniqueness

#[tokio::test]
async fn duplicate_user_name_in_other_letter_case_is_409_uniqueness() {
    let s = TestServer::start().await;
    s.create_user("Dup@Example.com").await;
    let r = s
        .post("/Users", user("dup@example.COM"))
        .await
        .expect_error(409, Some("uniqueness"));
    assert!(r.body.get("id").is_none());
    s.post("/Users", user("Dup@Example.com"))
        .await
        .expect_error(409, Some("uniqueness"));
    assert_eq!(user_count(&s).await, 1);
}

#[tokio::test]
async fn duplicate_external_id_is_409_but_external_id_is_case_exact() {
    let s = TestServer::start().await;
    let mut a = user("a@example.com");
    a["externalId"] = json!("Ext-1");
    s.post("/Users", a).await.expect(201);

    let mut b = user("b@example.com");
    b["externalId"] = json!("Ext-1");
    s.post("/Users", b)
        .await
        .expect_error(409, Some("uniqueness"));

    let mut c = user("c@example.com");
    c["externalId"] = json!("ext-1");
    let r = s.post("/Users", c).await.expect(201);
    assert_eq!(r.body["externalId"], json!("ext-1"));
    assert_eq!(user_count(&s).await, 2);
}

// ---------------------------------------------------------------- read

#[tokio::test]
async fn get_unknown_user_is_404_error_with_detail() {
    let s = TestServer::start().await;
    let r = s
        .get("/Users/00000000-0000-0000-0000-000000000000")
        .await
        .expect_error(404, None);
    assert!(r.body.get("scimType").is_none());
    s.get("/Users/not-a-uuid").await.expect_error(404, None);
}

// ---------------------------------------------------------------- replace

#[tokio::test]
async fn put_replaces_clears_omitted_attributes_and_bumps_version() {
    let s = TestServer::start().await;
    let mut body = user("put@example.com");
    body["displayName"] = json!("Put Me");
    body["title"] = json!("Engineer");
    body["externalId"] = json!("ext-put");
    body["phoneNumbers"] = json!([{"value": "+1 555 0100", "type": "work"}]);
    body["schemas"] = json!([USER_URN, ENTERPRISE_URN]);
    body[ENTERPRISE_URN] = json!({"department": "R&D"});
    let created = s.post("/Users", body).await.expect(201);
    let id = created.id();
    let old_meta = created.body["meta"].clone();
    tick().await;

    let put = s
        .put(
            &format!("/Users/{id}"),
            json!({
                "schemas": [USER_URN],
                "userName": "put@example.com",
                "emails": [{"value": "new@example.com", "type": "home"}],
                "active": false,
            }),
        )
        .await
        .expect(200);
    assert_eq!(put.id(), id);
    for doc in [
        &put.body,
        &s.get(&format!("/Users/{id}")).await.expect(200).body,
    ] {
        assert_eq!(doc["userName"], json!("put@example.com"));
        assert_eq!(
            doc["emails"],
            json!([{"value": "new@example.com", "type": "home"}])
        );
        assert_eq!(doc["active"], json!(false));
        for gone in [
            "displayName",
            "title",
            "externalId",
            "phoneNumbers",
            "name",
            ENTERPRISE_URN,
        ] {
            assert!(doc.get(gone).is_none(), "{gone} must be cleared: {doc}");
        }
        assert_eq!(doc["schemas"], json!([USER_URN, PRODUCT_URN]));
        let meta = &doc["meta"];
        assert_ne!(meta["version"], old_meta["version"]);
        assert_ne!(meta["lastModified"], old_meta["lastModified"]);
        assert_eq!(meta["created"], old_meta["created"]);
        assert_eq!(meta["location"], old_meta["location"]);
    }
    assert_eq!(put.body["meta"]["version"], json!(put.etag()));
    assert_ne!(put.etag(), created.etag());
}

#[tokio::test]
async fn put_renaming_user_name_frees_the_old_name() {
    let s = TestServer::start().await;
    let id = s.create_user("old@example.com").await;
    let mut body = user("renamed@example.com");
    body["externalId"] = json!("x1");
    s.put(&format!("/Users/{id}"), body).await.expect(200);

    s.post("/Users", user("OLD@example.com")).await.expect(201);
    s.post("/Users", user("Renamed@Example.com"))
        .await
        .expect_error(409, Some("uniqueness"));
    // The externalId given in a PUT is unique as well.
    let mut other = user("third@example.com");
    other["externalId"] = json!("x1");
    s.post("/Users", other)
        .await
        .expect_error(409, Some("uniqueness"));
}

#[tokio::test]
async fn put_keeping_its_own_user_name_in_other_case_is_allowed() {
    let s = TestServer::start().await;
    let id = s.create_user("self@example.com").await;
    let r = s
        .put(&format!("/Users/{id}"), user("SELF@example.com"))
        .await
        .expect(200);
    assert_eq!(r.body["userName"], json!("SELF@example.com"));
}

#[tokio::test]
async fn put_to_a_taken_user_name_is_409_and_changes_nothing() {
    let s = TestServer::start().await;
    s.create_user("taken@example.com").await;
    let created = s.post("/Users", user("mine@example.com")).await.expect(201);
    let id = created.id();
    let mut body = user("TAKEN@example.com");
    body["displayName"] = json!("should not stick");
    s.put(&format!("/Users/{id}"), body)
        .await
        .expect_error(409, Some("uniqueness"));
    let got = s.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(got.body["userName"], json!("mine@example.com"));
    assert!(got.body.get("displayName").is_none());
    assert_eq!(got.etag(), created.etag());
    // The old name is still held.
    s.post("/Users", user("mine@example.com"))
        .await
        .expect_error(409, Some("uniqueness"));
}

#[tokio::test]
async fn put_ignores_read_only_id_and_meta_in_the_body() {
    let s = TestServer::start().await;
    let created = s
        .post("/Users", user("putro@example.com"))
        .await
        .expect(201);
    let id = created.id();
    let mut body = created.body.clone();
    body["id"] = json!("other-id");
    body["meta"]["created"] = json!("2001-01-01T00:00:00Z");
    body["displayName"] = json!("Okta style full PUT");
    let r = s.put(&format!("/Users/{id}"), body).await.expect(200);
    assert_eq!(r.id(), id);
    assert_eq!(r.body["meta"]["created"], created.body["meta"]["created"]);
    assert_eq!(r.body["displayName"], json!("Okta style full PUT"));
}

#[tokio::test]
async fn put_is_validated_like_a_create() {
    let s = TestServer::start().await;
    let created = s
        .post("/Users", user("putval@example.com"))
        .await
        .expect(201);
    let id = created.id();
    let mut body = user("putval@example.com");
    body["active"] = json!("yes");
    s.put(&format!("/Users/{id}"), body)
        .await
        .expect_error(400, Some("invalidValue"));
    let mut body = user("putval@example.com");
    body.as_object_mut().expect("object").remove("userName");
    s.put(&format!("/Users/{id}"), body)
        .await
        .expect_error(400, Some("invalidValue"));
    let got = s.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(got.etag(), created.etag());
}

#[tokio::test]
async fn put_unknown_user_is_404() {
    let s = TestServer::start().await;
    s.put(
        "/Users/00000000-0000-0000-0000-000000000000",
        user("nobody@example.com"),
    )
    .await
    .expect_error(404, None);
    assert_eq!(user_count(&s).await, 0);
}

// ---------------------------------------------------------------- delete

#[tokio::test]
async fn delete_is_204_then_get_and_second_delete_are_404() {
    let s = TestServer::start().await;
    let id = s.create_user("del@example.com").await;
    let r = s.delete(&format!("/Users/{id}")).await.expect(204);
    assert_eq!(r.body, Value::Null);
    s.get(&format!("/Users/{id}")).await.expect_error(404, None);
    s.delete(&format!("/Users/{id}"))
        .await
        .expect_error(404, None);
    assert_eq!(user_count(&s).await, 0);
    // The name and externalId are free again.
    s.post("/Users", user("del@example.com")).await.expect(201);
}

// ---------------------------------------------------------------- projection

#[tokio::test]
async fn attributes_user_name_returns_only_id_schemas_and_user_name() {
    let s = TestServer::start().await;
    let id = s.create_user("proj@example.com").await;
    let r = s
        .get(&format!("/Users/{id}?attributes=userName"))
        .await
        .expect(200);
    assert_eq!(
        keys(&r.body),
        key_set(&["id", "schemas", "userName"]),
        "{}",
        r.body
    );
    assert_eq!(r.body["id"], json!(id));

    // Names in `attributes` are case-insensitive; id is always returned.
    let r = s
        .get(&format!("/Users/{id}?attributes=USERNAME,Active"))
        .await
        .expect(200);
    assert_eq!(
        keys(&r.body),
        key_set(&["id", "schemas", "userName", "active"]),
        "{}",
        r.body
    );

    let list = s.get("/Users?attributes=userName").await.expect(200);
    assert_eq!(
        keys(&list.resources()[0]),
        key_set(&["id", "schemas", "userName"])
    );
}

#[tokio::test]
async fn excluded_attributes_drop_attributes_and_sub_attributes() {
    let s = TestServer::start().await;
    let id = s.create_user("excl@example.com").await;
    let r = s
        .get(&format!(
            "/Users/{id}?excludedAttributes=emails,name.givenName"
        ))
        .await
        .expect(200);
    assert!(r.body.get("emails").is_none(), "{}", r.body);
    assert_eq!(r.body["name"], json!({"familyName": "Family"}));
    assert_eq!(r.body["userName"], json!("excl@example.com"));
    assert_eq!(r.body["id"], json!(id));
    assert_eq!(r.body["active"], json!(true));

    // id and schemas cannot be excluded.
    let r = s
        .get(&format!(
            "/Users/{id}?excludedAttributes=id,schemas,userName"
        ))
        .await
        .expect(200);
    assert_eq!(r.body["id"], json!(id));
    assert_eq!(r.body["schemas"], json!([USER_URN, PRODUCT_URN]));
}

#[tokio::test]
async fn attributes_with_a_sub_attribute_returns_just_that_sub_attribute() {
    let s = TestServer::start().await;
    let id = s.create_user("sub@example.com").await;
    let r = s
        .get(&format!("/Users/{id}?attributes=name.givenName"))
        .await
        .expect(200);
    assert_eq!(
        keys(&r.body),
        key_set(&["id", "schemas", "name"]),
        "{}",
        r.body
    );
    assert_eq!(r.body["name"], json!({"givenName": "Given"}));

    let r = s
        .get(&format!("/Users/{id}?attributes=emails.value"))
        .await
        .expect(200);
    assert_eq!(r.body["emails"], json!([{"value": "sub@example.com"}]));
}

#[tokio::test]
async fn extension_attributes_can_be_selected_by_urn() {
    let s = TestServer::start().await;
    let mut body = user("extproj@example.com");
    body["schemas"] = json!([USER_URN, ENTERPRISE_URN]);
    body[ENTERPRISE_URN] = json!({"employeeNumber": "7", "department": "Ops"});
    let id = s.post("/Users", body).await.expect(201).id();
    let r = s
        .get(&format!(
            "/Users/{id}?attributes={}",
            enc(&format!("{ENTERPRISE_URN}:employeeNumber"))
        ))
        .await
        .expect(200);
    assert_eq!(
        r.body[ENTERPRISE_URN],
        json!({"employeeNumber": "7"}),
        "{}",
        r.body
    );
    assert!(r.body.get("userName").is_none());

    let r = s
        .get(&format!(
            "/Users/{id}?excludedAttributes={}",
            enc(ENTERPRISE_URN)
        ))
        .await
        .expect(200);
    assert!(r.body.get(ENTERPRISE_URN).is_none(), "{}", r.body);
    assert_eq!(r.body["userName"], json!("extproj@example.com"));
}

#[tokio::test]
async fn attributes_apply_to_post_and_put_responses() {
    let s = TestServer::start().await;
    let r = s
        .post("/Users?attributes=userName", user("projpost@example.com"))
        .await
        .expect(201);
    assert_eq!(
        keys(&r.body),
        key_set(&["id", "schemas", "userName"]),
        "{}",
        r.body
    );
    let id = r.id();
    assert_eq!(r.header("location"), Some(s.url(&format!("/Users/{id}"))));
    assert!(r.header("etag").is_some());

    let r = s
        .put(
            &format!("/Users/{id}?excludedAttributes=emails,name"),
            user("projpost@example.com"),
        )
        .await
        .expect(200);
    assert!(r.body.get("emails").is_none(), "{}", r.body);
    assert!(r.body.get("name").is_none(), "{}", r.body);
    assert_eq!(r.body["userName"], json!("projpost@example.com"));
    assert!(r.header("etag").is_some());

    // The projection only shapes the answer: the data is all there.
    let got = s.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(
        got.body["emails"][0]["value"],
        json!("projpost@example.com")
    );
    assert_eq!(got.body["name"]["givenName"], json!("Given"));
}

// ---------------------------------------------------------------- groups

#[tokio::test]
async fn user_groups_lists_its_groups_with_value_ref_and_display() {
    let s = TestServer::start().await;
    let uid = s.create_user("member@example.com").await;
    let other = s.create_user("other@example.com").await;
    let g1 = s.create_group("Engineering", &[&uid]).await;
    let g2 = s.create_group("Everyone", &[&uid, &other]).await;

    let r = s.get(&format!("/Users/{uid}")).await.expect(200);
    let groups = r.body["groups"].as_array().cloned().expect("groups");
    assert_eq!(groups.len(), 2, "{}", r.body);
    for (gid, name) in [(&g1, "Engineering"), (&g2, "Everyone")] {
        let g = groups
            .iter()
            .find(|g| g["value"] == json!(gid))
            .unwrap_or_else(|| panic!("group {gid} missing: {}", r.body));
        assert_eq!(g["$ref"], json!(s.url(&format!("/Groups/{gid}"))));
        assert_eq!(g["display"], json!(name));
    }

    let r = s
        .get(&format!("/Users/{uid}?attributes=groups"))
        .await
        .expect(200);
    assert_eq!(r.body["groups"].as_array().map(Vec::len), Some(2));

    let r = s
        .get(&format!("/Users/{other}?attributes=groups.display"))
        .await
        .expect(200);
    assert_eq!(r.body["groups"], json!([{"display": "Everyone"}]));

    // A user in no group has no (or an empty) groups attribute.
    let lonely = s.create_user("lonely@example.com").await;
    let r = s.get(&format!("/Users/{lonely}")).await.expect(200);
    assert!(r.body.get("groups").is_none_or(|g| g == &json!([])));
}

#[tokio::test]
async fn user_groups_follows_group_renames() {
    let s = TestServer::start().await;
    let uid = s.create_user("rename@example.com").await;
    let gid = s.create_group("Before", &[&uid]).await;
    s.patch(
        &format!("/Groups/{gid}"),
        patch_op(json!([{"op": "replace", "path": "displayName", "value": "After"}])),
    )
    .await
    .expect(200);
    let r = s.get(&format!("/Users/{uid}")).await.expect(200);
    assert_eq!(r.body["groups"][0]["display"], json!("After"), "{}", r.body);
}

#[tokio::test]
async fn user_groups_is_read_only_and_ignored_on_put() {
    let s = TestServer::start().await;
    let uid = s.create_user("rog@example.com").await;
    let gid = s.create_group("Kept", &[&uid]).await;
    let decoy = s.create_group("Decoy", &[]).await;

    let mut body = user("rog@example.com");
    body["groups"] = json!([{"value": decoy}]);
    let r = s.put(&format!("/Users/{uid}"), body).await.expect(200);
    let listed: Vec<Value> = r.body["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|g| g["value"].clone())
        .collect();
    assert_eq!(listed, vec![json!(gid)], "{}", r.body);

    let mut body = user("rog@example.com");
    body["groups"] = json!([]);
    s.put(&format!("/Users/{uid}"), body).await.expect(200);
    let g = s.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(g.body["members"][0]["value"], json!(uid), "{}", g.body);
    let d = s.get(&format!("/Groups/{decoy}")).await.expect(200);
    assert!(d.body.get("members").is_none_or(|m| m == &json!([])));
}
