//! Secrets Manager adapter: tenants' token hashes (one secret per tenant,
//! so rotating one tenant's credentials is one new secret version) and the
//! cursor-signing key. Secret values are never logged.

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde::{Deserialize, Serialize};

use crate::auth::CredentialStore;
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

/// What a tenant's secret holds: never the token, only its hash.
#[derive(Debug, Serialize, Deserialize)]
struct TenantSecret {
    #[serde(rename = "tokenSha256")]
    token_sha256: String,
    created: String,
}

/// Tenants' credentials as secrets named `{prefix}{tenant}`. Writing a new
/// hash makes a new secret version (AWSCURRENT); only that one is accepted.
pub struct SecretsManagerCredentials {
    client: Client,
    prefix: String,
}

impl SecretsManagerCredentials {
    pub async fn from_env(prefix: String) -> SecretsManagerCredentials {
        SecretsManagerCredentials {
            client: client().await,
            prefix,
        }
    }

    fn name(&self, tenant: &TenantId) -> String {
        format!("{}{tenant}", self.prefix)
    }

    async fn read(&self, tenant: &TenantId) -> Result<Option<TenantSecret>, StoreError> {
        let name = self.name(tenant);
        match self.client.get_secret_value().secret_id(&name).send().await {
            Ok(out) => {
                let value = out.secret_string().unwrap_or_default();
                serde_json::from_str(value).map(Some).map_err(|_| {
                    StoreError::Backend(format!("secret {name} is not a tenant credential"))
                })
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
}

#[async_trait]
impl CredentialStore for SecretsManagerCredentials {
    async fn token_hash(&self, tenant: &TenantId) -> Result<Option<String>, StoreError> {
        Ok(self.read(tenant).await?.map(|s| s.token_sha256))
    }

    async fn put_token_hash(&self, tenant: &TenantId, sha256: &str) -> Result<(), StoreError> {
        let name = self.name(tenant);
        let existing = self.read(tenant).await?;
        let created = existing
            .as_ref()
            .map_or_else(crate::service::now_rfc3339, |s| s.created.clone());
        let value = serde_json::to_string(&TenantSecret {
            token_sha256: sha256.to_owned(),
            created,
        })
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        let failed = |e: String| StoreError::Backend(format!("writing secret {name}: {e}"));
        match existing {
            Some(_) => {
                let put = self
                    .client
                    .put_secret_value()
                    .secret_id(&name)
                    .secret_string(value)
                    .send()
                    .await;
                put.map_err(|e| failed(DisplayErrorContext(e).to_string()))?;
            }
            None => {
                let created = self
                    .client
                    .create_secret()
                    .name(&name)
                    .description(format!(
                        "SCIM credentials of tenant {tenant} (SHA-256 of the bearer token)"
                    ))
                    .secret_string(value)
                    .send()
                    .await;
                created.map_err(|e| failed(DisplayErrorContext(e).to_string()))?;
            }
        }
        Ok(())
    }
}
