//! Filtering and sorting (RFC 7644 §3.4.2.2, §3.4.2.3, §3.4.3) and the
//! query shapes real IdPs send (Entra, Okta).

// Test helpers fail loudly, like the tests that call them.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::*;

/// Ids of the fixture users, by short name.
struct Fixture {
    s: TestServer,
    alice: String,
    bob: String,
    carol: String,
    dave: String,
}

/// Four users chosen so that every operator, case rule and the
/// valuePath "same element" rule give a distinguishable answer:
///
/// | user  | userName            | externalId | given / family | title    | active | emails                                          | department  |
/// |-------|---------------------|------------|----------------|----------|--------|-------------------------------------------------|-------------|
/// | alice | alice@example.com   | Ext-Alice  | Alice Smith    | Engineer | true   | work alice@example.com                          | Sales       |
/// | bob   | bob@example.com     | ext-bob    | Bob jones      | Manager  | false  | work bob@example.com                            | Engineering |
/// | carol | Carol@Example.org   | –          | Carol Adams    | –        | true   | home carol@example.com                          | –           |
/// | dave  | dave@other.net      | –          | Dave brown     | –        | true   | work dave@other.net, home dave@example.com      | –           |
async fn fixture() -> Fixture {
    let s = TestServer::start().await;
    let alice = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN, ENTERPRISE_URN],
                "userName": "alice@example.com",
                "externalId": "Ext-Alice",
                "name": {"givenName": "Alice", "familyName": "Smith"},
                "title": "Engineer",
                "active": true,
                "emails": [{"value": "alice@example.com", "type": "work", "primary": true}],
                ENTERPRISE_URN: {"department": "Sales"},
            }),
        )
        .await
        .expect(201)
        .id();
    let bob = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN, ENTERPRISE_URN],
                "userName": "bob@example.com",
                "externalId": "ext-bob",
                "name": {"givenName": "Bob", "familyName": "jones"},
                "title": "Manager",
                "active": false,
                "emails": [{"value": "bob@example.com", "type": "work", "primary": true}],
                ENTERPRISE_URN: {"department": "Engineering"},
            }),
        )
        .await
        .expect(201)
        .id();
    let carol = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN],
                "userName": "Carol@Example.org",
                "name": {"givenName": "Carol", "familyName": "Adams"},
                "active": true,
                "emails": [{"value": "carol@example.com", "type": "home"}],
            }),
        )
        .await
        .expect(201)
        .id();
    let dave = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN],
                "userName": "dave@other.net",
                "name": {"givenName": "Dave", "familyName": "brown"},
                "active": true,
                "emails": [
                    {"value": "dave@other.net", "type": "work", "primary": true},
                    {"value": "dave@example.com", "type": "home"},
                ],
            }),
        )
        .await
        .expect(201)
        .id();
    Fixture {
        s,
        alice,
        bob,
        carol,
        dave,
    }
}

impl Fixture {
    fn name_of(&self, id: &str) -> &'static str {
        if id == self.alice {
            "alice"
        } else if id == self.bob {
            "bob"
        } else if id == self.carol {
            "carol"
        } else if id == self.dave {
            "dave"
        } else {
            panic!("unknown id {id}")
        }
    }

    /// GET /Users?filter=…, asserting 200 and a consistent ListResponse;
    /// returns the matched fixture names, sorted.
    async fn users_matching(&self, filter: &str) -> Vec<&'static str> {
        let r = self
            .s
            .get(&format!("/Users?filter={}", enc(filter)))
            .await
            .expect(200);
        assert_eq!(r.body["schemas"], json!([LIST_URN]), "{filter}: {}", r.body);
        let names: BTreeSet<&'static str> = r
            .resources()
            .iter()
            .map(|u| self.name_of(u["id"].as_str().expect("id")))
            .collect();
        assert_eq!(
            r.total(),
            names.len() as u64,
            "{filter}: totalResults vs Resources: {}",
            r.body
        );
        names.into_iter().collect()
    }

    async fn expect_users(&self, filter: &str, expected: &[&str]) {
        let got = self.users_matching(filter).await;
        let mut want: Vec<&str> = expected.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "filter {filter}");
    }
}

/// Order of fixture names in a (sorted) ListResponse.
fn order(f: &Fixture, r: &Resp) -> Vec<&'static str> {
    r.resources()
        .iter()
        .map(|u| f.name_of(u["id"].as_str().expect("id")))
        .collect()
}

async fn expect_invalid_filter(s: &TestServer, path: &str, filter: &str) {
    let r = s.get(&format!("{path}?filter={}", enc(filter))).await;
    assert_eq!(
        r.status, 400,
        "filter {filter:?} should be rejected: {}",
        r.body
    );
    r.expect_error(400, Some("invalidFilter"));
}

// ---------------------------------------------------------------------------
// Operators
// ---------------------------------------------------------------------------

#[tokio::test]
async fn eq_and_ne() {
    let f = fixture().await;
    f.expect_users(r#"userName eq "alice@example.com""#, &["alice"])
        .await;
    f.expect_users(
        r#"userName ne "alice@example.com""#,
        &["bob", "carol", "dave"],
    )
    .await;
    f.expect_users(r#"title eq "Manager""#, &["bob"]).await;
    f.expect_users(r#"userName eq "nobody@example.com""#, &[])
        .await;
}

#[tokio::test]
async fn co_sw_ew() {
    let f = fixture().await;
    // userName is caseExact=false: substring operators ignore case too.
    f.expect_users(r#"userName co "EXAMPLE""#, &["alice", "bob", "carol"])
        .await;
    f.expect_users(r#"userName co "@example.com""#, &["alice", "bob"])
        .await;
    f.expect_users(r#"userName sw "B""#, &["bob"]).await;
    f.expect_users(r#"userName sw "carol@""#, &["carol"]).await;
    f.expect_users(r#"userName ew ".ORG""#, &["carol"]).await;
    f.expect_users(r#"userName ew ".net""#, &["dave"]).await;
    f.expect_users(r#"title co "nag""#, &["bob"]).await;
}

#[tokio::test]
async fn pr_presence() {
    let f = fixture().await;
    f.expect_users("title pr", &["alice", "bob"]).await;
    f.expect_users("externalId pr", &["alice", "bob"]).await;
    f.expect_users("userName pr", &["alice", "bob", "carol", "dave"])
        .await;
    f.expect_users("nickName pr", &[]).await;
    f.expect_users(
        &format!("{ENTERPRISE_URN}:department pr"),
        &["alice", "bob"],
    )
    .await;
}

#[tokio::test]
async fn ordering_operators_on_strings() {
    let f = fixture().await;
    // Compared case-insensitively: "carol@example.org" sorts between bob and dave.
    f.expect_users(r#"userName gt "bob@example.com""#, &["carol", "dave"])
        .await;
    f.expect_users(
        r#"userName ge "bob@example.com""#,
        &["bob", "carol", "dave"],
    )
    .await;
    f.expect_users(r#"userName lt "carol@example.org""#, &["alice", "bob"])
        .await;
    f.expect_users(
        r#"userName le "CAROL@EXAMPLE.ORG""#,
        &["alice", "bob", "carol"],
    )
    .await;
    f.expect_users(r#"name.familyName lt "c""#, &["carol", "dave"])
        .await;
}

#[tokio::test]
async fn ordering_operators_on_date_times() {
    let f = fixture().await;
    f.expect_users(
        r#"meta.lastModified gt "2000-01-01T00:00:00Z""#,
        &["alice", "bob", "carol", "dave"],
    )
    .await;
    f.expect_users(r#"meta.lastModified gt "2999-01-01T00:00:00Z""#, &[])
        .await;
    f.expect_users(r#"meta.created lt "2000-01-01T00:00:00Z""#, &[])
        .await;

    // Everything so far is older than `mark`; then dave changes.
    // Compared as instants: RFC 3339 text does not sort lexically when
    // fractional digits vary ("…11.5Z" vs "…11.51Z").
    let mut latest: Option<(OffsetDateTime, String)> = None;
    for id in [&f.alice, &f.bob, &f.carol, &f.dave] {
        let u = f.s.get(&format!("/Users/{id}")).await.expect(200);
        let lm = u.body["meta"]["lastModified"]
            .as_str()
            .expect("meta.lastModified")
            .to_owned();
        let t = OffsetDateTime::parse(&lm, &Rfc3339).expect("RFC 3339 lastModified");
        if latest.as_ref().is_none_or(|(l, _)| t > *l) {
            latest = Some((t, lm));
        }
    }
    let latest = latest.expect("four users").1;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    f.s.patch(
        &format!("/Users/{}", f.dave),
        patch_op(json!([{"op": "replace", "path": "title", "value": "Changed"}])),
    )
    .await
    .expect(200);
    f.expect_users(&format!(r#"meta.lastModified gt "{latest}""#), &["dave"])
        .await;
    f.expect_users(
        &format!(r#"meta.lastModified le "{latest}""#),
        &["alice", "bob", "carol"],
    )
    .await;
    f.expect_users(
        &format!(r#"meta.created le "{latest}""#),
        &["alice", "bob", "carol", "dave"],
    )
    .await;
}

#[tokio::test]
async fn boolean_active() {
    let f = fixture().await;
    f.expect_users("active eq true", &["alice", "carol", "dave"])
        .await;
    f.expect_users("active eq false", &["bob"]).await;
    f.expect_users("active ne true", &["bob"]).await;
}

// ---------------------------------------------------------------------------
// Logical operators, grouping, precedence
// ---------------------------------------------------------------------------

#[tokio::test]
async fn and_or_not_with_parentheses() {
    let f = fixture().await;
    f.expect_users(r#"userName sw "a" or userName sw "b""#, &["alice", "bob"])
        .await;
    f.expect_users("title pr and active eq true", &["alice"])
        .await;
    f.expect_users("not (active eq true)", &["bob"]).await;
    f.expect_users(
        r#"not (userName sw "a" or userName sw "b")"#,
        &["carol", "dave"],
    )
    .await;
    f.expect_users(
        r#"(userName sw "a" or userName sw "b") and active eq false"#,
        &["bob"],
    )
    .await;
    f.expect_users(
        r#"((userName sw "c")) or (title eq "Engineer" and not (active eq false))"#,
        &["alice", "carol"],
    )
    .await;
}

#[tokio::test]
async fn and_binds_tighter_than_or() {
    let f = fixture().await;
    // a or (b and active): bob is inactive, so only alice.
    f.expect_users(
        r#"userName sw "a" or userName sw "b" and active eq true"#,
        &["alice"],
    )
    .await;
    // (b and active) or a, written the other way round.
    f.expect_users(
        r#"userName sw "b" and active eq true or userName sw "a""#,
        &["alice"],
    )
    .await;
    // Explicit grouping changes the answer.
    f.expect_users(
        r#"(userName sw "a" or userName sw "b") and active eq true"#,
        &["alice"],
    )
    .await;
    f.expect_users(
        r#"(userName sw "a" or userName sw "b") and active eq false"#,
        &["bob"],
    )
    .await;
    f.expect_users(
        r#"userName sw "c" or userName sw "d" and active eq false"#,
        &["carol"],
    )
    .await;
}

// ---------------------------------------------------------------------------
// Case rules
// ---------------------------------------------------------------------------

#[tokio::test]
async fn user_name_eq_ignores_case_external_id_does_not() {
    let f = fixture().await;
    f.expect_users(r#"userName eq "ALICE@EXAMPLE.COM""#, &["alice"])
        .await;
    f.expect_users(r#"userName eq "carol@example.org""#, &["carol"])
        .await;
    // externalId is caseExact=true.
    f.expect_users(r#"externalId eq "Ext-Alice""#, &["alice"])
        .await;
    f.expect_users(r#"externalId eq "ext-alice""#, &[]).await;
    f.expect_users(r#"externalId eq "EXT-BOB""#, &[]).await;
    f.expect_users(r#"externalId eq "ext-bob""#, &["bob"]).await;
}

#[tokio::test]
async fn operators_and_attribute_names_are_case_insensitive() {
    let f = fixture().await;
    f.expect_users(r#"USERNAME EQ "alice@example.com""#, &["alice"])
        .await;
    f.expect_users(r#"UserName Eq "bob@example.com""#, &["bob"])
        .await;
    f.expect_users(r#"NAME.GIVENNAME SW "car""#, &["carol"])
        .await;
    f.expect_users("TITLE PR AND ACTIVE EQ TRUE", &["alice"])
        .await;
    f.expect_users(
        r#"NOT (ACTIVE eq True) OR userName EW ".ORG""#,
        &["bob", "carol"],
    )
    .await;
    f.expect_users(
        r#"EMAILS[TYPE EQ "work" AND VALUE CO "@example.com"]"#,
        &["alice", "bob"],
    )
    .await;
    f.expect_users(
        &format!(
            r#"{}:DEPARTMENT eq "sales""#,
            ENTERPRISE_URN.to_ascii_uppercase()
        ),
        &["alice"],
    )
    .await;
}

// ---------------------------------------------------------------------------
// Complex and multi-valued attributes, extensions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn value_path_requires_one_element_to_match_both() {
    let f = fixture().await;
    // dave has a work email and an @example.com email, but not one that is both.
    f.expect_users(
        r#"emails[type eq "work" and value co "@example.com"]"#,
        &["alice", "bob"],
    )
    .await;
    f.expect_users(r#"emails[type eq "home"]"#, &["carol", "dave"])
        .await;
    f.expect_users(
        r#"emails[type eq "home" and value ew "example.com"]"#,
        &["carol", "dave"],
    )
    .await;
    f.expect_users(
        r#"emails[type eq "work" or value sw "carol"] and active eq true"#,
        &["alice", "carol", "dave"],
    )
    .await;
}

#[tokio::test]
async fn emails_value_sub_attribute() {
    let f = fixture().await;
    f.expect_users(r#"emails.value eq "dave@example.com""#, &["dave"])
        .await;
    // caseExact=false on emails.value.
    f.expect_users(r#"emails.value eq "DAVE@OTHER.NET""#, &["dave"])
        .await;
    f.expect_users(
        r#"emails.value co "@example.com""#,
        &["alice", "bob", "carol", "dave"],
    )
    .await;
    f.expect_users(r#"emails.type eq "home""#, &["carol", "dave"])
        .await;
    f.expect_users("emails pr", &["alice", "bob", "carol", "dave"])
        .await;
}

/// Entra's matching filter `emails[type eq "work"].value eq "…"` is a
/// valuePath followed by a sub-attribute, which RFC 7644's filter grammar
/// does not allow (only PATCH paths do). The server may accept it (and must
/// then match correctly) or reject it as invalidFilter; it must not 500 or
/// answer wrongly.
#[tokio::test]
async fn entra_value_path_with_sub_attribute() {
    let f = fixture().await;
    let filter = r#"emails[type eq "work"].value eq "dave@other.net""#;
    // Entra ID's matching filter (outside the RFC grammar) is supported.
    let r =
        f.s.get(&format!("/Users?filter={}", enc(filter)))
            .await
            .expect(200);
    let got: Vec<&str> = order(&f, &r);
    assert_eq!(got, vec!["dave"], "{}", r.body);
    // The work/home distinction must hold: dave@example.com is a home email.
    f.expect_users(r#"emails[type eq "work"].value eq "dave@example.com""#, &[])
        .await;
    // emails.value is caseExact=false; Entra combines with `and`.
    f.expect_users(
        r#"emails[type eq "work"].value eq "ALICE@EXAMPLE.COM""#,
        &["alice"],
    )
    .await;
    f.expect_users(
        r#"emails[type eq "work"].value eq "bob@example.com" and active eq false"#,
        &["bob"],
    )
    .await;
    f.expect_users(
        r#"emails[type eq "home"].value co "@example.com""#,
        &["carol", "dave"],
    )
    .await;
}

#[tokio::test]
async fn sub_attribute_of_complex() {
    let f = fixture().await;
    f.expect_users(r#"name.givenName sw "Ca""#, &["carol"])
        .await;
    f.expect_users(r#"name.givenName sw "ca""#, &["carol"])
        .await;
    f.expect_users(r#"name.familyName eq "JONES""#, &["bob"])
        .await;
    f.expect_users(r#"name.familyName ew "s""#, &["bob", "carol"])
        .await;
}

#[tokio::test]
async fn enterprise_extension_attributes() {
    let f = fixture().await;
    f.expect_users(
        &format!(r#"{ENTERPRISE_URN}:department eq "Sales""#),
        &["alice"],
    )
    .await;
    // department is caseExact=false.
    f.expect_users(
        &format!(r#"{ENTERPRISE_URN}:department eq "sales""#),
        &["alice"],
    )
    .await;
    f.expect_users(
        &format!(r#"{ENTERPRISE_URN}:department sw "Eng""#),
        &["bob"],
    )
    .await;
    f.expect_users(&format!(r#"{ENTERPRISE_URN}:department eq "x""#), &[])
        .await;
    f.expect_users(
        &format!(r#"{ENTERPRISE_URN}:department pr and active eq false"#),
        &["bob"],
    )
    .await;
    // The core schema URN may prefix core attributes too (RFC 7644 §3.10).
    f.expect_users(
        &format!(r#"{USER_URN}:userName eq "alice@example.com""#),
        &["alice"],
    )
    .await;
    f.expect_users(&format!(r#"{USER_URN}:name.givenName eq "bob""#), &["bob"])
        .await;
}

// ---------------------------------------------------------------------------
// IdP shapes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn entra_test_connection_finds_nothing_with_200() {
    let s = TestServer::start().await;
    s.create_user("someone@example.com").await;
    let random = uuid::Uuid::new_v4().to_string();
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(&format!(r#"userName eq "{random}""#))
        ))
        .await
        .expect(200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    assert_eq!(r.body["schemas"], json!([LIST_URN]));
    assert_eq!(r.body["totalResults"], json!(0));
    match r.body.get("Resources") {
        None => {}
        Some(v) => assert_eq!(v, &json!([]), "{}", r.body),
    }
    // Okta's variant with paging parameters.
    let r = s
        .get(&format!(
            "/Users?filter={}&startIndex=1&count=100",
            enc(&format!(r#"userName eq "{random}@example.com""#))
        ))
        .await
        .expect(200);
    assert_eq!(r.body["totalResults"], json!(0));
    assert!(r.resources().is_empty());
}

#[tokio::test]
async fn entra_external_id_and_user_name_matching() {
    let f = fixture().await;
    f.expect_users(
        r#"externalId eq "Ext-Alice" and userName eq "alice@example.com""#,
        &["alice"],
    )
    .await;
    f.expect_users(
        r#"externalId eq "Ext-Alice" and userName eq "bob@example.com""#,
        &[],
    )
    .await;
    f.expect_users(
        r#"userName eq "bob@example.com" and active eq false"#,
        &["bob"],
    )
    .await;
}

#[tokio::test]
async fn groups_by_display_name_and_member() {
    let s = TestServer::start().await;
    let a = s.create_user("a@example.com").await;
    let b = s.create_user("b@example.com").await;
    let c = s.create_user("c@example.com").await;
    let admins = s.create_group("Admins", &[&a, &b]).await;
    let staff = s.create_group("Staff", &[&b]).await;
    let _empty = s.create_group("Empty", &[]).await;

    let ids = |r: &Resp| -> BTreeSet<String> {
        r.resources()
            .iter()
            .map(|g| g["id"].as_str().expect("id").to_owned())
            .collect()
    };

    // Entra: excludedAttributes=members&filter=displayName eq "…"
    let r = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            enc(r#"displayName eq "Admins""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1, "{}", r.body);
    let g = &r.resources()[0];
    assert_eq!(g["id"], json!(admins));
    assert_eq!(g["displayName"], json!("Admins"));
    assert!(g.get("members").is_none(), "members excluded: {g}");

    // displayName is caseExact=false.
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(r#"displayName eq "admins""#)
        ))
        .await
        .expect(200);
    assert_eq!(ids(&r), BTreeSet::from([admins.clone()]));
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(r#"displayName eq "No such group""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 0);

    // members.value eq "<userId>"
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(&format!(r#"members.value eq "{b}""#))
        ))
        .await
        .expect(200);
    assert_eq!(ids(&r), BTreeSet::from([admins.clone(), staff.clone()]));
    assert_eq!(r.total(), 2);
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(&format!(r#"members.value eq "{a}""#))
        ))
        .await
        .expect(200);
    assert_eq!(ids(&r), BTreeSet::from([admins.clone()]));
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(&format!(r#"members[value eq "{c}"]"#))
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 0, "{}", r.body);
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(&format!(
                r#"displayName sw "S" and members[value eq "{b}"]"#
            ))
        ))
        .await
        .expect(200);
    assert_eq!(ids(&r), BTreeSet::from([staff.clone()]));
    // Index lookup (displayName eq) combined with the computed members.
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(&format!(
                r#"displayName eq "staff" and members.value eq "{b}""#
            ))
        ))
        .await
        .expect(200);
    assert_eq!(ids(&r), BTreeSet::from([staff.clone()]));
    let r = s
        .get(&format!(
            "/Groups?filter={}",
            enc(&format!(
                r#"displayName eq "Staff" and members.value eq "{a}""#
            ))
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 0);
    let r = s
        .get(&format!("/Groups?filter={}", enc("members pr")))
        .await
        .expect(200);
    assert_eq!(ids(&r), BTreeSet::from([admins, staff]));
}

// ---------------------------------------------------------------------------
// Invalid filters
// ---------------------------------------------------------------------------

#[tokio::test]
async fn invalid_filters_are_400_invalid_filter() {
    let s = TestServer::start().await;
    s.create_user("x@example.com").await;
    for bad in [
        r#"(userName eq "x""#,
        r#"userName eq "x")"#,
        r#"((userName eq "x") or (title pr)"#,
        r#"userName zz "x""#,
        r#"userName equals "x""#,
        r#"userName eq "x"#,
        r#"userName eq "x" garbage"#,
        r#"userName eq "x" and"#,
        r#"userName eq"#,
        r#"userName"#,
        r#"noSuchAttribute eq "x""#,
        r#"name.noSuchSub eq "x""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:noSuch eq "x""#,
        "active gt true",
        "active lt false",
        r#"emails[type eq "work""#,
        r#"not userName eq "x""#,
        r#"userName eq bareword"#,
        r#"meta.lastModified gt "not a date""#,
    ] {
        expect_invalid_filter(&s, "/Users", bad).await;
    }
    for bad in [
        r#"displayName eq "x" )"#,
        r#"userName eq "x""#,
        r#"members.noSuch eq "x""#,
    ] {
        expect_invalid_filter(&s, "/Groups", bad).await;
    }
}

#[tokio::test]
async fn invalid_filter_in_search_body_is_400() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/Users/.search",
            json!({"schemas": [SEARCH_URN], "filter": "userName eq \"x\" ) or ("}),
        )
        .await;
    r.expect_error(400, Some("invalidFilter"));
}

// ---------------------------------------------------------------------------
// POST .search
// ---------------------------------------------------------------------------

#[tokio::test]
async fn users_search_with_search_request_body() {
    let f = fixture().await;
    let r =
        f.s.post(
            "/Users/.search",
            json!({
                "schemas": [SEARCH_URN],
                "filter": "userName sw \"a\" or userName sw \"b\" or userName sw \"c\"",
                "attributes": ["userName"],
                "sortBy": "userName",
                "sortOrder": "descending",
                "startIndex": 2,
                "count": 1,
            }),
        )
        .await
        .expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_URN]));
    assert_eq!(r.total(), 3, "{}", r.body);
    assert_eq!(r.body["startIndex"], json!(2));
    assert_eq!(r.body["itemsPerPage"], json!(1));
    let res = r.resources();
    assert_eq!(res.len(), 1);
    // descending: carol, bob, alice → the second is bob.
    assert_eq!(res[0]["id"], json!(f.bob));
    assert_eq!(res[0]["userName"], json!("bob@example.com"));
    // attributes=userName: only it and the always-returned attributes.
    assert!(res[0].get("emails").is_none(), "{}", res[0]);
    assert!(res[0].get("name").is_none(), "{}", res[0]);
    assert!(res[0].get("title").is_none(), "{}", res[0]);

    // Without paging parameters: all three, ascending by default.
    let r =
        f.s.post(
            "/Users/.search",
            json!({
                "schemas": [SEARCH_URN],
                "filter": "userName sw \"a\" or userName sw \"b\" or userName sw \"c\"",
                "sortBy": "userName",
            }),
        )
        .await
        .expect(200);
    assert_eq!(order(&f, &r), vec!["alice", "bob", "carol"]);
    assert_eq!(
        r.resources()[0]["emails"][0]["value"],
        json!("alice@example.com")
    );
}

#[tokio::test]
async fn search_body_excluded_attributes() {
    let f = fixture().await;
    let r =
        f.s.post(
            "/Users/.search",
            json!({
                "schemas": [SEARCH_URN],
                "filter": "userName eq \"alice@example.com\"",
                "excludedAttributes": ["emails", "name"],
            }),
        )
        .await
        .expect(200);
    let res = r.resources();
    assert_eq!(res.len(), 1);
    assert!(res[0].get("emails").is_none());
    assert!(res[0].get("name").is_none());
    assert_eq!(res[0]["userName"], json!("alice@example.com"));
    assert_eq!(res[0]["id"], json!(f.alice));
}

#[tokio::test]
async fn groups_search_endpoint() {
    let s = TestServer::start().await;
    let u = s.create_user("u@example.com").await;
    let g = s.create_group("Engineers", &[&u]).await;
    s.create_group("Sales", &[]).await;
    let r = s
        .post(
            "/Groups/.search",
            json!({"schemas": [SEARCH_URN], "filter": "displayName co \"engine\""}),
        )
        .await
        .expect(200);
    assert_eq!(r.total(), 1);
    assert_eq!(r.resources()[0]["id"], json!(g));
}

#[tokio::test]
async fn root_search_returns_users_and_groups() {
    let s = TestServer::start().await;
    let u1 = s.create_user("one@example.com").await;
    let u2 = s.create_user("two@example.com").await;
    let g1 = s.create_group("G1", &[&u1]).await;
    let g2 = s.create_group("G2", &[]).await;

    let r = s
        .post("/.search", json!({"schemas": [SEARCH_URN]}))
        .await
        .expect(200);
    assert_eq!(r.body["schemas"], json!([LIST_URN]));
    assert_eq!(r.total(), 4, "{}", r.body);
    let mut users = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for res in r.resources() {
        let id = res["id"].as_str().expect("id").to_owned();
        match res["meta"]["resourceType"].as_str() {
            Some("User") => {
                users.insert(id);
            }
            Some("Group") => {
                groups.insert(id);
            }
            other => panic!("resourceType {other:?}: {res}"),
        }
    }
    assert_eq!(users, BTreeSet::from([u1.clone(), u2.clone()]));
    assert_eq!(groups, BTreeSet::from([g1.clone(), g2]));

    // A filter on an attribute both types have.
    let r = s
        .post(
            "/.search",
            json!({
                "schemas": [SEARCH_URN],
                "filter": format!("id eq \"{u2}\" or id eq \"{g1}\""),
            }),
        )
        .await
        .expect(200);
    let ids: BTreeSet<String> = r
        .resources()
        .iter()
        .map(|x| x["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, BTreeSet::from([u2, g1]));
    assert_eq!(r.total(), 2);

    // A filter on a User-only attribute finds only users.
    let r = s
        .post(
            "/.search",
            json!({"schemas": [SEARCH_URN], "filter": "userName sw \"one\""}),
        )
        .await
        .expect(200);
    assert_eq!(r.total(), 1);
    assert_eq!(r.resources()[0]["id"], json!(u1));

    // Root search with paging.
    let r = s
        .post(
            "/.search",
            json!({"schemas": [SEARCH_URN], "startIndex": 1, "count": 3}),
        )
        .await
        .expect(200);
    assert_eq!(r.total(), 4);
    assert_eq!(r.resources().len(), 3);
}

#[tokio::test]
async fn search_request_without_schema_is_rejected() {
    let s = TestServer::start().await;
    let r = s
        .post("/Users/.search", json!({"filter": "userName pr"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR_URN]));
}

// ---------------------------------------------------------------------------
// Sorting
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sort_by_user_name_ascending_and_descending() {
    let f = fixture().await;
    // Case-insensitive: "Carol@…" sorts between bob and dave.
    let r = f.s.get("/Users?sortBy=userName").await.expect(200);
    assert_eq!(order(&f, &r), vec!["alice", "bob", "carol", "dave"]);
    let r =
        f.s.get("/Users?sortBy=userName&sortOrder=ascending")
            .await
            .expect(200);
    assert_eq!(order(&f, &r), vec!["alice", "bob", "carol", "dave"]);
    let r =
        f.s.get("/Users?sortBy=userName&sortOrder=descending")
            .await
            .expect(200);
    assert_eq!(order(&f, &r), vec!["dave", "carol", "bob", "alice"]);
    // Parameter and attribute names are case-insensitive.
    let r =
        f.s.get("/Users?SORTBY=USERNAME&sortorder=DESCENDING")
            .await
            .expect(200);
    assert_eq!(order(&f, &r), vec!["dave", "carol", "bob", "alice"]);
}

#[tokio::test]
async fn sort_by_sub_attribute_case_insensitively() {
    let f = fixture().await;
    // familyNames: Smith, jones, Adams, brown. Case-insensitive order is
    // Adams, brown, jones, Smith (byte order would put Smith before brown).
    let r = f.s.get("/Users?sortBy=name.familyName").await.expect(200);
    assert_eq!(order(&f, &r), vec!["carol", "dave", "bob", "alice"]);
    let r =
        f.s.get("/Users?sortBy=name.familyName&sortOrder=descending")
            .await
            .expect(200);
    assert_eq!(order(&f, &r), vec!["alice", "bob", "dave", "carol"]);
}

#[tokio::test]
async fn sort_with_filter_and_missing_values() {
    let f = fixture().await;
    let r =
        f.s.get(&format!(
            "/Users?filter={}&sortBy=name.givenName&sortOrder=descending",
            enc("active eq true")
        ))
        .await
        .expect(200);
    assert_eq!(order(&f, &r), vec!["dave", "carol", "alice"]);
    // Sorting by an attribute only some users have: all are returned
    // (RFC 7644 §3.4.2.3: resources without the value sort last ascending).
    let r = f.s.get("/Users?sortBy=title").await.expect(200);
    let got = order(&f, &r);
    assert_eq!(got.len(), 4);
    assert_eq!(&got[..2], &["alice", "bob"]);
}

#[tokio::test]
async fn sort_by_enterprise_attribute_and_meta() {
    let f = fixture().await;
    let r =
        f.s.get(&format!(
            "/Users?sortBy={}&filter={}",
            enc(&format!("{ENTERPRISE_URN}:department")),
            enc(&format!("{ENTERPRISE_URN}:department pr"))
        ))
        .await
        .expect(200);
    // Engineering < Sales.
    assert_eq!(order(&f, &r), vec!["bob", "alice"]);
    let r = f.s.get("/Users?sortBy=meta.created").await.expect(200);
    assert_eq!(order(&f, &r).len(), 4);
}

#[tokio::test]
async fn sort_by_unknown_attribute_or_order_is_400() {
    let f = fixture().await;
    let r = f.s.get("/Users?sortBy=noSuchAttribute").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR_URN]));
    let r = f.s.get("/Users?sortBy=userName&sortOrder=sideways").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR_URN]));
}

#[tokio::test]
async fn sort_groups_by_display_name() {
    let s = TestServer::start().await;
    let b = s.create_group("beta", &[]).await;
    let a = s.create_group("Alpha", &[]).await;
    let c = s.create_group("Charlie", &[]).await;
    let r = s.get("/Groups?sortBy=displayName").await.expect(200);
    let got: Vec<Value> = r.resources().iter().map(|g| g["id"].clone()).collect();
    assert_eq!(got, vec![json!(a), json!(b), json!(c)]);
}

// ---------------------------------------------------------------------------
// More RFC corners
// ---------------------------------------------------------------------------

/// RFC 7644 §3.4.2.3: "if there is no data for the specified sortBy value,
/// they are sorted via the sortOrder parameter, i.e., they are ordered last
/// if ascending and first if descending."
#[tokio::test]
async fn sort_missing_values_last_ascending_first_descending() {
    let f = fixture().await;
    // Only alice (Engineer) and bob (Manager) have a title.
    let r = f.s.get("/Users?sortBy=title").await.expect(200);
    let got = order(&f, &r);
    assert_eq!(&got[..2], &["alice", "bob"], "ascending: values first");
    let r =
        f.s.get("/Users?sortBy=title&sortOrder=descending")
            .await
            .expect(200);
    let got = order(&f, &r);
    assert_eq!(got.len(), 4);
    let mut missing = got[..2].to_vec();
    missing.sort_unstable();
    assert_eq!(
        missing,
        vec!["carol", "dave"],
        "descending: resources without a title come first; got {got:?}"
    );
    assert_eq!(&got[2..], &["bob", "alice"]);
}

/// RFC 7644 §3.4.2.3: a multi-valued sortBy attribute sorts by "the value of
/// the primary attribute, if any, or else the first value in the list".
#[tokio::test]
async fn sort_multi_valued_by_primary_value() {
    let s = TestServer::start().await;
    let x = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN],
                "userName": "x@example.com",
                "emails": [
                    {"value": "zzz@example.com", "type": "home"},
                    {"value": "aaa@example.com", "type": "work", "primary": true},
                ],
            }),
        )
        .await
        .expect(201)
        .id();
    let y = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN],
                "userName": "y@example.com",
                "emails": [{"value": "mmm@example.com", "type": "work"}],
            }),
        )
        .await
        .expect(201)
        .id();
    let r = s.get("/Users?sortBy=emails.value").await.expect(200);
    let got: Vec<Value> = r.resources().iter().map(|u| u["id"].clone()).collect();
    // x sorts by its primary aaa@, before y's mmm@ (first-value order would be y, x).
    assert_eq!(got, vec![json!(x), json!(y)], "{}", r.body);
}

#[tokio::test]
async fn string_escapes_in_filter_literals() {
    let s = TestServer::start().await;
    let id = s.create_user(r#"o"brien\x@example.com"#).await;
    s.create_user("obrien@example.com").await;
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName eq "o\"brien\\x@example.com""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1, "{}", r.body);
    assert_eq!(r.resources()[0]["id"], json!(id));
    // \u escapes as in JSON.
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName eq "\u006F\"brien\\x@example.com""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1, "{}", r.body);
    // Non-ASCII values.
    let u = s.create_user("jürgen@exämple.com").await;
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(r#"userName eq "JÜRGEN@EXÄMPLE.COM""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1, "{}", r.body);
    assert_eq!(r.resources()[0]["id"], json!(u));
}

#[tokio::test]
async fn whitespace_is_tolerated() {
    let f = fixture().await;
    f.expect_users(r#"  userName   eq   "bob@example.com"  "#, &["bob"])
        .await;
    f.expect_users(
        r#"( userName sw "a" )  or  ( userName sw "b" )"#,
        &["alice", "bob"],
    )
    .await;
    f.expect_users(
        r#"emails[ type eq "work" and value co "@example.com" ]"#,
        &["alice", "bob"],
    )
    .await;
}

#[tokio::test]
async fn value_path_corner_cases() {
    let f = fixture().await;
    // Boolean sub-attribute.
    f.expect_users(r#"emails[primary eq true]"#, &["alice", "bob", "dave"])
        .await;
    // `type` is caseExact=false.
    f.expect_users(r#"emails[type eq "WORK"]"#, &["alice", "bob", "dave"])
        .await;
    // Negated inside the brackets.
    f.expect_users(r#"emails[not (type eq "work")]"#, &["carol", "dave"])
        .await;
    // A valuePath on a single-valued complex attribute (RFC 7644 ABNF allows it).
    f.expect_users(r#"name[givenName eq "Alice"]"#, &["alice"])
        .await;
    f.expect_users(
        r#"name[givenName sw "c" or familyName eq "jones"]"#,
        &["bob", "carol"],
    )
    .await;
}

#[tokio::test]
async fn users_by_group_membership() {
    let f = fixture().await;
    let g = f.s.create_group("Team", &[&f.alice, &f.carol]).await;
    f.expect_users(&format!(r#"groups.value eq "{g}""#), &["alice", "carol"])
        .await;
    f.expect_users(&format!(r#"groups[value eq "{g}"]"#), &["alice", "carol"])
        .await;
    f.expect_users("groups pr", &["alice", "carol"]).await;
    f.expect_users("not (groups pr)", &["bob", "dave"]).await;
}

#[tokio::test]
async fn date_time_literals_with_offsets_and_meta_resource_type() {
    let f = fixture().await;
    f.expect_users(
        r#"meta.created gt "2000-01-01T02:00:00+02:00""#,
        &["alice", "bob", "carol", "dave"],
    )
    .await;
    f.expect_users(
        r#"meta.created lt "2999-12-31T23:59:59.999-05:00""#,
        &["alice", "bob", "carol", "dave"],
    )
    .await;
    f.expect_users(
        r#"meta.resourceType eq "User""#,
        &["alice", "bob", "carol", "dave"],
    )
    .await;
    f.expect_users(
        &format!(r#"id eq "{}" or id eq "{}""#, f.bob, f.dave),
        &["bob", "dave"],
    )
    .await;
}

#[tokio::test]
async fn filter_combined_with_attributes_projection() {
    let f = fixture().await;
    // Filtering on an attribute that is not returned still filters.
    let r =
        f.s.get(&format!(
            "/Users?filter={}&attributes=userName",
            enc(r#"name.familyName eq "smith""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1);
    let u = &r.resources()[0];
    assert_eq!(u["id"], json!(f.alice));
    assert!(u.get("name").is_none(), "{u}");
    let r =
        f.s.get(&format!(
            "/Users?filter={}&excludedAttributes=emails",
            enc(r#"emails.value eq "bob@example.com""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 1);
    assert!(r.resources()[0].get("emails").is_none());
}

/// RFC 7644 §3.4.2.2 `pr`: "If the attribute has a non-empty value, or if it
/// contains a non-empty node for complex attributes, there is a match."
#[tokio::test]
async fn pr_ignores_empty_values() {
    let s = TestServer::start().await;
    let empty = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN],
                "userName": "empty@example.com",
                "nickName": "",
                "roles": [],
                "name": {},
            }),
        )
        .await
        .expect(201)
        .id();
    let full = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN],
                "userName": "full@example.com",
                "nickName": "Nick",
                "roles": [{"value": "admin"}],
                "name": {"givenName": "Full"},
            }),
        )
        .await
        .expect(201)
        .id();
    for attr in ["nickName", "roles", "name", "name.givenName", "roles.value"] {
        let r = s
            .get(&format!("/Users?filter={}", enc(&format!("{attr} pr"))))
            .await
            .expect(200);
        let ids: Vec<Value> = r.resources().iter().map(|u| u["id"].clone()).collect();
        assert_eq!(ids, vec![json!(full)], "{attr} pr: {}", r.body);
    }
    let r = s
        .get(&format!("/Users?filter={}", enc("not (nickName pr)")))
        .await
        .expect(200);
    let ids: Vec<Value> = r.resources().iter().map(|u| u["id"].clone()).collect();
    assert_eq!(ids, vec![json!(empty)]);
}

/// The filter examples of RFC 7644 §3.4.2.2, verbatim.
#[tokio::test]
async fn rfc_7644_filter_examples() {
    let s = TestServer::start().await;
    let a = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN, ENTERPRISE_URN],
                "userName": "bjensen",
                "name": {"familyName": "O'Malley", "givenName": "Barbara"},
                "title": "Tour Guide",
                "userType": "Employee",
                "emails": [{"value": "bjensen@example.com", "type": "work"}],
                "ims": [{"value": "bjensen@foo.com", "type": "xmpp"}],
                ENTERPRISE_URN: {"department": "Tours"},
            }),
        )
        .await
        .expect(201)
        .id();
    let b = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN],
                "userName": "jsmith",
                "userType": "Intern",
                "emails": [{"value": "jsmith@other.net", "type": "home"}],
                "ims": [{"value": "jsmith@foo.com", "type": "xmpp"}],
            }),
        )
        .await
        .expect(201)
        .id();
    let cases: Vec<(&str, Vec<&String>)> = vec![
        (r#"userName eq "bjensen""#, vec![&a]),
        (r#"name.familyName co "O'Malley""#, vec![&a]),
        (r#"userName sw "J""#, vec![&b]),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            vec![&b],
        ),
        ("title pr", vec![&a]),
        (
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            vec![&a, &b],
        ),
        (
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            vec![&a, &b],
        ),
        (r#"meta.lastModified lt "2011-05-13T04:42:34Z""#, vec![]),
        (r#"meta.lastModified le "2011-05-13T04:42:34Z""#, vec![]),
        (r#"title pr and userType eq "Employee""#, vec![&a]),
        (r#"title pr or userType eq "Intern""#, vec![&a, &b]),
        (
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            vec![&a],
        ),
        (
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            vec![&b],
        ),
        (
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            vec![&a],
        ),
        (
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            vec![&a],
        ),
        (
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            vec![&a, &b],
        ),
    ];
    let mut failures = Vec::new();
    for (filter, want) in cases {
        let r = s.get(&format!("/Users?filter={}", enc(filter))).await;
        if r.status != 200 {
            failures.push(format!("{filter}\n    -> {} {}", r.status, r.body));
            continue;
        }
        let mut got: Vec<String> = r
            .resources()
            .iter()
            .map(|u| u["id"].as_str().expect("id").to_owned())
            .collect();
        got.sort();
        let mut want: Vec<String> = want.into_iter().cloned().collect();
        want.sort();
        if got != want {
            failures.push(format!("{filter}\n    -> got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "RFC examples failing:\n{}",
        failures.join("\n")
    );
}

/// RFC 7644 §3.4.2.2 lists `filter=schemas eq "urn:…:enterprise:2.0:User"`
/// among its examples: `schemas` is filterable like any attribute.
#[tokio::test]
async fn filter_on_schemas_attribute() {
    let f = fixture().await;
    // alice and bob were created with the enterprise extension.
    f.expect_users(
        &format!(r#"schemas eq "{ENTERPRISE_URN}""#),
        &["alice", "bob"],
    )
    .await;
    f.expect_users(
        &format!(r#"schemas eq "{USER_URN}""#),
        &["alice", "bob", "carol", "dave"],
    )
    .await;
}
