//! The "Get Secret Token" page in headless Chromium (Debian's, driven by
//! playwright-core; `scripts/test.sh` installs both): open the link from
//! the email, click "Reveal token", read the token off the page, and use it.

use reqwest::Method;
use serde_json::Value;

use crate::harness::*;

#[tokio::test]
async fn an_admin_reveals_the_token_in_a_browser_and_the_idp_uses_it() {
    let s = TestServer::start().await;
    s.admin(
        Method::POST,
        &format!("/tenants/{TENANT}/credentials"),
        None,
    )
    .await
    .expect(201);
    let link = link_in(&s.outbox().pop().expect("the credentials email"));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/reveal.mjs");
    let shots = std::env::var("SCIM_SCREENSHOT_DIR").ok();
    let mut cmd = std::process::Command::new("node");
    cmd.arg(script).arg(&link);
    if let Some(dir) = &shots {
        cmd.arg(dir);
    }
    let out = cmd
        .output()
        .expect("node (scripts/test.sh installs the browser tooling)");
    assert!(
        out.status.success(),
        "the browser run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(result["tenantUrl"], s.tenant_url().as_str());
    assert_eq!(result["consoleErrors"], serde_json::json!([]), "{result}");
    assert_eq!(result["cspViolations"], serde_json::json!([]), "{result}");
    let token = result["token"].as_str().expect("a token on the page");
    assert!(scim_provisioning::credentials::secret::well_formed(
        "scim_", token
    ));

    // The IdP pastes it: it works, the old one does not, the link is spent.
    s.call_with(Method::GET, &s.url("/Users"), token, None, &[])
        .await
        .expect(200);
    s.call_with(Method::GET, &s.url("/Users"), &s.token, None, &[])
        .await
        .expect_error(401, None);
    assert_eq!(s.page(Method::GET, &link).await.0, 410);
}
