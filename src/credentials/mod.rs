//! SCIM credentials: checking a bearer token on every request, "Create New
//! Credentials" (generate, store, email, then make current) and the
//! one-time "Get Secret Token" link.
//!
//! What must hold:
//! * A rotation is seen on the very next request on every instance: the
//!   tenant record (one strongly consistent read per request) names the
//!   current generation; the vault is only asked when it changed.
//! * Creating credentials is all-or-nothing: until the email is out and
//!   the new material is stored, the old token keeps working; on failure
//!   nothing new stays behind.
//! * Two concurrent creations: both records are written conditionally on
//!   the version read, so one wins and the other is refused; an older link
//!   never reveals once a newer generation is current.
//! * A link reveals at most once: the consume is one atomic conditional
//!   delete, and the token exists at rest only sealed under a key derived
//!   from the link, whose secret is stored only as a hash.

pub mod email;
pub mod secret;
pub mod vault;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use thiserror::Error;
use time::OffsetDateTime;

use crate::audit::{Operation, Origin, ResourceType};
use crate::mail::{MailError, Mailer};
use crate::scim::model::TenantId;
use crate::store::{CredentialRecord, RevealRecord, Store, StoreError, TenantRecord};
use vault::Vault;

pub use secret::{ADMIN_KEY_PREFIX, TOKEN_PREFIX};

/// Default lifetime of a "Get Secret Token" link.
pub const DEFAULT_REVEAL_TTL: Duration = Duration::from_secs(24 * 3600);

/// Conditional-write retries of a credential commit before giving up.
const COMMIT_ATTEMPTS: usize = 8;

#[derive(Debug, Error)]
pub enum CredentialError {
    #[error("tenant {0} not found")]
    UnknownTenant(TenantId),
    #[error(transparent)]
    Mail(#[from] MailError),
    /// Another credential creation for the tenant committed first.
    #[error("credentials of tenant {0} were changed concurrently; try again")]
    Concurrent(TenantId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// What "Create New Credentials" answers (never the token).
#[derive(Debug, Clone)]
pub struct Issued {
    pub tenant_url: String,
    pub emailed_to: String,
    pub reveal_expires_at: String,
    pub generation: u64,
    /// Where the email went (SES message id or outbox file).
    pub delivery: String,
}

/// A token shown by a link, with the Tenant URL it belongs to.
pub struct Revealed {
    pub tenant: TenantId,
    pub tenant_url: String,
    pub token: String,
    pub generation: u64,
}

/// A parsed link reference: `{tenant}.{secret}`. Tenant ids cannot hold a
/// `.`, and the tenant comes first so reveal records are keyed by tenant
/// like everything else.
pub struct LinkRef {
    tenant: TenantId,
    secret: String,
}

impl LinkRef {
    pub fn parse(raw: &str) -> Option<LinkRef> {
        let (t, secret) = raw.split_once('.')?;
        let ok = secret.len() >= 32
            && secret.len() <= 64
            && secret.bytes().all(|b| b.is_ascii_alphanumeric());
        Some(LinkRef {
            tenant: TenantId::parse(t)?,
            secret: ok.then(|| secret.to_owned())?,
        })
    }

    fn hash(&self) -> String {
        secret::hash(&self.secret)
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn aad(tenant: &TenantId, generation: u64) -> Vec<u8> {
    format!("{tenant}/{generation}").into_bytes()
}

fn seal(
    link_secret: &str,
    tenant: &TenantId,
    generation: u64,
    token: &str,
) -> Result<String, CredentialError> {
    let key = secret::link_key(link_secret)
        .ok_or_else(|| CredentialError::Internal("key derivation failed".into()))?;
    let cipher = ChaCha20Poly1305::new(&key.into());
    let nonce_bytes: [u8; 12] = rand::random();
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce_bytes),
            Payload {
                msg: token.as_bytes(),
                aad: &aad(tenant, generation),
            },
        )
        .map_err(|_| CredentialError::Internal("sealing the token failed".into()))?;
    let mut out = nonce_bytes.to_vec();
    out.extend(ct);
    Ok(STANDARD.encode(out))
}

fn unseal(link_secret: &str, r: &RevealRecord) -> Option<String> {
    let key = secret::link_key(link_secret)?;
    let raw = STANDARD.decode(&r.sealed).ok()?;
    if raw.len() < 12 {
        return None;
    }
    let (nonce, ct) = raw.split_at(12);
    let cipher = ChaCha20Poly1305::new(&key.into());
    let pt = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: &aad(&r.tenant, r.generation),
            },
        )
        .ok()?;
    String::from_utf8(pt).ok()
}

/// Per-instance memory of the hash behind each tenant's current material,
/// so a remote vault is asked only when the generation changes.
type Cache = Mutex<HashMap<TenantId, (u64, String, String)>>;

pub struct Credentials {
    store: Arc<dyn Store>,
    vault: Arc<dyn Vault>,
    mailer: Arc<dyn Mailer>,
    reveal_ttl: Duration,
    cache: Cache,
    /// Retention of the records written here (expired links).
    retention_days: i64,
}

impl Credentials {
    /// How long the records written here are kept (days).
    pub fn with_retention_days(mut self, days: i64) -> Credentials {
        self.retention_days = days.max(1);
        self
    }

    pub fn new(
        store: Arc<dyn Store>,
        vault: Arc<dyn Vault>,
        mailer: Arc<dyn Mailer>,
        reveal_ttl: Duration,
    ) -> Credentials {
        Credentials {
            store,
            vault,
            mailer,
            reveal_ttl,
            cache: Mutex::new(HashMap::new()),
            retention_days: crate::audit::DEFAULT_RETENTION_DAYS,
        }
    }

    /// The generation of the tenant's current credential if `token` is its
    /// token. One strongly consistent read of the tenant record; the vault
    /// only when the generation is new to this instance.
    pub async fn verify(&self, tenant: &TenantId, token: &str) -> Result<Option<u64>, StoreError> {
        let Some(cred) = self
            .store
            .get_tenant(tenant)
            .await?
            .and_then(|r| r.credential)
        else {
            return Ok(None);
        };
        let Some(hash) = self.hash_of(tenant, &cred).await? else {
            return Ok(None);
        };
        Ok(secret::matches(token, &hash).then_some(cred.generation))
    }

    async fn hash_of(
        &self,
        tenant: &TenantId,
        cred: &CredentialRecord,
    ) -> Result<Option<String>, StoreError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((g, m, h)) = cache.get(tenant)
            && *g == cred.generation
            && *m == cred.material
        {
            return Ok(Some(h.clone()));
        }
        let Some(hash) = self
            .vault
            .open(tenant, cred.generation, &cred.material)
            .await?
        else {
            return Ok(None);
        };
        if self.vault.remote()
            && let Ok(mut cache) = self.cache.lock()
        {
            cache.insert(
                tenant.clone(),
                (cred.generation, cred.material.clone(), hash.clone()),
            );
        }
        Ok(Some(hash))
    }

    /// Makes `token` the tenant's current credential without an email
    /// (the local demo tenant, preset tokens for scripts and tests).
    pub async fn preset(
        &self,
        tenant: &TenantId,
        token: &str,
        origin: &Origin,
    ) -> Result<u64, CredentialError> {
        for _ in 0..COMMIT_ATTEMPTS {
            let record = self
                .store
                .get_tenant(tenant)
                .await?
                .ok_or_else(|| CredentialError::UnknownTenant(tenant.clone()))?;
            let generation = record.credential.as_ref().map_or(0, |c| c.generation) + 1;
            let material = self
                .vault
                .seal(tenant, generation, &secret::hash(token))
                .await?;
            let now = crate::service::now_rfc3339();
            let cred = CredentialRecord {
                generation,
                material,
                created_at: now.clone(),
                revealed_at: None,
                reveal_expires_at: None,
                reveal_ref: None,
            };
            match self.commit(record, cred, &now, origin).await {
                Err(StoreError::VersionMismatch) => continue,
                other => {
                    other?;
                    return Ok(generation);
                }
            }
        }
        Err(CredentialError::Concurrent(tenant.clone()))
    }

    /// Makes `cred` current (conditional on the version read), with the
    /// record of it in the same write.
    async fn commit(
        &self,
        mut record: TenantRecord,
        cred: CredentialRecord,
        now: &str,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        let expected = record.version;
        record.version += 1;
        record.last_modified = now.to_owned();
        let mut rec = origin.now_record(
            &record.id,
            ResourceType::Credentials,
            record.id.as_str(),
            Operation::CredentialsCreated,
        );
        rec.version = Some(cred.generation);
        record.credential = Some(cred);
        self.store
            .put_tenant_with(&record, Some(expected), &[rec])
            .await
    }

    /// "Create New Credentials": generate a token and a link, store the
    /// sealed token, send the email, store the verification material, and
    /// only then make the new credential current (one conditional write).
    /// `record` is the tenant as just read (the commit is conditional on its
    /// version); `link_origin` the configured public origin.
    pub async fn create_and_email(
        &self,
        record: TenantRecord,
        link_origin: &str,
        origin: &Origin,
    ) -> Result<Issued, CredentialError> {
        let tenant = &record.id.clone();
        let generation = record.credential.as_ref().map_or(0, |c| c.generation) + 1;
        let token = secret::generate(TOKEN_PREFIX);
        let link_secret = secret::link_secret();
        let link = LinkRef {
            tenant: tenant.clone(),
            secret: link_secret.clone(),
        };
        let tenant_url = format!("{link_origin}/scim/v2/{tenant}");
        let now = OffsetDateTime::now_utc();
        // At most a week: a link is a secret in a mailbox.
        let ttl = time::Duration::try_from(self.reveal_ttl)
            .unwrap_or(time::Duration::DAY)
            .min(time::Duration::WEEK);
        let expires = now + ttl;
        let reveal = RevealRecord {
            tenant: tenant.clone(),
            ref_hash: link.hash(),
            generation,
            tenant_url: tenant_url.clone(),
            sealed: seal(&link_secret, tenant, generation, &token)?,
            expires_at: expires.unix_timestamp(),
        };
        self.store.put_reveal(&reveal).await?;
        let undo = async |e: CredentialError| {
            if let Err(cleanup) = self.store.delete_reveal(tenant, &reveal.ref_hash).await {
                tracing::error!(error = %cleanup, tenant = %tenant, "removing an unused reveal link failed; it expires on its own");
            }
            Err(e)
        };

        let url = format!("{link_origin}/credentials/{tenant}.{link_secret}");
        let message = match email::credentials_email(&record, &tenant_url, &url, expires) {
            Ok(m) => m,
            Err(e) => return undo(e).await,
        };
        let delivery = match self.mailer.send(&message).await {
            Ok(d) => d,
            Err(e) => return undo(e.into()).await,
        };
        let material = match self
            .vault
            .seal(tenant, generation, &secret::hash(&token))
            .await
        {
            Ok(m) => m,
            Err(e) => return undo(e.into()).await,
        };
        let now_s = rfc3339(now);
        let cred = CredentialRecord {
            generation,
            material: material.clone(),
            created_at: now_s.clone(),
            revealed_at: None,
            reveal_expires_at: Some(rfc3339(expires)),
            reveal_ref: Some(reveal.ref_hash.clone()),
        };
        if let Err(e) = self.commit(record.clone(), cred, &now_s, origin).await {
            // A commit that timed out may still have been applied (and its
            // retry then fails its condition): if ours is current, it is done.
            let ours = match self.store.get_tenant(tenant).await {
                Ok(Some(t)) => t
                    .credential
                    .is_some_and(|c| c.generation == generation && c.material == material),
                _ => false,
            };
            if !ours {
                return undo(match e {
                    StoreError::VersionMismatch => CredentialError::Concurrent(tenant.clone()),
                    other => other.into(),
                })
                .await;
            }
        }
        tracing::info!(tenant = %tenant, generation, "new SCIM credentials created and emailed");
        Ok(Issued {
            tenant_url,
            emailed_to: record.admin_email,
            reveal_expires_at: rfc3339(expires),
            generation,
            delivery,
        })
    }

    /// The Tenant URL of a live link, consuming nothing.
    pub async fn peek(&self, raw: &str) -> Result<Option<String>, StoreError> {
        let Some(link) = LinkRef::parse(raw) else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        // Expired records too (until swept), to record that one was tried.
        let Some(r) = self
            .store
            .get_reveal(&link.tenant, &link.hash(), i64::MIN)
            .await?
        else {
            return Ok(None);
        };
        if r.expires_at <= now {
            self.expired(&r).await;
            return Ok(None);
        }
        Ok(self.current(&r).await?.then_some(r.tenant_url))
    }

    /// An expired link was opened: recorded once (the record goes with it),
    /// and the page looks like any used or made-up link.
    async fn expired(&self, r: &RevealRecord) {
        let origin = Origin {
            actor: crate::audit::Actor::Link,
            request_id: None,
            retention_days: self.retention_days,
        };
        let mut rec = origin.now_record(
            &r.tenant,
            ResourceType::Credentials,
            r.tenant.as_str(),
            Operation::CredentialsLinkExpired,
        );
        rec.version = Some(r.generation);
        if let Err(e) = self.store.put_audit(&r.tenant, &[rec]).await {
            tracing::warn!(error = %e, "recording an expired link failed");
        }
        if let Err(e) = self.store.delete_reveal(&r.tenant, &r.ref_hash).await {
            tracing::warn!(error = %e, "removing an expired link failed");
        }
    }

    /// Whether a link belongs to the tenant's current credential (its
    /// generation, and the very link that credential was mailed with).
    async fn current(&self, r: &RevealRecord) -> Result<bool, StoreError> {
        let cred = self
            .store
            .get_tenant(&r.tenant)
            .await?
            .and_then(|t| t.credential);
        Ok(cred.is_some_and(|c| {
            c.generation == r.generation && c.reveal_ref.as_deref().is_none_or(|h| h == r.ref_hash)
        }))
    }

    /// Reveals a link's token once: an atomic take of the record, then the
    /// token unsealed with the key only the link derives.
    pub async fn reveal(&self, raw: &str, origin: &Origin) -> Result<Option<Revealed>, StoreError> {
        let Some(link) = LinkRef::parse(raw) else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        // Check before taking: a link whose credential is not (yet) current
        // is not consumed, and a fault here consumes nothing either.
        let Some(peeked) = self
            .store
            .get_reveal(&link.tenant, &link.hash(), i64::MIN)
            .await?
        else {
            return Ok(None);
        };
        if peeked.expires_at <= now.unix_timestamp() {
            self.expired(&peeked).await;
            return Ok(None);
        }
        if !self.current(&peeked).await? {
            return Ok(None);
        }
        let Some(r) = self
            .store
            .take_reveal(&link.tenant, &link.hash(), now.unix_timestamp())
            .await?
        else {
            return Ok(None);
        };
        let Some(token) = unseal(&link.secret, &r) else {
            tracing::warn!(tenant = %r.tenant, "a reveal link's token could not be unsealed");
            return Ok(None);
        };
        self.mark_revealed(&r.tenant, r.generation, &rfc3339(now))
            .await;
        // Recorded after the reveal (a failure to record must not lose the
        // token, which is already taken).
        let mut rec = origin.now_record(
            &r.tenant,
            ResourceType::Credentials,
            r.tenant.as_str(),
            Operation::CredentialsRevealed,
        );
        rec.version = Some(r.generation);
        if let Err(e) = self.store.put_audit(&r.tenant, &[rec]).await {
            tracing::warn!(error = %e, "recording a reveal failed");
        }
        Ok(Some(Revealed {
            tenant: r.tenant,
            tenant_url: r.tenant_url,
            token,
            generation: r.generation,
        }))
    }

    /// Records when the token was revealed; informational, so a lost race
    /// with a newer credential just stops.
    async fn mark_revealed(&self, tenant: &TenantId, generation: u64, at: &str) {
        for _ in 0..COMMIT_ATTEMPTS {
            let Ok(Some(mut record)) = self.store.get_tenant(tenant).await else {
                return;
            };
            let Some(cred) = record
                .credential
                .as_mut()
                .filter(|c| c.generation == generation)
            else {
                return;
            };
            cred.revealed_at = Some(at.to_owned());
            let expected = record.version;
            record.version += 1;
            match self.store.put_tenant(&record, Some(expected)).await {
                Err(StoreError::VersionMismatch) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, tenant = %tenant, "recording the reveal time failed");
                    return;
                }
                Ok(()) => return,
            }
        }
    }
}
