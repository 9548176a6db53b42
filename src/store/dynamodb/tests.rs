//! The store contract (`store::contract`), run against DynamoDB's emulator
//! (moto), plus what only this store has: call counts, chunking, bookmarks,
//! cleanup, retries.
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
use serde_json::json;

use super::*;
use crate::store::contract::{
    add, add_group, add_user, group, key, member, member_ids, name_key, resource, tenant, update,
    user,
};

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
            // The project's launcher (one request at a time, like
            // scripts/test.sh uses): moto's threaded server races on
            // transactions and would make these tests flaky.
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

/// The emulator serves one request at a time and the tests run in
/// parallel, so a call may queue behind another test's burst for seconds:
/// the Lambda-tuned 3 s attempt timeout would fail it on a busy machine.
/// The same limits as the HTTP harness; tests of the limits themselves use
/// `store_at`.
const EMULATOR: Timing = Timing {
    budget: Duration::from_secs(60),
    connect_timeout: Duration::from_secs(10),
    attempt_timeout: Duration::from_secs(60),
};

async fn open() -> DynamoStore {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let table = format!("scim-test-{}", uuid::Uuid::new_v4());
    let store = DynamoStore::with_timing(&conf, table.clone(), EMULATOR);
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml");
    create_table_from_template(store.client(), &template, &table)
        .await
        .unwrap();
    store
}

crate::store::contract::store_contract_tests!(open);

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
async fn member_only_changes_send_the_fewest_calls() {
    let s = open().await;
    let t = tenant("t1");
    for id in ["u1", "u2"] {
        add_user(&s, &t, id).await;
    }
    s.create(&t, &group("g"), &[], &[member("u1"), member("u2")])
        .await
        .unwrap();
    let (s, log) = logged(&s);
    let now = "2025-05-05T05:05:05Z";

    // With If-Match: one transaction (sent again without the no-op), then
    // the group read back.
    log.take();
    let g = s
        .update_members(&t, "g", &add(&["u2"]), Some(1), now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (2, 2));
    assert_eq!(
        log.take(),
        ["TransactWriteItems", "TransactWriteItems", "GetItem"]
    );

    // Without: the cancelled transaction leaves nothing to send, then the
    // group's UpdateItem.
    let g = s
        .update_members(&t, "g", &add(&["u1"]), None, now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (3, 2));
    assert_eq!(log.take(), ["TransactWriteItems", "UpdateItem"]);
    // An empty change is the UpdateItem alone.
    let g = s
        .update_members(&t, "g", &MemberDelta::default(), None, now)
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count), (4, 2));
    assert_eq!(log.take(), ["UpdateItem"]);
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
    // 100 requests queue at the emulator: a timed-out attempt may still be
    // served, which would test the emulator's queue, not the store.
    let s = open().await;
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

/// Unlike the embedded store, which records the stored kind whatever the
/// caller says.
#[tokio::test]
async fn a_member_of_the_wrong_kind_does_not_exist() {
    let s = open().await;
    let t = tenant("t1");
    add_user(&s, &t, "u1").await;
    s.create(&t, &group("g"), &[], &[member("u1")])
        .await
        .unwrap();
    let err = s
        .update_members(&t, "g", &add_group("u1"), None, "2025-01-01T00:00:00Z")
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::MemberNotFound("u1".into()));
}

#[tokio::test]
async fn ids_shaped_like_keys_stay_inside_their_tenant() {
    let s = open().await;
    let (a, b) = (tenant("a"), tenant("b"));
    for id in ["u1", "only-a"] {
        add_user(&s, &a, id).await;
    }
    s.create(&a, &group("g"), &[], &[member("u1")])
        .await
        .unwrap();
    add_user(&s, &b, "u1").await;
    s.create(&b, &group("g"), &[], &[]).await.unwrap();

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
    // The first transaction marked the group settling; the last chunk in,
    // the mark is gone.
    assert!(!g.settling);
    assert!(!group_item(&s, &t, "g").await.contains_key(MW));

    // The same with If-Match, the other chunked writer.
    let more: Vec<String> = users[..100].to_vec();
    let removal = MemberDelta {
        remove: more,
        ..MemberDelta::default()
    };
    let (logging, log) = logged(&s);
    let g = logging
        .update_members(&t, "g", &removal, Some(1), "2025-01-01T00:00:00Z")
        .await
        .unwrap();
    assert_eq!((g.version, g.member_count, g.settling), (2, 50, false));
    // Chunks, then the mark's removal, then the group read back.
    let ops = log.take();
    assert!(ops.iter().filter(|o| *o == "TransactWriteItems").count() > 1);
    assert_eq!(ops[ops.len() - 2..], ["UpdateItem", "GetItem"], "{ops:?}");
    assert!(!group_item(&s, &t, "g").await.contains_key(MW));
    s.update_members(
        &t,
        "g",
        &add(&users[..100].iter().map(String::as_str).collect::<Vec<_>>()),
        Some(2),
        "2025-01-01T00:00:00Z",
    )
    .await
    .unwrap();
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
    assert_eq!((g.version, g.member_count), (4, 50));
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

/// The group's item as stored.
async fn group_item(s: &DynamoStore, t: &TenantId, id: &str) -> Item {
    s.client()
        .get_item()
        .table_name(s.table.as_ref())
        .set_key(Some(keys::key(tenant_pk(t), resource_sk(Kind::Group, id))))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_default()
}

/// Read while a chunked change is written, a group whose member list is
/// partial always reads as settling (so no member count is cached from
/// it), and reads as settled once the change is complete.
#[tokio::test]
async fn a_group_read_between_chunks_is_settling() {
    let s = open().await;
    let t = tenant("t1");
    let users = seed_users(&s, &t, "u", 300).await;
    let refs: Vec<MemberRef> = users.iter().map(|u| member(u)).collect();
    s.create(&t, &group("g"), &[], &[]).await.unwrap();
    let update = MemberDelta {
        add: refs,
        ..MemberDelta::default()
    };
    let writer = {
        let (s, t) = (s.clone(), t.clone());
        tokio::spawn(async move {
            s.update_members(&t, "g", &update, Some(1), "2025-01-01T00:00:00Z")
                .await
        })
    };
    // The emulator serves one request at a time, so these reads fall
    // between the writer's transactions.
    let mut partial = 0;
    while !writer.is_finished() {
        let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
        if g.version == 2 && g.member_count < 300 {
            partial += 1;
            assert!(g.settling, "a partial member list, not settling: {g:?}");
        }
    }
    writer.await.unwrap().unwrap();
    println!("{partial} reads between chunks");
    assert!(partial > 0, "no read fell between the chunks");
    let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
    assert_eq!((g.version, g.member_count, g.settling), (2, 300, false));
}

/// A settling mark makes its group read as settling until its deadline;
/// a mark left by a writer that died between its chunks expires.
#[tokio::test]
async fn a_settling_mark_counts_until_its_deadline() {
    let s = open().await;
    let t = tenant("t1");
    s.create(&t, &group("g"), &[], &[]).await.unwrap();
    for (until, settling) in [(unix_now() + 60, true), (unix_now() - 1, false)] {
        s.client()
            .update_item()
            .table_name(s.table.as_ref())
            .set_key(Some(keys::key(
                tenant_pk(&t),
                resource_sk(Kind::Group, "g"),
            )))
            .update_expression("SET #mw = :mw")
            .expression_attribute_names("#mw", MW)
            .expression_attribute_values(":mw", n(until))
            .send()
            .await
            .unwrap();
        let g = s.get(&t, Kind::Group, "g").await.unwrap().unwrap();
        assert_eq!(g.settling, settling, "deadline {until}");
    }
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
