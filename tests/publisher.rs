//! The change-event publisher end to end on the AWS emulator (moto): audit
//! records written to a table with its stream on, read back through the
//! DynamoDB Streams API, turned into the records Lambda hands the
//! publisher, published to an EventBridge bus whose rule targets an SQS
//! queue, and received from the queue.
//!
//! `AWS_ENDPOINT_URL` names an emulator to use (scripts/test.sh starts
//! one); without it the tests start `scripts/moto_server.py` on a free
//! loopback port, stopped when the test binary exits.
//!
//! Run: `cargo test --test publisher`.

// Test code may unwrap: a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{AttributeValue, StreamSpecification, StreamViewType};
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, ShardIteratorType};
use base64::Engine;
use serde_json::{Value, json};

use scim_provisioning::audit::event::to_cloud_event;
use scim_provisioning::audit::{
    Actor, AuditRecord, Operation, Origin, Outcome, ResourceType, Transitions,
};
use scim_provisioning::publisher::{
    self, AUDIT_DOC_ATTR, AUDIT_ITEM_KIND, AUDIT_KIND_ATTR, DynamoDbEventRecord, EVENTBRIDGE_SOURCE,
};
use scim_provisioning::scim::model::TenantId;
use scim_provisioning::store::dynamodb::create_table_from_template;

const SOURCE: &str = "/scim-provisioning/test";

// ------------------------------------------------------------- emulator

fn endpoint() -> &'static str {
    static EMULATOR: OnceLock<(String, Option<Child>)> = OnceLock::new();
    &EMULATOR
        .get_or_init(|| {
            if let Ok(url) = std::env::var("AWS_ENDPOINT_URL")
                && !url.is_empty()
            {
                return (url, None);
            }
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            // The shell kills moto when its stdin closes, i.e. when this
            // process exits, however it exits.
            let root = env!("CARGO_MANIFEST_DIR");
            let script = format!(
                "exec 3<&0
                 py={root}/.venv/bin/python; [ -x \"$py\" ] || py=python3
                 \"$py\" {root}/scripts/moto_server.py {port} >/dev/null 2>&1 &
                 m=$!
                 (read _ <&3; kill -KILL $m) &
                 wait $m"
            );
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting moto_server (scripts/test.sh installs it into .venv)");
            for _ in 0..300 {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return (format!("http://127.0.0.1:{port}"), Some(child));
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("moto_server exited ({status}); run scripts/test.sh once to install it");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            child.kill().ok();
            child.wait().ok();
            panic!("moto_server did not start on port {port}");
        })
        .0
}

async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

struct Aws {
    ddb: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
}

async fn aws() -> Aws {
    let conf = sdk_config().await;
    Aws {
        ddb: aws_sdk_dynamodb::Client::new(&conf),
        streams: aws_sdk_dynamodbstreams::Client::new(&conf),
        events: aws_sdk_eventbridge::Client::new(&conf),
        sqs: aws_sdk_sqs::Client::new(&conf),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------- table

/// `ScimTable.Properties.StreamSpecification.StreamViewType` of template.yaml.
fn template_stream_view_type() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml");
    let t: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    t["Resources"]["ScimTable"]["Properties"]["StreamSpecification"]["StreamViewType"]
        .as_str()
        .expect("template.yaml: ScimTable has a StreamSpecification")
        .to_owned()
}

/// A table created from template.yaml, with its stream turned on as the
/// template's StreamSpecification says (`create_table_from_template`
/// shapes keys, billing and TTL only, so the stream is switched on here).
/// Returns the table name and its stream's ARN.
async fn table_with_stream(aws: &Aws) -> (String, String) {
    let table = unique("scim-events");
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml");
    create_table_from_template(&aws.ddb, &template, &table)
        .await
        .unwrap();
    let arn = enable_stream(aws, &table).await;
    (table, arn)
}

/// Turns `table`'s stream on as template.yaml's StreamSpecification says
/// (NEW_IMAGE); returns the stream's ARN.
async fn enable_stream(aws: &Aws, table: &str) -> String {
    let view = template_stream_view_type();
    assert_eq!(view, "NEW_IMAGE");
    aws.ddb
        .update_table()
        .table_name(table)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let described = aws
        .ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap();
    described
        .table()
        .and_then(|t| t.latest_stream_arn())
        .expect("the table has a stream")
        .to_owned()
}

/// The audit item layout of the store: PK `T#{tenant}#A`, SK
/// `{time}#{id}`, `doc`, `k = "audit"`, `expiresAt`.
fn audit_item(r: &AuditRecord) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("PK".into(), AttributeValue::S(format!("T#{}#A", r.tenant))),
        (
            "SK".into(),
            AttributeValue::S(format!("{}#{}", r.time, r.id)),
        ),
        (
            AUDIT_DOC_ATTR.into(),
            AttributeValue::S(serde_json::to_string(r).unwrap()),
        ),
        (
            AUDIT_KIND_ATTR.into(),
            AttributeValue::S(AUDIT_ITEM_KIND.into()),
        ),
        (
            "expiresAt".into(),
            AttributeValue::N(r.expires_at.to_string()),
        ),
    ])
}

/// A resource item (not an event): a user document.
fn resource_item(tenant: &str, id: &str, version: u64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("PK".into(), AttributeValue::S(format!("T#{tenant}"))),
        ("SK".into(), AttributeValue::S(format!("R#User#{id}"))),
        ("id".into(), AttributeValue::S(id.into())),
        (
            "doc".into(),
            AttributeValue::S(json!({"userName": format!("{id}@example.com")}).to_string()),
        ),
        ("k".into(), AttributeValue::S("User".into())),
        ("ver".into(), AttributeValue::N(version.to_string())),
    ])
}

async fn put(aws: &Aws, table: &str, item: HashMap<String, AttributeValue>) {
    aws.ddb
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

// --------------------------------------------------------------- records

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn at(ms: i64) -> time::OffsetDateTime {
    time::macros::datetime!(2026-03-01 09:00:00 UTC) + time::Duration::milliseconds(ms)
}

/// A user's lifecycle: created, updated, deactivated (versions 1..=3).
fn user_lifecycle(user: &str, start_ms: i64) -> Vec<AuditRecord> {
    let origin = Origin {
        actor: Actor::Scim { generation: 1 },
        request_id: Some(format!("req-{user}")),
        retention_days: 180,
    };
    [
        (Operation::Created, vec!["userName", "active"]),
        (Operation::Updated, vec!["displayName"]),
        (Operation::Deactivated, vec!["active"]),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (op, changed))| {
        let mut r = origin.record(
            &tenant(),
            ResourceType::User,
            user,
            op,
            at(start_ms + i as i64),
        );
        r.name = Some(format!("{user}@example.com"));
        r.version = Some(i as u64 + 1);
        r.changed = changed.into_iter().map(str::to_owned).collect();
        if op == Operation::Deactivated {
            r.transitions = Transitions {
                active: Some([true, false]),
                ..Transitions::default()
            };
        }
        r
    })
    .collect()
}

/// A refused SCIM write (a uniqueness conflict): an event too.
fn refusal(start_ms: i64) -> AuditRecord {
    let origin = Origin {
        actor: Actor::Scim { generation: 1 },
        request_id: Some("req-refused".into()),
        retention_days: 180,
    };
    let mut r = origin.record(
        &tenant(),
        ResourceType::User,
        "u-conflict",
        Operation::Refused,
        at(start_ms),
    );
    r.outcome = Outcome::Refused;
    r.status = Some(409);
    r.scim_type = Some("uniqueness".into());
    r
}

// ---------------------------------------------------------------- stream

fn stream_value(v: &StreamValue) -> Value {
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    match v {
        StreamValue::S(s) => json!({"S": s}),
        StreamValue::N(n) => json!({"N": n}),
        StreamValue::B(b) => json!({"B": b64(b)}),
        StreamValue::Bool(b) => json!({"BOOL": b}),
        StreamValue::Null(n) => json!({"NULL": n}),
        StreamValue::Ss(s) => json!({"SS": s}),
        StreamValue::Ns(n) => json!({"NS": n}),
        StreamValue::Bs(bs) => json!({"BS": bs.iter().map(b64).collect::<Vec<_>>()}),
        StreamValue::L(l) => json!({"L": l.iter().map(stream_value).collect::<Vec<_>>()}),
        StreamValue::M(m) => json!({"M": image(m)}),
        other => panic!("unexpected attribute value {other:?}"),
    }
}

fn image(m: &HashMap<String, StreamValue>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), stream_value(v)))
            .collect(),
    )
}

/// A Streams API record as the record Lambda gives the function (the same
/// fields; Lambda adds the stream's ARN as `eventSourceARN`), built through
/// serde as the runtime does.
fn lambda_record(
    r: &aws_sdk_dynamodbstreams::types::Record,
    stream_arn: &str,
) -> DynamoDbEventRecord {
    let d = r.dynamodb().expect("a stream record");
    let mut change = serde_json::Map::new();
    if let Some(t) = d.approximate_creation_date_time() {
        change.insert(
            "ApproximateCreationDateTime".into(),
            json!(t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9),
        );
    }
    change.insert("Keys".into(), d.keys().map(image).unwrap_or(json!({})));
    if let Some(new) = d.new_image() {
        change.insert("NewImage".into(), image(new));
    }
    if let Some(old) = d.old_image() {
        change.insert("OldImage".into(), image(old));
    }
    change.insert("SequenceNumber".into(), json!(d.sequence_number()));
    change.insert("SizeBytes".into(), json!(d.size_bytes().unwrap_or(0)));
    if let Some(v) = d.stream_view_type() {
        change.insert("StreamViewType".into(), json!(v.as_str()));
    }
    let event = json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|n| n.as_str()),
        "eventVersion": r.event_version(),
        "eventSource": r.event_source(),
        "awsRegion": r.aws_region(),
        "eventSourceARN": stream_arn,
        "dynamodb": change,
    });
    serde_json::from_value(event.clone())
        .unwrap_or_else(|e| panic!("not a Lambda DynamoDB record ({e}): {event:#}"))
}

/// Every record of the stream so far, in order (DescribeStream, a
/// TRIM_HORIZON iterator per shard, GetRecords until caught up).
async fn read_stream(aws: &Aws, stream_arn: &str) -> Vec<DynamoDbEventRecord> {
    let described = aws
        .streams
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .unwrap();
    let shards = described
        .stream_description()
        .map(|d| d.shards().to_vec())
        .unwrap_or_default();
    assert!(!shards.is_empty(), "the stream has a shard");
    let mut out = Vec::new();
    for shard in shards {
        let mut iterator = aws
            .streams
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_owned);
        while let Some(it) = iterator {
            let page = aws
                .streams
                .get_records()
                .shard_iterator(it)
                .limit(1000)
                .send()
                .await
                .unwrap();
            if page.records().is_empty() {
                break;
            }
            out.extend(page.records().iter().map(|r| lambda_record(r, stream_arn)));
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    out
}

fn seq(r: &DynamoDbEventRecord) -> String {
    r.change.sequence_number.clone().unwrap()
}

fn is_audit_insert(r: &DynamoDbEventRecord) -> bool {
    r.event_name == "INSERT"
        && serde_json::to_value(&r.change.new_image).unwrap()[AUDIT_KIND_ATTR]["S"]
            == AUDIT_ITEM_KIND
}

// ------------------------------------------------------------ the bus

/// A bus whose one rule (source `com.scim-provisioning`) targets a fresh
/// SQS queue; returns the bus name and the queue URL.
async fn bus_with_queue(aws: &Aws) -> (String, String) {
    let bus = unique("scim-bus");
    aws.events
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .unwrap();
    let url = aws
        .sqs
        .create_queue()
        .queue_name(unique("scim-events"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let arn = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .unwrap()
        .clone();
    aws.events
        .put_rule()
        .name("scim-changes")
        .event_bus_name(&bus)
        .event_pattern(json!({"source": [EVENTBRIDGE_SOURCE]}).to_string())
        .send()
        .await
        .unwrap();
    aws.events
        .put_targets()
        .rule("scim-changes")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    (bus, url)
}

/// Every message in the queue (EventBridge envelopes), in receive order,
/// deleted as they are read.
async fn drain(aws: &Aws, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let got = aws
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        let messages = got.messages();
        if messages.is_empty() {
            return out;
        }
        for m in messages {
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
            aws.sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// The CloudEvents in the envelopes, after checking each envelope.
fn cloud_events(envelopes: &[Value]) -> Vec<Value> {
    envelopes
        .iter()
        .map(|e| {
            assert_eq!(e["source"], EVENTBRIDGE_SOURCE, "{e:#}");
            let ce = e["detail"].clone();
            assert_eq!(
                e["detail-type"], ce["type"],
                "DetailType is the CloudEvent type"
            );
            ce
        })
        .collect()
}

fn by_id(records: &[AuditRecord]) -> BTreeMap<String, &AuditRecord> {
    records.iter().map(|r| (r.id.clone(), r)).collect()
}

// ----------------------------------------------------------------- tests

/// Writes five users' lifecycles (15 records: two PutEvents calls), a
/// refusal, and resource items in between; returns the audit records in
/// write order and the stream as Lambda would deliver it.
async fn scenario(aws: &Aws) -> (Vec<AuditRecord>, Vec<DynamoDbEventRecord>) {
    let (table, stream) = table_with_stream(aws).await;
    let mut written = Vec::new();
    for (n, user) in ["u-1", "u-2", "u-3", "u-4", "u-5"].iter().enumerate() {
        for (i, r) in user_lifecycle(user, n as i64 * 10).into_iter().enumerate() {
            put(aws, &table, audit_item(&r)).await;
            // The resource item written with it (same transaction in the
            // store): a change of the table, not an event.
            put(aws, &table, resource_item("acme", user, i as u64 + 1)).await;
            written.push(r);
        }
    }
    let refused = refusal(100);
    put(aws, &table, audit_item(&refused)).await;
    written.push(refused);
    // A resource removed (REMOVE) and a marker written: no events either.
    aws.ddb
        .delete_item()
        .table_name(&table)
        .key("PK", AttributeValue::S("T#acme".into()))
        .key("SK", AttributeValue::S("R#User#u-5".into()))
        .send()
        .await
        .unwrap();
    put(
        aws,
        &table,
        HashMap::from([
            ("PK".into(), AttributeValue::S("T#acme".into())),
            ("SK".into(), AttributeValue::S("U#User#userName#x".into())),
            ("k".into(), AttributeValue::S("unique".into())),
        ]),
    )
    .await;

    let records = read_stream(aws, &stream).await;
    let audit: Vec<_> = records.iter().filter(|r| is_audit_insert(r)).collect();
    assert_eq!(
        audit.len(),
        written.len(),
        "one stream record per audit item"
    );
    assert!(
        records.len() > audit.len(),
        "the stream also carries the other items' changes"
    );
    assert!(
        is_audit_insert(&records[0]),
        "the stream starts with an audit record"
    );
    (written, records)
}

#[tokio::test]
async fn every_audit_record_becomes_one_cloud_event_and_redeliveries_keep_their_ids() {
    let aws = aws().await;
    let (written, records) = scenario(&aws).await;
    let (bus, queue) = bus_with_queue(&aws).await;

    let failed = publisher::publish(&aws.events, &bus, SOURCE, &records)
        .await
        .unwrap();
    assert!(failed.is_empty(), "nothing failed: {failed:?}");

    let first = cloud_events(&drain(&aws, &queue).await);
    let expected = by_id(&written);
    // Exactly once each, bodies exactly the mapping of the record.
    let ids: Vec<&str> = first.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        ids.len(),
        unique.len(),
        "no duplicates on the first delivery"
    );
    assert_eq!(
        unique,
        expected.keys().map(String::as_str).collect(),
        "every audit record, and nothing else (resource items, removals, markers), is an event"
    );
    for e in &first {
        let r = expected[e["id"].as_str().unwrap()];
        assert_eq!(
            e,
            &to_cloud_event(r, SOURCE),
            "the whole CloudEvent is the Detail"
        );
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["subject"], r.resource_id);
        assert_eq!(e["source"], SOURCE);
    }
    let types: BTreeSet<&str> = first.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        BTreeSet::from([
            "com.scim-provisioning.scim.user.created",
            "com.scim-provisioning.scim.user.updated",
            "com.scim-provisioning.scim.user.deactivated",
            "com.scim-provisioning.scim.request.refused",
        ])
    );

    // In order per resource: each user's versions arrive 1, 2, 3.
    let mut per_user: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &first {
        if let Some(v) = e["data"]["version"].as_u64() {
            per_user
                .entry(e["subject"].as_str().unwrap())
                .or_default()
                .push(v);
        }
    }
    assert_eq!(per_user.len(), 5);
    for (user, versions) in &per_user {
        assert_eq!(versions, &[1, 2, 3], "{user}'s events in order");
    }

    // Lambda redelivers the batch (say the publisher died after PutEvents,
    // before answering): the same events again, with the same ids.
    let failed = publisher::publish(&aws.events, &bus, SOURCE, &records)
        .await
        .unwrap();
    assert!(failed.is_empty());
    let second = cloud_events(&drain(&aws, &queue).await);
    assert_eq!(
        second.len(),
        first.len(),
        "a redelivery repeats every event"
    );
    let mut seen = BTreeMap::<String, usize>::new();
    let mut deduplicated = Vec::new();
    for e in first.iter().chain(&second) {
        let n = seen
            .entry(e["id"].as_str().unwrap().to_owned())
            .or_default();
        *n += 1;
        if *n == 1 {
            deduplicated.push(e);
        } else {
            let original = deduplicated.iter().find(|d| d["id"] == e["id"]).unwrap();
            assert_eq!(*original, e, "a duplicate is the same event");
        }
    }
    assert!(seen.values().all(|n| *n == 2), "each event twice: {seen:?}");
    assert_eq!(
        deduplicated.len(),
        written.len(),
        "de-duplicated by id: nothing lost"
    );
}

#[tokio::test]
async fn a_missing_bus_fails_the_first_record_so_lambda_retries_it_and_nothing_is_lost() {
    let aws = aws().await;
    let (written, records) = scenario(&aws).await;

    // moto refuses the whole PutEvents call for a bus that does not exist
    // (ResourceNotFoundException), which is how any failed call looks:
    // throttling after the SDK's retries, AccessDenied, the network. (AWS
    // itself has been reported to accept entries for a missing bus and drop
    // them; infra/events.md, "What can still go wrong".)
    let missing = unique("no-such-bus");
    let failed = publisher::publish(&aws.events, &missing, SOURCE, &records)
        .await
        .unwrap();
    assert_eq!(
        failed,
        [seq(&records[0])],
        "the first record is reported failed: Lambda retries the batch from it"
    );
    let response = serde_json::to_value(publisher::batch_response(failed.clone())).unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": seq(&records[0])}]})
    );

    // The bus comes back (it was being created, or permissions fixed);
    // Lambda's retry starts at the reported record: every event arrives.
    let (bus, queue) = bus_with_queue(&aws).await;
    let from = records.iter().position(|r| seq(r) == failed[0]).unwrap();
    let failed = publisher::publish(&aws.events, &bus, SOURCE, &records[from..])
        .await
        .unwrap();
    assert!(failed.is_empty());
    let got: BTreeSet<String> = cloud_events(&drain(&aws, &queue).await)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, by_id(&written).keys().cloned().collect());
}

#[tokio::test]
async fn publishing_stops_at_a_record_it_cannot_map_and_reports_it() {
    let aws = aws().await;
    let (table, stream) = table_with_stream(&aws).await;
    let good = user_lifecycle("u-1", 0);
    for r in &good[..2] {
        put(&aws, &table, audit_item(r)).await;
    }
    // An audit item whose doc is not a record (a writer bug).
    let mut broken = audit_item(&good[2]);
    broken.insert(
        AUDIT_DOC_ATTR.into(),
        AttributeValue::S("{\"not\":\"a record\"}".into()),
    );
    broken.insert("SK".into(), AttributeValue::S("broken".into()));
    put(&aws, &table, broken).await;
    put(&aws, &table, audit_item(&good[2])).await;
    let records = read_stream(&aws, &stream).await;
    assert_eq!(records.len(), 4);

    let (bus, queue) = bus_with_queue(&aws).await;
    let failed = publisher::publish(&aws.events, &bus, SOURCE, &records)
        .await
        .unwrap();
    assert_eq!(
        failed,
        [seq(&records[2])],
        "the unmappable record is reported"
    );
    let got: Vec<String> = cloud_events(&drain(&aws, &queue).await)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        got,
        [good[0].id.clone(), good[1].id.clone()],
        "the records before it are published, none after it (Lambda retries from it)"
    );
}

#[tokio::test]
async fn a_batch_without_audit_records_publishes_nothing() {
    let aws = aws().await;
    let (table, stream) = table_with_stream(&aws).await;
    put(&aws, &table, resource_item("acme", "u-1", 1)).await;
    put(&aws, &table, resource_item("acme", "u-1", 2)).await;
    let records = read_stream(&aws, &stream).await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].event_name, "MODIFY");
    // Even a bus that does not exist is never called.
    let failed = publisher::publish(&aws.events, &unique("no-such-bus"), SOURCE, &records)
        .await
        .unwrap();
    assert!(failed.is_empty());
}

#[test]
fn the_lambda_event_of_a_stream_batch_parses_and_the_answer_is_a_partial_batch_response() {
    // The shape Lambda delivers (with FilterCriteria, only audit inserts).
    let r = &user_lifecycle("u-1", 0)[0];
    let doc = serde_json::to_string(r).unwrap();
    let event: aws_lambda_events::event::dynamodb::Event = serde_json::from_value(json!({
        "Records": [{
            "eventID": "c4ca4238a0b923820dcc509a6f75849b",
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1772355600.0,
                "Keys": {"PK": {"S": "T#acme#A"}, "SK": {"S": format!("{}#{}", r.time, r.id)}},
                "NewImage": {
                    "PK": {"S": "T#acme#A"},
                    "SK": {"S": format!("{}#{}", r.time, r.id)},
                    "doc": {"S": doc},
                    "k": {"S": "audit"},
                    "expiresAt": {"N": r.expires_at.to_string()}
                },
                "SequenceNumber": "4421584500000000017450439091",
                "SizeBytes": 512,
                "StreamViewType": "NEW_IMAGE"
            },
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/scim/stream/2026-03-01T00:00:00.000"
        }]
    }))
    .unwrap();
    assert!(is_audit_insert(&event.records[0]));
    assert_eq!(
        serde_json::to_value(publisher::batch_response(vec![seq(&event.records[0])])).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "4421584500000000017450439091"}]})
    );
}

// ------------------------------------------------ a rejected entry

/// A stand-in for EventBridge that answers `PutEvents` as `answer` says
/// (given the call's number and its entries) and keeps every call's
/// entries: moto never rejects single entries of a well-formed call.
struct FakeEventBridge {
    url: String,
    calls: std::sync::Arc<std::sync::Mutex<Vec<Vec<Value>>>>,
}

fn fake_eventbridge(answer: fn(usize, &[Value]) -> Value) -> FakeEventBridge {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<Value>>::new()));
    let seen = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request: Value = serde_json::from_slice(&body).unwrap();
            let entries = request["Entries"].as_array().cloned().unwrap_or_default();
            let n = {
                let mut calls = seen.lock().unwrap();
                calls.push(entries.clone());
                calls.len() - 1
            };
            let reply = answer(n, &entries).to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    FakeEventBridge { url, calls }
}

/// `n` stream records of audit inserts, sequence numbers 100, 101, ….
fn synthetic_batch(records: &[AuditRecord]) -> Vec<DynamoDbEventRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            serde_json::from_value(json!({
                "eventID": format!("e{i}"),
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "Keys": {"PK": {"S": "T#acme#A"}, "SK": {"S": format!("{}#{}", r.time, r.id)}},
                    "NewImage": {
                        "PK": {"S": "T#acme#A"},
                        "SK": {"S": format!("{}#{}", r.time, r.id)},
                        "doc": {"S": serde_json::to_string(r).unwrap()},
                        "k": {"S": "audit"},
                        "expiresAt": {"N": r.expires_at.to_string()}
                    },
                    "SequenceNumber": (100 + i).to_string(),
                    "SizeBytes": 512,
                    "StreamViewType": "NEW_IMAGE"
                }
            }))
            .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_rejected_entry_is_the_reported_failure_and_nothing_after_it_is_put() {
    // The second call (entries 10..) rejects its third entry (record 12).
    let fake = fake_eventbridge(|n, entries| {
        let answers: Vec<Value> = (0..entries.len())
            .map(|i| {
                if n == 1 && i == 2 {
                    json!({"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"})
                } else {
                    json!({"EventId": format!("eb-{n}-{i}")})
                }
            })
            .collect();
        let failed = answers
            .iter()
            .filter(|a| a.get("ErrorCode").is_some())
            .count();
        json!({"FailedEntryCount": failed, "Entries": answers})
    });
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&fake.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let client = aws_sdk_eventbridge::Client::new(&conf);

    let mut written = Vec::new();
    for (n, user) in ["u-1", "u-2", "u-3", "u-4", "u-5", "u-6", "u-7"]
        .iter()
        .enumerate()
    {
        written.extend(user_lifecycle(user, n as i64 * 10));
    }
    let records = synthetic_batch(&written); // 21 records: 10 + 10 + 1
    let failed = publisher::publish(&client, "bus", SOURCE, &records)
        .await
        .unwrap();
    assert_eq!(
        failed,
        ["112"],
        "the rejected entry's record: Lambda retries from it"
    );

    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().map(Vec::len).collect::<Vec<_>>(),
        [10, 10],
        "at most 10 entries per PutEvents, and no call after the failed one"
    );
    for (i, e) in calls.concat().iter().enumerate() {
        assert_eq!(e["Source"], EVENTBRIDGE_SOURCE);
        assert_eq!(e["EventBusName"], "bus");
        let detail: Value = serde_json::from_str(e["Detail"].as_str().unwrap()).unwrap();
        assert_eq!(
            detail,
            to_cloud_event(&written[i], SOURCE),
            "entry {i}, in stream order"
        );
        assert_eq!(e["DetailType"], detail["type"]);
        assert!(e["Time"].is_number(), "Time is the record's time: {e}");
    }

    // Lambda's retry from 112: the rest goes out, 112 first.
    let from = records.iter().position(|r| seq(r) == "112").unwrap();
    let failed = publisher::publish(&client, "bus", SOURCE, &records[from..])
        .await
        .unwrap();
    assert!(failed.is_empty());
    let calls = fake.calls.lock().unwrap().clone();
    let retried: Vec<Value> = calls[2..].concat();
    assert_eq!(retried.len(), written.len() - from);
    let first: Value = serde_json::from_str(retried[0]["Detail"].as_str().unwrap()).unwrap();
    assert_eq!(first["id"], written[from].id);
}

// ------------------------------------------- the service end to end

const DEMO_TENANT: &str = "acme";
const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The real binary serving on DynamoDB (the emulator), killed when dropped
/// (a failed assertion included).
struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    origin: String,
    token: String,
    data_dir: std::path::PathBuf,
    client: reqwest::Client,
    _tmp: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `serve --store dynamodb --table TABLE --create-table-from
    /// template.yaml` on a free port; returns once it listens.
    fn start(table: &str) -> Server {
        use std::io::{BufRead, BufReader};
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let token = format!("test_{}", uuid::Uuid::new_v4().simple());
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml");
        let mut child = Command::new(env!("CARGO_BIN_EXE_scim-provisioning"))
            .args(["serve", "--port", "0", "--demo-tenant", DEMO_TENANT])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--store", "dynamodb", "--table", table])
            .arg("--create-table-from")
            .arg(&template)
            .env("SCIM_DEMO_TOKEN", &token)
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("DYNAMODB_RETRY_BUDGET_MS", "60000")
            .env("DYNAMODB_ATTEMPT_TIMEOUT_MS", "30000")
            .env("RUST_LOG", "warn")
            .env_remove("SCIM_TENANTS")
            .env_remove("SCIM_ADMIN_KEY")
            .env_remove("TENANT_SECRET_PREFIX")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env_remove(publisher::FUNCTION_ENV)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the server binary");
        let stdout = child.stdout.take().unwrap();
        let mut server = Server {
            child,
            origin: String::new(),
            token,
            data_dir,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            _tmp: tmp,
        };
        let mut lines = BufReader::new(stdout).lines();
        server.origin = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .expect("read the server's stdout");
            if let Some(rest) = line.strip_prefix("SCIM service listening on ") {
                break rest.trim().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        server
    }

    /// A SCIM request as the demo tenant: status and JSON body (Null when
    /// empty).
    async fn scim(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/scim/v2/{DEMO_TENANT}{path}", self.origin);
        let mut req = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        answer(req).await
    }

    /// An admin API request with the key the server wrote into its data
    /// directory.
    async fn admin(&self, path: &str) -> (u16, Value) {
        let key = std::fs::read_to_string(self.data_dir.join("admin.key")).expect("admin.key");
        let req = self
            .client
            .get(format!("{}/admin/v1{path}", self.origin))
            .bearer_auth(key.trim());
        answer(req).await
    }

    async fn create(&self, path: &str, body: Value) -> String {
        let (status, doc) = self.scim(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 201, "POST {path}: {doc}");
        doc["id"].as_str().unwrap().to_owned()
    }

    async fn patch(&self, path: &str, ops: Value) {
        let body = json!({"schemas": [PATCH_URN], "Operations": ops});
        let (status, doc) = self.scim(reqwest::Method::PATCH, path, Some(body)).await;
        assert!(
            status == 200 || status == 204,
            "PATCH {path}: {status} {doc}"
        );
    }
}

async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

fn scim_user(user_name: &str) -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": user_name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true,
    })
}

/// First occurrence of each CloudEvent id, in arrival order; a repeat must
/// be the same event.
fn deduplicate(events: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut index = HashMap::<String, usize>::new();
    for e in events {
        let id = e["id"].as_str().expect("an id").to_owned();
        match index.get(&id) {
            Some(&i) => assert_eq!(&out[i], e, "a redelivered event is the same event"),
            None => {
                index.insert(id, out.len());
                out.push(e.clone());
            }
        }
    }
    out
}

/// The stream less the emulator's rolled-back audit inserts, and those.
///
/// DynamoDB puts nothing of a cancelled transaction on the stream. The
/// emulator (scripts/moto_server.py over moto) applies a transaction's
/// writes and, when a condition fails, undoes them with compensating
/// writes, all of which reach the stream: a refused create shows as an
/// audit INSERT of a `created` record that is then REMOVEd. Audit items are
/// append-only (only TTL removes them, which the emulator never runs), so
/// an audit INSERT whose key is later REMOVEd is such a rollback.
fn emulator_rollbacks(
    records: Vec<DynamoDbEventRecord>,
) -> (Vec<DynamoDbEventRecord>, Vec<DynamoDbEventRecord>) {
    let keys = |r: &DynamoDbEventRecord| serde_json::to_value(&r.change.keys).unwrap();
    let (mut kept, mut rolled_back) = (Vec::new(), Vec::new());
    for (i, r) in records.iter().enumerate() {
        let undone = is_audit_insert(r)
            && records[i + 1..]
                .iter()
                .any(|later| later.event_name == "REMOVE" && keys(later) == keys(r));
        if undone {
            rolled_back.push(r.clone());
        } else {
            kept.push(r.clone());
        }
    }
    (kept, rolled_back)
}

fn rfc3339(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
}

#[tokio::test]
async fn scim_changes_reach_the_bus_once_each_in_version_order_and_match_their_schemas() {
    let aws = aws().await;
    let table = unique("scim-e2e");
    let server = Server::start(&table);

    // The startup records (tenant, credentials) were written before this:
    // the stream carries only what follows.
    let stream = enable_stream(&aws, &table).await;
    let enabled_at = time::OffsetDateTime::now_utc();

    // Real SCIM changes over HTTP.
    let ada = server.create("/Users", scim_user("ada@e2e.example")).await;
    let grace = server
        .create("/Users", scim_user("grace@e2e.example"))
        .await;
    let linus = server
        .create("/Users", scim_user("linus@e2e.example"))
        .await;
    server
        .patch(
            &format!("/Users/{ada}"),
            json!([{"op": "replace", "path": "displayName", "value": "Ada L."}]),
        )
        .await;
    server
        .patch(
            &format!("/Users/{grace}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    let group = server
        .create(
            "/Groups",
            json!({
                "schemas": [GROUP_URN],
                "displayName": "Engineers",
                "members": [{"value": ada}, {"value": grace}],
            }),
        )
        .await;
    server
        .patch(
            &format!("/Groups/{group}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{grace}\"]")}]),
        )
        .await;
    let (status, body) = server
        .scim(reqwest::Method::DELETE, &format!("/Users/{linus}"), None)
        .await;
    assert_eq!(status, 204, "DELETE: {body}");
    let (status, body) = server
        .scim(
            reqwest::Method::POST,
            "/Users",
            Some(scim_user("ada@e2e.example")),
        )
        .await;
    assert_eq!(status, 409, "a duplicate userName is refused: {body}");

    // The trail, as the admin API shows it: the records since the stream
    // was turned on are the events to expect.
    let (status, trail) = server
        .admin(&format!("/tenants/{DEMO_TENANT}/audit?limit=100"))
        .await;
    assert_eq!(status, 200, "{trail}");
    let all = trail["records"].as_array().unwrap();
    assert!(all.len() < 100, "the whole trail is on one page");
    let recorded: BTreeSet<String> = all
        .iter()
        .filter(|r| rfc3339(r["time"].as_str().unwrap()) > enabled_at)
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        recorded.len() < all.len(),
        "the startup records precede the stream: {trail:#}"
    );

    // The publisher's batch: the stream as Lambda delivers it, less what
    // only the emulator puts there (see `emulator_rollbacks`).
    let (records, rolled_back) = emulator_rollbacks(read_stream(&aws, &stream).await);
    let audit_inserts = records.iter().filter(|r| is_audit_insert(r)).count();
    assert_eq!(
        audit_inserts,
        recorded.len(),
        "one stream record per audit record"
    );
    let (bus, queue) = bus_with_queue(&aws).await;
    let failed = publisher::publish(&aws.events, &bus, SOURCE, &records)
        .await
        .unwrap();
    assert!(failed.is_empty(), "nothing failed: {failed:?}");
    let first = cloud_events(&drain(&aws, &queue).await);
    let events = deduplicate(&first);
    assert_eq!(
        events.len(),
        first.len(),
        "no duplicates on the first delivery"
    );

    // Every audit record of those changes arrived, and nothing else.
    let received: BTreeSet<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(received, recorded, "the events are the trail's records");
    let pairs: BTreeSet<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["subject"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let t = |s: &str| format!("com.scim-provisioning.{s}");
    let expected: BTreeSet<(String, String)> = [
        (ada.as_str(), t("scim.user.created")),
        (grace.as_str(), t("scim.user.created")),
        (linus.as_str(), t("scim.user.created")),
        (ada.as_str(), t("scim.user.updated")),
        (grace.as_str(), t("scim.user.deactivated")),
        (group.as_str(), t("scim.group.created")),
        (group.as_str(), t("scim.group.members.changed")),
        (linus.as_str(), t("scim.user.deleted")),
        // A refused POST names no resource.
        ("", t("scim.request.refused")),
    ]
    .into_iter()
    .map(|(s, ty)| (s.to_owned(), ty))
    .collect();
    assert_eq!(pairs, expected, "events: {events:#?}");
    for e in &events {
        assert_eq!(e["source"], SOURCE);
        assert_eq!(e["tenantid"], DEMO_TENANT);
    }
    let refused = events
        .iter()
        .find(|e| e["type"] == t("scim.request.refused"))
        .unwrap();
    assert_eq!(refused["data"]["status"], 409);
    assert_eq!(refused["data"]["scimType"], "uniqueness");
    assert_eq!(refused["data"]["name"], "ada@e2e.example");
    // The one cancelled transaction is the refused POST's.
    assert_eq!(rolled_back.len(), 1, "{rolled_back:#?}");
    let phantom: Value = serde_json::from_str(
        serde_json::to_value(&rolled_back[0].change.new_image).unwrap()[AUDIT_DOC_ATTR]["S"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(phantom["operation"], "created");
    assert_eq!(phantom["requestId"], refused["data"]["requestId"]);

    // One resource's events arrive in version order (and in time order,
    // the requests being sequential).
    let mut per_resource: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for e in &events {
        per_resource
            .entry(e["subject"].as_str().unwrap())
            .or_default()
            .push(e);
    }
    for (subject, list) in &per_resource {
        let versions: Vec<u64> = list
            .iter()
            .filter_map(|e| e["data"]["version"].as_u64())
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{subject}: versions {versions:?} in increasing order"
        );
        let times: Vec<time::OffsetDateTime> = list
            .iter()
            .map(|e| rfc3339(e["time"].as_str().unwrap()))
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{subject}: in time order: {list:#?}"
        );
    }
    for user in [&ada, &grace, &linus] {
        assert!(
            per_resource[user.as_str()].len() >= 2,
            "{user}: created, then changed"
        );
        assert_eq!(
            per_resource[user.as_str()][0]["type"],
            t("scim.user.created"),
            "{user}: created first"
        );
    }
    assert_eq!(
        per_resource[group.as_str()]
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [t("scim.group.created"), t("scim.group.members.changed")]
    );

    // A crash between reading the stream and answering Lambda: the same
    // records are published again. De-duplicated by id, nothing is
    // duplicated or lost.
    let failed = publisher::publish(&aws.events, &bus, SOURCE, &records)
        .await
        .unwrap();
    assert!(
        failed.is_empty(),
        "nothing failed on redelivery: {failed:?}"
    );
    let second = cloud_events(&drain(&aws, &queue).await);
    assert_eq!(
        second.len(),
        first.len(),
        "the redelivery repeats every event"
    );
    let all_received: Vec<Value> = first.iter().chain(&second).cloned().collect();
    let after_redelivery = deduplicate(&all_received);
    assert_eq!(after_redelivery, events, "nothing duplicated, nothing lost");

    // Every event matches its schema (infra/events/v1).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let lines: Vec<String> = after_redelivery.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{root}/.venv/bin/python"))
        .arg(format!("{root}/scripts/validate_events.py"))
        .arg(&file)
        .output()
        .expect("run scripts/validate_events.py (scripts/test.sh installs .venv)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the events match their schemas: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{} events match their schemas", events.len())),
        "{stdout}"
    );

    drop(server);
}
