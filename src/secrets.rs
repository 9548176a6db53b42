//! Secrets Manager adapter: reads key material the service needs at start
//! (the cursor-signing key). Values are never logged.

use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

/// Minimum length of an HMAC key read from a secret.
const MIN_KEY_BYTES: usize = 32;

/// The `SecretString` of a secret, as the HMAC key for cursors. Fails
/// rather than falling back, so instances never sign with different keys.
pub async fn cursor_key(secret_id: &str) -> Result<Vec<u8>, String> {
    let conf = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let client = aws_sdk_secretsmanager::Client::new(&conf);
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| format!("reading secret {secret_id}: {}", DisplayErrorContext(e)))?;
    let value = out
        .secret_string()
        .ok_or_else(|| format!("secret {secret_id} has no SecretString"))?;
    if value.len() < MIN_KEY_BYTES {
        return Err(format!(
            "secret {secret_id} is shorter than {MIN_KEY_BYTES} bytes"
        ));
    }
    Ok(value.as_bytes().to_vec())
}
