//! The seat pool and the waiting line.
//!
//! | item        | PK      | SK                 |
//! |-------------|---------|--------------------|
//! | seat pool   | `T#{t}` | `POOL`             |
//! | place in line | `T#{t}` | `Q#{since}#{user}` |
//!
//! Pool changes ride in the transaction of the user write they belong to.
//! All of one transaction's changes to the pool fold into one UpdateItem
//! (a transaction may touch an item once) whose condition is the AND of
//! theirs, evaluated on the pool as it was: the service only combines
//! changes whose conditions hold together. A waiting user's licence lives
//! in its own attributes (`lic`, `licAt`), so a hand-over sets them
//! without reading or rewriting the user's document.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::call::{CallError, transient_code, with_retries};
use super::keys::*;
use super::tx::{Expr, Tag, Tx};
use super::{
    AuditRecord, DynamoStore, Kind, PoolOp, SeatPool, SkRange, StoreError, TenantId, Waiting,
};

const POOL_SK: &str = "POOL";
const SEATS: &str = "seats";
const USED: &str = "used";
const WAITING: &str = "waiting";
const AUTO: &str = "auto";

fn queue_sk(w: &Waiting) -> String {
    format!("Q#{}#{}", w.since, w.user)
}

fn pool_key(t: &TenantId) -> Item {
    key(tenant_pk(t), POOL_SK.into())
}

/// Actions `push_pool_ops` adds for `ops`.
pub(super) fn pool_actions(ops: &[PoolOp]) -> usize {
    if ops.is_empty() {
        return 0;
    }
    1 + ops
        .iter()
        .map(|op| match op {
            PoolOp::Take | PoolOp::TakeAny | PoolOp::Free => 0,
            PoolOp::Enqueue(_) | PoolOp::Dequeue(_) => 1,
            PoolOp::HandOver { .. } => 2,
        })
        .sum::<usize>()
}

/// The pool's attribute names that `expr_text` mentions (DynamoDB refuses
/// unused ones).
fn pool_expr(expr_text: &str) -> Expr {
    let mut e = Expr::new();
    for (alias, name) in [
        ("#seats", SEATS),
        ("#used", USED),
        ("#waiting", WAITING),
        ("#auto", AUTO),
    ] {
        if expr_text.contains(alias) {
            e = e.name(alias, name);
        }
    }
    e
}

/// Adds `ops` to a transaction: places in line, hand-overs, and one
/// conditional update of the pool.
pub(super) fn push_pool_ops(tx: &mut Tx, t: &TenantId, ops: &[PoolOp]) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Ok(());
    }
    let pk = tenant_pk(t);
    let (mut used, mut waiting) = (0i64, 0i64);
    let mut conds: Vec<&str> = Vec::new();
    for op in ops {
        match op {
            PoolOp::Take => {
                used += 1;
                conds.push("#auto = :true AND #used < #seats AND #waiting = :zero");
            }
            PoolOp::TakeAny => {
                used += 1;
                conds.push("#used < #seats");
            }
            PoolOp::Free => {
                used -= 1;
                conds.push("(#waiting = :zero OR #auto = :false) AND #used > :zero");
            }
            PoolOp::Enqueue(w) => {
                waiting += 1;
                conds.push("#auto = :false OR #used >= #seats OR #waiting > :zero");
                let mut item = key(pk.clone(), queue_sk(w));
                item.insert(ID.into(), s(w.user.as_str()));
                tx.put(item, None, Expr::new(), Tag::Plain)?;
            }
            PoolOp::Dequeue(w) => {
                waiting -= 1;
                tx.delete(
                    key(pk.clone(), queue_sk(w)),
                    Some("attribute_exists(#pk)"),
                    Expr::new().name("#pk", PK),
                    Tag::Pool,
                )?;
            }
            PoolOp::HandOver { who, now, spare } => {
                waiting -= 1;
                conds.push("#auto = :true");
                if *spare {
                    used += 1;
                    conds.push("#used < #seats");
                }
                tx.delete(
                    key(pk.clone(), queue_sk(who)),
                    Some("attribute_exists(#pk)"),
                    Expr::new().name("#pk", PK),
                    Tag::Pool,
                )?;
                tx.update(
                    key(pk.clone(), resource_sk(Kind::User, &who.user)),
                    "SET #lic = :assigned, #licat = :now, #lm = :now ADD #ver :one",
                    Some("#lic = :waiting"),
                    Expr::new()
                        .name("#lic", LIC)
                        .name("#licat", LIC_AT)
                        .name("#lm", LM)
                        .name("#ver", VER)
                        .value(":assigned", s("assigned"))
                        .value(":waiting", s("waiting"))
                        .value(":now", s(now.as_str()))
                        .value(":one", n(1)),
                    Tag::Pool,
                )?;
            }
        }
    }
    // DynamoDB refuses redundant parentheses: wrap only when joining.
    let cond = match conds.as_slice() {
        [] => "attribute_exists(#seats)".to_owned(),
        [one] => (*one).to_owned(),
        many => many
            .iter()
            .map(|c| format!("({c})"))
            .collect::<Vec<_>>()
            .join(" AND "),
    };
    let update = "ADD #used :du, #waiting :dw";
    let mut expr = pool_expr(&format!("{update} {cond}"))
        .value(":du", n(used))
        .value(":dw", n(waiting));
    for (alias, value) in [(":true", true), (":false", false)] {
        if cond.contains(alias) {
            expr = expr.value(alias, AttributeValue::Bool(value));
        }
    }
    if cond.contains(":zero") {
        expr = expr.value(":zero", n(0));
    }
    tx.update(pool_key(t), update, Some(&cond), expr, Tag::Pool)
}

fn decode_pool(item: &Item) -> Result<SeatPool, StoreError> {
    let num = |name: &str| {
        u64::try_from(get_n(item, name)?.max(0))
            .map_err(|_| StoreError::Backend(format!("pool {name}")))
    };
    Ok(SeatPool {
        seats: num(SEATS)?,
        used: num(USED)?,
        waiting: num(WAITING)?,
        auto: matches!(item.get(AUTO), Some(AttributeValue::Bool(true))),
    })
}

impl DynamoStore {
    pub(super) async fn read_pool(&self, t: &TenantId) -> Result<Option<SeatPool>, StoreError> {
        self.get_item(pool_key(t))
            .await?
            .map(|i| decode_pool(&i))
            .transpose()
    }

    pub(super) async fn create_pool(
        &self,
        t: &TenantId,
        pool: &SeatPool,
    ) -> Result<(), StoreError> {
        let mut item = pool_key(t);
        item.insert(SEATS.into(), n(pool.seats));
        item.insert(USED.into(), n(pool.used));
        item.insert(WAITING.into(), n(pool.waiting));
        item.insert(AUTO.into(), AttributeValue::Bool(pool.auto));
        let names = HashMap::from([("#pk".to_owned(), PK.to_owned())]);
        let result = with_retries("PutItem (pool)", self.budget, transient_code, || {
            self.client
                .put_item()
                .table_name(self.table.as_ref())
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(#pk)")
                .set_expression_attribute_names(Some(names.clone()))
                .send()
        })
        .await;
        match result {
            Ok(_) | Err(CallError::Service(PutItemError::ConditionalCheckFailedException(_))) => {
                Ok(())
            }
            Err(e) => Err(e.into_store()),
        }
    }

    /// The seat count and/or auto-assignment, with the change's audit
    /// records, in one transaction (which returns nothing, so the pool is
    /// read back).
    pub(super) async fn change_pool(
        &self,
        t: &TenantId,
        seats: Option<u64>,
        auto: Option<bool>,
        audit: &[AuditRecord],
    ) -> Result<SeatPool, StoreError> {
        let mut sets = Vec::new();
        let mut cond = "attribute_exists(#seats)".to_owned();
        let mut expr = Expr::new().name("#seats", SEATS);
        if let Some(n_seats) = seats {
            sets.push("#seats = :seats");
            cond.push_str(" AND #used <= :seats");
            expr = expr.name("#used", USED).value(":seats", n(n_seats));
        }
        if let Some(a) = auto {
            sets.push("#auto = :auto");
            expr = expr
                .name("#auto", AUTO)
                .value(":auto", AttributeValue::Bool(a));
        }
        if sets.is_empty() {
            return self.read_pool(t).await?.ok_or(StoreError::NotFound);
        }
        let update = format!("SET {}", sets.join(", "));
        let result = self
            .transact("TransactWriteItems (pool)", true, |_| {
                let mut tx = Tx::new(Arc::clone(&self.table));
                tx.update(pool_key(t), &update, Some(&cond), expr.clone(), Tag::Pool)?;
                super::audit::push_audit(&mut tx, audit)?;
                Ok(tx)
            })
            .await;
        match result {
            Ok(_) => self.read_pool(t).await?.ok_or(StoreError::NotFound),
            Err(StoreError::PoolChanged) => match self.read_pool(t).await? {
                None => Err(StoreError::NotFound),
                Some(_) => Err(StoreError::PoolChanged),
            },
            Err(e) => Err(e),
        }
    }

    pub(super) async fn line(
        &self,
        t: &TenantId,
        limit: usize,
    ) -> Result<Vec<Waiting>, StoreError> {
        let items = self
            .query(
                tenant_pk(t),
                SkRange::Prefix("Q#".into()),
                None,
                true,
                Some(limit),
            )
            .await?;
        items
            .iter()
            .map(|i| {
                let rest = sk_suffix(i, "Q#")?;
                let (since, user) = rest
                    .split_once('#')
                    .ok_or_else(|| StoreError::Backend(format!("bad place in line {rest:?}")))?;
                Ok(Waiting {
                    since: since.to_owned(),
                    user: user.to_owned(),
                })
            })
            .collect()
    }

    pub(super) async fn pool_only(
        &self,
        t: &TenantId,
        ops: &[PoolOp],
        audit: &[AuditRecord],
    ) -> Result<(), StoreError> {
        self.transact("TransactWriteItems (pool)", true, |_| {
            let mut tx = Tx::new(Arc::clone(&self.table));
            push_pool_ops(&mut tx, t, ops)?;
            super::audit::push_audit(&mut tx, audit)?;
            Ok(tx)
        })
        .await?;
        Ok(())
    }
}
