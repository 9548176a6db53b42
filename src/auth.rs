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
/// saves a store read on every other request.
/// `SCIM_CREDENTIAL_CACHE_SECS` overrides it (tests that count backend
/// calls across long pauses).
const CACHE_TTL: Duration = Duration::from_secs(30);

/// Verifies against the tenant records of a [`Store`].
pub struct StoreTokens {
    store: Arc<dyn Store>,
    cache: Mutex<HashMap<TenantId, (String, Instant)>>,
    ttl: Duration,
}

impl StoreTokens {
    pub fn new(store: Arc<dyn Store>) -> StoreTokens {
        let ttl = std::env::var("SCIM_CREDENTIAL_CACHE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(CACHE_TTL, Duration::from_secs);
        StoreTokens {
            store,
            cache: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    async fn current_hash(&self, tenant: &TenantId) -> Result<Option<String>, StoreError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((hash, at)) = cache.get(tenant)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(hash.clone()));
        }
        let Some(record) = self.store.get_tenant(tenant).await? else {
            return Ok(None);
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                tenant.clone(),
                (record.token_sha256.clone(), Instant::now()),
            );
        }
        Ok(Some(record.token_sha256))
    }

    /// Sets the tenant's token, invalidating every earlier one.
    pub async fn set_token(&self, tenant: &TenantId, token: &str) -> Result<(), StoreError> {
        let created = match self.store.get_tenant(tenant).await? {
            Some(r) => r.created,
            None => crate::service::now_rfc3339(),
        };
        self.store
            .put_tenant(&TenantRecord {
                id: tenant.clone(),
                token_sha256: hash_token(token),
                created,
            })
            .await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(tenant);
        }
        Ok(())
    }
}

#[async_trait]
impl TokenVerifier for StoreTokens {
    async fn verify(&self, tenant: &TenantId, token: &str) -> Result<bool, StoreError> {
        let Some(expected) = self.current_hash(tenant).await? else {
            return Ok(false);
        };
        let presented = hash_token(token);
        Ok(presented.as_bytes().ct_eq(expected.as_bytes()).into())
    }
}
