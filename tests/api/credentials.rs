//! "Create New Credentials" end to end: the email, the one-time "Get Secret
//! Token" link, rotation on the very next request (also on a second warm
//! instance), all-or-nothing on a failed send, and nothing at rest or in
//! the logs that could give a token back. On the embedded store (outbox
//! files) and on DynamoDB + Secrets Manager + SES in the AWS emulator.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

pub(crate) async fn aws() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

pub(crate) async fn verify_sender(address: &str) {
    aws_sdk_ses::Client::new(&aws().await)
        .verify_email_identity()
        .email_address(address)
        .send()
        .await
        .unwrap();
}

/// Messages the emulator's SES accepted for `to`: (subject, body).
pub(crate) async fn sent_to(to: &str) -> Vec<(String, String)> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let data: Value = reqwest::get(format!("{endpoint}/moto-api/data.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|m| m["destinations"]["ToAddresses"][0] == json!(to))
        .map(|m| {
            (
                m["subject"].as_str().unwrap_or_default().to_owned(),
                m["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A server whose credentials live in Secrets Manager and whose mail goes
/// through SES, as deployed, on the emulator; `verified` decides whether
/// SES accepts the sender.
pub(crate) async fn aws_server(verified: bool) -> (TestServer, String) {
    let prefix = unique("scim-test/tenants/");
    let sender = format!("{}@sender.example", unique("scim-"));
    if verified {
        verify_sender(&sender).await;
    }
    let s = TestServer::start_with(
        Backend::DynamoDb,
        &[
            ("TENANT_SECRET_PREFIX", prefix.as_str()),
            ("SCIM_MAILER", "ses"),
            ("SENDER_EMAIL", sender.as_str()),
        ],
    )
    .await;
    (s, prefix)
}

/// Creates tenant `id` and credentials for it; returns the email's link
/// and the admin API answer.
pub(crate) async fn create_credentials(
    s: &TestServer,
    id: &str,
    admin_email: &str,
) -> (String, Value) {
    let before = s.outbox().len();
    let r = s
        .admin(Method::POST, &format!("/tenants/{id}/credentials"), None)
        .await
        .expect(201);
    let mail = match s.outbox().get(before) {
        Some(eml) => eml.clone(),
        None => sent_to(admin_email)
            .await
            .last()
            .map(|(_, body)| body.clone())
            .expect("an email, in the outbox or in SES"),
    };
    (link_in(&mail), r.body)
}

pub(crate) async fn reveal(s: &TestServer, link: &str) -> String {
    let (status, page) = s.page(Method::POST, link).await;
    assert_eq!(status, 200, "{page}");
    token_in(&page).expect("token on the revealed page")
}

pub(crate) async fn scim_status(s: &TestServer, tenant: &str, token: &str) -> u16 {
    let url = format!("{}/scim/v2/{tenant}/Users?count=1", s.origin);
    s.call_with(Method::GET, &url, token, None, &[])
        .await
        .status
}

#[tokio::test]
async fn new_credentials_are_emailed_and_the_link_reveals_the_token_once() {
    let s = TestServer::start().await;
    let email = format!("{}@acme.example", unique("it-"));
    s.create_tenant("initech", &email).await;
    let (link, answer) = create_credentials(&s, "initech", &email).await;

    // The answer names where the mail went and never holds a token.
    assert_eq!(answer["emailedTo"], json!(email));
    assert_eq!(
        answer["tenantUrl"],
        json!(format!("{}/scim/v2/initech", s.origin))
    );
    assert!(answer["revealExpiresAt"].is_string());
    assert!(!answer.to_string().contains("scim_"), "{answer}");

    // The email: to adminEmail, Tenant URL and link, no token.
    let eml = s.outbox().pop().expect("an .eml in the outbox");
    assert!(eml.contains(&format!("To: {email}")), "{eml}");
    assert!(eml.contains("Content-Type: multipart/alternative"), "{eml}");
    assert!(eml.contains("text/plain") && eml.contains("text/html"));
    assert!(eml.contains(&format!("{}/scim/v2/initech", s.origin)));
    assert!(
        link.starts_with(&format!("{}/credentials/initech.", s.origin)),
        "{link}"
    );
    assert!(!eml.contains("scim_"), "a token in the email: {eml}");

    // GET shows the page and consumes nothing, as often as it is opened.
    for _ in 0..3 {
        let (status, page) = s.page(Method::GET, &link).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("id=\"reveal\""), "{page}");
        assert!(page.contains(&format!("{}/scim/v2/initech", s.origin)));
        assert!(token_in(&page).is_none());
    }
    let head = s.client.head(&link).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let h = head.headers();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    // One POST reveals a well-formed token that works.
    let token = reveal(&s, &link).await;
    assert!(
        scim_provisioning::credentials::secret::well_formed("scim_", &token),
        "{token}"
    );
    assert_eq!(scim_status(&s, "initech", &token).await, 200);

    // Then the link is spent; a made-up one looks the same.
    let (again, used_page) = s.page(Method::POST, &link).await;
    let (get_after, _) = s.page(Method::GET, &link).await;
    let made_up = format!("{}/credentials/initech.{}", s.origin, "A".repeat(32));
    let (fake, fake_page) = s.page(Method::POST, &made_up).await;
    let (garbage, garbage_page) = s
        .page(Method::GET, &format!("{}/credentials/nonsense", s.origin))
        .await;
    assert_eq!((again, get_after, fake, garbage), (410, 410, 410, 410));
    assert_eq!(used_page, fake_page);
    assert_eq!(used_page, garbage_page);
    assert!(token_in(&used_page).is_none());

    let t = s
        .admin(Method::GET, "/tenants/initech", None)
        .await
        .expect(200);
    assert!(
        t.body["credentials"]["revealedAt"].is_string(),
        "{}",
        t.body
    );
}

#[tokio::test]
async fn creating_credentials_invalidates_the_earlier_token_on_the_next_request() {
    let s = TestServer::start().await;
    // The demo tenant's preset token works until an admin creates new ones.
    assert_eq!(scim_status(&s, TENANT, &s.token).await, 200);
    let (link, _) = create_credentials(&s, TENANT, "admin@example.com").await;
    assert_eq!(scim_status(&s, TENANT, &s.token).await, 401);
    let first = reveal(&s, &link).await;
    assert_eq!(scim_status(&s, TENANT, &first).await, 200);

    // Again: the first new token dies, and its unrevealed successor's link
    // is the only one that works; an older link never reveals again.
    let (second_link, _) = create_credentials(&s, TENANT, "admin@example.com").await;
    assert_eq!(scim_status(&s, TENANT, &first).await, 401);
    let (third_link, _) = create_credentials(&s, TENANT, "admin@example.com").await;
    let (stale, _) = s.page(Method::POST, &second_link).await;
    assert_eq!(stale, 410, "a link of a replaced credential revealed");
    let third = reveal(&s, &third_link).await;
    assert_eq!(scim_status(&s, TENANT, &third).await, 200);
    // The other tenant is untouched.
    assert_eq!(scim_status(&s, OTHER_TENANT, &s.other_token).await, 200);
}

#[tokio::test]
async fn a_failed_outbox_write_changes_nothing() {
    if backend() == Backend::DynamoDb {
        return; // the SES case above covers DynamoDB
    }
    let s = TestServer::start().await;
    // The outbox cannot be created: a file is in its way.
    std::fs::write(s.data_dir().join("outbox"), b"not a directory").unwrap();
    let before = s
        .admin(Method::GET, &format!("/tenants/{TENANT}"), None)
        .await
        .expect(200);
    s.admin(
        Method::POST,
        &format!("/tenants/{TENANT}/credentials"),
        None,
    )
    .await
    .expect_admin_error(503, "unavailable");
    assert_eq!(scim_status(&s, TENANT, &s.token).await, 200);
    let after = s
        .admin(Method::GET, &format!("/tenants/{TENANT}"), None)
        .await
        .expect(200);
    assert_eq!(before.body["credentials"], after.body["credentials"]);
}

#[tokio::test]
async fn twenty_concurrent_reveals_reveal_exactly_once() {
    let s = TestServer::start().await;
    let (link, _) = create_credentials(&s, TENANT, "admin@example.com").await;
    let posts = (0..20).map(|_| s.page(Method::POST, &link));
    let answers = futures::future::join_all(posts).await;
    let tokens: Vec<String> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .filter_map(|(_, page)| token_in(page))
        .collect();
    assert_eq!(
        tokens.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for (status, page) in &answers {
        assert!(
            *status == 200 || *status == 410 || *status == 429,
            "{status}"
        );
        if *status != 200 {
            assert!(token_in(page).is_none());
        }
    }
    assert_eq!(scim_status(&s, TENANT, &tokens[0]).await, 200);
}

#[tokio::test]
async fn an_expired_link_fails_like_a_used_one() {
    let s = TestServer::start_with(backend(), &[("REVEAL_TTL_SECS", "1")]).await;
    let (link, _) = create_credentials(&s, TENANT, "admin@example.com").await;
    let made_up = format!("{}/credentials/{TENANT}.{}", s.origin, "B".repeat(32));
    let (_, gone) = s.page(Method::GET, &made_up).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (get, get_page) = s.page(Method::GET, &link).await;
    let (post, post_page) = s.page(Method::POST, &link).await;
    assert_eq!((get, post), (410, 410));
    assert_eq!(get_page, gone);
    assert_eq!(post_page, gone);
    // Trying an expired link is recorded (once: the link goes with it).
    let trail = s
        .admin(
            Method::GET,
            &format!("/tenants/{TENANT}/audit?operation=credentials.link_expired"),
            None,
        )
        .await
        .expect(200);
    let records = trail.body["records"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(records.len(), 1, "{}", trail.body);
    assert_eq!(records[0]["actor"]["kind"], "link");
}

#[tokio::test]
async fn repeated_wrong_links_from_one_client_are_refused() {
    let s = TestServer::start_with(
        backend(),
        &[
            ("SCIM_REVEAL_FAILURE_BURST", "5"),
            ("SCIM_REVEAL_FAILURES_PER_MINUTE", "1"),
        ],
    )
    .await;
    let (link, _) = create_credentials(&s, TENANT, "admin@example.com").await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let wrong = format!("{}/credentials/{TENANT}.{:0>32}", s.origin, i);
        statuses.push(s.page(Method::GET, &wrong).await.0);
    }
    assert_eq!(statuses[..5], [410; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&c| c == 429), "{statuses:?}");
    // While refused, even a good link waits: guessing gains nothing.
    assert_eq!(s.page(Method::GET, &link).await.0, 429);
}

#[tokio::test]
async fn credentials_never_open_the_wrong_routes() {
    let s = TestServer::start().await;
    let key = s.admin_key();
    assert!(scim_provisioning::credentials::secret::well_formed(
        "scimadm_", &key
    ));
    // A tenant's token on another tenant's URL.
    assert_eq!(scim_status(&s, OTHER_TENANT, &s.token).await, 401);
    // The admin key on SCIM routes; a SCIM token, none or garbage on admin routes.
    assert_eq!(scim_status(&s, TENANT, &key).await, 401);
    for bearer in [Some(s.token.as_str()), None, Some("scimadm_nope")] {
        s.admin_with(Method::GET, "/tenants", bearer, None)
            .await
            .expect_admin_error(401, "unauthorized");
        s.admin_with(
            Method::POST,
            &format!("/tenants/{TENANT}/credentials"),
            bearer,
            None,
        )
        .await
        .expect_admin_error(401, "unauthorized");
    }
    // Nothing rotated.
    assert_eq!(scim_status(&s, TENANT, &s.token).await, 200);
}

/// Every string in the data directory's files, the table and the tenant
/// secrets, searched for the token.
async fn assert_nowhere_at_rest(s: &TestServer, token: &str, prefix: Option<&str>) {
    for entry in walk(s.data_dir()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is in {}",
            entry.display()
        );
    }
    if s.backend() == Backend::DynamoDb {
        let ddb = aws_sdk_dynamodb::Client::new(&aws().await);
        let items = ddb.scan().table_name(s.table()).send().await.unwrap();
        let dump = format!("{:?}", items.items());
        assert!(!dump.contains(token), "the token is in the table");
    }
    if let Some(prefix) = prefix {
        let sm = aws_sdk_secretsmanager::Client::new(&aws().await);
        for id in [TENANT, OTHER_TENANT] {
            let name = format!("{prefix}{id}");
            let versions = sm
                .list_secret_version_ids()
                .secret_id(&name)
                .include_deprecated(true)
                .send()
                .await
                .unwrap();
            for v in versions.versions() {
                let value = sm
                    .get_secret_value()
                    .secret_id(&name)
                    .version_id(v.version_id().unwrap())
                    .send()
                    .await
                    .unwrap();
                assert!(!value.secret_string().unwrap_or_default().contains(token));
            }
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn after_the_reveal_nothing_at_rest_holds_the_token() {
    let (s, prefix) = if backend() == Backend::DynamoDb {
        let (s, p) = aws_server(true).await;
        (s, Some(p))
    } else {
        (TestServer::start().await, None)
    };
    let (link, answer) = create_credentials(&s, TENANT, "admin@example.com").await;
    let _ = answer;
    let token = reveal(&s, &link).await;
    assert_eq!(scim_status(&s, TENANT, &token).await, 200);
    assert_nowhere_at_rest(&s, &token, prefix.as_deref()).await;
}

#[tokio::test]
async fn logs_never_hold_a_token_or_the_admin_key() {
    let s = TestServer::start_capturing_logs(
        backend(),
        &[(
            "RUST_LOG",
            "debug,aws_smithy_runtime=info,aws_config=info,hyper=info,h2=info,rustls=info",
        )],
    )
    .await;
    s.create_tenant("logco", "it@logco.example").await;
    let (link, _) = create_credentials(&s, "logco", "it@logco.example").await;
    let token = reveal(&s, &link).await;
    assert_eq!(scim_status(&s, "logco", &token).await, 200);
    s.post("/Users", user("logged@example.com"))
        .await
        .expect(201);
    let logs = s.logs();
    assert!(
        logs.contains("credentials.reveal"),
        "request lines missing: {logs}"
    );
    let secret_part = link.rsplit('.').next().unwrap();
    for (what, secret) in [
        ("new token", token.as_str()),
        ("preset token", s.token.as_str()),
        ("admin key", s.admin_key().as_str()),
        ("link secret", secret_part),
    ] {
        assert!(!logs.contains(secret), "the {what} is in the logs");
    }
}
