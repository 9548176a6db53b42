//! Index pagination (RFC 7644 §3.4.2.4) and cursor pagination (RFC 9865).

// Test helpers fail loudly, like the tests that call them.

use std::collections::BTreeSet;

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// Creates `n` users `user00@example.com`… (title "even"/"odd" by index),
/// a few at a time; returns their ids in creation order.
async fn create_users(s: &TestServer, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(8) {
        let reqs = chunk.iter().map(|i| {
            let mut body = user(&format!("user{i:02}@example.com"));
            body["title"] = json!(if i % 2 == 0 { "even" } else { "odd" });
            s.post("/Users", body)
        });
        for r in join_all(reqs).await {
            ids.push(r.expect(201).id());
        }
    }
    ids
}

fn ids_of(r: &Resp) -> Vec<String> {
    r.resources()
        .iter()
        .map(|x| x["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Asserts a well-formed index-mode ListResponse page.
#[track_caller]
fn check_index_page(r: &Resp, total: u64, start: u64, len: usize) {
    assert_eq!(r.body["schemas"], json!([LIST_URN]), "{}", r.body);
    assert_eq!(r.body["totalResults"], json!(total), "{}", r.body);
    assert_eq!(r.body["startIndex"], json!(start), "{}", r.body);
    assert_eq!(r.body["itemsPerPage"], json!(len), "{}", r.body);
    assert_eq!(r.resources().len(), len, "{}", r.body);
    assert!(r.body.get("nextCursor").is_none(), "{}", r.body);
}

/// Follows `nextCursor` from `cursor=` (empty) to the end; returns the pages.
async fn walk_cursor(s: &TestServer, path_and_query: &str, total: u64, count: usize) -> Vec<Resp> {
    let sep = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = s
            .get(&format!(
                "{path_and_query}{sep}count={count}&cursor={}",
                enc(&cursor)
            ))
            .await
            .expect(200);
        assert_eq!(r.body["schemas"], json!([LIST_URN]), "{}", r.body);
        assert!(
            r.body.get("startIndex").is_none(),
            "no startIndex in cursor mode: {}",
            r.body
        );
        assert_eq!(r.body["totalResults"], json!(total), "{}", r.body);
        let n = r.resources().len();
        assert_eq!(r.body["itemsPerPage"], json!(n), "{}", r.body);
        let next = r.body.get("nextCursor").cloned();
        pages.push(r);
        match next {
            Some(Value::String(c)) => {
                assert!(!c.is_empty());
                assert_eq!(n, count, "only the last page may be short");
                cursor = c;
            }
            None => break,
            Some(other) => panic!("nextCursor must be a string: {other}"),
        }
        assert!(pages.len() <= 100, "cursor chain does not end");
    }
    pages
}

async fn next_cursor_of(s: &TestServer, path_and_query: &str) -> String {
    let r = s.get(path_and_query).await.expect(200);
    r.body["nextCursor"]
        .as_str()
        .unwrap_or_else(|| panic!("nextCursor expected: {}", r.body))
        .to_owned()
}

fn no_dups(all: &[String]) -> BTreeSet<String> {
    let set: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(set.len(), all.len(), "duplicates across pages: {all:?}");
    set
}

// ---------------------------------------------------------------------------
// Index pagination
// ---------------------------------------------------------------------------

#[tokio::test]
async fn index_pages_cover_all_users_once() {
    let s = TestServer::start().await;
    let ids = create_users(&s, 25).await;
    let mut seen = Vec::new();
    for (start, len) in [(1u64, 10usize), (11, 10), (21, 5)] {
        let r = s
            .get(&format!("/Users?startIndex={start}&count=10"))
            .await
            .expect(200);
        check_index_page(&r, 25, start, len);
        seen.extend(ids_of(&r));
    }
    assert_eq!(no_dups(&seen), ids.iter().cloned().collect::<BTreeSet<_>>());

    // Past the end: an empty page, still with the total.
    let r = s.get("/Users?startIndex=26&count=10").await.expect(200);
    check_index_page(&r, 25, 26, 0);
    let r = s.get("/Users?startIndex=1000&count=10").await.expect(200);
    assert_eq!(r.total(), 25);
    assert!(r.resources().is_empty());

    // Numbers, not strings (Okta checks).
    assert!(r.body["totalResults"].is_u64());
    assert!(r.body["startIndex"].is_u64());
    assert!(r.body["itemsPerPage"].is_u64());
}

#[tokio::test]
async fn index_paging_is_stable_when_repeated() {
    let s = TestServer::start().await;
    create_users(&s, 25).await;
    let a = s.get("/Users?startIndex=11&count=10").await.expect(200);
    let b = s.get("/Users?startIndex=11&count=10").await.expect(200);
    assert_eq!(ids_of(&a), ids_of(&b));
    // Overlapping windows agree (same order for every page size).
    let wide = s.get("/Users?startIndex=1&count=25").await.expect(200);
    let wide = ids_of(&wide);
    assert_eq!(ids_of(&a), wide[10..20].to_vec());
    let c = s.get("/Users?startIndex=6&count=7").await.expect(200);
    assert_eq!(ids_of(&c), wide[5..12].to_vec());
}

#[tokio::test]
async fn index_paging_with_filter() {
    let s = TestServer::start().await;
    let ids = create_users(&s, 25).await;
    let even: BTreeSet<String> = ids.iter().step_by(2).cloned().collect();
    assert_eq!(even.len(), 13);
    let filter = enc(r#"title eq "even""#);
    let mut seen = Vec::new();
    for (start, len) in [(1u64, 5usize), (6, 5), (11, 3)] {
        let r = s
            .get(&format!(
                "/Users?filter={filter}&startIndex={start}&count=5"
            ))
            .await
            .expect(200);
        check_index_page(&r, 13, start, len);
        seen.extend(ids_of(&r));
    }
    assert_eq!(no_dups(&seen), even);
}

#[tokio::test]
async fn index_paging_with_sort() {
    let s = TestServer::start().await;
    create_users(&s, 25).await;
    let mut names = Vec::new();
    for (start, len) in [(1u64, 10usize), (11, 10), (21, 5)] {
        let r = s
            .get(&format!(
                "/Users?sortBy=userName&sortOrder=descending&startIndex={start}&count=10"
            ))
            .await
            .expect(200);
        check_index_page(&r, 25, start, len);
        names.extend(
            r.resources()
                .iter()
                .map(|u| u["userName"].as_str().expect("userName").to_owned()),
        );
    }
    let expected: Vec<String> = (0..25)
        .rev()
        .map(|i| format!("user{i:02}@example.com"))
        .collect();
    assert_eq!(names, expected);

    // Sort + filter + paging together.
    let r = s
        .get(&format!(
            "/Users?filter={}&sortBy=userName&startIndex=3&count=4",
            enc(r#"title eq "odd""#)
        ))
        .await
        .expect(200);
    check_index_page(&r, 12, 3, 4);
    let got: Vec<String> = r
        .resources()
        .iter()
        .map(|u| u["userName"].as_str().expect("userName").to_owned())
        .collect();
    let want: Vec<String> = [5, 7, 9, 11]
        .iter()
        .map(|i| format!("user{i:02}@example.com"))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn okta_test_connection_paging() {
    let s = TestServer::start().await;
    let ids = create_users(&s, 5).await;
    let r = s.get("/Users?startIndex=1&count=2").await.expect(200);
    check_index_page(&r, 5, 1, 2);
    let r = s.get("/Users?startIndex=1&count=100").await.expect(200);
    check_index_page(&r, 5, 1, 5);
    assert_eq!(
        no_dups(&ids_of(&r)),
        ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    s.create_group("G", &[&ids[0]]).await;
    let r = s.get("/Groups?startIndex=1&count=100").await.expect(200);
    check_index_page(&r, 1, 1, 1);
}

#[tokio::test]
async fn defaults_without_paging_parameters() {
    let s = TestServer::start().await;
    create_users(&s, 3).await;
    let r = s.get("/Users").await.expect(200);
    check_index_page(&r, 3, 1, 3);
}

#[tokio::test]
async fn count_zero_returns_only_the_total() {
    let s = TestServer::start().await;
    create_users(&s, 7).await;
    for q in ["/Users?count=0", "/Users?startIndex=3&count=0"] {
        let r = s.get(q).await.expect(200);
        assert_eq!(r.total(), 7, "{}", r.body);
        assert!(r.resources().is_empty(), "{}", r.body);
        assert_eq!(r.body["itemsPerPage"], json!(0));
    }
    let r = s
        .get(&format!(
            "/Users?count=0&filter={}",
            enc(r#"title eq "odd""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), 3);
    assert!(r.resources().is_empty());
}

#[tokio::test]
async fn negative_count_is_zero() {
    // RFC 7644 §3.4.2.4: "A negative value SHALL be interpreted as 0."
    let s = TestServer::start().await;
    create_users(&s, 3).await;
    let r = s.get("/Users?count=-5").await.expect(200);
    assert_eq!(r.total(), 3);
    assert!(r.resources().is_empty(), "{}", r.body);
}

#[tokio::test]
async fn start_index_below_one_is_one() {
    let s = TestServer::start().await;
    let ids = create_users(&s, 4).await;
    let first = s.get("/Users?startIndex=1&count=2").await.expect(200);
    for q in [
        "/Users?startIndex=0&count=2",
        "/Users?startIndex=-7&count=2",
    ] {
        let r = s.get(q).await.expect(200);
        check_index_page(&r, 4, 1, 2);
        assert_eq!(ids_of(&r), ids_of(&first));
    }
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn non_numeric_start_index_or_count_is_400() {
    let s = TestServer::start().await;
    create_users(&s, 2).await;
    for q in [
        "/Users?startIndex=abc",
        "/Users?count=ten",
        "/Users?startIndex=1.5",
        "/Users?count=2x",
        "/Groups?count=many",
    ] {
        let r = s.get(q).await;
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert_eq!(r.body["schemas"], json!([ERROR_URN]), "{q}");
        assert_eq!(r.body["status"], json!("400"), "{q}");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/scim+json")
        );
    }
}

#[tokio::test]
async fn service_provider_config_advertises_pagination() {
    let s = TestServer::start().await;
    let r = s.get("/ServiceProviderConfig").await.expect(200);
    let p = &r.body["pagination"];
    assert_eq!(p["cursor"], json!(true), "{}", r.body);
    assert_eq!(p["index"], json!(true), "{}", r.body);
    let max = p["maxPageSize"].as_u64().expect("maxPageSize");
    let default = p["defaultPageSize"].as_u64().expect("defaultPageSize");
    assert!(default >= 1 && default <= max, "{p}");
    assert_eq!(r.body["filter"]["supported"], json!(true));
    assert!(r.body["filter"]["maxResults"].as_u64().is_some());
}

#[tokio::test]
async fn count_above_max_is_capped_at_max_page_size() {
    let s = TestServer::start().await;
    let spc = s.get("/ServiceProviderConfig").await.expect(200);
    let max = spc.body["pagination"]["maxPageSize"]
        .as_u64()
        .expect("maxPageSize");
    let default = spc.body["pagination"]["defaultPageSize"]
        .as_u64()
        .expect("defaultPageSize");
    assert!(max <= 2000, "test needs max+1 users; maxPageSize {max}");
    let n = max as usize + 3;
    // Many users, 16 at a time.
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(16) {
        let reqs = chunk
            .iter()
            .map(|i| s.post("/Users", user(&format!("bulk{i:05}@example.com"))));
        for r in join_all(reqs).await {
            r.expect(201);
        }
    }
    let r = s
        .get(&format!("/Users?count={}", max * 10))
        .await
        .expect(200);
    assert_eq!(r.total(), n as u64);
    assert_eq!(r.resources().len() as u64, max, "capped at maxPageSize");
    assert_eq!(r.body["itemsPerPage"], json!(max));
    // The rest is reachable with startIndex.
    let r2 = s
        .get(&format!("/Users?startIndex={}&count={}", max + 1, max * 10))
        .await
        .expect(200);
    assert_eq!(r2.resources().len(), 3);
    let mut all_ids = ids_of(&r);
    all_ids.extend(ids_of(&r2));
    assert_eq!(no_dups(&all_ids).len(), n);
    // Without count: defaultPageSize.
    let r = s.get("/Users").await.expect(200);
    assert_eq!(r.resources().len() as u64, default.min(n as u64));
    // Capped with a filter too.
    let r = s
        .get(&format!(
            "/Users?count={}&filter={}",
            max + 1,
            enc(r#"userName sw "bulk""#)
        ))
        .await
        .expect(200);
    assert_eq!(r.total(), n as u64);
    assert_eq!(r.resources().len() as u64, max);
}

// ---------------------------------------------------------------------------
// Cursor pagination (RFC 9865)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cursor_chain_covers_all_users_once() {
    let s = TestServer::start().await;
    let ids = create_users(&s, 25).await;
    let pages = walk_cursor(&s, "/Users", 25, 10).await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.resources().len()).collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    let seen: Vec<String> = pages.iter().flat_map(ids_of).collect();
    assert_eq!(no_dups(&seen), ids.iter().cloned().collect::<BTreeSet<_>>());
}

#[tokio::test]
async fn cursor_chain_exact_multiple_has_no_empty_tail() {
    let s = TestServer::start().await;
    let ids = create_users(&s, 20).await;
    let pages = walk_cursor(&s, "/Users", 20, 10).await;
    let seen: Vec<String> = pages.iter().flat_map(ids_of).collect();
    assert_eq!(no_dups(&seen).len(), ids.len());
    // An empty last page would be allowed, a missing resource would not.
    assert!(pages.len() <= 3);
    assert!(
        pages
            .last()
            .is_some_and(|p| p.body.get("nextCursor").is_none())
    );
}

#[tokio::test]
async fn cursor_single_page_has_no_next_cursor() {
    let s = TestServer::start().await;
    create_users(&s, 3).await;
    let r = s.get("/Users?cursor=&count=10").await.expect(200);
    assert_eq!(r.resources().len(), 3);
    assert!(r.body.get("nextCursor").is_none(), "{}", r.body);
    assert!(r.body.get("startIndex").is_none(), "{}", r.body);
    // Without count: the default page size.
    let r = s.get("/Users?cursor=").await.expect(200);
    assert_eq!(r.resources().len(), 3);
    assert!(r.body.get("startIndex").is_none(), "{}", r.body);
}

#[tokio::test]
async fn cursor_chain_with_filter_and_sort() {
    let s = TestServer::start().await;
    let ids = create_users(&s, 25).await;
    let odd: BTreeSet<String> = ids.iter().skip(1).step_by(2).cloned().collect();
    let pages = walk_cursor(
        &s,
        &format!(
            "/Users?filter={}&sortBy=userName&sortOrder=descending",
            enc(r#"title eq "odd""#)
        ),
        12,
        5,
    )
    .await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.resources().len()).collect();
    assert_eq!(sizes, vec![5, 5, 2]);
    let seen: Vec<String> = pages.iter().flat_map(ids_of).collect();
    assert_eq!(no_dups(&seen), odd);
    let names: Vec<String> = pages
        .iter()
        .flat_map(|p| p.resources())
        .map(|u| u["userName"].as_str().expect("userName").to_owned())
        .collect();
    let expected: Vec<String> = (0..25)
        .rev()
        .filter(|i| i % 2 == 1)
        .map(|i| format!("user{i:02}@example.com"))
        .collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn cursor_paging_on_groups_and_via_search() {
    let s = TestServer::start().await;
    let mut gids = BTreeSet::new();
    for i in 0..7 {
        gids.insert(s.create_group(&format!("group{i}"), &[]).await);
    }
    let pages = walk_cursor(&s, "/Groups", 7, 3).await;
    let seen: Vec<String> = pages.iter().flat_map(ids_of).collect();
    assert_eq!(no_dups(&seen), gids);

    // RFC 9865 §2.2: cursor and count in a SearchRequest body.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let r = s
            .post(
                "/Groups/.search",
                json!({"schemas": [SEARCH_URN], "cursor": cursor, "count": 3}),
            )
            .await
            .expect(200);
        assert!(r.body.get("startIndex").is_none(), "{}", r.body);
        seen.extend(ids_of(&r));
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(no_dups(&seen), gids);
}

#[tokio::test]
async fn tampered_cursor_is_invalid_cursor() {
    let s = TestServer::start().await;
    create_users(&s, 5).await;
    let c = next_cursor_of(&s, "/Users?cursor=&count=2").await;
    // Flip one character in the middle.
    let mut bytes: Vec<char> = c.chars().collect();
    let mid = bytes.len() / 3;
    bytes[mid] = if bytes[mid] == 'A' { 'B' } else { 'A' };
    let tampered: String = bytes.into_iter().collect();
    assert_ne!(tampered, c);
    for bad in [
        tampered.as_str(),
        "garbage",
        "not.a.cursor",
        "eyJ0IjoiYWNtZSJ9.AAAA",
        "%%%",
    ] {
        let r = s.get(&format!("/Users?count=2&cursor={}", enc(bad))).await;
        assert_eq!(r.status, 400, "cursor {bad:?}: {}", r.body);
        r.expect_error(400, Some("invalidCursor"));
    }
    // The genuine one still works.
    let r = s
        .get(&format!("/Users?count=2&cursor={}", enc(&c)))
        .await
        .expect(200);
    assert_eq!(r.resources().len(), 2);
}

#[tokio::test]
async fn cursor_bound_to_its_query() {
    let s = TestServer::start().await;
    create_users(&s, 10).await;
    let f1 = enc(r#"title eq "even""#);
    let f2 = enc(r#"title eq "odd""#);
    let c = next_cursor_of(&s, &format!("/Users?filter={f1}&cursor=&count=2")).await;
    // Same query: fine.
    s.get(&format!("/Users?filter={f1}&count=2&cursor={}", enc(&c)))
        .await
        .expect(200);
    // Different filter, no filter, different sort, different endpoint.
    for q in [
        format!("/Users?filter={f2}&count=2&cursor={}", enc(&c)),
        format!("/Users?count=2&cursor={}", enc(&c)),
        format!(
            "/Users?filter={f1}&sortBy=userName&count=2&cursor={}",
            enc(&c)
        ),
    ] {
        let r = s.get(&q).await;
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        r.expect_error(400, Some("invalidCursor"));
    }
    // A /Users cursor on /Groups (same tenant, same empty filter).
    for i in 0..4 {
        s.create_group(&format!("g{i}"), &[]).await;
    }
    let c = next_cursor_of(&s, "/Users?cursor=&count=2").await;
    let r = s.get(&format!("/Groups?count=2&cursor={}", enc(&c))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.expect_error(400, Some("invalidCursor"));
}

#[tokio::test]
async fn cursor_of_one_tenant_is_invalid_for_another() {
    let s = TestServer::start().await;
    create_users(&s, 5).await;
    // globex has users too, so the cursor would point somewhere.
    let globex_users = format!("{}/scim/v2/{OTHER_TENANT}/Users", s.origin);
    for i in 0..5 {
        s.call_with(
            Method::POST,
            &globex_users,
            &s.other_token,
            Some(user(&format!("g{i}@globex.example"))),
            &[],
        )
        .await
        .expect(201);
    }
    let c = next_cursor_of(&s, "/Users?cursor=&count=2").await;
    let r = s
        .call_with(
            Method::GET,
            &format!("{globex_users}?count=2&cursor={}", enc(&c)),
            &s.other_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.expect_error(400, Some("invalidCursor"));
}

#[tokio::test]
async fn cursor_with_count_above_max_is_invalid_count() {
    let s = TestServer::start().await;
    create_users(&s, 3).await;
    let spc = s.get("/ServiceProviderConfig").await.expect(200);
    let max = spc.body["pagination"]["maxPageSize"]
        .as_u64()
        .expect("maxPageSize");
    let r = s.get(&format!("/Users?cursor=&count={}", max + 1)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.expect_error(400, Some("invalidCount"));
    // Also when continuing a chain.
    let c = next_cursor_of(&s, "/Users?cursor=&count=1").await;
    let r = s
        .get(&format!("/Users?count={}&cursor={}", max + 1, enc(&c)))
        .await;
    r.expect_error(400, Some("invalidCount"));
    // Exactly max is fine.
    s.get(&format!("/Users?cursor=&count={max}"))
        .await
        .expect(200);
}

#[tokio::test]
async fn cursor_and_start_index_together_is_400() {
    let s = TestServer::start().await;
    create_users(&s, 3).await;
    for q in [
        "/Users?cursor=&startIndex=1".to_owned(),
        "/Users?startIndex=2&cursor=&count=1".to_owned(),
    ] {
        let r = s.get(&q).await;
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert_eq!(r.body["schemas"], json!([ERROR_URN]));
        assert_eq!(r.body["status"], json!("400"));
    }
    let c = next_cursor_of(&s, "/Users?cursor=&count=1").await;
    let r = s
        .get(&format!("/Users?startIndex=2&count=1&cursor={}", enc(&c)))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR_URN]));
}

#[tokio::test]
async fn root_search_pages_over_users_and_groups() {
    let s = TestServer::start().await;
    let mut all: BTreeSet<String> = create_users(&s, 7).await.into_iter().collect();
    for i in 0..4 {
        all.insert(s.create_group(&format!("root-group-{i}"), &[]).await);
    }
    // Index paging.
    let mut seen = Vec::new();
    for start in [1u64, 5, 9] {
        let r = s
            .post(
                "/.search",
                json!({"schemas": [SEARCH_URN], "startIndex": start, "count": 4}),
            )
            .await
            .expect(200);
        assert_eq!(r.total(), 11);
        assert_eq!(r.body["startIndex"], json!(start));
        seen.extend(ids_of(&r));
    }
    assert_eq!(no_dups(&seen), all);
    // Cursor paging.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let r = s
            .post(
                "/.search",
                json!({"schemas": [SEARCH_URN], "cursor": cursor, "count": 4}),
            )
            .await
            .expect(200);
        assert!(r.body.get("startIndex").is_none(), "{}", r.body);
        seen.extend(ids_of(&r));
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(no_dups(&seen), all);
    // A root-search cursor is not valid on /Users.
    let r = s
        .post(
            "/.search",
            json!({"schemas": [SEARCH_URN], "cursor": "", "count": 4}),
        )
        .await
        .expect(200);
    let c = r.body["nextCursor"]
        .as_str()
        .expect("nextCursor")
        .to_owned();
    s.get(&format!("/Users?count=4&cursor={}", enc(&c)))
        .await
        .expect_error(400, Some("invalidCursor"));
}

#[tokio::test]
async fn cursor_paging_survives_deletes_between_pages() {
    // RFC 9865: nextCursor is left out only when there are no more results.
    // Deleting resources mid-walk must not end the chain while resources
    // that existed throughout are still unreturned.
    let s = TestServer::start().await;
    let ids = create_users(&s, 12).await;
    let first = s.get("/Users?cursor=&count=4").await.expect(200);
    let first_ids = ids_of(&first);
    let cursor = first.body["nextCursor"]
        .as_str()
        .expect("nextCursor")
        .to_owned();
    // Delete two users from the first page and two not yet seen.
    let unseen: Vec<&String> = ids.iter().filter(|i| !first_ids.contains(i)).collect();
    let doomed = [&first_ids[0], &first_ids[1], unseen[0], unseen[1]];
    for d in doomed {
        s.delete(&format!("/Users/{d}")).await.expect(204);
    }
    let mut seen = first_ids.clone();
    let mut cursor = cursor;
    for _ in 0..10 {
        let r = s
            .get(&format!("/Users?count=4&cursor={}", enc(&cursor)))
            .await
            .expect(200);
        seen.extend(ids_of(&r));
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let seen = no_dups(&seen);
    for id in &ids {
        if !doomed.contains(&id) {
            assert!(
                seen.contains(id),
                "{id} existed throughout but was never returned (the chain ended early)"
            );
        }
    }
}

/// One answer carries at most 4 MiB of resources, counted as a Lambda
/// answer carries them: the runtime sends the body as a JSON string, where
/// each `"` and `\` takes two bytes (Lambda answers at most 6 MB). A page of
/// big resources ends early, `itemsPerPage` under `count`, and the next
/// page, by index or by cursor, starts with the first one left out, so
/// nobody is skipped or repeated.
#[tokio::test]
async fn a_page_too_big_for_one_response_ends_early_and_the_next_continues() {
    const USERS: usize = 20;
    const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
    let s = TestServer::start().await;
    // Each user is just under the 256 KiB one resource may take, and its
    // title of quotes takes twice that in a Lambda answer (`\\\"` for `"`):
    // 20 of them are about 9.6 MB there, 4.8 MB as plain JSON.
    let filler = "\"".repeat(120_000);
    let mut ids = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let mut body = user(&format!("big{i:02}@example.com"));
        body["title"] = json!(filler);
        ids.push(s.post("/Users", body).await.expect(201).id());
    }
    ids.sort();
    let fits = |r: &Resp| {
        let in_lambda: usize = r
            .resources()
            .iter()
            .map(|x| {
                let text = serde_json::to_string(x).unwrap_or_default();
                text.len() + text.matches(['"', '\\']).count()
            })
            .sum();
        assert!(in_lambda <= MAX_PAGE_BYTES, "{in_lambda} bytes in Lambda");
    };

    let (mut seen, mut start, mut sizes) = (Vec::new(), 1, Vec::new());
    while seen.len() < USERS {
        let r = s
            .get(&format!("/Users?startIndex={start}&count={USERS}"))
            .await
            .expect(200);
        let n = r.resources().len();
        check_index_page(&r, USERS as u64, start as u64, n);
        assert!(n > 0, "an empty page before the end");
        fits(&r);
        seen.extend(ids_of(&r));
        sizes.push(n);
        start += n;
    }
    assert_eq!(seen, ids);
    assert!(sizes[0] < USERS, "the first page was cut: {sizes:?}");

    let (mut seen, mut cursor, mut sizes) = (Vec::new(), String::new(), Vec::new());
    loop {
        let r = s
            .get(&format!("/Users?count={USERS}&cursor={}", enc(&cursor)))
            .await
            .expect(200);
        assert_eq!(r.body["totalResults"], json!(USERS), "{}", r.body);
        let n = r.resources().len();
        assert_eq!(r.body["itemsPerPage"], json!(n));
        fits(&r);
        seen.extend(ids_of(&r));
        sizes.push(n);
        match r.body.get("nextCursor") {
            Some(Value::String(c)) => cursor = c.clone(),
            _ => break,
        }
        assert!(sizes.len() < USERS, "cursor pages never end: {sizes:?}");
    }
    assert_eq!(seen, ids);
    assert!(sizes[0] < USERS, "the first page was cut: {sizes:?}");
}
