//! The tenant registry and pending "Get Secret Token" links.
//!
//! | item            | PK            | SK              |
//! |-----------------|---------------|-----------------|
//! | tenant record   | `TENANT#{t}`  | `TENANT`        |
//! | directory entry | `TENANTS`     | `{t}`           |
//! | reveal link     | `TENANT#{t}`  | `REVEAL#{hash}` |
//!
//! Every SCIM request reads its tenant record (the credential generation),
//! so records live in one partition per tenant; the directory partition is
//! only written when a tenant is created and read by the admin listing.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValue;

use super::call::{CallError, transient_code, with_retries};
use super::keys::*;
use super::tx::{Expr, Tag, Tx};
use super::{AuditRecord, DynamoStore, RevealRecord, StoreError, TenantId, TenantRecord};

const DIRECTORY_PK: &str = "TENANTS";
/// `BatchGetItem`'s limit, and so the largest listing page.
const MAX_PAGE: usize = 100;

fn reveal_sk(hash: &str) -> String {
    format!("REVEAL#{hash}")
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encoding record: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, DOC)?)
        .map_err(|e| StoreError::Backend(format!("undecodable record: {e}")))
}

fn tenant_item(record: &TenantRecord) -> Result<Item, StoreError> {
    let mut item = key(tenant_record_pk(&record.id), TENANT_SK.into());
    item.insert(DOC.into(), s(encode(record)?));
    item.insert(VER.into(), n(record.version));
    Ok(item)
}

impl DynamoStore {
    pub(super) async fn read_tenant(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<TenantRecord>, StoreError> {
        let item = self
            .get_item(key(tenant_record_pk(tenant), TENANT_SK.into()))
            .await?;
        item.map(|i| decode(&i)).transpose()
    }

    pub(super) async fn write_tenant(
        &self,
        record: &TenantRecord,
        expected: Option<u64>,
        audit: &[AuditRecord],
    ) -> Result<(), StoreError> {
        let item = tenant_item(record)?;
        let Some(expected) = expected else {
            // The record and its directory entry, atomically.
            let mut entry = key(DIRECTORY_PK.into(), record.id.to_string());
            entry.insert(ID.into(), s(record.id.as_str()));
            self.transact("TransactWriteItems (tenant)", true, |_| {
                let mut tx = Tx::new(Arc::clone(&self.table));
                tx.put(
                    item.clone(),
                    Some("attribute_not_exists(#pk)"),
                    Expr::new().name("#pk", PK),
                    Tag::Claim {
                        attr: "id",
                        value: record.id.to_string(),
                    },
                )?;
                tx.put(entry.clone(), None, Expr::new(), Tag::Plain)?;
                super::audit::push_audit(&mut tx, audit)?;
                Ok(tx)
            })
            .await?;
            return Ok(());
        };
        if !audit.is_empty() {
            // The change and its records, in one transaction.
            self.transact("TransactWriteItems (tenant)", true, |_| {
                let mut tx = Tx::new(Arc::clone(&self.table));
                tx.put(
                    item.clone(),
                    Some("#ver = :v"),
                    Expr::new().name("#ver", VER).value(":v", n(expected)),
                    Tag::Target {
                        if_present: StoreError::VersionMismatch,
                        if_absent: StoreError::VersionMismatch,
                    },
                )?;
                super::audit::push_audit(&mut tx, audit)?;
                Ok(tx)
            })
            .await?;
            return Ok(());
        }
        let names = HashMap::from([("#ver".to_owned(), VER.to_owned())]);
        let values = HashMap::from([(":v".to_owned(), n(expected))]);
        let result = with_retries("PutItem (tenant)", self.budget, transient_code, || {
            self.client
                .put_item()
                .table_name(self.table.as_ref())
                .set_item(Some(item.clone()))
                .condition_expression("#ver = :v")
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(CallError::Service(PutItemError::ConditionalCheckFailedException(_))) => {
                Err(StoreError::VersionMismatch)
            }
            Err(e) => Err(e.into_store()),
        }
    }

    /// One Query of the directory, then one `BatchGetItem` of the records.
    pub(super) async fn tenants_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        let limit = limit.min(MAX_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let entries = self
            .query(
                DIRECTORY_PK.into(),
                // Tenant ids are `[A-Za-z0-9_-]`, all between '-' and '~'.
                super::SkRange::Between("-".into(), "~".into()),
                after.map(str::to_owned),
                true,
                Some(limit),
            )
            .await?;
        let keys: Vec<Item> = entries
            .iter()
            .map(|e| {
                let id = get_s(e, SK)?;
                let t = TenantId::parse(id).ok_or_else(|| {
                    StoreError::Backend(format!("directory entry {id:?} is not a tenant id"))
                })?;
                Ok(key(tenant_record_pk(&t), TENANT_SK.into()))
            })
            .collect::<Result<_, StoreError>>()?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut records: Vec<TenantRecord> = self
            .batch_get(keys)
            .await?
            .iter()
            .map(decode)
            .collect::<Result<_, _>>()?;
        records.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        Ok(records)
    }

    pub(super) async fn store_reveal(&self, record: &RevealRecord) -> Result<(), StoreError> {
        let mut item = key(
            tenant_record_pk(&record.tenant),
            reveal_sk(&record.ref_hash),
        );
        item.insert(DOC.into(), s(encode(record)?));
        // The table's TTL removes it some time after expiry; reads check
        // the time themselves.
        item.insert(EXPIRES_AT.into(), n(record.expires_at));
        self.put_item(item).await
    }

    pub(super) async fn read_reveal(
        &self,
        tenant: &TenantId,
        hash: &str,
        now_unix: i64,
    ) -> Result<Option<RevealRecord>, StoreError> {
        let item = self
            .get_item(key(tenant_record_pk(tenant), reveal_sk(hash)))
            .await?;
        let record: Option<RevealRecord> = item.map(|i| decode(&i)).transpose()?;
        Ok(record.filter(|r| r.expires_at > now_unix))
    }

    /// A conditional `DeleteItem` returning the old item: DynamoDB applies
    /// it to one caller only.
    pub(super) async fn consume_reveal(
        &self,
        tenant: &TenantId,
        hash: &str,
        now_unix: i64,
    ) -> Result<Option<RevealRecord>, StoreError> {
        let k = key(tenant_record_pk(tenant), reveal_sk(hash));
        let names = HashMap::from([
            ("#pk".to_owned(), PK.to_owned()),
            ("#exp".to_owned(), EXPIRES_AT.to_owned()),
        ]);
        let values = HashMap::from([(":now".to_owned(), n(now_unix))]);
        let result = with_retries("DeleteItem (reveal)", self.budget, transient_code, || {
            self.client
                .delete_item()
                .table_name(self.table.as_ref())
                .set_key(Some(k.clone()))
                .condition_expression("attribute_exists(#pk) AND #exp > :now")
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await;
        match result {
            Ok(out) => out
                .attributes
                .filter(|a| !a.is_empty())
                .map(|a| decode(&a))
                .transpose(),
            Err(CallError::Service(DeleteItemError::ConditionalCheckFailedException(_))) => {
                Ok(None)
            }
            Err(e) => Err(e.into_store()),
        }
    }

    pub(super) async fn drop_reveal(
        &self,
        tenant: &TenantId,
        hash: &str,
    ) -> Result<(), StoreError> {
        let k = key(tenant_record_pk(tenant), reveal_sk(hash));
        with_retries("DeleteItem (reveal)", self.budget, transient_code, || {
            self.client
                .delete_item()
                .table_name(self.table.as_ref())
                .set_key(Some(k.clone()))
                .send()
        })
        .await
        .map_err(CallError::into_store)?;
        Ok(())
    }
}
