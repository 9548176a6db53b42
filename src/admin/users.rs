//! The admin view of a tenant's users and groups, and the levers SCIM
//! never has: adding a user in the console, assigning and removing
//! licences by hand, granting and revoking the admin role. Every change
//! goes through [`Service::change_user`], so it is one conditional write
//! of the user with its seat pool changes, re-decided after any race.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminError};
use crate::audit::{Operation, Origin};
use crate::rules::{self, Plan, PoolView, RuleError};
use crate::scim::model::{Licence, StoredResource, TenantId};
use crate::scim::schema::{Kind, USER_URN};
use crate::service::{ChangeError, Ctx};
use crate::store::StoreError;

/// Users scanned per store call while filtering a listing.
const SCAN_BATCH: usize = 200;
/// A filtered listing scans at most this many users per request, then
/// answers what it found with a cursor to continue.
const SCAN_LIMIT: usize = 5000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewUser {
    pub user_name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// Filters of `GET …/users`.
#[derive(Debug, Default, Clone)]
pub struct UserFilter {
    /// `Some(true)`: SCIM-provisioned only; `Some(false)`: console-added only.
    pub scim: Option<bool>,
    pub licence: Option<Licence>,
    pub admin: Option<bool>,
}

impl UserFilter {
    fn matches(&self, u: &StoredResource) -> bool {
        let p = &u.product;
        self.scim.is_none_or(|s| s == p.provisioned_at.is_some())
            && self.licence.is_none_or(|l| l == p.licence)
            && self.admin.is_none_or(|a| a == p.admin)
    }
}

/// A user as the admin console lists it.
pub fn user_view(u: &StoredResource) -> Value {
    let p = &u.product;
    json!({
        "id": u.id,
        "userName": u.attrs.get("userName"),
        "displayName": u.attrs.get("displayName"),
        "active": rules::is_active(&u.attrs),
        "provisionedBy": if p.provisioned_at.is_some() { "scim" } else { "manual" },
        "provisionedAt": p.provisioned_at,
        "licence": p.licence.name(),
        "licenceSince": p.licence_since,
        "admin": p.admin,
        "created": u.created,
        "lastModified": u.last_modified,
    })
}

fn change_err(e: ChangeError, id: &str) -> AdminError {
    match e {
        ChangeError::Rule(RuleError::NoSeat) => AdminError::ConflictCode {
            code: "no_seat_free",
            detail: RuleError::NoSeat.to_string(),
        },
        ChangeError::Rule(RuleError::Inactive) => AdminError::ConflictCode {
            code: "user_inactive",
            detail: RuleError::Inactive.to_string(),
        },
        ChangeError::Rule(e @ RuleError::AdminProtected) => AdminError::ConflictCode {
            code: "admin_protected",
            detail: e.to_string(),
        },
        ChangeError::Store(StoreError::NotFound) => {
            AdminError::NotFound(format!("user {id:?} not found"))
        }
        ChangeError::Store(e) => e.into(),
    }
}

impl Admin {
    async fn tenant_of(&self, raw: &str) -> Result<TenantId, AdminError> {
        Ok(self.get_tenant(raw).await?.id)
    }

    /// The console's "add user": not labelled SCIM, no licence.
    pub async fn create_user(
        &self,
        actor: &Origin,
        raw: &str,
        new: NewUser,
    ) -> Result<StoredResource, AdminError> {
        let t = self.tenant_of(raw).await?;
        let mut body = json!({"schemas": [USER_URN], "userName": new.user_name, "active": true});
        if let Some(d) = new.display_name {
            body["displayName"] = json!(d);
        }
        if let Some(e) = new.email {
            super::email(&e)?;
            body["emails"] = json!([{"value": e, "type": "work", "primary": true}]);
        }
        let ctx = Ctx {
            tenant: t.clone(),
            base_url: String::new(),
            origin: actor.clone(),
        };
        let u = self
            .service
            .create_from_console(&ctx, &body)
            .await
            .map_err(|e| match e.status() {
                409 => AdminError::Conflict(e.detail()),
                400 => AdminError::bad("invalid_user", e.detail()),
                413 => AdminError::PayloadTooLarge(e.detail()),
                503 => AdminError::Unavailable(e.detail()),
                _ => AdminError::Internal(e.detail()),
            })?;
        tracing::info!(tenant = %t, actor = %actor, user = %u.id, "user added in the console");
        Ok(u)
    }

    pub async fn user(&self, raw: &str, id: &str) -> Result<StoredResource, AdminError> {
        let t = self.tenant_of(raw).await?;
        self.store
            .get(&t, Kind::User, id)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("user {id:?} not found")))
    }

    /// A page of users in id order that match `filter`, and the cursor of
    /// the next page (the last id scanned) if there may be more.
    pub async fn list_users(
        &self,
        raw: &str,
        filter: &UserFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<StoredResource>, Option<String>), AdminError> {
        let t = self.tenant_of(raw).await?;
        let mut after = cursor;
        let mut out = Vec::new();
        let mut scanned = 0;
        loop {
            let batch = self
                .store
                .list(&t, Kind::User, after.as_deref(), SCAN_BATCH.max(limit))
                .await?;
            let full = batch.len() == SCAN_BATCH.max(limit);
            for u in batch {
                scanned += 1;
                after = Some(u.id.clone());
                if filter.matches(&u) {
                    out.push(u);
                    if out.len() == limit {
                        return Ok((out, after));
                    }
                }
            }
            if !full {
                return Ok((out, None));
            }
            if scanned >= SCAN_LIMIT {
                return Ok((out, after));
            }
        }
    }

    /// Groups in id order with their member counts.
    pub async fn list_groups(
        &self,
        raw: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<StoredResource>, Option<String>), AdminError> {
        let t = self.tenant_of(raw).await?;
        let page = self.store.list(&t, Kind::Group, cursor, limit).await?;
        let next = (page.len() == limit)
            .then(|| page.last().map(|g| g.id.clone()))
            .flatten();
        Ok((page, next))
    }

    /// A page of a group's members in id order.
    pub async fn group_members(
        &self,
        raw: &str,
        group: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), AdminError> {
        let t = self.tenant_of(raw).await?;
        if self.store.get(&t, Kind::Group, group).await?.is_none() {
            return Err(AdminError::NotFound(format!("group {group:?} not found")));
        }
        let page = self.store.members(&t, group, cursor, limit).await?;
        let next = (page.len() == limit)
            .then(|| page.last().map(|m| m.id.clone()))
            .flatten();
        let members = page
            .iter()
            .map(|m| json!({"id": m.id, "type": m.kind.name()}))
            .collect();
        Ok((members, next))
    }

    async fn change<F>(
        &self,
        actor: &Origin,
        raw: &str,
        id: &str,
        what: &str,
        operation: Operation,
        decide: F,
    ) -> Result<StoredResource, AdminError>
    where
        F: Fn(&StoredResource, PoolView<'_>) -> Result<Option<Plan>, RuleError>,
    {
        let t = self.tenant_of(raw).await?;
        let u = self
            .service
            .change_user(&t, id, actor, operation, decide)
            .await
            .map_err(|e| change_err(e, id))?;
        tracing::info!(tenant = %t, actor = %actor, user = %id, what, "user changed in the console");
        Ok(u)
    }

    pub async fn assign_licence(
        &self,
        actor: &Origin,
        raw: &str,
        id: &str,
    ) -> Result<StoredResource, AdminError> {
        let now = crate::service::now_sortable();
        self.change(
            actor,
            raw,
            id,
            "licence assigned",
            Operation::LicenceAssigned,
            |u, view| {
                let plan = rules::assign(id, &u.product, rules::is_active(&u.attrs), &now);
                // Without a free seat the write's condition fails; once the
                // pool is known, say so instead of trying again.
                if let (Some(_), PoolView::Known { pool, .. }) = (&plan, view)
                    && pool.used >= pool.seats
                {
                    return Err(RuleError::NoSeat);
                }
                if plan.is_none() && !rules::is_active(&u.attrs) {
                    return Err(RuleError::Inactive);
                }
                Ok(plan)
            },
        )
        .await
    }

    pub async fn remove_licence(
        &self,
        actor: &Origin,
        raw: &str,
        id: &str,
    ) -> Result<StoredResource, AdminError> {
        let now = crate::service::now_sortable();
        self.change(
            actor,
            raw,
            id,
            "licence removed",
            Operation::LicenceReleased,
            |u, view| Ok(rules::unassign(id, &u.product, &now, view)),
        )
        .await
    }

    pub async fn grant_admin(
        &self,
        actor: &Origin,
        raw: &str,
        id: &str,
    ) -> Result<StoredResource, AdminError> {
        self.change(
            actor,
            raw,
            id,
            "admin role granted",
            Operation::AdminGranted,
            |u, _| {
                Ok(
                    rules::grant_admin(&u.product, rules::is_active(&u.attrs))?.map(|product| {
                        Plan {
                            product,
                            ops: Vec::new(),
                        }
                    }),
                )
            },
        )
        .await
    }

    pub async fn revoke_admin(
        &self,
        actor: &Origin,
        raw: &str,
        id: &str,
    ) -> Result<StoredResource, AdminError> {
        self.change(
            actor,
            raw,
            id,
            "admin role revoked",
            Operation::AdminRevoked,
            |u, _| {
                Ok(rules::revoke_admin(&u.product).map(|product| Plan {
                    product,
                    ops: Vec::new(),
                }))
            },
        )
        .await
    }
}

/// `?provisioned=scim|manual&licence=…&admin=true|false` into a filter.
pub fn parse_filter(key: &str, value: &str, f: &mut UserFilter) -> Result<bool, AdminError> {
    match key {
        "provisioned" => {
            f.scim = Some(match value {
                "scim" => true,
                "manual" => false,
                _ => {
                    return Err(AdminError::bad(
                        "invalid_filter",
                        "provisioned: scim or manual",
                    ));
                }
            });
        }
        "licence" => {
            f.licence = Some(Licence::parse(value).ok_or_else(|| {
                AdminError::bad("invalid_filter", "licence: assigned, waiting or none")
            })?);
        }
        "admin" => {
            f.admin = Some(match value {
                "true" => true,
                "false" => false,
                _ => return Err(AdminError::bad("invalid_filter", "admin: true or false")),
            });
        }
        _ => return Ok(false),
    }
    Ok(true)
}
