//! Tenants' credentials in Secrets Manager (as deployed on AWS): only a
//! hash is kept, one secret per tenant, and a new token invalidates the old
//! one. Runs on the AWS emulator whatever `SCIM_TEST_STORE` says.

use std::process::Command;

use crate::harness::*;

#[tokio::test]
async fn tokens_live_hashed_in_secrets_manager_and_rotation_invalidates_the_old_one() {
    let prefix = format!("scim-test/{}/tenants/", uuid::Uuid::new_v4().simple());
    // No credential cache, so a rotation shows at once.
    let s = TestServer::start_with(
        Backend::DynamoDb,
        &[
            ("TENANT_SECRET_PREFIX", prefix.as_str()),
            ("SCIM_CREDENTIAL_CACHE_SECS", "0"),
        ],
    )
    .await;
    s.get("/Users").await.expect(200);
    let other = s
        .call_with(
            reqwest::Method::GET,
            &s.url("/Users"),
            &s.other_token,
            None,
            &[],
        )
        .await;
    other.expect(401);

    // The secret holds the SHA-256 of the token, never the token.
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let secret = sm
        .get_secret_value()
        .secret_id(format!("{prefix}{TENANT}"))
        .send()
        .await
        .unwrap();
    let value = secret.secret_string().unwrap();
    assert!(!value.contains(&s.token), "plaintext token stored: {value}");
    assert!(
        value.contains(&scim_provisioning::auth::hash_token(&s.token)),
        "{value}"
    );

    // `token` issues a new one into the same secret (a new version).
    let out = Command::new(env!("CARGO_BIN_EXE_scim-provisioning"))
        .args([
            "token",
            TENANT,
            "--store",
            "dynamodb",
            "--table",
            s.table(),
            "--tenant-secret-prefix",
            &prefix,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let new_token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Secret Token:"))
        .unwrap()
        .trim()
        .to_owned();

    let url = s.url("/Users");
    s.call_with(reqwest::Method::GET, &url, &new_token, None, &[])
        .await
        .expect(200);
    s.call_with(reqwest::Method::GET, &url, &s.token, None, &[])
        .await
        .expect_error(401, None);
}
