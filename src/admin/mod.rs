//! The admin API's application layer: tenants and their credentials. The
//! product's console, scripts and the CLI all come through here (HTTP in
//! [`http`]); SCIM never does. Validation and rules live here once, for
//! every store.

pub mod audit;
pub mod error;
pub mod http;
pub mod users;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

pub use error::AdminError;

use crate::audit::{AuditRecord, Operation, Origin, ResourceType};
use crate::credentials::{Credentials, Issued};
use crate::rules;
use crate::scim::model::{SeatPool, TenantId};
use crate::service::Service;
use crate::store::{Store, StoreError, TenantRecord};

/// Largest page of `GET /admin/v1/tenants`.
pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 50;
const MAX_NAME_CHARS: usize = 200;
/// RFC 5321's limit on a forward path.
const MAX_EMAIL_BYTES: usize = 254;
/// Conditional-write retries of a tenant update.
const UPDATE_ATTEMPTS: usize = 8;
/// More seats than any tenant buys; a typo guard.
const MAX_SEATS: u64 = 10_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewTenant {
    pub id: String,
    pub name: String,
    pub admin_email: String,
    /// Seats (licences) the tenant has; [`rules::DEFAULT_SEATS`] if unset.
    #[serde(default)]
    pub seats: Option<u64>,
    /// Assign licences to SCIM users automatically (default on).
    #[serde(default)]
    pub auto_assign_licences: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantPatch {
    pub name: Option<String>,
    pub admin_email: Option<String>,
    pub seats: Option<u64>,
    pub auto_assign_licences: Option<bool>,
}

/// A tenant and its seat pool, as the admin API shows them.
#[derive(Debug, Clone)]
pub struct TenantInfo {
    pub record: TenantRecord,
    pub pool: SeatPool,
}

fn seats(n: u64) -> Result<u64, AdminError> {
    if n > MAX_SEATS {
        return Err(AdminError::bad(
            "invalid_seats",
            format!("seats: 0-{MAX_SEATS}"),
        ));
    }
    Ok(n)
}

pub fn tenant_id(raw: &str) -> Result<TenantId, AdminError> {
    TenantId::parse(raw).ok_or_else(|| {
        AdminError::bad(
            "invalid_id",
            format!("tenant id {raw:?}: use 1-64 letters, digits, '-' or '_'"),
        )
    })
}

fn name(raw: &str) -> Result<String, AdminError> {
    let n = raw.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(AdminError::bad(
            "invalid_name",
            format!("name: 1-{MAX_NAME_CHARS} characters, no control characters"),
        ));
    }
    Ok(n.to_owned())
}

pub fn email(raw: &str) -> Result<String, AdminError> {
    let e = raw.trim();
    let parsed: Result<lettre::Address, _> = e.parse();
    match parsed {
        Ok(_) if e.len() <= MAX_EMAIL_BYTES => Ok(e.to_owned()),
        _ => Err(AdminError::bad(
            "invalid_email",
            format!("adminEmail {raw:?} is not an email address like it@example.com"),
        )),
    }
}

/// A tenant as the admin API shows it. `origin` is this service's public
/// origin, from configuration (never a request's Host header).
pub fn tenant_view(t: &TenantInfo, origin: Option<&str>) -> Value {
    let r = &t.record;
    json!({
        "id": r.id.as_str(),
        "name": r.name,
        "adminEmail": r.admin_email,
        "tenantUrl": origin.map(|o| format!("{o}/scim/v2/{}", r.id)),
        "created": r.created,
        "lastModified": r.last_modified,
        "seats": t.pool.seats,
        "seatsUsed": t.pool.used,
        "seatsWaiting": t.pool.waiting,
        "autoAssignLicences": t.pool.auto,
        "credentials": r.credential.as_ref().map(|c| json!({
            "generation": c.generation,
            "createdAt": c.created_at,
            "revealedAt": c.revealed_at,
            "revealExpiresAt": c.reveal_expires_at,
        })),
    })
}

pub struct Admin {
    store: Arc<dyn Store>,
    credentials: Arc<Credentials>,
    service: Arc<Service>,
}

impl Admin {
    pub fn new(
        store: Arc<dyn Store>,
        credentials: Arc<Credentials>,
        service: Arc<Service>,
    ) -> Admin {
        Admin {
            store,
            credentials,
            service,
        }
    }

    /// The tenant's pool (set up with the defaults if it never was).
    async fn pool(&self, id: &TenantId) -> Result<SeatPool, AdminError> {
        match self.store.get_pool(id).await? {
            Some(p) => Ok(p),
            None => Ok(self.service.pool_state(id).await?.0),
        }
    }

    async fn info(&self, record: TenantRecord) -> Result<TenantInfo, AdminError> {
        let pool = self.pool(&record.id).await?;
        Ok(TenantInfo { record, pool })
    }

    /// One tenant with its pool.
    pub async fn tenant(&self, raw: &str) -> Result<TenantInfo, AdminError> {
        let record = self.get_tenant(raw).await?;
        self.info(record).await
    }

    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    pub async fn create_tenant(
        &self,
        actor: &Origin,
        new: NewTenant,
    ) -> Result<TenantInfo, AdminError> {
        let id = tenant_id(&new.id)?;
        let pool = rules::new_pool(
            seats(new.seats.unwrap_or(rules::DEFAULT_SEATS))?,
            new.auto_assign_licences.unwrap_or(true),
        );
        let now = crate::service::now_rfc3339();
        let record = TenantRecord {
            id: id.clone(),
            name: name(&new.name)?,
            admin_email: email(&new.admin_email)?,
            created: now.clone(),
            last_modified: now,
            version: 1,
            credential: None,
        };
        let mut rec = actor.now_record(&id, ResourceType::Tenant, id.as_str(), Operation::Created);
        rec.name = Some(record.name.clone());
        rec.changed = ["name", "adminEmail", "seats", "autoAssignLicences"]
            .map(String::from)
            .to_vec();
        match self.store.put_tenant_with(&record, None, &[rec]).await {
            Err(StoreError::Conflict { .. }) => Err(AdminError::Conflict(format!(
                "tenant {id:?} already exists"
            ))),
            other => {
                other?;
                // Its own write: a crash in between leaves a tenant whose
                // pool is set up with the defaults on first use.
                self.store.init_pool(&id, &pool).await?;
                tracing::info!(tenant = %id, actor = %actor, "tenant created");
                Ok(TenantInfo { record, pool })
            }
        }
    }

    /// Creates the tenant unless it exists (the local demo tenant).
    pub async fn ensure_tenant(
        &self,
        id: &TenantId,
        display: &str,
        admin_email: &str,
    ) -> Result<TenantRecord, AdminError> {
        if let Some(r) = self.store.get_tenant(id).await? {
            return Ok(r);
        }
        let new = NewTenant {
            id: id.to_string(),
            name: display.to_owned(),
            admin_email: admin_email.to_owned(),
            seats: Some(rules::DEMO_SEATS),
            auto_assign_licences: Some(true),
        };
        let origin = Origin::service(self.service.retention_days());
        match self.create_tenant(&origin, new).await {
            Err(AdminError::Conflict(_)) => self.get_tenant(id.as_str()).await,
            other => other.map(|t| t.record),
        }
    }

    pub async fn get_tenant(&self, raw: &str) -> Result<TenantRecord, AdminError> {
        let id = tenant_id(raw).map_err(|_| not_found(raw))?;
        self.store
            .get_tenant(&id)
            .await?
            .ok_or_else(|| not_found(raw))
    }

    /// A page of tenants after `cursor` (the last id of the previous page)
    /// and the cursor of the next page, if there may be one.
    pub async fn list_tenants(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<TenantInfo>, Option<String>), AdminError> {
        if let Some(c) = cursor {
            tenant_id(c).map_err(|_| {
                AdminError::bad(
                    "invalid_cursor",
                    "cursor: use the nextCursor of the previous page",
                )
            })?;
        }
        let page = self.store.list_tenants(cursor, limit).await?;
        let next = (page.len() == limit)
            .then(|| page.last().map(|r| r.id.to_string()))
            .flatten();
        // The pools of a page, read concurrently.
        let infos = futures::future::try_join_all(page.into_iter().map(|r| self.info(r))).await?;
        Ok((infos, next))
    }

    pub async fn update_tenant(
        &self,
        actor: &Origin,
        raw: &str,
        patch: TenantPatch,
    ) -> Result<TenantInfo, AdminError> {
        if patch.name.is_none()
            && patch.admin_email.is_none()
            && patch.seats.is_none()
            && patch.auto_assign_licences.is_none()
        {
            return Err(AdminError::bad(
                "invalid_request",
                "nothing to change: give name, adminEmail, seats and/or autoAssignLicences",
            ));
        }
        let new_name = patch.name.as_deref().map(name).transpose()?;
        let new_email = patch.admin_email.as_deref().map(email).transpose()?;
        let new_seats = patch.seats.map(seats).transpose()?;
        // The seat change first: it is the part that can be refused, and a
        // refused PATCH must change nothing.
        let id = self.get_tenant(raw).await?.id;
        if new_seats.is_some() || patch.auto_assign_licences.is_some() {
            // Make sure the pool exists, then change it conditionally.
            self.pool(&id).await?;
            match self
                .store
                .set_pool(
                    &id,
                    new_seats,
                    patch.auto_assign_licences,
                    &[pool_record(
                        actor,
                        &id,
                        new_seats,
                        patch.auto_assign_licences,
                    )],
                )
                .await
            {
                Err(StoreError::PoolChanged) => {
                    let used = self.pool(&id).await?.used;
                    return Err(AdminError::ConflictCode {
                        code: "seats_in_use",
                        detail: format!(
                            "{used} seats are in use; free licences (or deactivate users) before lowering seats below that"
                        ),
                    });
                }
                other => {
                    other?;
                }
            }
            // More seats, or auto-assignment back on: serve the line now.
            // Best effort: the seat change is committed; what is not served
            // now is served by the next licence change (see `heal_line`).
            match self.service.serve_line(&id, actor).await {
                Ok(served) => {
                    tracing::info!(tenant = %id, actor = %actor, served, "seat pool changed");
                }
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %e, "serving the waiting line stopped")
                }
            }
        }
        let record = if new_name.is_some() || new_email.is_some() {
            self.rename(actor, raw, new_name, new_email).await?
        } else {
            self.get_tenant(raw).await?
        };
        self.info(record).await
    }

    async fn rename(
        &self,
        actor: &Origin,
        raw: &str,
        new_name: Option<String>,
        new_email: Option<String>,
    ) -> Result<TenantRecord, AdminError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let mut record = self.get_tenant(raw).await?;
            let expected = record.version;
            if let Some(n) = &new_name {
                record.name = n.clone();
            }
            if let Some(e) = &new_email {
                record.admin_email = e.clone();
            }
            record.version += 1;
            record.last_modified = crate::service::now_rfc3339();
            let mut rec = actor.now_record(
                &record.id,
                ResourceType::Tenant,
                record.id.as_str(),
                Operation::Updated,
            );
            rec.name = Some(record.name.clone());
            rec.changed = [
                ("name", new_name.is_some()),
                ("adminEmail", new_email.is_some()),
            ]
            .iter()
            .filter(|(_, c)| *c)
            .map(|(n, _)| (*n).to_owned())
            .collect();
            match self
                .store
                .put_tenant_with(&record, Some(expected), &[rec])
                .await
            {
                Err(StoreError::VersionMismatch) => continue,
                other => {
                    other?;
                    tracing::info!(tenant = %record.id, actor = %actor, "tenant updated");
                    return Ok(record);
                }
            }
        }
        Err(AdminError::Conflict(
            "the tenant keeps changing concurrently; retry".into(),
        ))
    }

    pub async fn create_credentials(
        &self,
        actor: &Origin,
        raw: &str,
        origin: Option<&str>,
    ) -> Result<Issued, AdminError> {
        let record = self.get_tenant(raw).await?;
        let origin = origin.ok_or_else(|| {
            AdminError::Unavailable(
                "no public base URL is configured (PUBLIC_BASE_URL), so no link can be emailed; nothing changed".into(),
            )
        })?;
        let id = record.id.clone();
        let issued = self
            .credentials
            .create_and_email(record, origin, actor)
            .await?;
        tracing::info!(tenant = %id, actor = %actor, generation = issued.generation, "credentials created");
        Ok(issued)
    }
}

/// The record of a seat pool change.
fn pool_record(
    actor: &Origin,
    id: &TenantId,
    seats: Option<u64>,
    auto: Option<bool>,
) -> AuditRecord {
    let mut rec = actor.now_record(id, ResourceType::Tenant, id.as_str(), Operation::Updated);
    if seats.is_some() {
        rec.changed.push("seats".into());
    }
    if auto.is_some() {
        rec.changed.push("autoAssignLicences".into());
    }
    rec
}

fn not_found(raw: &str) -> AdminError {
    AdminError::NotFound(format!("tenant {raw:?} not found"))
}
