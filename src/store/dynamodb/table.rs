//! Creating the table from its one definition, the `ScimTable` resource of
//! `template.yaml`, so that what tests run against (an emulator) and what
//! CloudFormation deploys cannot drift apart.

use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ProvisionedThroughput, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};
use serde::Deserialize;

use super::super::StoreError;

/// The logical id of the table in `template.yaml`.
pub const TEMPLATE_RESOURCE: &str = "ScimTable";

/// The subset of `AWS::DynamoDB::Table` properties that shape the table.
/// Others (encryption, PITR, tags, a `!Sub`-built name) are CloudFormation's
/// business and are ignored here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TableProps {
    attribute_definitions: Vec<AttrDef>,
    key_schema: Vec<KeyElem>,
    #[serde(default)]
    billing_mode: Option<String>,
    #[serde(default)]
    provisioned_throughput: Option<Throughput>,
    #[serde(default)]
    global_secondary_indexes: Vec<Gsi>,
    #[serde(default)]
    time_to_live_specification: Option<Ttl>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttrDef {
    attribute_name: String,
    attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyElem {
    attribute_name: String,
    key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Throughput {
    read_capacity_units: i64,
    write_capacity_units: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Gsi {
    index_name: String,
    key_schema: Vec<KeyElem>,
    projection: Proj,
    #[serde(default)]
    provisioned_throughput: Option<Throughput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Proj {
    projection_type: String,
    #[serde(default)]
    non_key_attributes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Ttl {
    attribute_name: String,
    #[serde(default)]
    enabled: bool,
}

fn bad(msg: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("table definition: {msg}"))
}

/// Reads `Resources.ScimTable.Properties` from CloudFormation YAML. Tags
/// such as `!Ref` and `!Sub` are parsed as tagged values, so they are fine
/// anywhere except in the properties read here.
pub(super) fn parse_template(yaml: &str) -> Result<TableProps, StoreError> {
    let doc: serde_norway::Value = serde_norway::from_str(yaml).map_err(bad)?;
    let props = doc
        .get("Resources")
        .and_then(|r| r.get(TEMPLATE_RESOURCE))
        .and_then(|t| t.get("Properties"))
        .ok_or_else(|| bad(format!("no Resources.{TEMPLATE_RESOURCE}.Properties")))?;
    serde_norway::from_value(props.clone()).map_err(bad)
}

fn key_schema(keys: &[KeyElem]) -> Result<Vec<KeySchemaElement>, StoreError> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(bad)
        })
        .collect()
}

fn throughput(t: Option<&Throughput>) -> Result<Option<ProvisionedThroughput>, StoreError> {
    t.map(|t| {
        ProvisionedThroughput::builder()
            .read_capacity_units(t.read_capacity_units)
            .write_capacity_units(t.write_capacity_units)
            .build()
            .map_err(bad)
    })
    .transpose()
}

/// Creates `table` as `template` defines `ScimTable`, waits until it is
/// active and turns on its TTL (best effort: not every emulator has TTL).
pub async fn create_table_from_template(
    client: &Client,
    template: &Path,
    table: &str,
) -> Result<(), StoreError> {
    let yaml = std::fs::read_to_string(template)
        .map_err(|e| bad(format!("reading {}: {e}", template.display())))?;
    let props = parse_template(&yaml)?;

    let attrs = props
        .attribute_definitions
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .map_err(bad)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let gsis = props
        .global_secondary_indexes
        .iter()
        .map(|g| {
            let projection = Projection::builder()
                .projection_type(ProjectionType::from(g.projection.projection_type.as_str()))
                .set_non_key_attributes(
                    (!g.projection.non_key_attributes.is_empty())
                        .then(|| g.projection.non_key_attributes.clone()),
                )
                .build();
            GlobalSecondaryIndex::builder()
                .index_name(&g.index_name)
                .set_key_schema(Some(key_schema(&g.key_schema)?))
                .projection(projection)
                .set_provisioned_throughput(throughput(g.provisioned_throughput.as_ref())?)
                .build()
                .map_err(bad)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let billing = props
        .billing_mode
        .as_deref()
        .map(BillingMode::from)
        .unwrap_or(BillingMode::Provisioned);

    client
        .create_table()
        .table_name(table)
        .set_attribute_definitions(Some(attrs))
        .set_key_schema(Some(key_schema(&props.key_schema)?))
        .billing_mode(billing)
        .set_provisioned_throughput(throughput(props.provisioned_throughput.as_ref())?)
        .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
        .send()
        .await
        .map_err(|e| bad(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;

    let mut active = false;
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| bad(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            active = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !active {
        return Err(bad(format!("{table} did not become active")));
    }

    if let Some(ttl) = props.time_to_live_specification.filter(|t| t.enabled) {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(ttl.attribute_name)
            .enabled(true)
            .build()
            .map_err(bad)?;
        let result = client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(e), "enabling TTL");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_defines_the_table_the_store_expects() {
        let yaml = include_str!("../../../template.yaml");
        let props = parse_template(yaml).unwrap();
        let keys: Vec<(&str, &str)> = props
            .key_schema
            .iter()
            .map(|k| (k.attribute_name.as_str(), k.key_type.as_str()))
            .collect();
        assert_eq!(keys, [("PK", "HASH"), ("SK", "RANGE")]);
        assert_eq!(props.billing_mode.as_deref(), Some("PAY_PER_REQUEST"));
        let ttl = props.time_to_live_specification.unwrap();
        assert_eq!(ttl.attribute_name, super::super::keys::EXPIRES_AT);
        assert!(ttl.enabled);
        assert!(props.global_secondary_indexes.is_empty());
    }

    #[test]
    fn tags_elsewhere_in_the_template_are_tolerated() {
        let yaml = r#"
Resources:
  Fn:
    Properties:
      Env: !Ref ScimTable
      Url: !Sub "https://${X}/"
      Arn: !GetAtt ScimTable.Arn
  ScimTable:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-scim"
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - { AttributeName: PK, AttributeType: S }
        - { AttributeName: G, AttributeType: S }
      KeySchema:
        - { AttributeName: PK, KeyType: HASH }
      GlobalSecondaryIndexes:
        - IndexName: byG
          KeySchema: [{ AttributeName: G, KeyType: HASH }]
          Projection: { ProjectionType: INCLUDE, NonKeyAttributes: [x] }
      SSESpecification: { SSEEnabled: true }
"#;
        let props = parse_template(yaml).unwrap();
        assert_eq!(props.global_secondary_indexes[0].index_name, "byG");
        assert!(parse_template("Resources: {}").is_err());
    }
}
