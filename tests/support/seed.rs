//! Huge groups on DynamoDB without adding 100,000 members one request at a
//! time: items written straight into the table in the layout of
//! infra/dynamodb.md, as if they had been added one by one.
//!
//! Membership records name members `seeded-{i:06}`. Only the members a
//! test reads are also users (clones of a user the service created): the
//! read paths under test touch a member's user item only when a page
//! shows it, which is what keeps them O(page).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};

pub type Item = HashMap<String, AttributeValue>;

pub async fn client() -> aws_sdk_dynamodb::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&conf)
}

/// The id of seeded member `i`; ids sort in `i` order.
pub fn seeded_id(i: usize) -> String {
    format!("seeded-{i:06}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// Puts `items` with BatchWriteItem, 25 per call, retrying unprocessed ones.
pub async fn put_all(client: &aws_sdk_dynamodb::Client, table: &str, items: Vec<Item>) {
    let requests: Vec<WriteRequest> = items
        .into_iter()
        .map(|item| {
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
}

/// Adds members `seeded-000000` … `seeded-{n-1}` (users) to `group`: its
/// membership records and its member count.
pub async fn seed_members(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    tenant: &str,
    group: &str,
    n: usize,
) {
    let items = (0..n)
        .map(|i| {
            Item::from([
                ("PK".to_owned(), s(format!("T#{tenant}#G#{group}"))),
                ("SK".to_owned(), s(format!("M#{}", seeded_id(i)))),
                ("k".to_owned(), s("User")),
            ])
        })
        .collect();
    put_all(client, table, items).await;
    client
        .update_item()
        .table_name(table)
        .key("PK", s(format!("T#{tenant}")))
        .key("SK", s(format!("R#Group#{group}")))
        .update_expression("ADD mc :n")
        .expression_attribute_values(":n", AttributeValue::N(n.to_string()))
        .send()
        .await
        .unwrap();
}

/// Users `ids`, clones of user `template` (an item the service wrote)
/// under their own id and userName; with `group`, each also has the
/// reverse membership record that lists it among its groups.
pub async fn seed_users(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    tenant: &str,
    template: &str,
    group: Option<&str>,
    ids: &[String],
) {
    let original = client
        .get_item()
        .table_name(table)
        .key("PK", s(format!("T#{tenant}")))
        .key("SK", s(format!("R#User#{template}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the template user");
    let doc: serde_json::Value =
        serde_json::from_str(original["doc"].as_s().expect("doc is JSON text")).unwrap();
    let mut items = Vec::with_capacity(ids.len() * 2);
    for id in ids {
        let mut item = original.clone();
        let mut d = doc.clone();
        d["id"] = serde_json::json!(id);
        d["attrs"]["userName"] = serde_json::json!(format!("{id}@fixture.example"));
        d["attrs"].as_object_mut().unwrap().remove("externalId");
        item.insert("SK".into(), s(format!("R#User#{id}")));
        item.insert("id".into(), s(id.clone()));
        item.insert("doc".into(), s(d.to_string()));
        // Unique markers are not cloned: the seeded names are unique anyway.
        // Nor is the licence: the seat pool never counted these users.
        item.remove("keys");
        item.insert("lic".into(), s("none"));
        item.remove("licAt");
        items.push(item);
        if let Some(group) = group {
            items.push(Item::from([
                ("PK".to_owned(), s(format!("T#{tenant}#M#{id}"))),
                ("SK".to_owned(), s(format!("G#{group}"))),
                ("k".to_owned(), s("User")),
            ]));
        }
    }
    put_all(client, table, items).await;
}

/// Sets (`Some` deadline, epoch seconds) or removes the mark that the
/// first transaction of a chunked member change leaves on its group, as a
/// writer that died between its chunks would leave it.
pub async fn set_settling(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    tenant: &str,
    group: &str,
    until: Option<i64>,
) {
    let update = client
        .update_item()
        .table_name(table)
        .key("PK", s(format!("T#{tenant}")))
        .key("SK", s(format!("R#Group#{group}")))
        .expression_attribute_names("#mw", "mw");
    let update = match until {
        Some(t) => update
            .update_expression("SET #mw = :mw")
            .expression_attribute_values(":mw", AttributeValue::N(t.to_string())),
        None => update.update_expression("REMOVE #mw"),
    };
    update.send().await.unwrap();
}
