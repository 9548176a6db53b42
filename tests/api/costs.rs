//! What each SCIM operation costs in DynamoDB calls, asserted against the
//! table in infra/dynamodb.md. These run on DynamoDB (the AWS emulator)
//! whatever `SCIM_TEST_STORE` says: the embedded store has no call budget.

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use serde_json::json;

use crate::harness::*;

/// The documented cost of each operation (infra/dynamodb.md, "Calls per
/// SCIM operation"). A change that makes one dearer must update both.
const COSTS: &[(&str, u64)] = &[
    ("POST /Users", 1),
    // The user, and its groups (one Query on the reverse memberships).
    ("GET /Users/{id}", 2),
    // Marker, user, groups.
    ("GET /Users?filter=userName eq (match)", 3),
    ("GET /Users?filter=userName eq (no match)", 1),
    ("GET /Users?filter=externalId eq", 3),
    // Read, conditional write, groups for the answer.
    ("PATCH /Users/{id}", 3),
    ("PUT /Users/{id}", 3),
    // Counter shards, one page, groups of the one user on it (one Query per user).
    ("GET /Users?startIndex=1&count=10", 3),
    ("POST /Groups", 1),
    // Group, member existence (BatchGetItem), transaction, group UpdateItem.
    ("PATCH /Groups/{id} add member", 4),
    ("PATCH /Groups/{id} remove member", 3),
    ("GET /Groups/{id}?excludedAttributes=members", 1),
    (
        "GET /Groups?filter=displayName eq&excludedAttributes=members",
        2,
    ),
    // Resource ∥ its memberships, transaction, re-check of memberships.
    ("DELETE /Users/{id}", 4),
    ("DELETE /Groups/{id}", 6),
];

fn budget(op: &str) -> u64 {
    COSTS
        .iter()
        .find(|(name, _)| *name == op)
        .map(|(_, n)| *n)
        .unwrap_or_else(|| panic!("no budget for {op}"))
}

/// Asserts the call count of an answer is within the documented budget.
#[track_caller]
fn within(op: &str, r: &Resp, report: &mut Vec<(String, u64)>) {
    let calls = r.store_calls().expect("x-store-calls header");
    report.push((op.to_owned(), calls));
    assert!(
        calls <= budget(op),
        "{op} made {calls} DynamoDB calls; the documented budget is {}",
        budget(op)
    );
}

fn member_patch(op: &str, id: &str) -> serde_json::Value {
    match op {
        "add" => patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        _ => patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}])),
    }
}

#[tokio::test]
async fn every_operation_stays_within_its_documented_dynamodb_calls() {
    let s = TestServer::start_on(Backend::DynamoDb).await;
    let mut report = Vec::new();
    // Warm the credential cache so every figure is the operation alone.
    s.get("/Users?count=0").await.expect(200);

    let mut body = user("cost@example.com");
    body["externalId"] = json!("ext-cost");
    let created = s.post("/Users", body.clone()).await.expect(201);
    within("POST /Users", &created, &mut report);
    let id = created.id();
    within(
        "GET /Users/{id}",
        &s.get(&format!("/Users/{id}")).await.expect(200),
        &mut report,
    );
    let hit = s
        .get(&format!(
            "/Users?filter={}",
            enc("userName eq \"COST@example.com\"")
        ))
        .await
        .expect(200);
    assert_eq!(hit.total(), 1);
    within("GET /Users?filter=userName eq (match)", &hit, &mut report);
    let miss = s
        .get(&format!(
            "/Users?filter={}",
            enc("userName eq \"nobody@example.com\"")
        ))
        .await
        .expect(200);
    assert_eq!(miss.total(), 0);
    within(
        "GET /Users?filter=userName eq (no match)",
        &miss,
        &mut report,
    );
    let ext = s
        .get(&format!(
            "/Users?filter={}",
            enc("externalId eq \"ext-cost\"")
        ))
        .await
        .expect(200);
    assert_eq!(ext.total(), 1);
    within("GET /Users?filter=externalId eq", &ext, &mut report);
    let patched = s
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await;
    within("PATCH /Users/{id}", &patched.expect(200), &mut report);
    body["displayName"] = json!("Cost");
    within(
        "PUT /Users/{id}",
        &s.put(&format!("/Users/{id}"), body).await.expect(200),
        &mut report,
    );
    within(
        "GET /Users?startIndex=1&count=10",
        &s.get("/Users?startIndex=1&count=10").await.expect(200),
        &mut report,
    );

    let g = s.post("/Groups", group("Costs", &[])).await.expect(201);
    within("POST /Groups", &g, &mut report);
    let gid = g.id();
    let path = format!("/Groups/{gid}?excludedAttributes=members");
    within(
        "PATCH /Groups/{id} add member",
        &s.patch(&path, member_patch("add", &id)).await.expect(200),
        &mut report,
    );
    within(
        "PATCH /Groups/{id} remove member",
        &s.patch(&path, member_patch("remove", &id))
            .await
            .expect(200),
        &mut report,
    );
    within(
        "GET /Groups/{id}?excludedAttributes=members",
        &s.get(&path).await.expect(200),
        &mut report,
    );
    let by_name = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            enc("displayName eq \"costs\"")
        ))
        .await;
    within(
        "GET /Groups?filter=displayName eq&excludedAttributes=members",
        &by_name.expect(200),
        &mut report,
    );
    within(
        "DELETE /Users/{id}",
        &s.delete(&format!("/Users/{id}")).await.expect(204),
        &mut report,
    );
    within(
        "DELETE /Groups/{id}",
        &s.delete(&format!("/Groups/{gid}")).await.expect(204),
        &mut report,
    );

    for (op, calls) in &report {
        println!("{op:<62} {calls}");
    }
}

/// Writes `n` membership items straight into the table (the layout of
/// infra/dynamodb.md), as if `n` members had been added one by one.
async fn seed_members(table: &str, tenant: &str, group: &str, n: usize) {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&conf);
    let requests: Vec<WriteRequest> = (0..n)
        .map(|i| {
            let item = [
                ("PK", AttributeValue::S(format!("T#{tenant}#G#{group}"))),
                ("SK", AttributeValue::S(format!("M#seeded-{i:06}"))),
                ("k", AttributeValue::S("User".into())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        })
        .collect();
    for chunk in requests.chunks(25) {
        let mut pending = chunk.to_vec();
        while !pending.is_empty() {
            let out = client
                .batch_write_item()
                .request_items(table, pending)
                .send()
                .await
                .unwrap();
            pending = out
                .unprocessed_items
                .and_then(|mut m| m.remove(table))
                .unwrap_or_default();
        }
    }
    client
        .update_item()
        .table_name(table)
        .key("PK", AttributeValue::S(format!("T#{tenant}")))
        .key("SK", AttributeValue::S(format!("R#Group#{group}")))
        .update_expression("ADD mc :n")
        .expression_attribute_values(":n", AttributeValue::N(n.to_string()))
        .send()
        .await
        .unwrap();
}

/// One member change or a members-free read of a 100,000-member group costs
/// what it costs for a 10-member group.
#[tokio::test]
async fn a_huge_group_costs_the_same_calls_as_a_small_one() {
    // Seeding takes longer than the credential cache lasts by default.
    let s =
        TestServer::start_with(Backend::DynamoDb, &[("SCIM_CREDENTIAL_CACHE_SECS", "3600")]).await;
    s.get("/Users?count=0").await.expect(200);
    let newcomer = s.create_user("newcomer@example.com").await;

    let mut costs = Vec::new();
    for (name, size) in [("small", 10), ("huge", 100_000)] {
        let gid = s.create_group(name, &[]).await;
        seed_members(s.table(), TENANT, &gid, size).await;
        let path = format!("/Groups/{gid}?excludedAttributes=members");
        let add = s
            .patch(&path, member_patch("add", &newcomer))
            .await
            .expect(200);
        assert!(add.body.get("members").is_none());
        let remove = s
            .patch(&path, member_patch("remove", &newcomer))
            .await
            .expect(200);
        let read = s.get(&path).await.expect(200);
        assert!(read.body.get("members").is_none());
        let counts = [
            add.store_calls().unwrap(),
            remove.store_calls().unwrap(),
            read.store_calls().unwrap(),
        ];
        println!(
            "{name} group ({size} members): add {}, remove {}, get {} DynamoDB calls",
            counts[0], counts[1], counts[2]
        );
        costs.push(counts);
    }
    assert_eq!(
        costs[0], costs[1],
        "add/remove/get calls differ between a 10- and a 100,000-member group"
    );
}
