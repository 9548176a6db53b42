//! The local server's first start, its printed credentials and admin key
//! file, and rotating the demo tenant's token with the admin CLI, through
//! the binary itself.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn create_then_get_user() {
    let s = TestServer::start().await;
    let created = s
        .post("/Users", user("alice@example.com"))
        .await
        .expect(201);
    assert_eq!(
        created.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    let id = created.id();
    assert_eq!(
        created.header("location"),
        Some(s.url(&format!("/Users/{id}")))
    );
    let got = s.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(got.body["userName"], json!("alice@example.com"));
    assert_eq!(got.body["meta"]["resourceType"], json!("User"));
}

/// Starts `serve` without a preset token; returns the process and its stdout
/// lines up to and including the credentials block.
fn start_plain(data: &Path) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scim-provisioning"))
        .args(["serve", "--port", "0", "--demo-tenant", "first"])
        .arg("--data-dir")
        .arg(data)
        .env_remove("SCIM_DEMO_TOKEN")
        .env_remove("SCIM_TENANTS")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let done = line.starts_with("Admin API:");
        seen.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, seen)
}

fn field<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
        .expect(prefix)
}

async fn status(url: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .request(Method::GET, url)
        .bearer_auth(token)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[tokio::test]
async fn first_start_prints_a_token_once_and_the_admin_cli_rotates_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    let (child, lines) = start_plain(&data);
    let tenant_url = field(&lines, "Tenant URL:").to_owned();
    let token = field(&lines, "Secret Token:").to_owned();
    assert!(
        scim_provisioning::credentials::secret::well_formed("scim_", &token),
        "{token}"
    );
    assert!(tenant_url.ends_with("/scim/v2/first"), "{tenant_url}");
    let users = format!("{tenant_url}/Users");
    assert_eq!(status(&users, &token).await, 200);
    assert_eq!(status(&users, "scim_wrong").await, 401);

    // The admin key is in a private file whose path (not the key) is printed.
    let key_file = data.join("admin.key");
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(scim_provisioning::credentials::secret::well_formed(
        "scimadm_", &key
    ));
    let admin_line = field(&lines, "Admin API:");
    assert!(
        admin_line.contains(&key_file.display().to_string()),
        "{admin_line}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(&key)),
        "admin key printed: {lines:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "admin.key mode {mode:o}");
    }
    stop(child);

    // Only a hash is at rest: the token appears nowhere in the data files.
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let bytes = std::fs::read(path).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "plaintext token stored"
        );
    }

    // A restart prints no token, keeps the old one valid and the same key.
    let (child, lines) = start_plain(&data);
    assert!(
        !field(&lines, "Secret Token:").starts_with("scim_"),
        "token printed twice: {lines:?}"
    );
    let tenant_url = field(&lines, "Tenant URL:").to_owned();
    let users = format!("{tenant_url}/Users");
    assert_eq!(status(&users, &token).await, 200);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);

    // The admin CLI creates new credentials on the running server: the old
    // token stops working at once; the email's link reveals the new one.
    let origin = tenant_url.trim_end_matches("/scim/v2/first");
    let out = Command::new(env!("CARGO_BIN_EXE_scim-provisioning"))
        .args([
            "admin",
            "--endpoint",
            origin,
            "credentials",
            "create",
            "first",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("admin CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        status(&users, &token).await,
        401,
        "the old token must stop working"
    );
    let outbox = data.join("outbox");
    let eml = std::fs::read_dir(&outbox)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let link = link_in(&std::fs::read_to_string(eml).unwrap());
    let page = reqwest::Client::new().post(&link).send().await.unwrap();
    let new_token = token_in(&page.text().await.unwrap()).expect("revealed token");
    assert_ne!(new_token, token);
    assert_eq!(status(&users, &new_token).await, 200);
    stop(child);
}

#[tokio::test]
async fn a_bad_demo_tenant_id_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scim-provisioning"))
        .args([
            "serve",
            "--port",
            "0",
            "--demo-tenant",
            "no/slashes",
            "--data-dir",
        ])
        .arg(tmp.path())
        .output()
        .expect("serve");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant id"));
}
