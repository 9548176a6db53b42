//! The embedded store's tests, run against DynamoDB's emulator (moto), plus
//! what only this store has: call counts, chunking, bookmarks, cleanup.
//!
//! `AWS_ENDPOINT_URL` names an emulator to use; without it the tests start
//! `moto_server` on a free loopback port once per test binary, and it stops
//! when the binary exits. Each test gets a fresh table created from
//! `template.yaml`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use serde_json::{Map, json};

use super::*;

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
            // process exits, however it exits, and exits itself if moto
            // does. The child is kept (never waited for) so that its stdin
            // stays open until then.
            let script = format!(
                "exec 3<&0
                 (if command -v moto_server >/dev/null 2>&1
                  then exec moto_server -H 127.0.0.1 -p {port}
                  else exec python3 -m moto.server -H 127.0.0.1 -p {port}; fi) >/dev/null 2>&1 &
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
                .expect("starting moto_server (python3 -m pip install 'moto[server]')");
            for _ in 0..300 {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return (format!("http://127.0.0.1:{port}"), Some(child));
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "moto_server exited ({status}); is it installed? \
                         python3 -m pip install 'moto[server]'"
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            child.kill().ok();
            child.wait().ok();
            panic!("moto_server did not start on port {port}");
        })
        .0
}

async fn open() -> DynamoStore {
    open_with(Timing::default()).await
}

async fn open_with(timing: Timing) -> DynamoStore {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let table = format!("scim-test-{}", uuid::Uuid::new_v4());
    let store = DynamoStore::with_timing(&conf, table.clone(), timing);
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml");
    create_table_from_template(store.client(), &template, &table)
        .await
        .unwrap();
    store
}

/// Records the name of every DynamoDB operation sent (one per attempt).
#[derive(Debug, Clone, Default)]
struct OpLog(Arc<Mutex<Vec<String>>>);

impl aws_sdk_dynamodb::config::Intercept for OpLog {
    fn name(&self) -> &'static str {
        "OpLog"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        // `X-Amz-Target: DynamoDB_20120810.UpdateItem`
        if let Some(target) = context.request().headers().get("x-amz-target") {
            let op = target.rsplit('.').next().unwrap_or(target);
            self.0.lock().unwrap().push(op.to_owned());
        }
        Ok(())
    }
}

impl OpLog {
    /// The operations sent since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// `s` with every operation recorded (the call counter is kept).
fn logged(s: &DynamoStore) -> (DynamoStore, OpLog) {
    let log = OpLog::default();
    let config = s
        .client
        .config()
        .to_builder()
        .interceptor(log.clone())
        .build();
    let mut s = s.clone();
    s.client = Client::from_conf(config);
    (s, log)
}

/// Every item of the table.
async fn scan_all(s: &DynamoStore) -> Vec<Item> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let resp = s
            .client
            .scan()
            .table_name(s.table())
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        out.extend(resp.items.unwrap_or_default());
        match resp.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return out,
        }
    }
}

/// Keys (`PK`, `SK`) of the membership and reverse items naming `group`.
async fn memberships_of_group(s: &DynamoStore, t: &TenantId, group: &str) -> Vec<(String, String)> {
    let forward = group_pk(t, group);
    let reverse = member_of_sk(group);
    let mut found: Vec<(String, String)> = scan_all(s)
        .await
        .iter()
        .map(|i| {
            (
                get_s(i, PK).unwrap().to_owned(),
                get_s(i, SK).unwrap().to_owned(),
            )
        })
        .filter(|(pk, sk)| {
            *pk == forward || (pk.starts_with(&format!("T#{t}#M#")) && *sk == reverse)
        })
        .collect();
    found.sort();
    found
}

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn resource(kind: Kind, id: &str, name: &str) -> StoredResource {
    let mut attrs = Map::new();
    attrs.insert("name".into(), json!(name));
    StoredResource {
        id: id.into(),
        kind,
        version: 1,
        created: "2024-01-01T00:00:00Z".into(),
        last_modified: "2024-01-01T00:00:00Z".into(),
        attrs,
        member_count: 0,
    }
}

fn user(id: &str) -> StoredResource {
    resource(Kind::User, id, id)
}

fn group(id: &str) -> StoredResource {
    resource(Kind::Group, id, id)
}

fn key(attr: &'static str, value: &str) -> UniqueKey {
    UniqueKey {
        attr,
        value: value.into(),
    }
}

fn name_key(r: &StoredResource) -> UniqueKey {
    key("userName", r.attrs["name"].as_str().unwrap())
}

fn member(id: &str) -> MemberRef {
    MemberRef {
        id: id.into(),
        kind: Kind::User,
    }
}

fn ids(v: &[StoredResource]) -> Vec<&str> {
    v.iter().map(|r| r.id.as_str()).collect()
}

async fn add_user(s: &DynamoStore, t: &TenantId, id: &str) -> StoredResource {
    let u = user(id);
    s.create(t, &u, &[name_key(&u)], &[]).await.unwrap();
    u
}

/// An update of `stored` to `new` (same id), with a member delta.
fn update(stored: &StoredResource, new: StoredResource, members: MemberDelta) -> Update {
    let mut resource = new;
    resource.version = stored.version + 1;
    Update {
        old_keys: vec![name_key(stored)],
        new_keys: vec![name_key(&resource)],
        resource,
        expected_version: stored.version,
        members,
    }
}

fn add(ids: &[&str]) -> MemberDelta {
    MemberDelta {
        add: ids.iter().map(|id| member(id)).collect(),
        ..MemberDelta::default()
    }
}

async fn member_ids(s: &DynamoStore, t: &TenantId, g: &str) -> Vec<String> {
    let m = s.members(t, g, None, 100_000).await.unwrap();
    m.into_iter().map(|m| m.id).collect()
}

/// Writes `n` users `{prefix}{i:05}` and makes them members of `group`
/// straight through batch writes, bypassing transactions: seeding a large
/// group one transaction at a time is too slow for the emulator.
async fn seed_members(s: &DynamoStore, t: &TenantId, group: &str, prefix: &str, n: usize) {
    let mut requests = Vec::new();
    for i in 0..n {
        let u = user(&format!("{prefix}{i:05}"));
        let mut items = vec![resource_item(t, &u, &[], 0).unwrap()];
        items.extend(membership_items(t, group, &u.id, Kind::User));
        for item in items {
            let put = aws_sdk_dynamodb::types::PutRequest::builder()
                .set_item(Some(item))
                .build()
                .unwrap();
            requests.push(WriteRequest::builder().put_request(put).build());
        }
    }
    for c in requests.chunks(BATCH_WRITE) {
        s.batch_write(c.to_vec()).await.unwrap();
    }
    s.client
        .update_item()
        .table_name(s.table())
        .set_key(Some(keys::key(
            tenant_pk(t),
            resource_sk(Kind::Group, group),
        )))
        .update_expression("ADD #mc :n")
        .expression_attribute_names("#mc", MC)
        .expression_attribute_values(":n", n_attr(n))
        .send()
        .await
        .unwrap();
}

/// Writes `n` users `{prefix}{i:05}` straight through batch writes.
async fn seed_users(s: &DynamoStore, t: &TenantId, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut requests = Vec::new();
    for i in 0..n {
        let u = user(&format!("{prefix}{i:05}"));
        let put = aws_sdk_dynamodb::types::PutRequest::builder()
            .set_item(Some(resource_item(t, &u, &[], 0).unwrap()))
            .build()
            .unwrap();
        requests.push(WriteRequest::builder().put_request(put).build());
        ids.push(u.id);
    }
    for c in requests.chunks(BATCH_WRITE) {
        s.batch_write(c.to_vec()).await.unwrap();
    }
    ids
}

fn n_attr(v: usize) -> aws_sdk_dynamodb::types::AttributeValue {
    keys::n(v)
}

/// The DynamoDB calls `f` makes.
async fn cost<T, F: std::future::Future<Output = T>>(s: &DynamoStore, f: F) -> (T, u64) {
    let before = s.calls();
    let out = f.await;
    (out, s.calls() - before)
}

#[tokio::test]
async fn create_then_read_back() {
    let s = open().await;
    let t = tenant("t1");
    let u = add_user(&s, &t, "u1").await;

    assert_eq!(s.get(&t, Kind::User, "u1").await.unwrap(), Some(u.clone()));
    assert_eq!(s.get(&t, Kind::Group, "u1").await.unwrap(), None);
    assert_eq!(s.get(&t, Kind::User, "nope").await.unwrap(), None);
    let found = s.find_by_key(&t, Kind::User, &key("userName", "u1")).await;
    assert_eq!(found.unwrap(), Some(u.clone()));
    let missing = s.find_by_key(&t, Kind::User, &key("userName", "x")).await;
    assert_eq!(missing.unwrap(), None);
    assert_eq!(s.count(&t, Kind::User).await.unwrap(), 1);
    assert_eq!(s.count(&t, Kind::Group).await.unwrap(), 0);

    let g = group("g1");
    s.create(&t, &g, &[key("displayName", "g1")], &[])
        .await
        .unwrap();
    let wanted = ["u1".to_string(), "gone".into(), "g1".into(), "u1".into()];
    let mut many = s.get_many(&t, &wanted).await.unwrap();
    many.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&many), ["g1", "u1"]);

    // Ids too long to be keys are simply absent.
    let long = "x".repeat(5000);
    assert_eq!(s.get(&t, Kind::User, &long).await.unwrap(), None);
    assert!(
        s.get_many(&t, std::slice::from_ref(&long))
            .await
            .unwrap()
            .is_empty()
    );
    // Long unique values are hashed into the marker key, and still unique.
    let v = "v".repeat(3000);
    let u2 = user("u2");
    s.create(&t, &u2, &[key("userName", &v)], &[])
        .await
        .unwrap();
    let found = s.find_by_key(&t, Kind::User, &key("userName", &v)).await;
    assert_eq!(found.unwrap().map(|r| r.id), Some("u2".into()));
    let err = s
        .create(&t, &user("u3"), &[key("userName", &v)], &[])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::Conflict {
            attr: "userName",
            ..
        }
    ));
}

#[tokio::test]
async fn create_conflict_names_the_taken_key_and_writes_nothing() {
    let s = open().await;
    let t = tenant("t1");
    let a = user("a");
    let keys = [key("userName", "alice"), key("externalId", "ext-1")];
    s.create(&t, &a, &keys, &[]).await.unwrap();

    let b = user("b");
    let keys = [key("userName", "bob"), key("externalId", "ext-1")];
    let err = s.create(&t, &b, &keys, &[]).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            attr: "externalId",
            value: "ext-1".into()
        }
    );
    assert_eq!(s.get(&t, Kind::User, "b").await.unwrap(), None);
    assert_eq!(s.count(&t, Kind::User).await.unwrap(), 1);
    let bob = s.find_by_key(&t, Kind::User, &key("userName", "bob")).await;
    assert_eq!(bob.unwrap(), None);

    // Keys are per kind: a group may use the same value.
    let g = group("g");
    s.create(&t, &g, &[key("userName", "alice")], &[])
        .await
        .unwrap();

    // Reusing an id is a conflict too, whatever the kind.
    let err = s.create(&t, &group("a"), &[], &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { attr: "id", .. }));
    let err = s.create(&t, &user("a"), &[], &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { attr: "id", .. }));
    assert_eq!(s.count(&t, Kind::Group).await.unwrap(), 1);
}

#[tokio::test]
async fn stale_update_fails_and_writes_nothing() {
    let s = open().await;
    let t = tenant("t1");
    let u = add_user(&s, &t, "u1").await;

    let mut stale = update(
        &u,
        resource(Kind::User, "u1", "renamed"),
        MemberDelta::default(),
    );
    stale.expected_version = 7;
    stale.resource.version = 8;
    let err = s.update(&t, &stale).await.unwrap_err();
    assert_eq!(err, StoreError::VersionMismatch);
    assert_eq!(s.get(&t, Kind::User, "u1").await.unwrap(), Some(u.clone()));
    let old = s.find_by_key(&t, Kind::User, &key("userName", "u1")).await;
    assert_eq!(old.unwrap().map(|r| r.id), Some("u1".into()));
    let new = s
        .find_by_key(&t, Kind::User, &key("userName", "renamed"))
        .await;
    assert_eq!(new.unwrap(), None);

    // A missing resource is a version mismatch as well, and is not created.
    let ghost = update(&user("ghost"), user("ghost"), MemberDelta::default());
    let err = s.update(&t, &ghost).await.unwrap_err();
    assert_eq!(err, StoreError::VersionMismatch);
    assert_eq!(s.get(&t, Kind::User, "ghost").await.unwrap(), None);
}

#[tokio::test]
async fn rename_moves_the_key() {
    let s = open().await;
    let t = tenant("t1");
    let u = add_user(&s, &t, "u1").await;
    add_user(&s, &t, "u2").await;

    // Taking another resource's key fails, and nothing moves.
    let clash = update(&u, resource(Kind::User, "u1", "u2"), MemberDelta::default());
    let err = s.update(&t, &clash).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            attr: "userName",
            value: "u2".into()
        }
    );
    let still = s.find_by_key(&t, Kind::User, &key("userName", "u1")).await;
    assert_eq!(still.unwrap().map(|r| r.id), Some("u1".into()));
    assert_eq!(
        s.get(&t, Kind::User, "u1").await.unwrap().unwrap().version,
        1
    );

    // Keeping one's own key is fine.
    let same = update(&u, user("u1"), MemberDelta::default());
    s.update(&t, &same).await.unwrap();
    let u = s.get(&t, Kind::User, "u1").await.unwrap().unwrap();
    assert_eq!(u.version, 2);

    let rename = update(
        &u,
        resource(Kind::User, "u1", "alice"),
        MemberDelta::default(),
    );
    s.update(&t, &rename).await.unwrap();
    let new = s
        .find_by_key(&t, Kind::User, &key("userName", "alice"))
        .await;
    assert_eq!(new.unwrap().map(|r| r.version), Some(3));
    let old = s.find_by_key(&t, Kind::User, &key("userName", "u1")).await;
    assert_eq!(old.unwrap(), None);
    // The old value is free for someone else.
    let u3 = resource(Kind::User, "u3", "u1");
    s.create(&t, &u3, &[name_key(&u3)], &[]).await.unwrap();

    // A stale idea of the old keys never frees another resource's key.
    let u3 = s.get(&t, Kind::User, "u3").await.unwrap().unwrap();
    let mut confused = update(
        &u3,
        resource(Kind::User, "u3", "carol"),
        MemberDelta::default(),
    );
    confused.old_keys.push(key("userName", "alice"));
    s.update(&t, &confused).await.unwrap();
    let alice = s
        .find_by_key(&t, Kind::User, &key("userName", "alice"))
        .await;
    assert_eq!(alice.unwrap().map(|r| r.id), Some("u1".into()));

    // Delete releases the key the store recorded.
    s.delete(&t, Kind::User, "u1", Some(3)).await.unwrap();
    let u4 = resource(Kind::User, "u4", "alice");
    s.create(&t, &u4, &[name_key(&u4)], &[]).await.unwrap();
}

#[tokio::test]
async fn membership_changes_are_idempotent_and_counted() {
    let s = open().await;
    let t = tenant("t1");
    for id in ["u1", "u2", "u3"] {
        add_user(&s, &t, id).await;
    }
    let g = group("g");
    let initial = [member("u2"), member("u1"), member("u2")];
    s.create(&t, &g, &[], &initial).await.unwrap();
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!(g.member_count, 2);
    assert_eq!(member_ids(&s, &t, "g").await, ["u1", "u2"]);

    // Adding present members and removing absent ones changes nothing.
    let mut delta = add(&["u2", "u3"]);
    delta.remove = vec!["u9".into()];
    let mut new = g.clone();
    new.member_count = 999; // the store owns the count
    s.update(&t, &update(&g, new, delta)).await.unwrap();
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (2, 3));
    assert_eq!(member_ids(&s, &t, "g").await, ["u1", "u2", "u3"]);

    let delta = MemberDelta {
        remove: vec!["u1".into(), "u1".into()],
        ..MemberDelta::default()
    };
    s.update(&t, &update(&g, g.clone(), delta)).await.unwrap();
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!(g.member_count, 2);
    assert!(!s.is_member(&t, "g", "u1").await.unwrap());
    assert!(s.is_member(&t, "g", "u2").await.unwrap());
    assert_eq!(s.groups_of(&t, "u1").await.unwrap(), Vec::<String>::new());
    assert_eq!(s.groups_of(&t, "u2").await.unwrap(), ["g"]);

    // Clear, then remove, then add: u3 ends up the only member.
    let delta = MemberDelta {
        clear: true,
        remove: vec!["u3".into()],
        add: vec![member("u3")],
    };
    s.update(&t, &update(&g, g.clone(), delta)).await.unwrap();
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!(g.member_count, 1);
    assert_eq!(member_ids(&s, &t, "g").await, ["u3"]);
    assert_eq!(s.groups_of(&t, "u2").await.unwrap(), Vec::<String>::new());

    // A nested group is a member too, recorded with its own kind.
    s.create(&t, &group("inner"), &[], &[]).await.unwrap();
    let inner = MemberDelta {
        add: vec![MemberRef {
            id: "inner".into(),
            kind: Kind::Group,
        }],
        ..MemberDelta::default()
    };
    s.update(&t, &update(&g, g.clone(), inner)).await.unwrap();
    let m = s.members(&t, "g", None, 10).await.unwrap();
    assert_eq!(m[0].id, "inner");
    assert_eq!(m[0].kind, Kind::Group);
    assert_eq!(s.groups_of(&t, "inner").await.unwrap(), ["g"]);
}

#[tokio::test]
async fn member_only_changes_bump_the_version_and_honour_if_match() {
    let s = open().await;
    let t = tenant("t1");
    for id in ["u1", "u2"] {
        add_user(&s, &t, id).await;
    }
    s.create(&t, &group("g"), &[], &[member("u1")])
        .await
        .unwrap();

    let now = "2025-05-05T05:05:05Z";
    let g = s
        .update_members(&t, "g", &add(&["u2"]), None, now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (2, 2));
    assert_eq!(g.last_modified, now);
    assert_eq!(g.attrs["name"], "g");
    assert_eq!(s.get(&t, Kind::Group, "g").await.unwrap(), Some(g.clone()));

    // A no-op still makes a new version, like the embedded store. With
    // If-Match: one transaction (sent again without the no-op), then the
    // group read back.
    let (s, log) = logged(&s);
    log.take();
    let g = s
        .update_members(&t, "g", &add(&["u2"]), Some(2), now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (3, 2));
    assert_eq!(
        log.take(),
        ["TransactWriteItems", "TransactWriteItems", "GetItem"]
    );
    assert_eq!(s.get(&t, Kind::Group, "g").await.unwrap(), Some(g.clone()));

    let err = s
        .update_members(&t, "g", &add(&["u2"]), Some(2), now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::VersionMismatch);

    // Without: the cancelled transaction leaves nothing to send, then the
    // group's UpdateItem.
    log.take();
    let g = s
        .update_members(&t, "g", &add(&["u1"]), None, now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (4, 2));
    assert_eq!(log.take(), ["TransactWriteItems", "UpdateItem"]);
    // An empty change is the UpdateItem alone.
    let g = s
        .update_members(&t, "g", &MemberDelta::default(), None, now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (5, 2));
    assert_eq!(log.take(), ["UpdateItem"]);
    let err = s
        .update_members(&t, "nope", &add(&["u2"]), None, now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    let err = s
        .update_members(&t, "nope", &add(&["u2"]), Some(1), now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    // A user is not a group.
    let err = s
        .update_members(&t, "u1", &add(&["u2"]), None, now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    assert_eq!(s.get(&t, Kind::Group, "nope").await.unwrap(), None);
    assert!(s.members(&t, "nope", None, 10).await.unwrap().is_empty());
    let err = s
        .update_members(&t, "g", &add(&["ghost"]), None, now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::MemberNotFound("ghost".into()));
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (5, 2));
    assert_eq!(member_ids(&s, &t, "g").await, ["u1", "u2"]);
}

#[tokio::test]
async fn member_changes_of_a_missing_group_are_not_found_and_leave_nothing() {
    let s = open().await;
    let t = tenant("t1");
    for id in ["u1", "u2", "u3"] {
        add_user(&s, &t, id).await;
    }
    s.create(&t, &group("g"), &[], &[member("u1")])
        .await
        .unwrap();
    s.delete(&t, Kind::Group, "g", None).await.unwrap();
    assert!(memberships_of_group(&s, &t, "g").await.is_empty());
    let (s, log) = logged(&s);
    let now = "2025-01-01T00:00:00Z";

    // As if the group were deleted between the membership transaction and
    // the group's update: the memberships are written, the update finds no
    // group, and they are deleted again.
    log.take();
    let err = s
        .update_members(&t, "g", &add(&["u2", "u3"]), None, now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    assert_eq!(
        log.take(),
        ["TransactWriteItems", "UpdateItem", "BatchWriteItem"]
    );
    assert!(memberships_of_group(&s, &t, "g").await.is_empty());
    assert!(s.groups_of(&t, "u2").await.unwrap().is_empty());
    assert!(!s.is_member(&t, "g", "u3").await.unwrap());
    // The update did not leave a stub of the group behind.
    assert_eq!(s.get(&t, Kind::Group, "g").await.unwrap(), None);
    assert_eq!(s.get_many(&t, &["g".into()]).await.unwrap(), []);

    // Mixed with removes (no-ops here), and chunked: the same.
    let many = seed_users(&s, &t, "m", 40).await;
    let delta = MemberDelta {
        add: many.iter().map(|id| member(id)).collect(),
        remove: vec!["u1".into()],
        clear: false,
    };
    let err = s
        .update_members(&t, "g", &delta, None, now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    assert!(memberships_of_group(&s, &t, "g").await.is_empty());
    assert!(s.groups_of(&t, "m00039").await.unwrap().is_empty());

    // A group that never existed outranks a member that does not either.
    let err = s
        .update_members(&t, "nope", &add(&["ghost"]), None, now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    // A user is not a group: nothing is left under its id either.
    let err = s
        .update_members(&t, "u1", &add(&["u2", "u1"]), None, now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    assert!(memberships_of_group(&s, &t, "u1").await.is_empty());
    assert!(s.groups_of(&t, "u1").await.unwrap().is_empty());
    let u1 = s.get(&t, Kind::User, "u1").await.unwrap().unwrap();
    assert_eq!(u1.version, 1);

    // With If-Match it stays one conditional transaction: nothing written.
    let err = s
        .update_members(&t, "g", &add(&["u2"]), Some(2), now)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    assert!(memberships_of_group(&s, &t, "g").await.is_empty());
}

#[tokio::test]
async fn simultaneous_single_member_adds_to_one_group_all_count() {
    // The emulator serves one request at a time: 100 requests queue there,
    // so the attempt timeout is raised (a timed-out attempt may still be
    // served, which would test the emulator's queue, not the store).
    let timing = Timing {
        budget: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(10),
        attempt_timeout: Duration::from_secs(60),
    };
    let s = open_with(timing).await;
    let t = tenant("t1");
    s.create(&t, &group("g"), &[], &[]).await.unwrap();
    let users = seed_users(&s, &t, "u", 100).await;
    let before = s.calls();
    let tasks: Vec<_> = users
        .iter()
        .map(|id| {
            let (s, t, id) = (s.clone(), t.clone(), id.clone());
            tokio::spawn(async move {
                s.update_members(&t, "g", &add(&[id.as_str()]), None, "2025-01-01T00:00:00Z")
                    .await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in futures::future::join_all(tasks).await {
        versions.push(task.unwrap().unwrap().version);
    }
    // Each answer is the group as its own update left it.
    versions.sort_unstable();
    assert_eq!(versions, (2..=101).collect::<Vec<u64>>());
    assert_eq!(s.calls() - before, 200);
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (101, 100));
    assert_eq!(member_ids(&s, &t, "g").await, users);
    assert_eq!(s.groups_of(&t, "u00042").await.unwrap(), ["g"]);
}

#[tokio::test]
async fn members_page_in_id_order() {
    let s = open().await;
    let t = tenant("t1");
    for id in ["c", "a", "e", "b", "d"] {
        add_user(&s, &t, id).await;
    }
    let all: Vec<MemberRef> = ["e", "d", "c", "b", "a"]
        .iter()
        .map(|i| member(i))
        .collect();
    s.create(&t, &group("g"), &[], &all).await.unwrap();
    let page = s.members(&t, "g", None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let page = s.members(&t, "g", Some("b"), 2).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["c", "d"]
    );
    let page = s.members(&t, "g", Some("d"), 2).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["e"]
    );
    assert!(s.members(&t, "g", Some("e"), 2).await.unwrap().is_empty());
    assert!(s.members(&t, "g", None, 0).await.unwrap().is_empty());
    assert!(s.members(&t, "other", None, 9).await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_member_rolls_back_the_whole_update() {
    let s = open().await;
    let t = tenant("t1");
    add_user(&s, &t, "u1").await;
    add_user(&s, &t, "u2").await;

    let err = s
        .create(&t, &group("bad"), &[], &[member("u1"), member("ghost")])
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::MemberNotFound("ghost".into()));
    assert_eq!(s.get(&t, Kind::Group, "bad").await.unwrap(), None);
    assert!(s.groups_of(&t, "u1").await.unwrap().is_empty());
    assert_eq!(s.count(&t, Kind::Group).await.unwrap(), 0);

    let g = group("g");
    s.create(&t, &g, &[name_key(&g)], &[member("u1")])
        .await
        .unwrap();
    let delta = MemberDelta {
        clear: true,
        remove: vec![],
        add: vec![member("u2"), member("ghost")],
    };
    let renamed = resource(Kind::Group, "g", "renamed");
    let err = s.update(&t, &update(&g, renamed, delta)).await.unwrap_err();
    assert_eq!(err, StoreError::MemberNotFound("ghost".into()));

    let mut expected = g.clone();
    expected.member_count = 1;
    assert_eq!(s.get(&t, Kind::Group, "g").await.unwrap(), Some(expected));
    assert_eq!(member_ids(&s, &t, "g").await, ["u1"]);
    assert_eq!(s.groups_of(&t, "u1").await.unwrap(), ["g"]);
    assert!(s.groups_of(&t, "u2").await.unwrap().is_empty());
    let old = s.find_by_key(&t, Kind::Group, &key("userName", "g")).await;
    assert!(old.unwrap().is_some());
    let new = s
        .find_by_key(&t, Kind::Group, &key("userName", "renamed"))
        .await;
    assert_eq!(new.unwrap(), None);

    // A member of the wrong kind does not exist either.
    let wrong = MemberDelta {
        add: vec![MemberRef {
            id: "u1".into(),
            kind: Kind::Group,
        }],
        ..MemberDelta::default()
    };
    let err = s
        .update_members(&t, "g", &wrong, None, "2025-01-01T00:00:00Z")
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::MemberNotFound("u1".into()));
}

#[tokio::test]
async fn deleting_a_user_removes_it_from_its_groups() {
    let s = open().await;
    let t = tenant("t1");
    add_user(&s, &t, "u1").await;
    add_user(&s, &t, "u2").await;
    for g in ["g1", "g2"] {
        let members = [member("u1"), member("u2")];
        s.create(&t, &group(g), &[], &members).await.unwrap();
    }

    assert_eq!(
        s.delete(&t, Kind::User, "u1", Some(2)).await.unwrap_err(),
        StoreError::VersionMismatch
    );
    assert_eq!(
        s.delete(&t, Kind::Group, "u1", None).await.unwrap_err(),
        StoreError::NotFound
    );
    s.delete(&t, Kind::User, "u1", Some(1)).await.unwrap();

    assert_eq!(s.get(&t, Kind::User, "u1").await.unwrap(), None);
    assert_eq!(s.count(&t, Kind::User).await.unwrap(), 1);
    assert!(s.groups_of(&t, "u1").await.unwrap().is_empty());
    for id in ["g1", "g2"] {
        let g = s.get(&t, Kind::Group, id).await.unwrap().unwrap();
        assert_eq!((g.version, g.member_count), (2, 1));
        assert_ne!(g.last_modified, "2024-01-01T00:00:00Z");
        assert!(time::OffsetDateTime::parse(&g.last_modified, &Rfc3339).is_ok());
        assert_eq!(member_ids(&s, &t, id).await, ["u2"]);
    }
    let freed = s.find_by_key(&t, Kind::User, &key("userName", "u1")).await;
    assert_eq!(freed.unwrap(), None);
    assert_eq!(
        s.delete(&t, Kind::User, "u1", None).await.unwrap_err(),
        StoreError::NotFound
    );
    // The id is free again too.
    add_user(&s, &t, "u1").await;
    assert!(s.groups_of(&t, "u1").await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_a_group_clears_both_directions() {
    let s = open().await;
    let t = tenant("t1");
    add_user(&s, &t, "u1").await;
    let members = [member("u1")];
    s.create(&t, &group("g1"), &[], &members).await.unwrap();
    s.create(&t, &group("g2"), &[], &members).await.unwrap();
    // g1 is itself a member of g2.
    let g2 = s.get(&t, Kind::Group, "g2").await.unwrap().unwrap();
    let nested = MemberDelta {
        add: vec![MemberRef {
            id: "g1".into(),
            kind: Kind::Group,
        }],
        ..MemberDelta::default()
    };
    s.update(&t, &update(&g2, g2.clone(), nested))
        .await
        .unwrap();

    s.delete(&t, Kind::Group, "g1", None).await.unwrap();
    assert_eq!(s.groups_of(&t, "u1").await.unwrap(), ["g2"]);
    assert!(s.members(&t, "g1", None, 10).await.unwrap().is_empty());
    assert!(!s.is_member(&t, "g1", "u1").await.unwrap());
    let g2 = s.get(&t, Kind::Group, "g2").await.unwrap().unwrap();
    assert_eq!((g2.version, g2.member_count), (3, 1));
    assert_eq!(member_ids(&s, &t, "g2").await, ["u1"]);
    assert_eq!(s.count(&t, Kind::Group).await.unwrap(), 1);

    // A re-created group with the same id starts empty.
    s.create(&t, &group("g1"), &[], &[]).await.unwrap();
    assert!(s.members(&t, "g1", None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn tenants_are_isolated() {
    let s = open().await;
    let (a, b) = (tenant("a"), tenant("b"));
    add_user(&s, &a, "u1").await;
    s.create(&a, &group("g"), &[], &[member("u1")])
        .await
        .unwrap();

    // The same id and key in another tenant do not collide...
    let other = resource(Kind::User, "u1", "u1");
    s.create(&b, &other, &[name_key(&other)], &[])
        .await
        .unwrap();
    // ...and a member must exist in the group's own tenant.
    add_user(&s, &a, "only-a").await;
    let err = s
        .create(&b, &group("g"), &[], &[member("only-a")])
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::MemberNotFound("only-a".into()));
    s.create(&b, &group("g"), &[], &[]).await.unwrap();

    assert_eq!(s.count(&a, Kind::User).await.unwrap(), 2);
    assert_eq!(s.count(&b, Kind::User).await.unwrap(), 1);
    assert_eq!(s.get(&b, Kind::User, "only-a").await.unwrap(), None);
    assert!(s.get_many(&b, &["only-a".into()]).await.unwrap().is_empty());
    let k = key("userName", "only-a");
    assert_eq!(s.find_by_key(&b, Kind::User, &k).await.unwrap(), None);
    assert_eq!(
        ids(&s.list(&b, Kind::User, None, 10).await.unwrap()),
        ["u1"]
    );
    assert!(s.members(&b, "g", None, 10).await.unwrap().is_empty());
    assert!(!s.is_member(&b, "g", "u1").await.unwrap());
    assert!(s.groups_of(&b, "u1").await.unwrap().is_empty());

    // Ids shaped like other keys stay inside their tenant.
    for hostile in ["#", "x#M#u1", "u1#G#g", "../a", "R#User#u1"] {
        assert_eq!(s.get(&b, Kind::User, hostile).await.unwrap(), None);
        assert!(s.groups_of(&b, hostile).await.unwrap().is_empty());
        assert!(s.members(&b, hostile, None, 10).await.unwrap().is_empty());
        assert_eq!(
            s.delete(&b, Kind::User, hostile, None).await.unwrap_err(),
            StoreError::NotFound
        );
    }
    let sneaky = resource(Kind::User, "a#R#User#u9", "u9");
    s.create(&b, &sneaky, &[name_key(&sneaky)], &[])
        .await
        .unwrap();
    assert_eq!(s.get(&a, Kind::User, "u9").await.unwrap(), None);
    assert_eq!(s.count(&a, Kind::User).await.unwrap(), 2);

    // Deleting in one tenant leaves the other alone.
    s.delete(&b, Kind::User, "u1", None).await.unwrap();
    assert!(s.get(&a, Kind::User, "u1").await.unwrap().is_some());
    assert_eq!(s.groups_of(&a, "u1").await.unwrap(), ["g"]);
    let g = s.get(&a, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (1, 1));
}

#[tokio::test]
async fn list_pages_in_id_order() {
    let s = open().await;
    let t = tenant("t1");
    for id in ["d", "b", "e", "a", "c"] {
        add_user(&s, &t, id).await;
    }
    // Neighbours in key order that must not show up.
    s.create(&t, &group("aa"), &[], &[]).await.unwrap();
    add_user(&s, &tenant("t0"), "z").await;
    add_user(&s, &tenant("t2"), "0").await;
    add_user(&s, &tenant("t1-x"), "0").await;

    let all = s.list(&t, Kind::User, None, 100).await.unwrap();
    assert_eq!(ids(&all), ["a", "b", "c", "d", "e"]);
    let page = s.list(&t, Kind::User, None, 2).await.unwrap();
    assert_eq!(ids(&page), ["a", "b"]);
    let page = s.list(&t, Kind::User, Some("b"), 2).await.unwrap();
    assert_eq!(ids(&page), ["c", "d"]);
    // `after` need not be an existing id.
    let page = s.list(&t, Kind::User, Some("cc"), 10).await.unwrap();
    assert_eq!(ids(&page), ["d", "e"]);
    assert!(
        s.list(&t, Kind::User, Some("e"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.list(&t, Kind::User, None, 0).await.unwrap().is_empty());
    // Even one too long to be a key.
    let long = format!("c{}", "z".repeat(3000));
    let page = s.list(&t, Kind::User, Some(&long), 10).await.unwrap();
    assert_eq!(ids(&page), ["d", "e"]);
    assert!(
        s.members(&t, "g", Some(&long), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let page = s.list_at(&t, Kind::User, 0, 2).await.unwrap();
    assert_eq!(ids(&page), ["a", "b"]);
    let page = s.list_at(&t, Kind::User, 3, 10).await.unwrap();
    assert_eq!(ids(&page), ["d", "e"]);
    assert!(s.list_at(&t, Kind::User, 5, 10).await.unwrap().is_empty());
    assert!(s.list_at(&t, Kind::User, 1, 0).await.unwrap().is_empty());
    let groups = s.list_at(&t, Kind::Group, 0, 10).await.unwrap();
    assert_eq!(ids(&groups), ["aa"]);
}

#[tokio::test]
async fn sequential_index_pages_resume_from_bookmarks() {
    let s = open().await;
    let t = tenant("t1");
    let mut all = Vec::new();
    for i in 0..25 {
        all.push(add_user(&s, &t, &format!("u{i:02}")).await.id);
    }
    let want = |r: std::ops::Range<usize>| all[r].to_vec();
    let got = |v: Vec<StoredResource>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();

    // First page: one Query, then the bookmark for the next.
    let (page, calls) = cost(&s, s.list_at(&t, Kind::User, 0, 10)).await;
    assert_eq!((got(page.unwrap()), calls), (want(0..10), 2));
    let (page, calls) = cost(&s, s.list_at(&t, Kind::User, 10, 10)).await;
    assert_eq!((got(page.unwrap()), calls), (want(10..20), 3));
    // The third page reads its bookmark and one page, not three pages;
    // a short page leaves no bookmark behind.
    let (page, calls) = cost(&s, s.list_at(&t, Kind::User, 20, 10)).await;
    assert_eq!((got(page.unwrap()), calls), (want(20..25), 2));

    // An offset between bookmarks continues from the nearest one below.
    let (page, calls) = cost(&s, s.list_at(&t, Kind::User, 13, 3)).await;
    assert_eq!((got(page.unwrap()), calls), (want(13..16), 3));
    // With no bookmark below, it reads from the start.
    let page = s.list_at(&t, Kind::User, 7, 2).await.unwrap();
    assert_eq!(got(page), want(7..9));

    // An expired bookmark is ignored, even before TTL removes it.
    let mut stale = keys::key(tenant_pk(&t), bookmark_sk(Kind::User, 22));
    stale.insert(AFTER.into(), keys::s("u00"));
    stale.insert(EXPIRES_AT.into(), keys::n(1));
    s.put_item(stale).await.unwrap();
    let page = s.list_at(&t, Kind::User, 22, 2).await.unwrap();
    assert_eq!(got(page), want(22..24));
}

#[tokio::test]
async fn tenant_records_upsert() {
    let s = open().await;
    let t = tenant("acme");
    assert_eq!(s.get_tenant(&t).await.unwrap(), None);
    let mut rec = TenantRecord {
        id: t.clone(),
        token_sha256: "aa".into(),
        created: "2024-01-01T00:00:00Z".into(),
    };
    s.put_tenant(&rec).await.unwrap();
    rec.token_sha256 = "bb".into();
    s.put_tenant(&rec).await.unwrap();
    assert_eq!(s.get_tenant(&t).await.unwrap(), Some(rec));
    assert_eq!(s.get_tenant(&tenant("other")).await.unwrap(), None);
}

#[tokio::test]
async fn concurrent_writers_do_not_lose_updates() {
    let s = open().await;
    let t = tenant("t1");
    s.create(&t, &group("g"), &[], &[]).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (s, t) = (s.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let u = user(&format!("u{i:02}"));
            s.create(&t, &u, &[name_key(&u)], &[]).await?;
            s.update_members(
                &t,
                "g",
                &add(&[u.id.as_str()]),
                None,
                "2025-01-01T00:00:00Z",
            )
            .await
        }));
    }
    for task in futures::future::join_all(tasks).await {
        task.unwrap().unwrap();
    }
    assert_eq!(s.count(&t, Kind::User).await.unwrap(), 16);
    assert_eq!(s.list(&t, Kind::User, None, 100).await.unwrap().len(), 16);
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (17, 16));
    assert_eq!(member_ids(&s, &t, "g").await.len(), 16);
}

#[tokio::test]
async fn one_member_costs_the_same_in_a_small_and_a_large_group() {
    let s = open().await;
    let t = tenant("t1");
    let (s, log) = logged(&s);
    let mut costs = Vec::new();
    for (g, size) in [("small", 10), ("large", 1000)] {
        s.create(&t, &group(g), &[], &[]).await.unwrap();
        seed_members(&s, &t, g, &format!("{g}-"), size).await;
        let newcomer = format!("{g}-new");
        add_user(&s, &t, &newcomer).await;
        let now = "2025-01-01T00:00:00Z";

        // PATCH add: the memberships in one transaction without the group
        // item, then one UpdateItem of the group, which returns it: no
        // read-back.
        log.take();
        let (g_new, add_calls) = cost(
            &s,
            s.update_members(&t, g, &add(&[newcomer.as_str()]), None, now),
        )
        .await;
        let g_new = g_new.unwrap();
        assert_eq!(g_new.member_count, size as u64 + 1);
        assert_eq!(log.take(), ["TransactWriteItems", "UpdateItem"]);
        assert_eq!(s.get(&t, Kind::Group, g).await.unwrap(), Some(g_new));
        log.take();
        // PATCH remove: the same.
        let remove = MemberDelta {
            remove: vec![newcomer.clone()],
            ..MemberDelta::default()
        };
        let (g_new, remove_calls) = cost(&s, s.update_members(&t, g, &remove, None, now)).await;
        let g_new = g_new.unwrap();
        assert_eq!(g_new.member_count, size as u64);
        assert_eq!(log.take(), ["TransactWriteItems", "UpdateItem"]);
        // An attribute change with one member: one transaction.
        let (r, update_calls) = cost(
            &s,
            s.update(
                &t,
                &update(&g_new, g_new.clone(), add(&[newcomer.as_str()])),
            ),
        )
        .await;
        r.unwrap();
        // Deleting a member: its groups, then one transaction, then a check.
        let (r, delete_calls) = cost(&s, s.delete(&t, Kind::User, &newcomer, None)).await;
        r.unwrap();
        let (r, member_calls) = cost(&s, s.is_member(&t, g, "small-00003")).await;
        assert_eq!(r.unwrap(), g == "small");
        costs.push((
            add_calls,
            remove_calls,
            update_calls,
            delete_calls,
            member_calls,
        ));
        let g_now = s.get(&t, Kind::Group, g).await.unwrap().unwrap();
        assert_eq!(g_now.member_count, size as u64);
    }
    assert_eq!(costs[0], (2, 2, 1, 4, 1));
    assert_eq!(costs[0], costs[1]);
}

#[tokio::test]
async fn each_lookup_is_one_call() {
    let s = open().await;
    let t = tenant("t1");
    let u = add_user(&s, &t, "u1").await;
    s.create(&t, &group("g"), &[key("displayName", "g")], &[member("u1")])
        .await
        .unwrap();
    let k = name_key(&u);
    assert_eq!(cost(&s, s.get(&t, Kind::User, "u1")).await.1, 1);
    // The marker, then the resource.
    assert_eq!(cost(&s, s.find_by_key(&t, Kind::User, &k)).await.1, 2);
    assert_eq!(cost(&s, s.count(&t, Kind::User)).await.1, 1);
    assert_eq!(cost(&s, s.groups_of(&t, "u1")).await.1, 1);
    assert_eq!(cost(&s, s.members(&t, "g", None, 100)).await.1, 1);
    assert_eq!(cost(&s, s.list(&t, Kind::User, None, 100)).await.1, 1);
    let many: Vec<String> = (0..50).map(|i| format!("x{i}")).collect();
    assert_eq!(cost(&s, s.get_many(&t, &many)).await.1, 1);
    let many: Vec<String> = (0..120).map(|i| format!("x{i}")).collect();
    assert_eq!(cost(&s, s.get_many(&t, &many)).await.1, 3);
    let u2 = user("u2");
    assert_eq!(
        cost(&s, s.create(&t, &u2, &[name_key(&u2)], &[])).await.1,
        1
    );
    let r = update(
        &u,
        resource(Kind::User, "u1", "renamed"),
        MemberDelta::default(),
    );
    assert_eq!(cost(&s, s.update(&t, &r)).await.1, 1);
}

#[tokio::test]
async fn big_membership_changes_are_chunked_and_counted() {
    let s = open().await;
    let t = tenant("t1");
    let users: Vec<String> = (0..150).map(|i| format!("u{i:03}")).collect();
    for id in &users {
        add_user(&s, &t, id).await;
    }
    let refs: Vec<MemberRef> = users.iter().map(|u| member(u)).collect();

    // 150 adds need several transactions; all land and are counted once.
    let (r, calls) = cost(&s, s.create(&t, &group("g"), &[], &refs)).await;
    r.unwrap();
    assert!((5..=7).contains(&calls), "{calls} calls");
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (1, 150));
    assert_eq!(member_ids(&s, &t, "g").await, users);
    assert_eq!(s.groups_of(&t, "u149").await.unwrap(), ["g"]);

    // Replace with an overlapping list: only the difference is written.
    let keep: Vec<MemberRef> = refs[100..].to_vec();
    let replace = MemberDelta {
        clear: true,
        remove: Vec::new(),
        add: keep.clone(),
    };
    let g = s
        .update_members(&t, "g", &replace, None, "2025-01-01T00:00:00Z")
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (2, 50));
    assert_eq!(member_ids(&s, &t, "g").await, &users[100..]);
    assert!(s.groups_of(&t, "u000").await.unwrap().is_empty());

    // A user in more groups than one transaction can leave at once.
    let mut groups = Vec::new();
    for i in 0..40 {
        let id = format!("h{i:02}");
        s.create(&t, &group(&id), &[], &[member("u120")])
            .await
            .unwrap();
        groups.push(id);
    }
    s.delete(&t, Kind::User, "u120", None).await.unwrap();
    assert!(s.groups_of(&t, "u120").await.unwrap().is_empty());
    for id in &groups {
        let h = s.get(&t, Kind::Group, id).await.unwrap().unwrap();
        assert_eq!((h.version, h.member_count), (2, 0));
    }
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!(g.member_count, 49);

    // A group with more members than one transaction can drop at once.
    s.delete(&t, Kind::Group, "g", None).await.unwrap();
    assert!(s.members(&t, "g", None, 1000).await.unwrap().is_empty());
    assert!(s.groups_of(&t, "u149").await.unwrap().is_empty());
    assert_eq!(s.count(&t, Kind::Group).await.unwrap(), 40);
}

#[tokio::test]
async fn a_retried_delete_finishes_an_interrupted_cleanup() {
    let s = open().await;
    let t = tenant("t1");
    add_user(&s, &t, "u1").await;
    s.create(&t, &group("g"), &[], &[member("u1")])
        .await
        .unwrap();
    // As if a delete of u1 stopped right after its first transaction
    // removed the resource but not its membership.
    s.client
        .delete_item()
        .table_name(s.table())
        .set_key(Some(keys::key(
            tenant_pk(&t),
            resource_sk(Kind::User, "u1"),
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.delete(&t, Kind::User, "u1", None).await.unwrap_err(),
        StoreError::NotFound
    );
    assert!(s.groups_of(&t, "u1").await.unwrap().is_empty());
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count), (2, 0));
    assert!(member_ids(&s, &t, "g").await.is_empty());
}

/// A stand-in for DynamoDB on a loopback port that answers each request
/// with the next of `replies` (status, JSON body), repeating the last one.
fn fake_dynamodb(replies: &[(u16, &'static str)]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let replies = Arc::new(Mutex::new(replies.iter().copied().collect::<VecDeque<_>>()));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let replies = Arc::clone(&replies);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    let (status, body) = {
                        let mut q = replies.lock().unwrap();
                        if q.len() > 1 {
                            q.pop_front()
                        } else {
                            q.front().copied()
                        }
                        .unwrap()
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} Reply\r\ncontent-type: application/x-amz-json-1.0\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

async fn store_at(endpoint: String, budget: Duration) -> DynamoStore {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let mut s = DynamoStore::from_conf(&conf, "fake");
    s.budget = budget;
    s
}

const THROTTLED: (u16, &str) = (
    400,
    r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"slow down"}"#,
);
const INTERNAL: (u16, &str) = (
    500,
    r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"oops"}"#,
);
const CONFLICT: (u16, &str) = (
    400,
    r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"cancelled","CancellationReasons":[{"Code":"None"},{"Code":"TransactionConflict"},{"Code":"None"}]}"#,
);
const OK: (u16, &str) = (200, "{}");

#[tokio::test]
async fn transient_faults_are_retried_within_the_budget() {
    let t = tenant("t");
    let s = store_at(
        fake_dynamodb(&[THROTTLED, INTERNAL, THROTTLED, OK]),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(s.get(&t, Kind::User, "u").await.unwrap(), None);
    assert_eq!(s.calls(), 4);

    // A transaction cancelled by contention alone is sent again.
    let s = store_at(fake_dynamodb(&[CONFLICT, OK]), Duration::from_secs(2)).await;
    let u = user("u");
    s.create(&t, &u, &[], &[]).await.unwrap();
    assert_eq!(s.calls(), 2);
}

#[tokio::test]
async fn a_group_update_racing_a_transaction_is_retried() {
    // DynamoDB rejects a plain write to an item that an ongoing transaction
    // holds with TransactionConflictException: "not now", so retried.
    const PLAIN_CONFLICT: (u16, &str) = (
        400,
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionConflictException","message":"busy"}"#,
    );
    let t = tenant("t");
    let mut g = group("g");
    g.version = 2;
    g.member_count = 1;
    g.last_modified = "2025-01-01T00:00:00Z".into();
    let doc = serde_json::to_string(&g).unwrap();
    let updated = json!({"Attributes": {
        "PK": {"S": "T#t"},
        "SK": {"S": "R#Group#g"},
        "doc": {"S": doc},
        "ver": {"N": "2"},
        "mc": {"N": "1"},
        "lm": {"S": "2025-01-01T00:00:00Z"},
    }})
    .to_string();
    let updated: &'static str = Box::leak(updated.into_boxed_str());
    let s = store_at(
        fake_dynamodb(&[OK, PLAIN_CONFLICT, PLAIN_CONFLICT, (200, updated)]),
        Duration::from_secs(2),
    )
    .await;
    let (s, log) = logged(&s);
    let got = s
        .update_members(&t, "g", &add(&["u"]), None, "2025-01-01T00:00:00Z")
        .await
        .unwrap();
    assert_eq!(got, g);
    assert_eq!(
        log.take(),
        [
            "TransactWriteItems",
            "UpdateItem",
            "UpdateItem",
            "UpdateItem"
        ]
    );
}

#[tokio::test]
async fn throttling_beyond_the_budget_is_unavailable() {
    let t = tenant("t");
    let budget = Duration::from_millis(300);
    for s in [
        store_at(fake_dynamodb(&[THROTTLED]), budget).await,
        store_at(fake_dynamodb(&[CONFLICT]), budget).await,
        // A port nobody listens on: every attempt is a dispatch failure.
        store_at(
            format!(
                "http://127.0.0.1:{}",
                TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .unwrap()
                    .port()
            ),
            budget,
        )
        .await,
    ] {
        let started = std::time::Instant::now();
        let err = s.create(&t, &user("u"), &[], &[]).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(s.calls() > 1, "retried: {} calls", s.calls());
    }
}
