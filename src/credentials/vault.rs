//! Where verification material (a token's SHA-256) lives: inline in the
//! tenant record locally, in Secrets Manager on AWS
//! ([`crate::secrets::SecretsManagerVault`]). The tenant record names the
//! material of its current credential, so which hash is current is decided
//! by one strongly consistent record, never by the vault.

use async_trait::async_trait;

use crate::scim::model::TenantId;
use crate::store::StoreError;

#[async_trait]
pub trait Vault: Send + Sync + 'static {
    /// Keeps `sha256` for the tenant's credential `generation`; returns
    /// the reference the tenant record stores.
    async fn seal(
        &self,
        tenant: &TenantId,
        generation: u64,
        sha256: &str,
    ) -> Result<String, StoreError>;

    /// The hash a reference names, if it is the material of `generation`.
    async fn open(
        &self,
        tenant: &TenantId,
        generation: u64,
        material: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Whether `open` costs a network call (decides caching).
    fn remote(&self) -> bool;
}

/// The hash is the reference: nothing to fetch.
pub struct InlineVault;

const INLINE: &str = "sha256:";

#[async_trait]
impl Vault for InlineVault {
    async fn seal(&self, _: &TenantId, _: u64, sha256: &str) -> Result<String, StoreError> {
        Ok(format!("{INLINE}{sha256}"))
    }

    async fn open(
        &self,
        _: &TenantId,
        _: u64,
        material: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(material.strip_prefix(INLINE).map(str::to_owned))
    }

    fn remote(&self) -> bool {
        false
    }
}
