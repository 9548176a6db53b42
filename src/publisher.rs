//! The change-event publisher: a second Lambda entry of the same binary
//! (`SCIM_FUNCTION=publisher`) that reads the table's DynamoDB stream and
//! puts every committed audit record on the EventBridge bus as a
//! CloudEvent (`crate::audit::event::to_cloud_event`).
//!
//! Delivery is at least once. The stream hands over a batch in shard
//! order; records are put in that order, at most [`MAX_ENTRIES_PER_PUT`]
//! (and [`MAX_PUT_BYTES`]) per `PutEvents`, and publishing stops at the
//! first record that fails: its sequence number is the one partial batch
//! failure reported, so Lambda checkpoints everything before it and
//! retries from it (`ReportBatchItemFailures`). Anything already put from
//! that point on is put again: consumers de-duplicate by the CloudEvent
//! `id`, which is the audit record's id and the same on every redelivery.
//! `infra/events.md` has the whole design.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_dynamo::AttributeValue;
use thiserror::Error;
use tokio::sync::OnceCell;

use crate::audit::AuditRecord;
use crate::audit::event::{event_type, to_cloud_event};

pub use aws_lambda_events::event::dynamodb::EventRecord as DynamoDbEventRecord;

/// The attribute that names an item's kind (`k`, as the store writes it).
pub const AUDIT_KIND_ATTR: &str = "k";
/// The kind of an audit record's item: the only items that are events.
pub const AUDIT_ITEM_KIND: &str = "audit";
/// The attribute holding the record's JSON.
pub const AUDIT_DOC_ATTR: &str = "doc";
/// The stream event of a new item; audit records are only ever inserted.
pub const INSERT: &str = "INSERT";
/// EventBridge `Source` of every entry (what a rule matches on).
pub const EVENTBRIDGE_SOURCE: &str = "com.scim-provisioning";
/// The CloudEvents `source` unless `EVENT_SOURCE` says otherwise.
pub const DEFAULT_EVENT_SOURCE: &str = "/scim-provisioning";
/// The variable that selects this entry in the shared binary, and its value.
pub const FUNCTION_ENV: &str = "SCIM_FUNCTION";
pub const FUNCTION_NAME: &str = "publisher";
/// EventBridge's limits on one `PutEvents` call.
pub const MAX_ENTRIES_PER_PUT: usize = 10;
pub const MAX_PUT_BYTES: usize = 256 * 1024;

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A record that would have to be reported as failed has no sequence
    /// number to report: the whole batch fails (and is retried).
    #[error("stream record {event_id} has no sequence number")]
    MissingSequenceNumber { event_id: String },
    #[error("lambda runtime: {0}")]
    Runtime(String),
}

impl From<PublishError> for Diagnostic {
    fn from(e: PublishError) -> Diagnostic {
        let kind = match e {
            PublishError::Config(_) => "PublishError.Config",
            PublishError::MissingSequenceNumber { .. } => "PublishError.MissingSequenceNumber",
            PublishError::Runtime(_) => "PublishError.Runtime",
        };
        Diagnostic {
            error_type: kind.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// Whether this process is the publisher (`SCIM_FUNCTION=publisher`).
pub fn selected() -> bool {
    std::env::var("SCIM_FUNCTION").is_ok_and(|v| v.trim() == FUNCTION_NAME)
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `EVENT_BUS_NAME`: the bus's name or ARN.
    pub bus: String,
    /// `EVENT_SOURCE`: the CloudEvents `source` (a URI reference naming
    /// this deployment), [`DEFAULT_EVENT_SOURCE`] if unset.
    pub source: String,
}

impl Config {
    pub fn from_env() -> Result<Config, PublishError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let bus = env("EVENT_BUS_NAME")
            .ok_or_else(|| PublishError::Config("EVENT_BUS_NAME is not set".into()))?;
        let source = env("EVENT_SOURCE").unwrap_or_else(|| DEFAULT_EVENT_SOURCE.to_owned());
        Ok(Config { bus, source })
    }
}

/// What one stream record is to the publisher.
enum Prepared {
    /// Not an inserted audit item (a resource, a counter, a TTL delete):
    /// nothing to publish.
    Skip,
    Entry {
        entry: PutEventsRequestEntry,
        bytes: usize,
        event_id: String,
    },
    /// An audit item whose `doc` is not a record: a bug in the writer.
    /// Reported as failed, so the shard stops there, Lambda retries, and
    /// after its retries the batch goes to the dead-letter queue.
    Invalid(&'static str),
}

/// The record's audit document, if it is an inserted audit item.
fn audit_doc(record: &DynamoDbEventRecord) -> Option<Result<&str, &'static str>> {
    if record.event_name != INSERT {
        return None;
    }
    let image = &record.change.new_image;
    match image.get(AUDIT_KIND_ATTR) {
        Some(AttributeValue::S(k)) if k == AUDIT_ITEM_KIND => {}
        _ => return None,
    }
    Some(match image.get(AUDIT_DOC_ATTR) {
        Some(AttributeValue::S(doc)) => Ok(doc.as_str()),
        _ => Err("the audit item has no string doc attribute"),
    })
}

/// The `PutEvents` entry of an audit record: Source, DetailType (the
/// CloudEvent type), Detail (the whole CloudEvent), the bus, and Time (the
/// record's time).
pub fn entry_for(record: &AuditRecord, bus: &str, source: &str) -> (PutEventsRequestEntry, usize) {
    let event = to_cloud_event(record, source);
    let detail_type = event
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| event_type(record));
    let detail = event.to_string();
    let time =
        time::OffsetDateTime::parse(&record.time, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| DateTime::from_secs_and_nanos(t.unix_timestamp(), t.nanosecond()));
    // EventBridge's entry size: Time (14 bytes), Source, DetailType, Detail.
    let bytes = 14 + EVENTBRIDGE_SOURCE.len() + detail_type.len() + detail.len();
    let entry = PutEventsRequestEntry::builder()
        .source(EVENTBRIDGE_SOURCE)
        .detail_type(detail_type)
        .detail(detail)
        .event_bus_name(bus)
        .set_time(time)
        .build();
    (entry, bytes)
}

fn prepare(record: &DynamoDbEventRecord, bus: &str, source: &str) -> Prepared {
    let doc = match audit_doc(record) {
        None => return Prepared::Skip,
        Some(Err(why)) => return Prepared::Invalid(why),
        Some(Ok(doc)) => doc,
    };
    let Ok(audit) = serde_json::from_str::<AuditRecord>(doc) else {
        return Prepared::Invalid("the audit item's doc is not an audit record");
    };
    let (entry, bytes) = entry_for(&audit, bus, source);
    Prepared::Entry {
        entry,
        bytes,
        event_id: audit.id,
    }
}

/// Entries waiting to be put, with the sequence numbers they came from.
#[derive(Default)]
struct Chunk {
    entries: Vec<PutEventsRequestEntry>,
    sequence_numbers: Vec<String>,
    event_ids: Vec<String>,
    bytes: usize,
}

impl Chunk {
    fn fits(&self, bytes: usize) -> bool {
        self.entries.is_empty()
            || (self.entries.len() < MAX_ENTRIES_PER_PUT && self.bytes + bytes <= MAX_PUT_BYTES)
    }

    /// Puts the chunk; `Some(sequence number)` of the first entry that did
    /// not make it.
    async fn put(&mut self, client: &aws_sdk_eventbridge::Client) -> Option<String> {
        if self.entries.is_empty() {
            return None;
        }
        let chunk = std::mem::take(self);
        let sent = chunk.entries.len();
        let result = client
            .put_events()
            .set_entries(Some(chunk.entries))
            .send()
            .await;
        let first_failed = match result {
            Err(e) => {
                tracing::warn!(
                    error = %aws_sdk_eventbridge::error::DisplayErrorContext(&e),
                    entries = sent,
                    "PutEvents failed"
                );
                Some(0)
            }
            Ok(out) => {
                let failed = out
                    .entries()
                    .iter()
                    .position(|r| r.error_code().is_some() || r.event_id().is_none());
                match failed {
                    Some(i) => {
                        let r = &out.entries()[i];
                        tracing::warn!(
                            error_code = r.error_code().unwrap_or_default(),
                            error_message = r.error_message().unwrap_or_default(),
                            event_id = chunk
                                .event_ids
                                .get(i)
                                .map(String::as_str)
                                .unwrap_or_default(),
                            failed_entries = out.failed_entry_count(),
                            entries = sent,
                            "PutEvents rejected an entry"
                        );
                        Some(i)
                    }
                    // Every entry answered but a failure counted, or fewer
                    // answers than entries: trust nothing of this call.
                    None if out.failed_entry_count() > 0 || out.entries().len() != sent => {
                        tracing::warn!(
                            failed_entries = out.failed_entry_count(),
                            answers = out.entries().len(),
                            entries = sent,
                            "PutEvents answered inconsistently"
                        );
                        Some(0)
                    }
                    None => None,
                }
            }
        };
        first_failed.and_then(|i| chunk.sequence_numbers.into_iter().nth(i))
    }
}

fn sequence_number(record: &DynamoDbEventRecord) -> Result<String, PublishError> {
    record
        .change
        .sequence_number
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PublishError::MissingSequenceNumber {
            event_id: record.event_id.clone(),
        })
}

/// Publishes the audit records among `records` (stream order) to `bus`,
/// `source` being the CloudEvents `source`. Returns the sequence numbers to
/// report as failed: empty when everything was put, else the one of the
/// first record that was not (Lambda retries from there; later records are
/// not attempted). Records that are not inserted audit items are skipped.
pub async fn publish(
    client: &aws_sdk_eventbridge::Client,
    bus: &str,
    source: &str,
    records: &[DynamoDbEventRecord],
) -> Result<Vec<String>, PublishError> {
    let mut chunk = Chunk::default();
    let (mut published, mut skipped) = (0usize, 0usize);
    for record in records {
        match prepare(record, bus, source) {
            Prepared::Skip => skipped += 1,
            Prepared::Invalid(why) => {
                let seq = sequence_number(record)?;
                let pending = chunk.entries.len();
                if let Some(failed) = chunk.put(client).await {
                    return Ok(vec![failed]);
                }
                published += pending;
                tracing::error!(
                    stream_event_id = %record.event_id,
                    sequence_number = %seq,
                    published,
                    "{why}; reporting it as failed"
                );
                return Ok(vec![seq]);
            }
            Prepared::Entry {
                entry,
                bytes,
                event_id,
            } => {
                let seq = sequence_number(record)?;
                if !chunk.fits(bytes) {
                    let pending = chunk.entries.len();
                    if let Some(failed) = chunk.put(client).await {
                        tracing::warn!(sequence_number = %failed, published, "retrying from here");
                        return Ok(vec![failed]);
                    }
                    published += pending;
                }
                chunk.entries.push(entry);
                chunk.sequence_numbers.push(seq);
                chunk.event_ids.push(event_id);
                chunk.bytes += bytes;
            }
        }
    }
    let pending = chunk.entries.len();
    if let Some(failed) = chunk.put(client).await {
        tracing::warn!(sequence_number = %failed, published, "retrying from here");
        return Ok(vec![failed]);
    }
    published += pending;
    tracing::info!(
        records = records.len(),
        published,
        skipped,
        "stream batch published"
    );
    Ok(Vec::new())
}

/// Lambda's partial batch response for these failed sequence numbers.
pub fn batch_response(failed: Vec<String>) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    for seq in failed {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(seq);
        response.batch_item_failures.push(failure);
    }
    response
}

struct Publisher {
    config: Config,
    client: OnceCell<aws_sdk_eventbridge::Client>,
}

impl Publisher {
    async fn client(&self) -> &aws_sdk_eventbridge::Client {
        self.client
            .get_or_init(|| async {
                let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await;
                aws_sdk_eventbridge::Client::new(&conf)
            })
            .await
    }

    async fn handle(
        &self,
        event: LambdaEvent<Event>,
    ) -> Result<DynamoDbEventResponse, PublishError> {
        let records = event.payload.records;
        let client = self.client().await;
        let failed = publish(client, &self.config.bus, &self.config.source, &records).await?;
        Ok(batch_response(failed))
    }
}

/// The publisher's Lambda entry: DynamoDB stream batches in, partial batch
/// failures out. Reads `EVENT_BUS_NAME` and `EVENT_SOURCE`; the EventBridge
/// client is built on the first batch.
pub async fn run() -> Result<(), PublishError> {
    let publisher = Arc::new(Publisher {
        config: Config::from_env()?,
        client: OnceCell::new(),
    });
    tracing::info!(bus = %publisher.config.bus, source = %publisher.config.source, "event publisher starting");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let publisher = Arc::clone(&publisher);
        async move { publisher.handle(event).await }
    }))
    .await
    .map_err(|e| PublishError::Runtime(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, Operation, Origin, ResourceType};
    use crate::scim::model::TenantId;
    use serde_json::json;

    fn record() -> AuditRecord {
        let origin = Origin {
            actor: Actor::Scim { generation: 1 },
            request_id: Some("req-1".into()),
            retention_days: 30,
        };
        origin.record(
            &TenantId::parse("acme").unwrap(),
            ResourceType::User,
            "u-1",
            Operation::Created,
            time::macros::datetime!(2026-01-02 03:04:05.123456 UTC),
        )
    }

    fn stream_record(name: &str, kind: &str, doc: &str, seq: &str) -> DynamoDbEventRecord {
        serde_json::from_value(json!({
            "eventID": "e1",
            "eventName": name,
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_767_323_045.0,
                "Keys": {"PK": {"S": "T#acme#A"}, "SK": {"S": "x"}},
                "NewImage": {"PK": {"S": "T#acme#A"}, "SK": {"S": "x"}, "k": {"S": kind}, "doc": {"S": doc}},
                "SequenceNumber": seq,
                "SizeBytes": 10,
                "StreamViewType": "NEW_IMAGE"
            }
        }))
        .unwrap()
    }

    #[test]
    fn entries_carry_the_cloud_event() {
        let r = record();
        let (entry, bytes) = entry_for(&r, "bus", "/src");
        assert_eq!(entry.source(), Some(EVENTBRIDGE_SOURCE));
        assert_eq!(
            entry.detail_type(),
            Some("com.scim-provisioning.scim.user.created")
        );
        let detail: serde_json::Value = serde_json::from_str(entry.detail().unwrap()).unwrap();
        assert_eq!(detail, to_cloud_event(&r, "/src"));
        assert_eq!(detail["id"], r.id);
        assert_eq!(entry.event_bus_name(), Some("bus"));
        let t = entry.time().unwrap();
        assert_eq!((t.secs(), t.subsec_nanos()), (1_767_323_045, 123_456_000));
        assert!(bytes > entry.detail().unwrap().len());
    }

    #[test]
    fn only_inserted_audit_items_are_published() {
        let doc = serde_json::to_string(&record()).unwrap();
        assert!(matches!(
            prepare(&stream_record("INSERT", "audit", &doc, "1"), "b", "s"),
            Prepared::Entry { .. }
        ));
        assert!(matches!(
            prepare(&stream_record("MODIFY", "audit", &doc, "1"), "b", "s"),
            Prepared::Skip
        ));
        assert!(matches!(
            prepare(&stream_record("INSERT", "User", "{}", "1"), "b", "s"),
            Prepared::Skip
        ));
        assert!(matches!(
            prepare(
                &stream_record("INSERT", "audit", "{not json", "1"),
                "b",
                "s"
            ),
            Prepared::Invalid(_)
        ));
    }

    #[test]
    fn the_batch_response_names_the_failed_sequence_number() {
        let r = batch_response(vec!["42".into()]);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "42"}]})
        );
        assert_eq!(
            serde_json::to_value(batch_response(Vec::new())).unwrap(),
            json!({"batchItemFailures": []})
        );
    }

    #[test]
    fn chunks_respect_eventbridge_limits() {
        let mut c = Chunk::default();
        assert!(c.fits(MAX_PUT_BYTES + 1), "an oversized entry goes alone");
        for _ in 0..MAX_ENTRIES_PER_PUT {
            assert!(c.fits(100));
            c.entries.push(PutEventsRequestEntry::builder().build());
            c.bytes += 100;
        }
        assert!(!c.fits(100));
        let mut c = Chunk::default();
        c.entries.push(PutEventsRequestEntry::builder().build());
        c.bytes = MAX_PUT_BYTES - 10;
        assert!(!c.fits(11));
        assert!(c.fits(10));
    }
}
