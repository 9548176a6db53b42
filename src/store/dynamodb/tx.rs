//! Building `TransactWriteItems` requests whose every action carries a
//! [`Tag`] saying what a failed condition on it means, and reading a
//! cancellation back through those tags. DynamoDB reports one reason per
//! action, in request order, so the index of a `ConditionalCheckFailed`
//! names the marker, version or membership that failed.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{
    CancellationReason, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use super::super::StoreError;
use super::keys::Item;

/// DynamoDB's limit on actions per transaction.
pub(super) const MAX_ACTIONS: usize = 100;

/// What a failed condition on an action means.
#[derive(Debug, Clone)]
pub(super) enum Tag {
    /// No condition.
    Plain,
    /// The resource (or group) the operation is about, written with
    /// `ReturnValuesOnConditionCheckFailure = ALL_OLD` so that a present
    /// item can be told from an absent one.
    Target {
        if_present: StoreError,
        if_absent: StoreError,
    },
    /// Claiming a unique key: it is held by another resource.
    Claim { attr: &'static str, value: String },
    /// Releasing a key marker held by another resource: leave it alone.
    Release(usize),
    /// Putting membership `i`: already a member, so it is a no-op.
    Add(usize),
    /// Checking that the member of op `i` exists.
    Exists(usize, String),
    /// Deleting membership `i`: not a member, so it is a no-op.
    Remove(usize),
    /// Deleting a deleted resource's membership in group `i`: already gone.
    Leave(usize),
    /// Bumping group `i` after removing a deleted member: the group is gone.
    LeaveGroup(usize),
    /// A seat pool condition (the pool, a place in line, a waiting user).
    Pool,
}

/// Actions found to be no-ops, to leave out of the next attempt.
#[derive(Debug, Default, Clone)]
pub(super) struct Drops {
    pub(super) ops: BTreeSet<usize>,
    pub(super) releases: BTreeSet<usize>,
    pub(super) leaves: BTreeSet<usize>,
    pub(super) leave_groups: BTreeSet<usize>,
}

impl Drops {
    fn is_empty(&self) -> bool {
        self.ops.is_empty()
            && self.releases.is_empty()
            && self.leaves.is_empty()
            && self.leave_groups.is_empty()
    }

    fn extend(&mut self, other: Drops) {
        self.ops.extend(other.ops);
        self.releases.extend(other.releases);
        self.leaves.extend(other.leaves);
        self.leave_groups.extend(other.leave_groups);
    }
}

/// Expression attribute names and values of one action.
#[derive(Debug, Default, Clone)]
pub(super) struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
}

impl Expr {
    pub(super) fn new() -> Expr {
        Expr::default()
    }

    /// `#alias` stands for `attr` in the expression.
    pub(super) fn name(mut self, alias: &str, attr: &str) -> Expr {
        self.names.insert(alias.into(), attr.into());
        self
    }

    pub(super) fn value(
        mut self,
        alias: &str,
        value: aws_sdk_dynamodb::types::AttributeValue,
    ) -> Expr {
        self.values.insert(alias.into(), value);
        self
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("building a DynamoDB request: {e}"))
}

fn old_on_failure(tag: &Tag) -> Option<ReturnValuesOnConditionCheckFailure> {
    matches!(tag, Tag::Target { .. }).then_some(ReturnValuesOnConditionCheckFailure::AllOld)
}

/// One transaction under construction.
#[derive(Debug)]
pub(super) struct Tx {
    table: std::sync::Arc<str>,
    pub(super) items: Vec<TransactWriteItem>,
    pub(super) tags: Vec<Tag>,
}

impl Tx {
    pub(super) fn new(table: std::sync::Arc<str>) -> Tx {
        Tx {
            table,
            items: Vec::new(),
            tags: Vec::new(),
        }
    }

    pub(super) fn put(
        &mut self,
        item: Item,
        cond: Option<&str>,
        expr: Expr,
        tag: Tag,
    ) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(self.table.as_ref())
            .set_item(Some(item))
            .set_condition_expression(cond.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .set_return_values_on_condition_check_failure(old_on_failure(&tag))
            .build()
            .map_err(build_err)?;
        self.items
            .push(TransactWriteItem::builder().put(put).build());
        self.tags.push(tag);
        Ok(())
    }

    pub(super) fn delete(
        &mut self,
        key: Item,
        cond: Option<&str>,
        expr: Expr,
        tag: Tag,
    ) -> Result<(), StoreError> {
        let delete = Delete::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key))
            .set_condition_expression(cond.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .set_return_values_on_condition_check_failure(old_on_failure(&tag))
            .build()
            .map_err(build_err)?;
        self.items
            .push(TransactWriteItem::builder().delete(delete).build());
        self.tags.push(tag);
        Ok(())
    }

    pub(super) fn update(
        &mut self,
        key: Item,
        update: &str,
        cond: Option<&str>,
        expr: Expr,
        tag: Tag,
    ) -> Result<(), StoreError> {
        let update = Update::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key))
            .update_expression(update)
            .set_condition_expression(cond.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .set_return_values_on_condition_check_failure(old_on_failure(&tag))
            .build()
            .map_err(build_err)?;
        self.items
            .push(TransactWriteItem::builder().update(update).build());
        self.tags.push(tag);
        Ok(())
    }

    pub(super) fn check(
        &mut self,
        key: Item,
        cond: &str,
        expr: Expr,
        tag: Tag,
    ) -> Result<(), StoreError> {
        let check = ConditionCheck::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key))
            .condition_expression(cond)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .set_return_values_on_condition_check_failure(old_on_failure(&tag))
            .build()
            .map_err(build_err)?;
        self.items
            .push(TransactWriteItem::builder().condition_check(check).build());
        self.tags.push(tag);
        Ok(())
    }
}

/// Reads a cancellation: the error to answer, or the no-op actions to drop
/// before trying again. `strict` decides whether a missing member fails the
/// write (the first transaction of an operation, which is atomic) or is
/// dropped (a follow-up chunk, where the member was deleted meanwhile).
///
/// Errors rank by what the caller must hear first: the target's version or
/// existence, then uniqueness, then missing members.
pub(super) fn interpret(
    tags: &[Tag],
    reasons: &[CancellationReason],
    strict: bool,
) -> Result<Drops, StoreError> {
    if reasons.len() != tags.len() {
        return Err(StoreError::Backend(format!(
            "transaction cancelled with {} reasons for {} actions",
            reasons.len(),
            tags.len()
        )));
    }
    let failed: Vec<(&Tag, &CancellationReason)> = tags
        .iter()
        .zip(reasons)
        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
        .collect();
    if failed.is_empty() {
        let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).collect();
        return Err(StoreError::Backend(format!(
            "transaction cancelled: {codes:?}"
        )));
    }
    for (tag, reason) in &failed {
        if let Tag::Target {
            if_present,
            if_absent,
        } = tag
        {
            let present = reason.item().is_some_and(|i| !i.is_empty());
            return Err(if present { if_present } else { if_absent }.clone());
        }
    }
    for (tag, _) in &failed {
        if let Tag::Claim { attr, value } = tag {
            return Err(StoreError::Conflict {
                attr,
                value: value.clone(),
            });
        }
    }
    if failed.iter().any(|(tag, _)| matches!(tag, Tag::Pool)) {
        return Err(StoreError::PoolChanged);
    }
    let mut drops = Drops::default();
    for (tag, _) in &failed {
        match tag {
            Tag::Exists(_, id) if strict => return Err(StoreError::MemberNotFound(id.clone())),
            Tag::Exists(i, _) | Tag::Add(i) | Tag::Remove(i) => {
                drops.ops.insert(*i);
            }
            Tag::Release(i) => {
                drops.releases.insert(*i);
            }
            Tag::Leave(i) => {
                drops.leaves.insert(*i);
            }
            Tag::LeaveGroup(i) => {
                drops.leave_groups.insert(*i);
            }
            Tag::Plain | Tag::Target { .. } | Tag::Claim { .. } | Tag::Pool => {
                return Err(StoreError::Backend(
                    "an unconditional action failed its condition".into(),
                ));
            }
        }
    }
    Ok(drops)
}

/// Accumulates drops across attempts; errs if an attempt dropped nothing
/// new, which would otherwise loop forever.
pub(super) fn merge(into: &mut Drops, more: Drops) -> Result<(), StoreError> {
    if more.is_empty() {
        return Err(StoreError::Backend(
            "transaction cancelled without a cause to drop".into(),
        ));
    }
    let before = (
        into.ops.len(),
        into.releases.len(),
        into.leaves.len(),
        into.leave_groups.len(),
    );
    into.extend(more);
    let after = (
        into.ops.len(),
        into.releases.len(),
        into.leaves.len(),
        into.leave_groups.len(),
    );
    if before == after {
        return Err(StoreError::Backend(
            "transaction cancelled again by actions already dropped".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: &str) -> CancellationReason {
        CancellationReason::builder().code(code).build()
    }

    fn tags() -> Vec<Tag> {
        vec![
            Tag::Target {
                if_present: StoreError::VersionMismatch,
                if_absent: StoreError::NotFound,
            },
            Tag::Claim {
                attr: "userName",
                value: "bob".into(),
            },
            Tag::Claim {
                attr: "externalId",
                value: "x".into(),
            },
            Tag::Add(0),
            Tag::Exists(0, "u1".into()),
        ]
    }

    #[test]
    fn the_failed_marker_names_the_conflict() {
        let r = [
            reason("None"),
            reason("None"),
            reason("ConditionalCheckFailed"),
            reason("None"),
            reason("None"),
        ];
        assert_eq!(
            interpret(&tags(), &r, true).unwrap_err(),
            StoreError::Conflict {
                attr: "externalId",
                value: "x".into()
            }
        );
    }

    #[test]
    fn the_target_outranks_everything_and_tells_present_from_absent() {
        let ccf = || reason("ConditionalCheckFailed");
        let absent = [ccf(), ccf(), reason("None"), ccf(), reason("None")];
        assert_eq!(
            interpret(&tags(), &absent, true).unwrap_err(),
            StoreError::NotFound
        );
        let present = CancellationReason::builder()
            .code("ConditionalCheckFailed")
            .item("PK", aws_sdk_dynamodb::types::AttributeValue::S("x".into()))
            .build();
        let r = [
            present,
            reason("None"),
            ccf(),
            reason("None"),
            reason("None"),
        ];
        assert_eq!(
            interpret(&tags(), &r, true).unwrap_err(),
            StoreError::VersionMismatch
        );
    }

    #[test]
    fn no_op_memberships_are_dropped_and_missing_members_fail_only_when_strict() {
        let ccf = || reason("ConditionalCheckFailed");
        let r = [
            reason("None"),
            reason("None"),
            reason("None"),
            ccf(),
            reason("None"),
        ];
        let drops = interpret(&tags(), &r, true).unwrap();
        assert_eq!(drops.ops.into_iter().collect::<Vec<_>>(), [0]);

        let r = [
            reason("None"),
            reason("None"),
            reason("None"),
            reason("None"),
            ccf(),
        ];
        assert_eq!(
            interpret(&tags(), &r, true).unwrap_err(),
            StoreError::MemberNotFound("u1".into())
        );
        assert!(interpret(&tags(), &r, false).is_ok());

        let mut all = Drops::default();
        merge(&mut all, interpret(&tags(), &r, false).unwrap()).unwrap();
        assert!(merge(&mut all, interpret(&tags(), &r, false).unwrap()).is_err());
    }
}
