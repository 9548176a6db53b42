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
