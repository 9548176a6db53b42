//! `GET /Users?filter=groups.value eq "{group}"`: a big group's members,
//! paged, served from its membership records (in member id order), never
//! by scanning users.
//!
//! A page reads the membership records it shows and those users. What a
//! page also needs, the number of user members (`totalResults`) and where
//! index page `startIndex` begins, comes from a [`MemberIndex`]: one pass
//! over the group's membership records that counts its users and notes
//! every [`STRIDE`]th one. It is kept per group version, which every
//! member change bumps, so an index is never used for another membership
//! than the one it counted; it only saves work, and pages themselves are
//! always read live. A cold index costs one pass (about 10 reads for
//! 100,000 members on DynamoDB); after that a page at any `startIndex`
//! costs the same.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::{Ctx, Service, store_err};
use crate::scim::error::ScimResult;
use crate::scim::filter::{CompareOp, Filter, Literal};
use crate::scim::model::StoredResource;
use crate::scim::schema::Kind;

/// Users between two marks of an index.
const STRIDE: u64 = 1000;
/// Membership records read per store call by the counting pass.
const PASS_BATCH: usize = 10_000;
/// Groups whose index an instance keeps.
const CACHED_GROUPS: usize = 64;

/// The group a filter asks the members of: `groups.value eq "{id}"` (or
/// `groups eq "{id}"`, `value` being the default sub-attribute).
pub(super) fn group_filter(f: &Filter) -> Option<String> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Literal::String(v),
        } if path.urn.is_none()
            && path.name.eq_ignore_ascii_case("groups")
            && path
                .sub
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("value")) =>
        {
            // `groups.value` is not caseExact, and ids are minted lower-case.
            Some(v.to_ascii_lowercase())
        }
        _ => None,
    }
}

/// One counting pass over a group's membership records.
#[derive(Debug)]
struct MemberIndex {
    /// The group version it counted.
    version: u64,
    /// User members (nested groups are members too, but not users).
    users: u64,
    /// `marks[i]`: the id of user number `(i + 1) * STRIDE` (1-based), so
    /// the page starting after it begins at offset `(i + 1) * STRIDE`.
    marks: Vec<String>,
}

/// Per-instance indexes of the groups paged most recently: a group being
/// paged through stays while others come and go.
#[derive(Debug)]
pub(super) struct MemberIndexes {
    by_group: Mutex<LruCache<(String, String), Arc<MemberIndex>>>,
}

impl Default for MemberIndexes {
    fn default() -> Self {
        let cap = NonZeroUsize::new(CACHED_GROUPS).unwrap_or(NonZeroUsize::MIN);
        MemberIndexes {
            by_group: Mutex::new(LruCache::new(cap)),
        }
    }
}

impl MemberIndexes {
    fn get(&self, tenant: &str, group: &str, version: u64) -> Option<Arc<MemberIndex>> {
        let mut map = self.by_group.lock().ok()?;
        map.get(&(tenant.to_owned(), group.to_owned()))
            .filter(|i| i.version == version)
            .cloned()
    }

    fn put(&self, tenant: &str, group: &str, index: Arc<MemberIndex>) {
        if let Ok(mut map) = self.by_group.lock() {
            map.put((tenant.to_owned(), group.to_owned()), index);
        }
    }
}

/// A page of a group's user members.
pub(super) struct MemberPage {
    pub total: u64,
    pub users: Vec<StoredResource>,
    pub more: bool,
    /// The last member id the page covers, where the next page starts
    /// after (a membership whose user is gone is covered, not shown).
    pub last: Option<String>,
}

impl Service {
    async fn member_index(
        &self,
        ctx: &Ctx,
        group: &StoredResource,
    ) -> ScimResult<Arc<MemberIndex>> {
        let t = ctx.tenant.as_str();
        if let Some(i) = self.member_indexes.get(t, &group.id, group.version) {
            return Ok(i);
        }
        let mut users = 0u64;
        let mut marks = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch = self
                .store
                .members(&ctx.tenant, &group.id, after.as_deref(), PASS_BATCH)
                .await
                .map_err(|e| store_err(Kind::Group, e))?;
            for m in batch.iter().filter(|m| m.kind == Kind::User) {
                users += 1;
                if users % STRIDE == 0 {
                    marks.push(m.id.clone());
                }
            }
            after = batch.last().map(|m| m.id.clone());
            if batch.len() < PASS_BATCH || after.is_none() {
                break;
            }
        }
        let index = Arc::new(MemberIndex {
            version: group.version,
            users,
            marks,
        });
        // While a chunked change is under way its later chunks change the
        // members without a new version: an index of this one would go stale.
        if !group.settling {
            self.member_indexes.put(t, &group.id, index.clone());
        }
        Ok(index)
    }

    /// Up to `count` user members of `group_id` from `offset` (0-based),
    /// or right after user `after` (a cursor's last id) when given.
    pub(super) async fn member_page(
        &self,
        ctx: &Ctx,
        group_id: &str,
        offset: u64,
        after: Option<&str>,
        count: usize,
    ) -> ScimResult<MemberPage> {
        let empty = MemberPage {
            total: 0,
            users: Vec::new(),
            more: false,
            last: None,
        };
        // A filter naming no group of this tenant matches nobody.
        let Some(group) = self
            .store
            .get(&ctx.tenant, Kind::Group, group_id)
            .await
            .map_err(|e| store_err(Kind::Group, e))?
        else {
            return Ok(empty);
        };
        let index = self.member_index(ctx, &group).await?;
        // A cursor continues after its key, wherever that now is (members
        // before it may have left since): only index pages stop at the end.
        if count == 0 || (after.is_none() && offset >= index.users) {
            return Ok(MemberPage {
                total: index.users,
                ..empty
            });
        }
        let (mut cursor, mut skip) = match after {
            Some(a) => (Some(a.to_owned()), 0),
            None => {
                let mark = usize::try_from(offset / STRIDE).unwrap_or(usize::MAX);
                let start = mark
                    .checked_sub(1)
                    .and_then(|i| index.marks.get(i))
                    .cloned();
                let skipped = if start.is_some() {
                    mark as u64 * STRIDE
                } else {
                    0
                };
                (start, offset - skipped)
            }
        };
        // One more than asked tells whether another page follows.
        let mut ids: Vec<String> = Vec::with_capacity(count + 1);
        loop {
            let want = usize::try_from(skip)
                .unwrap_or(usize::MAX)
                .saturating_add(count + 1 - ids.len())
                .min(PASS_BATCH);
            let batch = self
                .store
                .members(&ctx.tenant, group_id, cursor.as_deref(), want)
                .await
                .map_err(|e| store_err(Kind::Group, e))?;
            for m in batch.iter().filter(|m| m.kind == Kind::User) {
                if skip > 0 {
                    skip -= 1;
                } else if ids.len() <= count {
                    ids.push(m.id.clone());
                }
            }
            cursor = batch.last().map(|m| m.id.clone());
            if ids.len() > count || batch.len() < want || cursor.is_none() {
                break;
            }
        }
        let more = ids.len() > count;
        ids.truncate(count);
        let last = ids.last().cloned();
        let mut found = self
            .store
            .get_many(&ctx.tenant, &ids)
            .await
            .map_err(|e| store_err(Kind::User, e))?;
        found.retain(|r| r.kind == Kind::User);
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(MemberPage {
            total: index.users,
            users: found,
            more,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(version: u64) -> Arc<MemberIndex> {
        Arc::new(MemberIndex {
            version,
            users: 0,
            marks: Vec::new(),
        })
    }

    #[test]
    fn the_group_being_paged_stays_while_others_come_and_go() {
        let cache = MemberIndexes::default();
        cache.put("t", "paged", index(1));
        for i in 0..CACHED_GROUPS * 3 {
            cache.put("t", &format!("g{i}"), index(1));
            assert!(
                cache.get("t", "paged", 1).is_some(),
                "evicted after {i} others"
            );
        }
        assert!(cache.get("t", "paged", 2).is_none(), "another version");
        assert!(cache.get("u", "paged", 1).is_none(), "another tenant");
        assert!(cache.get("t", "g0", 1).is_none(), "the least recent went");
        let newest = format!("g{}", CACHED_GROUPS * 3 - 1);
        assert!(cache.get("t", &newest, 1).is_some());
    }
}
