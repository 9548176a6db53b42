//! Secrets Manager adapter: tenants' token hashes (one secret per tenant,
//! each credential one secret version) and the
//! cursor-signing key. Secret values are never logged.

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde::{Deserialize, Serialize};

use tokio::sync::OnceCell;

use crate::credentials::vault::Vault;
use crate::scim::model::TenantId;
use crate::store::StoreError;

/// Minimum length of an HMAC key read from a secret.
const MIN_KEY_BYTES: usize = 32;

async fn client() -> Client {
    Client::new(&aws_config::defaults(BehaviorVersion::latest()).load().await)
}

/// The `SecretString` of a secret, as the HMAC key for cursors. Fails
/// rather than falling back, so instances never sign with different keys.
pub async fn cursor_key(secret_id: &str) -> Result<Vec<u8>, String> {
    let out = client()
        .await
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

/// What a tenant's secret holds: never the token, only its hash, and the
/// credential generation it belongs to.
#[derive(Debug, Serialize, Deserialize)]
struct TenantSecret {
    generation: u64,
    #[serde(rename = "tokenSha256")]
    token_sha256: String,
}

/// Tenants' verification material as secrets named `{prefix}{tenant}`.
/// Each new credential is a new secret version; the tenant record stores
/// its version id, so which version counts is decided by DynamoDB, not by
/// `AWSCURRENT`. The client is built on first use.
pub struct SecretsManagerVault {
    client: OnceCell<Client>,
    prefix: String,
}

impl SecretsManagerVault {
    pub fn new(prefix: String) -> SecretsManagerVault {
        SecretsManagerVault {
            client: OnceCell::new(),
            prefix,
        }
    }

    async fn client(&self) -> &Client {
        self.client.get_or_init(client).await
    }

    fn name(&self, tenant: &TenantId) -> String {
        format!("{}{tenant}", self.prefix)
    }
}

#[async_trait]
impl Vault for SecretsManagerVault {
    async fn seal(
        &self,
        tenant: &TenantId,
        generation: u64,
        sha256: &str,
    ) -> Result<String, StoreError> {
        let name = self.name(tenant);
        let value = serde_json::to_string(&TenantSecret {
            generation,
            token_sha256: sha256.to_owned(),
        })
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        let failed = |e: String| StoreError::Unavailable(format!("writing secret {name}: {e}"));
        let put = self
            .client()
            .await
            .put_secret_value()
            .secret_id(&name)
            .secret_string(&value)
            .send()
            .await;
        match put {
            Ok(out) => out
                .version_id()
                .map(str::to_owned)
                .ok_or_else(|| failed("no version id in the answer".into())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                let created = self
                    .client()
                    .await
                    .create_secret()
                    .name(&name)
                    .description(format!(
                        "SCIM credentials of tenant {tenant} (SHA-256 of the bearer token)"
                    ))
                    .secret_string(value)
                    .send()
                    .await
                    .map_err(|e| failed(DisplayErrorContext(e).to_string()))?;
                created
                    .version_id()
                    .map(str::to_owned)
                    .ok_or_else(|| failed("no version id in the answer".into()))
            }
            Err(e) => Err(failed(DisplayErrorContext(e).to_string())),
        }
    }

    async fn open(
        &self,
        tenant: &TenantId,
        generation: u64,
        material: &str,
    ) -> Result<Option<String>, StoreError> {
        let name = self.name(tenant);
        let got = self
            .client()
            .await
            .get_secret_value()
            .secret_id(&name)
            .version_id(material)
            .send()
            .await;
        match got {
            Ok(out) => {
                let value = out.secret_string().unwrap_or_default();
                let secret: TenantSecret = serde_json::from_str(value).map_err(|_| {
                    StoreError::Backend(format!("secret {name} is not a tenant credential"))
                })?;
                // A version of another generation is not this credential.
                Ok((secret.generation == generation).then_some(secret.token_sha256))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "reading secret {name}: {}",
                DisplayErrorContext(e)
            ))),
        }
    }

    fn remote(&self) -> bool {
        true
    }
}
