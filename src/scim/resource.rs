//! Turning client JSON into canonical resource attributes, and back.
//!
//! Input is checked against the schema once, here: attribute names are
//! matched case-insensitively and stored with their canonical spelling,
//! types are enforced, canonical values normalised, readOnly attributes
//! dropped, writeOnly ones accepted but never kept.

use base64::Engine;
use serde_json::{Map, Value};

use super::error::{ScimError, ScimResult};
use super::schema::{
    AttrDef, AttrType, COMMON_ATTRS, GROUP_URN, Kind, Mutability, Resolved, SchemaDef, USER_URN,
};

/// How lenient value checks are. PATCH accepts the documented IdP dialects
/// (Entra ID sends `"False"` for booleans and a bare string for `manager`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Write,
    Patch,
}

/// A member given by a client: its id and, if stated, its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInput {
    pub id: String,
    pub kind: Option<Kind>,
}

/// A validated POST/PUT body.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub attrs: Map<String, Value>,
    /// Group members, when the body has a `members` attribute.
    pub members: Option<Vec<MemberInput>>,
}

fn attr_label(ext: Option<&str>, def: &AttrDef, sub: Option<&AttrDef>) -> String {
    let mut s = String::new();
    if let Some(u) = ext {
        s.push_str(u);
        s.push(':');
    }
    s.push_str(def.name);
    if let Some(sd) = sub {
        s.push('.');
        s.push_str(sd.name);
    }
    s
}

/// Validates a full representation (POST, PUT).
pub fn parse_input(kind: Kind, body: &Value) -> ScimResult<Input> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the request body must be a JSON object"))?;
    check_schemas(kind, obj)?;
    let mut input = Input::default();
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = kind.extension(key) {
            if value.is_null() {
                continue;
            }
            let ext_obj = value.as_object().ok_or_else(|| {
                ScimError::invalid_syntax(format!(
                    "{} must be a JSON object of extension attributes",
                    ext.id
                ))
            })?;
            let canon = canonical_object(ext, ext_obj, Mode::Write)?;
            if !canon.is_empty() {
                insert_unique(&mut input.attrs, ext.id, Value::Object(canon))?;
            }
            continue;
        }
        if kind == Kind::Group && key.eq_ignore_ascii_case("members") {
            input.members = Some(parse_members(value)?);
            continue;
        }
        let def = kind
            .schema()
            .attr(key)
            .or_else(|| {
                COMMON_ATTRS
                    .iter()
                    .find(|a| a.name.eq_ignore_ascii_case(key))
            })
            .ok_or_else(|| unknown_attribute(kind, key))?;
        if def.mutability == Mutability::ReadOnly {
            continue; // RFC 7643 §2.2: readOnly values in a request are ignored.
        }
        let v = canonical_attr(None, def, value, Mode::Write)?;
        if def.mutability == Mutability::WriteOnly {
            continue; // accepted and checked, never stored (e.g. password).
        }
        if let Some(v) = v {
            insert_unique(&mut input.attrs, def.name, v)?;
        }
    }
    check_required(kind, &input.attrs)?;
    Ok(input)
}

fn insert_unique(map: &mut Map<String, Value>, key: &str, v: Value) -> ScimResult<()> {
    if map.insert(key.to_owned(), v).is_some() {
        return Err(ScimError::invalid_syntax(format!(
            "attribute {key} appears more than once (names are case-insensitive)"
        )));
    }
    Ok(())
}

pub fn unknown_attribute(kind: Kind, key: &str) -> ScimError {
    ScimError::invalid_syntax(format!(
        "unknown attribute '{key}' for resource type {} (schema {}{})",
        kind.name(),
        kind.schema().id,
        if kind.extensions().is_empty() {
            ""
        } else {
            " and its extensions, which go under their schema URN"
        }
    ))
}

fn check_schemas(kind: Kind, obj: &Map<String, Value>) -> ScimResult<()> {
    let core = match kind {
        Kind::User => USER_URN,
        Kind::Group => GROUP_URN,
    };
    let Some((_, schemas)) = obj.iter().find(|(k, _)| k.eq_ignore_ascii_case("schemas")) else {
        return Err(ScimError::invalid_syntax(format!(
            "the 'schemas' attribute is required and must contain \"{core}\""
        )));
    };
    let list = schemas
        .as_array()
        .ok_or_else(|| ScimError::invalid_syntax("'schemas' must be an array of schema URNs"))?;
    let mut has_core = false;
    for s in list {
        let s = s
            .as_str()
            .ok_or_else(|| ScimError::invalid_syntax("'schemas' must be an array of strings"))?;
        if s.eq_ignore_ascii_case(core) {
            has_core = true;
        } else if kind.extension(s).is_none() && carries_attributes(obj, s) {
            // A schema the service does not know is only a label when the
            // body puts nothing under it (Entra lists its ADSCIM Group URN
            // on every group); attributes under it could not be kept.
            return Err(ScimError::invalid_value(format!(
                "schema {s} is not supported for {}, so the attributes under it cannot be stored; supported: {core}{}",
                kind.endpoint(),
                kind.extensions()
                    .iter()
                    .map(|e| format!(", {}", e.id))
                    .collect::<String>()
            )));
        }
    }
    if !has_core {
        return Err(ScimError::invalid_syntax(format!(
            "'schemas' must contain \"{core}\""
        )));
    }
    Ok(())
}

/// Whether the body has attributes under schema `urn`: its extension
/// object or a `urn:attribute` key.
fn carries_attributes(obj: &Map<String, Value>, urn: &str) -> bool {
    obj.keys().any(|k| {
        k.len() >= urn.len()
            && k.is_char_boundary(urn.len())
            && k[..urn.len()].eq_ignore_ascii_case(urn)
            && (k.len() == urn.len() || k[urn.len()..].starts_with(':'))
    })
}

/// Required attributes must be present (checked after PATCH too).
pub fn check_required(kind: Kind, attrs: &Map<String, Value>) -> ScimResult<()> {
    for def in kind.schema().attributes.iter().filter(|a| a.required) {
        match attrs.get(def.name) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(v) if !v.is_string() && !is_empty(v) => {}
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "attribute '{}' is required for a {} and must not be empty",
                    def.name,
                    kind.name()
                )));
            }
        }
    }
    Ok(())
}

/// Members of a group, from `members: [{"value": id, "type": "User"}, ...]`.
pub fn parse_members(value: &Value) -> ScimResult<Vec<MemberInput>> {
    let items: Vec<&Value> = match value {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![value],
        _ => {
            return Err(ScimError::invalid_syntax(
                "'members' must be an array of {\"value\": id} objects",
            ));
        }
    };
    let mut out: Vec<MemberInput> = Vec::with_capacity(items.len());
    for item in items {
        let Some(obj) = item.as_object() else {
            return Err(ScimError::invalid_syntax(
                "each member must be an object with a 'value' attribute",
            ));
        };
        let mut id = None;
        let mut kind = None;
        for (k, v) in obj {
            if k.eq_ignore_ascii_case("value") {
                id = Some(
                    v.as_str()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| {
                            ScimError::invalid_value("member 'value' must be a non-empty string id")
                        })?
                        .to_owned(),
                );
            } else if k.eq_ignore_ascii_case("type") {
                if v.is_null() {
                    continue;
                }
                let t = v.as_str().ok_or_else(|| {
                    ScimError::invalid_value("member 'type' must be \"User\" or \"Group\"")
                })?;
                kind = Some(Kind::from_name(t).ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "member type '{t}' is not \"User\" or \"Group\""
                    ))
                })?);
            } else if k.eq_ignore_ascii_case("$ref") || k.eq_ignore_ascii_case("display") {
                // $ref is derived from value; display is computed, not stored.
            } else {
                return Err(ScimError::invalid_syntax(format!(
                    "unknown member sub-attribute '{k}'"
                )));
            }
        }
        let id = id.ok_or_else(|| {
            ScimError::invalid_value("each member needs a 'value' with the member's id")
        })?;
        if !out.iter().any(|m| m.id == id) {
            out.push(MemberInput { id, kind });
        }
    }
    Ok(out)
}

/// Canonicalises the attributes of one schema (an extension object, or a
/// value object of a path-less PATCH handled attribute by attribute).
pub fn canonical_object(
    schema: &SchemaDef,
    obj: &Map<String, Value>,
    mode: Mode,
) -> ScimResult<Map<String, Value>> {
    let mut out = Map::new();
    // Some clients repeat `schemas` inside an extension object.
    for (k, v) in obj
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
    {
        let def = schema.attr(k).ok_or_else(|| {
            ScimError::invalid_syntax(format!("unknown attribute '{k}' in schema {}", schema.id))
        })?;
        if def.mutability == Mutability::ReadOnly {
            continue;
        }
        if let Some(v) = canonical_attr(Some(schema.id), def, v, mode)? {
            insert_unique(&mut out, def.name, v)?;
        }
    }
    Ok(out)
}

/// Validates one attribute value; `None` means unassigned (null or empty).
pub fn canonical_attr(
    ext: Option<&str>,
    def: &AttrDef,
    value: &Value,
    mode: Mode,
) -> ScimResult<Option<Value>> {
    if value.is_null() {
        return Ok(None);
    }
    if def.multi {
        let items: Vec<&Value> = match value {
            Value::Array(a) => a.iter().collect(),
            // PATCH "add" of a single value to a multi-valued attribute.
            v if mode == Mode::Patch => vec![v],
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "attribute '{}' is multi-valued and must be a JSON array",
                    attr_label(ext, def, None)
                )));
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = canonical_single(ext, def, item, mode)? {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        check_primary(ext, def, &out)?;
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    canonical_single(ext, def, value, mode)
}

/// RFC 7643 §2.4: `primary: true` appears at most once.
pub fn check_primary(ext: Option<&str>, def: &AttrDef, values: &[Value]) -> ScimResult<()> {
    let n = values
        .iter()
        .filter(|v| v.get("primary") == Some(&Value::Bool(true)))
        .count();
    if n > 1 {
        return Err(ScimError::invalid_value(format!(
            "only one value of '{}' may have \"primary\": true",
            attr_label(ext, def, None)
        )));
    }
    Ok(())
}

/// Validates one (non-array) value of an attribute.
pub fn canonical_single(
    ext: Option<&str>,
    def: &AttrDef,
    value: &Value,
    mode: Mode,
) -> ScimResult<Option<Value>> {
    if value.is_null() {
        return Ok(None);
    }
    if def.ty != AttrType::Complex {
        return canonical_simple(ext, def, None, value, mode).map(Some);
    }
    let obj = match value {
        Value::Object(o) => o.clone(),
        // Entra ID sends the enterprise manager as a bare id.
        Value::String(s) if mode == Mode::Patch && def.sub_attr("value").is_some() => {
            let mut o = Map::new();
            o.insert("value".into(), Value::String(s.clone()));
            o
        }
        _ => {
            return Err(ScimError::invalid_value(format!(
                "attribute '{}' is complex and must be a JSON object",
                attr_label(ext, def, None)
            )));
        }
    };
    let mut out = Map::new();
    for (k, v) in &obj {
        let sub = def.sub_attr(k).ok_or_else(|| {
            ScimError::invalid_syntax(format!(
                "unknown sub-attribute '{k}' of '{}'",
                attr_label(ext, def, None)
            ))
        })?;
        if sub.mutability == Mutability::ReadOnly || v.is_null() {
            continue;
        }
        let v = canonical_simple(ext, def, Some(sub), v, mode)?;
        insert_unique(&mut out, sub.name, v)?;
    }
    for sub in def.sub.iter().filter(|s| s.required) {
        if !out.contains_key(sub.name) && !out.is_empty() {
            return Err(ScimError::invalid_value(format!(
                "sub-attribute '{}' is required",
                attr_label(ext, def, Some(sub))
            )));
        }
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

fn canonical_simple(
    ext: Option<&str>,
    parent: &AttrDef,
    sub: Option<&AttrDef>,
    value: &Value,
    mode: Mode,
) -> ScimResult<Value> {
    let def = sub.unwrap_or(parent);
    let label = || attr_label(ext, parent, sub);
    let wrong =
        |what: &str| ScimError::invalid_value(format!("attribute '{}' must be {what}", label()));
    match def.ty {
        AttrType::String | AttrType::Reference => {
            let s = value.as_str().ok_or_else(|| wrong("a string"))?;
            if def.canonical.is_empty() {
                return Ok(Value::String(s.to_owned()));
            }
            def.canonical
                .iter()
                .find(|c| c.eq_ignore_ascii_case(s))
                .map(|c| Value::String((*c).to_owned()))
                .ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "'{s}' is not a valid value of '{}'; use one of: {}",
                        label(),
                        def.canonical.join(", ")
                    ))
                })
        }
        AttrType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::String(s) if mode == Mode::Patch && s.eq_ignore_ascii_case("true") => {
                Ok(Value::Bool(true))
            }
            Value::String(s) if mode == Mode::Patch && s.eq_ignore_ascii_case("false") => {
                Ok(Value::Bool(false))
            }
            _ => Err(wrong("a boolean (true or false)")),
        },
        AttrType::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            _ => Err(wrong("an integer")),
        },
        AttrType::Decimal => match value {
            Value::Number(_) => Ok(value.clone()),
            _ => Err(wrong("a number")),
        },
        AttrType::DateTime => {
            let s = value
                .as_str()
                .ok_or_else(|| wrong("an xsd:dateTime string"))?;
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| wrong("an xsd:dateTime such as 2026-01-23T04:56:22Z"))?;
            Ok(Value::String(s.to_owned()))
        }
        AttrType::Binary => {
            let s = value.as_str().ok_or_else(|| wrong("a base64 string"))?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| wrong("valid base64"))?;
            Ok(Value::String(s.to_owned()))
        }
        AttrType::Complex => Err(ScimError::invalid_value(format!(
            "attribute '{}' cannot be nested",
            label()
        ))),
    }
}

/// Null, empty string, empty array and empty object all mean "unassigned".
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Where an attribute lives: the top-level map or its extension's object.
pub fn container<'a>(
    attrs: &'a mut Map<String, Value>,
    r: &Resolved,
) -> ScimResult<&'a mut Map<String, Value>> {
    let Some(urn) = r.extension else {
        return Ok(attrs);
    };
    if !matches!(attrs.get(urn), Some(Value::Object(_))) {
        attrs.insert(urn.to_owned(), Value::Object(Map::new()));
    }
    match attrs.get_mut(urn) {
        Some(Value::Object(o)) => Ok(o),
        _ => Err(ScimError::Internal(format!(
            "extension {urn} is not an object"
        ))),
    }
}

/// Drops empty extension objects and empty values left behind by edits.
pub fn prune(attrs: &mut Map<String, Value>) {
    attrs.retain(|_, v| {
        if let Value::Object(o) = v {
            o.retain(|_, sv| !is_empty(sv));
        }
        if let Value::Array(a) = v {
            a.retain(|e| !is_empty(e));
        }
        !is_empty(v)
    });
}

/// Unique keys of a resource: userName and group displayName compared
/// case-insensitively, externalId case-exactly.
pub fn unique_keys(kind: Kind, attrs: &Map<String, Value>) -> Vec<super::model::UniqueKey> {
    let mut keys = Vec::new();
    let name_attr = match kind {
        Kind::User => "userName",
        Kind::Group => "displayName",
    };
    if let Some(v) = attrs.get(name_attr).and_then(Value::as_str) {
        keys.push(super::model::UniqueKey {
            attr: name_attr,
            value: fold_case(v),
        });
    }
    if let Some(v) = attrs.get("externalId").and_then(Value::as_str) {
        keys.push(super::model::UniqueKey {
            attr: "externalId",
            value: v.to_owned(),
        });
    }
    keys
}

/// Case folding for case-insensitive comparison and unique keys.
pub fn fold_case(s: &str) -> String {
    s.to_lowercase()
}

/// Immutable attributes may be set once, then never changed (RFC 7643 §2.2).
pub fn check_immutable(
    kind: Kind,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> ScimResult<()> {
    for def in kind
        .schema()
        .attributes
        .iter()
        .filter(|a| a.mutability == Mutability::Immutable)
    {
        if let Some(before) = old.get(def.name)
            && new.get(def.name) != Some(before)
        {
            return Err(ScimError::mutability(format!(
                "attribute '{}' is immutable",
                def.name
            )));
        }
    }
    Ok(())
}

/// A resource must fit every store: see [`super::discovery::MAX_RESOURCE_BYTES`].
pub fn check_size(attrs: &Map<String, Value>) -> ScimResult<()> {
    let size = serde_json::to_vec(attrs)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    let max = super::discovery::MAX_RESOURCE_BYTES;
    if size > max {
        return Err(ScimError::invalid_value(format!(
            "the resource's attributes take {size} bytes; at most {max} are allowed"
        )));
    }
    Ok(())
}
