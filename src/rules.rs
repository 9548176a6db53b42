//! The product's provisioning rules, as pure decisions over product state
//! (no I/O): the SCIM label, licences with a fair waiting line, and
//! protected administrators. The service layer turns each decision into
//! one atomic store write ([`PoolOp`]s ride with the user write) and
//! re-plans when the pool changed under it.
//!
//! What holds, on every store and under concurrency:
//! * `seats.used` is the number of licensed users and `seats.waiting` the
//!   number in line: every change to a user's licence and to the pool is
//!   one atomic write, conditioned on the pool as the plan assumed it.
//! * Nobody skips the line: a user takes a seat directly only when nobody
//!   is waiting; a freed seat goes to the head of the line in the same
//!   write that frees it (auto-assignment on).
//! * An admin is never deactivated or deleted through SCIM; the grant is
//!   a conditional write of the user too, so of a grant and a concurrent
//!   deactivation one is refused or re-planned, never both applied.

use serde_json::{Map, Value};

use crate::scim::model::{Licence, PoolOp, Product, SeatPool, Waiting};

/// Seats of a new tenant unless the admin says otherwise.
pub const DEFAULT_SEATS: u64 = 25;
/// Seats of the local demo tenants: enough to try things.
pub const DEMO_SEATS: u64 = 1000;

pub fn new_pool(seats: u64, auto: bool) -> SeatPool {
    SeatPool {
        seats,
        used: 0,
        waiting: 0,
        auto,
    }
}

/// What the plan may assume about the pool.
#[derive(Debug, Clone, Copy)]
pub enum PoolView<'a> {
    /// Not read: assume the common case (a seat is free, nobody waits);
    /// the write's conditions catch a wrong guess.
    Guess,
    /// As just read, with the head of the line.
    Known {
        pool: &'a SeatPool,
        head: Option<&'a Waiting>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "this user is an administrator: remove the admin role in the admin console before deactivating or deleting it through SCIM"
    )]
    AdminProtected,
    #[error("no seat is free: free a licence or raise the tenant's seats first")]
    NoSeat,
    #[error("the user is inactive: only active users can be made administrators")]
    Inactive,
}

/// A user's new product state and the pool changes that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub product: Product,
    pub ops: Vec<PoolOp>,
}

/// `active` as stored; a user without it counts as active (RFC 7643 leaves
/// the default to the service provider).
pub fn is_active(attrs: &Map<String, Value>) -> bool {
    attrs.get("active") != Some(&Value::Bool(false))
}

fn take_or_wait(p: &mut Product, id: &str, now: &str, view: PoolView<'_>) -> Vec<PoolOp> {
    let direct = match view {
        PoolView::Guess => true,
        PoolView::Known { pool, .. } => pool.auto && pool.used < pool.seats && pool.waiting == 0,
    };
    p.licence_since = Some(now.to_owned());
    if direct {
        p.licence = Licence::Assigned;
        vec![PoolOp::Take]
    } else {
        p.licence = Licence::Waiting;
        vec![PoolOp::Enqueue(Waiting {
            since: now.to_owned(),
            user: id.to_owned(),
        })]
    }
}

/// Giving up a user's licence (`p` is its state before): the seat goes to
/// the head of the line, or back to the pool; a waiting user leaves the line.
fn release(p: &Product, id: &str, now: &str, view: PoolView<'_>) -> Vec<PoolOp> {
    match p.licence {
        Licence::None => Vec::new(),
        Licence::Waiting => vec![PoolOp::Dequeue(Waiting {
            since: p.licence_since.clone().unwrap_or_default(),
            user: id.to_owned(),
        })],
        Licence::Assigned => match view {
            PoolView::Known {
                pool,
                head: Some(h),
            } if pool.auto && h.user != id => vec![PoolOp::HandOver {
                who: h.clone(),
                now: now.to_owned(),
                spare: false,
            }],
            _ => vec![PoolOp::Free],
        },
    }
}

/// A user created through SCIM: labelled, and licensed or in line if active.
/// `now` is the label's time, `since` the same instant in the line's
/// sortable form.
pub fn on_scim_create(id: &str, active: bool, now: &str, since: &str, view: PoolView<'_>) -> Plan {
    let mut product = Product {
        provisioned_at: Some(now.to_owned()),
        ..Product::default()
    };
    let ops = if active {
        take_or_wait(&mut product, id, since, view)
    } else {
        Vec::new()
    };
    Plan { product, ops }
}

/// A user added in the console: not labelled, no licence until assigned.
pub fn on_console_create() -> Product {
    Product::default()
}

/// A SCIM PUT or PATCH of a user. Its first SCIM write adopts a console
/// user (labels it); deactivation frees the licence (refused for an
/// admin); reactivation asks for one again.
pub fn on_scim_update(
    id: &str,
    before: &Product,
    was_active: bool,
    now_active: bool,
    now: &str,
    since: &str,
    view: PoolView<'_>,
) -> Result<Plan, RuleError> {
    let mut product = before.clone();
    if product.provisioned_at.is_none() {
        product.provisioned_at = Some(now.to_owned());
    }
    let ops = match (was_active, now_active) {
        (true, false) if before.admin => return Err(RuleError::AdminProtected),
        (true, false) => {
            let ops = release(before, id, since, view);
            product.licence = Licence::None;
            product.licence_since = None;
            ops
        }
        (false, true) if before.licence == Licence::None => {
            take_or_wait(&mut product, id, since, view)
        }
        _ => Vec::new(),
    };
    Ok(Plan { product, ops })
}

/// A SCIM DELETE of a user: refused for an admin; frees its licence.
pub fn on_scim_delete(
    id: &str,
    before: &Product,
    now: &str,
    view: PoolView<'_>,
) -> Result<Vec<PoolOp>, RuleError> {
    if before.admin {
        return Err(RuleError::AdminProtected);
    }
    Ok(release(before, id, now, view))
}

/// An admin assigns a licence by hand (whatever auto-assignment says).
pub fn assign(id: &str, before: &Product, active: bool, now: &str) -> Option<Plan> {
    if before.licence == Licence::Assigned || !active {
        return None;
    }
    let mut ops = vec![PoolOp::TakeAny];
    if before.licence == Licence::Waiting {
        ops.push(PoolOp::Dequeue(Waiting {
            since: before.licence_since.clone().unwrap_or_default(),
            user: id.to_owned(),
        }));
    }
    let product = Product {
        licence: Licence::Assigned,
        licence_since: Some(now.to_owned()),
        ..before.clone()
    };
    Some(Plan { product, ops })
}

/// An admin removes a user's licence (or takes it out of the line).
pub fn unassign(id: &str, before: &Product, now: &str, view: PoolView<'_>) -> Option<Plan> {
    if before.licence == Licence::None {
        return None;
    }
    let ops = release(before, id, now, view);
    let product = Product {
        licence: Licence::None,
        licence_since: None,
        ..before.clone()
    };
    Some(Plan { product, ops })
}

/// Granting the admin role; only an active user can hold it.
pub fn grant_admin(before: &Product, active: bool) -> Result<Option<Product>, RuleError> {
    if before.admin {
        return Ok(None);
    }
    if !active {
        return Err(RuleError::Inactive);
    }
    Ok(Some(Product {
        admin: true,
        ..before.clone()
    }))
}

pub fn revoke_admin(before: &Product) -> Option<Product> {
    before.admin.then(|| Product {
        admin: false,
        ..before.clone()
    })
}

/// The next step of serving the line from spare seats, if one is due.
pub fn serve_step(pool: &SeatPool, head: Option<&Waiting>, now: &str) -> Option<PoolOp> {
    let head = head?;
    (pool.auto && pool.used < pool.seats).then(|| PoolOp::HandOver {
        who: head.clone(),
        now: now.to_owned(),
        spare: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn pool(seats: u64, used: u64, waiting: u64, auto: bool) -> SeatPool {
        SeatPool {
            seats,
            used,
            waiting,
            auto,
        }
    }

    fn head(user: &str) -> Waiting {
        Waiting {
            since: "2025-01-01T00:00:00Z".into(),
            user: user.into(),
        }
    }

    #[test]
    fn a_scim_create_takes_a_seat_only_when_nobody_waits() {
        let p = on_scim_create("u", true, NOW, NOW, PoolView::Guess);
        assert_eq!(p.product.licence, Licence::Assigned);
        assert_eq!(p.ops, [PoolOp::Take]);
        assert_eq!(p.product.provisioned_at.as_deref(), Some(NOW));
        let h = head("w");
        for known in [
            pool(10, 10, 0, true),
            pool(10, 3, 1, true),
            pool(10, 0, 0, false),
        ] {
            let view = PoolView::Known {
                pool: &known,
                head: Some(&h),
            };
            let p = on_scim_create("u", true, NOW, NOW, view);
            assert_eq!(p.product.licence, Licence::Waiting, "{known:?}");
            assert!(matches!(p.ops[..], [PoolOp::Enqueue(_)]));
        }
        let inactive = on_scim_create("u", false, NOW, NOW, PoolView::Guess);
        assert_eq!(
            (inactive.product.licence, inactive.ops.len()),
            (Licence::None, 0)
        );
    }

    #[test]
    fn deactivation_hands_the_seat_to_the_head_of_the_line() {
        let licensed = Product {
            licence: Licence::Assigned,
            provisioned_at: Some(NOW.into()),
            ..Product::default()
        };
        let full = pool(1, 1, 1, true);
        let h = head("w");
        let view = PoolView::Known {
            pool: &full,
            head: Some(&h),
        };
        let p = on_scim_update("u", &licensed, true, false, NOW, NOW, view).unwrap();
        assert_eq!(p.product.licence, Licence::None);
        assert!(matches!(
            &p.ops[..],
            [PoolOp::HandOver { spare: false, .. }]
        ));
        // Auto-assignment off: the seat goes back to the pool.
        let manual = pool(1, 1, 1, false);
        let view = PoolView::Known {
            pool: &manual,
            head: Some(&h),
        };
        let p = on_scim_update("u", &licensed, true, false, NOW, NOW, view).unwrap();
        assert_eq!(p.ops, [PoolOp::Free]);
    }

    #[test]
    fn admins_cannot_be_deactivated_or_deleted_but_can_be_renamed() {
        let admin = Product {
            admin: true,
            licence: Licence::Assigned,
            ..Product::default()
        };
        assert_eq!(
            on_scim_update("u", &admin, true, false, NOW, NOW, PoolView::Guess),
            Err(RuleError::AdminProtected)
        );
        assert_eq!(
            on_scim_delete("u", &admin, NOW, PoolView::Guess),
            Err(RuleError::AdminProtected)
        );
        let renamed = on_scim_update("u", &admin, true, true, NOW, NOW, PoolView::Guess).unwrap();
        assert!(renamed.ops.is_empty() && renamed.product.admin);
        assert_eq!(
            grant_admin(&Product::default(), false),
            Err(RuleError::Inactive)
        );
    }

    #[test]
    fn the_first_scim_write_adopts_a_console_user() {
        let console = on_console_create();
        let p = on_scim_update("u", &console, true, true, NOW, NOW, PoolView::Guess).unwrap();
        assert_eq!(p.product.provisioned_at.as_deref(), Some(NOW));
        assert_eq!(p.product.licence, Licence::None);
    }

    #[test]
    fn spare_seats_serve_the_line_only_with_auto_assignment() {
        let h = head("w");
        assert!(serve_step(&pool(2, 1, 1, true), Some(&h), NOW).is_some());
        assert!(serve_step(&pool(2, 2, 1, true), Some(&h), NOW).is_none());
        assert!(serve_step(&pool(2, 1, 1, false), Some(&h), NOW).is_none());
        assert!(serve_step(&pool(2, 1, 0, true), None, NOW).is_none());
    }
}
