//! Credentials as deployed on AWS, always on the emulator (DynamoDB,
//! Secrets Manager, SES) whatever `SCIM_TEST_STORE` says: delivery through
//! SES, a refused send, and rotation seen by a second warm instance.

use reqwest::Method;

use super::credentials::{
    aws, aws_server, create_credentials, reveal, scim_status, sent_to, unique,
};
use crate::harness::*;

#[tokio::test]
async fn rotation_is_seen_at_once_by_a_second_warm_instance() {
    let (a, _prefix) = aws_server(true).await;
    let b = TestServer::start_sharing(&a, &[("TENANT_SECRET_PREFIX", _prefix.as_str())]).await;
    // B has just served the old token (its caches are warm).
    for _ in 0..3 {
        assert_eq!(scim_status(&b, TENANT, &a.token).await, 200);
    }
    let r = a
        .admin(
            Method::POST,
            &format!("/tenants/{TENANT}/credentials"),
            None,
        )
        .await
        .expect(201);
    // The very next request on B refuses the old token.
    assert_eq!(scim_status(&b, TENANT, &a.token).await, 401);
    assert_eq!(scim_status(&a, TENANT, &a.token).await, 401);
    let mail = sent_to(r.body["emailedTo"].as_str().unwrap()).await;
    let link = link_in(&mail.last().unwrap().1);
    let token = reveal(&a, &link).await;
    assert_eq!(scim_status(&b, TENANT, &token).await, 200);
    assert_eq!(scim_status(&a, TENANT, &token).await, 200);
}

#[tokio::test]
async fn ses_sends_the_tenant_url_and_link_but_never_the_token() {
    let (s, prefix) = aws_server(true).await;
    let email = format!("{}@customer.example", unique("admin-"));
    s.create_tenant("hooli", &email).await;
    let (link, _) = create_credentials(&s, "hooli", &email).await;
    let token = reveal(&s, &link).await;
    let mail = sent_to(&email).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    let (subject, body) = &mail[0];
    assert!(subject.contains("Tenant hooli"), "{subject}");
    assert!(
        body.contains(&format!("{}/scim/v2/hooli", s.origin)),
        "{body}"
    );
    assert!(body.contains("Get Secret Token"), "{body}");
    assert!(!body.contains(&token), "the token was emailed");

    // The secret holds the hash of the token, never the token.
    let sm = aws_sdk_secretsmanager::Client::new(&aws().await);
    let value = sm
        .get_secret_value()
        .secret_id(format!("{prefix}hooli"))
        .send()
        .await
        .unwrap();
    let value = value.secret_string().unwrap();
    assert!(!value.contains(&token), "plaintext token stored: {value}");
    assert!(
        value.contains(&scim_provisioning::credentials::secret::hash(&token)),
        "{value}"
    );
}

#[tokio::test]
async fn a_refused_email_changes_nothing() {
    // SES refuses an unverified sender: 502, old token works, no new
    // credential, no link, no new secret version left behind.
    let (s, prefix) = aws_server(false).await;
    let secret_versions = async || {
        let sm = aws_sdk_secretsmanager::Client::new(&aws().await);
        sm.list_secret_version_ids()
            .secret_id(format!("{prefix}{TENANT}"))
            .include_deprecated(true)
            .send()
            .await
            .map(|v| v.versions().len())
            .unwrap_or(0)
    };
    let versions_before = secret_versions().await;
    let before = s
        .admin(Method::GET, &format!("/tenants/{TENANT}"), None)
        .await
        .expect(200);
    let r = s
        .admin(
            Method::POST,
            &format!("/tenants/{TENANT}/credentials"),
            None,
        )
        .await
        .expect_admin_error(502, "email_failed");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("earlier credentials still work")
    );
    assert_eq!(scim_status(&s, TENANT, &s.token).await, 200);
    let after = s
        .admin(Method::GET, &format!("/tenants/{TENANT}"), None)
        .await
        .expect(200);
    assert_eq!(before.body["credentials"], after.body["credentials"]);
    assert_eq!(secret_versions().await, versions_before);
    let ddb = aws_sdk_dynamodb::Client::new(&aws().await);
    let items = ddb.scan().table_name(s.table()).send().await.unwrap();
    let reveals = items
        .items()
        .iter()
        .filter(|i| {
            i.get("SK")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|sk| sk.starts_with("REVEAL#"))
        })
        .count();
    assert_eq!(reveals, 0, "a reveal link was left behind");
}
