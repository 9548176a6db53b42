//! Load run against the local server: seeds N users, then measures
//! requests/s and latency of the operations IdPs use most.
//!
//! `cargo run --release --example load -- --users 10000 --seconds 10`
//!
//! It starts the release binary itself on a free loopback port with a
//! fresh data directory, and only ever sends traffic to 127.0.0.1. Every
//! loop is bounded by a request count and a deadline.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Clone)]
struct Args {
    /// Users to seed before measuring.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Server binary (defaults to target/release/scim-provisioning).
    #[arg(long, default_value = "target/release/scim-provisioning")]
    binary: String,
}

const TOKEN: &str = "load-test-token";
/// Hard cap per scenario, whatever the duration.
const MAX_REQUESTS: u64 = 2_000_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let mut child = Command::new(&args.binary)
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--demo-tenant",
            "load",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("SCIM_DEMO_TOKEN", TOKEN)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let addr = {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        loop {
            let line = lines.next().ok_or("server exited")??;
            if let Some(a) = line.strip_prefix("SCIM service listening on ") {
                std::thread::spawn(move || for _ in lines {});
                break a.trim().to_owned();
            }
        }
    };
    assert!(
        addr.starts_with("http://127.0.0.1:"),
        "load runs only against loopback"
    );
    let base = Arc::new(format!("{addr}/scim/v2/load"));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;

    // Seed.
    let started = Instant::now();
    let ids = Arc::new(seed(&client, &base, args.users, args.concurrency).await?);
    let seed_secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {} users in {:.1} s ({:.0} POST/s, concurrency {})",
        ids.len(),
        seed_secs,
        ids.len() as f64 / seed_secs,
        args.concurrency
    );
    let group = client
        .post(format!("{base}/Groups"))
        .bearer_auth(TOKEN)
        .json(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "load"}))
        .send()
        .await?
        .json::<Value>()
        .await?;
    let group_id = Arc::new(group["id"].as_str().ok_or("group id")?.to_owned());

    println!(
        "\n{:<34} {:>10} {:>10} {:>10} {:>8}",
        "scenario", "req/s", "p50 ms", "p99 ms", "errors"
    );
    let secs = Duration::from_secs(args.seconds);
    let n = ids.len();
    let sc = |name: &'static str| name;
    run(sc("GET /Users/{id}"), &client, &args, secs, {
        let (ids, base) = (ids.clone(), base.clone());
        move |c: &reqwest::Client, i: u64| c.get(format!("{base}/Users/{}", ids[i as usize % n]))
    })
    .await;
    run(sc("GET /Users?filter=userName eq"), &client, &args, secs, {
        let base = base.clone();
        move |c: &reqwest::Client, i: u64| {
            c.get(format!("{base}/Users")).query(&[(
                "filter",
                format!("userName eq \"user{}@example.com\"", i as usize % n),
            )])
        }
    })
    .await;
    run(
        sc("GET /Users?count=100 (list page)"),
        &client,
        &args,
        secs,
        {
            let base = base.clone();
            move |c: &reqwest::Client, i: u64| {
                let start = (i as usize * 100) % n.max(1) + 1;
                c.get(format!("{base}/Users"))
                    .query(&[("startIndex", start.to_string()), ("count", "100".into())])
            }
        },
    )
    .await;
    run(sc("PATCH /Users/{id} (replace)"), &client, &args, secs, {
        let (ids, base) = (ids.clone(), base.clone());
        move |c: &reqwest::Client, i: u64| {
            c.patch(format!("{base}/Users/{}", ids[i as usize % n]))
                .json(&json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "title", "value": format!("t{i}")}]
                }))
        }
    })
    .await;
    run(sc("PATCH /Groups/{id} (add member)"), &client, &args, secs, {
        let (ids, base, g) = (ids.clone(), base.clone(), group_id.clone());
        move |c: &reqwest::Client, i: u64| {
            c.patch(format!("{base}/Groups/{g}?excludedAttributes=members")).json(&json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": ids[i as usize % n]}]}]
            }))
        }
    })
    .await;
    let offset = n;
    run(sc("POST /Users"), &client, &args, secs, {
        let base = base.clone();
        move |c: &reqwest::Client, i: u64| {
            c.post(format!("{base}/Users"))
                .json(&user(offset + i as usize))
        }
    })
    .await;

    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

fn user(i: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("user{i}@example.com"),
        "name": {"givenName": "User", "familyName": format!("N{i}")},
        "emails": [{"value": format!("user{i}@example.com"), "type": "work", "primary": true}],
        "active": true,
    })
}

async fn seed(
    client: &reqwest::Client,
    base: &str,
    users: usize,
    concurrency: usize,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    use futures::StreamExt;
    let results: Vec<Result<String, String>> = futures::stream::iter(0..users)
        .map(|i| {
            let c = client.clone();
            let url = format!("{base}/Users");
            async move {
                let r = c
                    .post(url)
                    .bearer_auth(TOKEN)
                    .json(&user(i))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let v: Value = r.json().await.map_err(|e| e.to_string())?;
                v["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("no id: {v}"))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(Into::into)
}

async fn run<F>(name: &str, client: &reqwest::Client, args: &Args, dur: Duration, make: F)
where
    F: Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + dur;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (c, make, counter, errors) = (
            client.clone(),
            make.clone(),
            counter.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if i >= MAX_REQUESTS {
                    break;
                }
                let t = Instant::now();
                match make(&c, i).bearer_auth(TOKEN).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            all.extend(l);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    println!(
        "{:<34} {:>10.0} {:>10.2} {:>10.2} {:>8}",
        name,
        all.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        errors.load(Ordering::Relaxed)
    );
}
