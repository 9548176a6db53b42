//! Bearer-token checks behind a small trait, so the local store and
//! Secrets Manager can both provide the credential material.
//!
//! Only a SHA-256 hash of each token is kept. Tokens are 256-bit random
//! values, so a fast hash is enough (no password-style stretching needed)
//! and comparison is constant-time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::scim::model::TenantId;
use crate::store::{Store, StoreError, TenantRecord};

/// Prefix that makes leaked tokens easy to recognise in secret scanners.
const TOKEN_PREFIX: &str = "scim_";

#[async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    /// `Ok(true)` if `token` is the tenant's current token.
    async fn verify(&self, tenant: &TenantId, token: &str) -> Result<bool, StoreError>;
}

pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token (256 bits).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// How long a tenant's token hash is trusted from memory. This bounds how
/// long a rotated-out token keeps working on an instance that saw it, and
/// saves a read on every other request.
/// `SCIM_CREDENTIAL_CACHE_SECS` overrides it (tests that count backend
/// calls across long pauses).
const CACHE_TTL: Duration = Duration::from_secs(30);

/// Where tenants' token hashes live: the data store locally, Secrets
/// Manager on AWS.
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// The current token hash of a tenant, if it has credentials.
    async fn token_hash(&self, tenant: &TenantId) -> Result<Option<String>, StoreError>;
    /// Replaces the tenant's token hash; earlier tokens stop working.
    async fn put_token_hash(&self, tenant: &TenantId, sha256: &str) -> Result<(), StoreError>;
}

/// Token hashes in the tenant records of a [`Store`].
pub struct StoreCredentials(pub Arc<dyn Store>);

#[async_trait]
impl CredentialStore for StoreCredentials {
    async fn token_hash(&self, tenant: &TenantId) -> Result<Option<String>, StoreError> {
        Ok(self.0.get_tenant(tenant).await?.map(|r| r.token_sha256))
    }

    async fn put_token_hash(&self, tenant: &TenantId, sha256: &str) -> Result<(), StoreError> {
        let created = match self.0.get_tenant(tenant).await? {
            Some(r) => r.created,
            None => crate::service::now_rfc3339(),
        };
        self.0
            .put_tenant(&TenantRecord {
                id: tenant.clone(),
                token_sha256: sha256.to_owned(),
                created,
            })
            .await
    }
}

/// The verifier: a short-lived cache over a [`CredentialStore`] and a
/// constant-time comparison of hashes.
pub struct Tokens {
    source: Arc<dyn CredentialStore>,
    cache: Mutex<HashMap<TenantId, (String, Instant)>>,
    ttl: Duration,
}

impl Tokens {
    pub fn new(source: Arc<dyn CredentialStore>) -> Tokens {
        let ttl = std::env::var("SCIM_CREDENTIAL_CACHE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(CACHE_TTL, Duration::from_secs);
        Tokens {
            source,
            cache: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Token hashes kept in the tenant records of the data store.
    pub fn in_store(store: Arc<dyn Store>) -> Tokens {
        Tokens::new(Arc::new(StoreCredentials(store)))
    }

    async fn current_hash(&self, tenant: &TenantId) -> Result<Option<String>, StoreError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((hash, at)) = cache.get(tenant)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(hash.clone()));
        }
        let Some(hash) = self.source.token_hash(tenant).await? else {
            return Ok(None);
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(tenant.clone(), (hash.clone(), Instant::now()));
        }
        Ok(Some(hash))
    }

    /// Whether the tenant has credentials at all (uncached).
    pub async fn has_credentials(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        Ok(self.source.token_hash(tenant).await?.is_some())
    }

    /// Sets the tenant's token, invalidating every earlier one.
    pub async fn set_token(&self, tenant: &TenantId, token: &str) -> Result<(), StoreError> {
        self.source
            .put_token_hash(tenant, &hash_token(token))
            .await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(tenant);
        }
        Ok(())
    }
}

#[async_trait]
impl TokenVerifier for Tokens {
    async fn verify(&self, tenant: &TenantId, token: &str) -> Result<bool, StoreError> {
        let Some(expected) = self.current_hash(tenant).await? else {
            return Ok(false);
        };
        let presented = hash_token(token);
        Ok(presented.as_bytes().ct_eq(expected.as_bytes()).into())
    }
}
