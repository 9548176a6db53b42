//! Discovery endpoints (RFC 7644 §4, RFC 7643 §5–§7).

// Test helpers fail loudly, like the tests that call them.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const SPC_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";

/// GET without any Authorization header.
async fn get_anonymous(s: &TestServer, path: &str) -> Resp {
    let resp = s.client.get(s.url(path)).send().await.expect("request");
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

/// The attribute named `name` (case-insensitively) in a list of attribute definitions.
fn attr<'a>(attrs: &'a Value, name: &str) -> &'a Value {
    attrs
        .as_array()
        .expect("attributes array")
        .iter()
        .find(|a| {
            a["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .unwrap_or_else(|| panic!("attribute {name} missing in {attrs}"))
}

fn schema_by_id<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|s| s["id"] == json!(id))
        .unwrap_or_else(|| panic!("schema {id} missing"))
}

/// Every attribute definition carries the characteristics of RFC 7643 §7.
fn check_characteristics(attrs: &Value, path: &str) {
    for a in attrs.as_array().expect("attributes array") {
        let name = a["name"].as_str().expect("name");
        let at = format!("{path}{name}");
        for key in [
            "type",
            "multiValued",
            "required",
            "caseExact",
            "mutability",
            "returned",
            "uniqueness",
        ] {
            assert!(a.get(key).is_some(), "{at} lacks {key}: {a}");
        }
        assert!(a["multiValued"].is_boolean(), "{at}");
        assert!(a["required"].is_boolean(), "{at}");
        assert!(a["caseExact"].is_boolean(), "{at}");
        let ty = a["type"].as_str().expect("type");
        assert!(
            [
                "string",
                "boolean",
                "decimal",
                "integer",
                "dateTime",
                "reference",
                "binary",
                "complex"
            ]
            .contains(&ty),
            "{at}: type {ty}"
        );
        assert!(
            ["readOnly", "readWrite", "immutable", "writeOnly"]
                .contains(&a["mutability"].as_str().expect("mutability")),
            "{at}"
        );
        assert!(
            ["always", "never", "default", "request"]
                .contains(&a["returned"].as_str().expect("returned")),
            "{at}"
        );
        assert!(
            ["none", "server", "global"].contains(&a["uniqueness"].as_str().expect("uniqueness")),
            "{at}"
        );
        if ty == "complex" {
            let subs = &a["subAttributes"];
            assert!(
                subs.as_array().is_some_and(|s| !s.is_empty()),
                "{at}: complex without subAttributes"
            );
            check_characteristics(subs, &format!("{at}."));
        }
        if ty == "reference" {
            assert!(
                a["referenceTypes"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty()),
                "{at}: reference without referenceTypes"
            );
        }
    }
}

#[tokio::test]
async fn service_provider_config() {
    let s = TestServer::start().await;
    let r = s.get("/ServiceProviderConfig").await.expect(200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    let b = &r.body;
    assert_eq!(b["schemas"], json!([SPC_URN]), "{b}");
    assert_eq!(b["patch"]["supported"], json!(true));
    assert_eq!(b["filter"]["supported"], json!(true));
    assert!(
        b["filter"]["maxResults"].as_u64().is_some_and(|m| m > 0),
        "{b}"
    );
    assert_eq!(b["sort"]["supported"], json!(true));
    assert_eq!(b["etag"]["supported"], json!(true));
    assert_eq!(b["bulk"]["supported"], json!(true));
    assert_eq!(b["bulk"]["maxOperations"], json!(100), "{b}");
    assert_eq!(b["bulk"]["maxPayloadSize"], json!(1024 * 1024), "{b}");
    assert_eq!(b["changePassword"]["supported"], json!(false));
    let schemes = b["authenticationSchemes"]
        .as_array()
        .expect("authenticationSchemes");
    let bearer = schemes
        .iter()
        .find(|a| a["type"] == json!("oauthbearertoken"))
        .unwrap_or_else(|| panic!("no oauthbearertoken scheme: {b}"));
    assert!(bearer["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(
        bearer["description"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );
    assert_eq!(b["meta"]["resourceType"], json!("ServiceProviderConfig"));
    assert_eq!(
        b["meta"]["location"],
        json!(s.url("/ServiceProviderConfig"))
    );
    // RFC 9865 §4.
    assert_eq!(b["pagination"]["cursor"], json!(true));
    assert_eq!(b["pagination"]["index"], json!(true));
}

#[tokio::test]
async fn schemas_list_contains_user_group_enterprise() {
    let s = TestServer::start().await;
    let r = s.get("/Schemas").await.expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_URN]));
    let list = r.resources();
    assert_eq!(r.total(), list.len() as u64);
    let ids: Vec<&str> = list.iter().filter_map(|s| s["id"].as_str()).collect();
    for urn in [USER_URN, GROUP_URN, ENTERPRISE_URN] {
        assert!(ids.contains(&urn), "{urn} missing from {ids:?}");
    }
    for sch in &list {
        let id = sch["id"].as_str().expect("id");
        assert_eq!(sch["schemas"], json!([SCHEMA_URN]), "{id}");
        assert!(sch["name"].as_str().is_some(), "{id}");
        assert_eq!(sch["meta"]["resourceType"], json!("Schema"), "{id}");
        assert_eq!(
            sch["meta"]["location"],
            json!(s.url(&format!("/Schemas/{id}"))),
            "{id}"
        );
        check_characteristics(&sch["attributes"], &format!("{id}:"));
    }
}

#[tokio::test]
async fn user_schema_characteristics() {
    let s = TestServer::start().await;
    let r = s.get("/Schemas").await.expect(200);
    let list = r.resources();
    let u = &schema_by_id(&list, USER_URN)["attributes"];

    let user_name = attr(u, "userName");
    assert_eq!(user_name["type"], json!("string"));
    assert_eq!(user_name["uniqueness"], json!("server"));
    assert_eq!(user_name["caseExact"], json!(false));
    assert_eq!(user_name["required"], json!(true));
    assert_eq!(user_name["multiValued"], json!(false));

    let password = attr(u, "password");
    assert_eq!(password["mutability"], json!("writeOnly"));
    assert_eq!(password["returned"], json!("never"));

    let groups = attr(u, "groups");
    assert_eq!(groups["mutability"], json!("readOnly"));
    assert_eq!(groups["multiValued"], json!(true));

    let active = attr(u, "active");
    assert_eq!(active["type"], json!("boolean"));

    let emails = attr(u, "emails");
    assert_eq!(emails["type"], json!("complex"));
    assert_eq!(emails["multiValued"], json!(true));
    let subs = &emails["subAttributes"];
    assert_eq!(attr(subs, "value")["type"], json!("string"));
    assert_eq!(attr(subs, "primary")["type"], json!("boolean"));
    let ty = attr(subs, "type");
    let canon = ty["canonicalValues"].as_array().expect("canonicalValues");
    assert!(canon.contains(&json!("work")), "{ty}");

    let name = attr(u, "name");
    assert_eq!(name["type"], json!("complex"));
    assert_eq!(name["multiValued"], json!(false));
    for sub in ["givenName", "familyName", "formatted"] {
        attr(&name["subAttributes"], sub);
    }
    for a in ["displayName", "title", "locale", "externalId"] {
        // externalId is a common attribute; not every server lists it.
        if a != "externalId" {
            attr(u, a);
        }
    }
}

#[tokio::test]
async fn group_and_enterprise_schema_characteristics() {
    let s = TestServer::start().await;
    let r = s.get("/Schemas").await.expect(200);
    let list = r.resources();

    let g = &schema_by_id(&list, GROUP_URN)["attributes"];
    let dn = attr(g, "displayName");
    assert_eq!(dn["type"], json!("string"));
    assert_eq!(dn["required"], json!(true));
    let members = attr(g, "members");
    assert_eq!(members["multiValued"], json!(true));
    assert_eq!(members["type"], json!("complex"));
    let value = attr(&members["subAttributes"], "value");
    assert_eq!(value["type"], json!("string"));

    let e = &schema_by_id(&list, ENTERPRISE_URN)["attributes"];
    for a in [
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
    ] {
        assert_eq!(attr(e, a)["type"], json!("string"), "{a}");
    }
    let manager = attr(e, "manager");
    assert_eq!(manager["type"], json!("complex"));
    attr(&manager["subAttributes"], "value");
    let mdn = attr(&manager["subAttributes"], "displayName");
    assert_eq!(mdn["mutability"], json!("readOnly"));
}

#[tokio::test]
async fn schema_by_urn() {
    let s = TestServer::start().await;
    let all = s.get("/Schemas").await.expect(200).resources();
    for urn in [USER_URN, GROUP_URN, ENTERPRISE_URN] {
        let r = s.get(&format!("/Schemas/{urn}")).await.expect(200);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/scim+json")
        );
        assert_eq!(r.body["id"], json!(urn));
        assert_eq!(r.body["schemas"], json!([SCHEMA_URN]));
        // The same document as in the list.
        assert_eq!(&r.body, schema_by_id(&all, urn));
    }
}

#[tokio::test]
async fn unknown_schema_or_resource_type_is_404() {
    let s = TestServer::start().await;
    for path in [
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Nope",
        "/Schemas/nope",
        "/ResourceTypes/Nope",
        "/ResourceTypes/Users",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert_eq!(r.body["schemas"], json!([ERROR_URN]), "{path}");
        assert_eq!(r.body["status"], json!("404"), "{path}");
        assert!(r.body["detail"].as_str().is_some(), "{path}");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/scim+json")
        );
    }
}

#[tokio::test]
async fn resource_types() {
    let s = TestServer::start().await;
    let r = s.get("/ResourceTypes").await.expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_URN]));
    let list = r.resources();
    assert_eq!(r.total(), 2);
    let find = |id: &str| -> Value {
        list.iter()
            .find(|t| t["id"] == json!(id))
            .cloned()
            .unwrap_or_else(|| panic!("resource type {id} missing"))
    };
    let user = find("User");
    assert_eq!(user["schemas"], json!([RESOURCE_TYPE_URN]));
    assert_eq!(user["name"], json!("User"));
    assert_eq!(user["endpoint"], json!("/Users"));
    assert_eq!(user["schema"], json!(USER_URN));
    let ext = user["schemaExtensions"]
        .as_array()
        .expect("schemaExtensions");
    let ent = ext
        .iter()
        .find(|e| e["schema"] == json!(ENTERPRISE_URN))
        .unwrap_or_else(|| panic!("enterprise extension missing: {user}"));
    assert_eq!(ent["required"], json!(false));
    assert_eq!(user["meta"]["resourceType"], json!("ResourceType"));
    assert_eq!(
        user["meta"]["location"],
        json!(s.url("/ResourceTypes/User"))
    );

    let group = find("Group");
    assert_eq!(group["endpoint"], json!("/Groups"));
    assert_eq!(group["schema"], json!(GROUP_URN));
    assert!(
        group
            .get("schemaExtensions")
            .is_none_or(|e| e.as_array().is_some_and(|a| a.is_empty())),
        "{group}"
    );

    let one = s.get("/ResourceTypes/User").await.expect(200);
    assert_eq!(one.body, user);
    let one = s.get("/ResourceTypes/Group").await.expect(200);
    assert_eq!(one.body, group);
}

#[tokio::test]
async fn discovery_works_without_and_with_token() {
    let s = TestServer::start().await;
    for path in [
        "/ServiceProviderConfig".to_owned(),
        "/Schemas".to_owned(),
        format!("/Schemas/{USER_URN}"),
        "/ResourceTypes".to_owned(),
        "/ResourceTypes/User".to_owned(),
    ] {
        let anon = get_anonymous(&s, &path).await;
        assert_eq!(anon.status, 200, "{path} without a token: {}", anon.body);
        assert_eq!(
            anon.header("content-type").as_deref(),
            Some("application/scim+json")
        );
        let authed = s.get(&path).await.expect(200);
        assert_eq!(anon.body, authed.body, "{path}");
    }
    // The other tenant sees the same documents (with its own locations).
    let url = format!("{}/scim/v2/{OTHER_TENANT}/ResourceTypes/Group", s.origin);
    let r = s
        .call_with(Method::GET, &url, &s.other_token, None, &[])
        .await
        .expect(200);
    assert_eq!(r.body["endpoint"], json!("/Groups"));
    assert_eq!(r.body["meta"]["location"], json!(url));
}

#[tokio::test]
async fn discovery_does_not_open_resource_endpoints() {
    // Anonymous discovery must not leak into the resources themselves.
    let s = TestServer::start().await;
    s.create_user("alice@example.com").await;
    let r = get_anonymous(&s, "/Users").await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn advertised_features_are_real() {
    // What ServiceProviderConfig promises works: filter, sort, etag, patch.
    let s = TestServer::start().await;
    let id = s.create_user("alice@example.com").await;
    s.create_user("bob@example.com").await;
    let r = s
        .get(&format!(
            "/Users?filter={}&sortBy=userName&sortOrder=descending",
            enc("userName pr")
        ))
        .await
        .expect(200);
    let names: Vec<&str> = r.body["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .filter_map(|u| u["userName"].as_str())
        .collect();
    assert_eq!(names, vec!["bob@example.com", "alice@example.com"]);
    let got = s.get(&format!("/Users/{id}")).await.expect(200);
    let etag = got.etag();
    assert_eq!(got.body["meta"]["version"], json!(etag));
    s.patch(
        &format!("/Users/{id}"),
        patch_op(json!([{"op": "replace", "path": "title", "value": "x"}])),
    )
    .await
    .expect(200);
    // Bulk is advertised as supported, and it is (bulk.rs tests it).
    let r = s.post("/Bulk", json!({})).await;
    r.expect_error(400, Some("invalidSyntax"));
}
