//! Deep index pages on the embedded store: the cost of `list_at` at the
//! end of a 20,000-user list against the first page.
//!
//! `cargo run --release --example deep_pages`
//!
//! Opens a fresh `EmbeddedStore` in a temporary directory, creates the
//! users through the `Store` trait (each create is its own fsynced write),
//! then times `list_at(0, 100)` and `list_at(users - 100, 100)` and prints
//! the medians and their ratio.

use std::time::{Duration, Instant};

use scim_provisioning::scim::model::{StoredResource, TenantId, UniqueKey};
use scim_provisioning::scim::schema::Kind;
use scim_provisioning::store::Store;
use scim_provisioning::store::embedded::EmbeddedStore;
use serde_json::{Map, json};

const USERS: u64 = 20_000;
const PAGE: usize = 100;
const REPETITIONS: usize = 300;

fn user(id: &str) -> StoredResource {
    let mut attrs = Map::new();
    attrs.insert("userName".into(), json!(id));
    StoredResource {
        product: Default::default(),
        id: id.into(),
        kind: Kind::User,
        version: 1,
        created: "2024-01-01T00:00:00Z".into(),
        last_modified: "2024-01-01T00:00:00Z".into(),
        attrs,
        member_count: 0,
        settling: false,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn time_page(
    s: &EmbeddedStore,
    t: &TenantId,
    offset: u64,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut times = Vec::with_capacity(REPETITIONS);
    for _ in 0..REPETITIONS {
        let start = Instant::now();
        let page = s.list_at(t, Kind::User, offset, PAGE).await?;
        times.push(start.elapsed());
        if page.len() != PAGE {
            return Err(format!("offset {offset}: {} resources", page.len()).into());
        }
    }
    Ok(median(times))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let s = EmbeddedStore::open(&dir.path().join("scim.redb"))?;
    let t = TenantId::parse("bench").ok_or("tenant id")?;
    let start = Instant::now();
    for i in 0..USERS {
        let id = format!("user-{i:06}");
        let key = UniqueKey {
            attr: "userName",
            value: id.clone(),
        };
        s.create(&t, &user(&id), &[key], &[]).await?;
    }
    println!(
        "created {USERS} users in {:.1} s (one fsynced write each)",
        start.elapsed().as_secs_f64()
    );
    // Warm the page cache for both ends before timing.
    time_page(&s, &t, 0).await?;
    time_page(&s, &t, USERS - PAGE as u64).await?;
    let first = time_page(&s, &t, 0).await?;
    let end = time_page(&s, &t, USERS - PAGE as u64).await?;
    println!(
        "list_at(0, {PAGE}): median {:.3} ms over {REPETITIONS}",
        first.as_secs_f64() * 1e3
    );
    println!(
        "list_at({}, {PAGE}): median {:.3} ms over {REPETITIONS}",
        USERS - PAGE as u64,
        end.as_secs_f64() * 1e3
    );
    println!(
        "ratio end/first: {:.2}",
        end.as_secs_f64() / first.as_secs_f64()
    );
    Ok(())
}
