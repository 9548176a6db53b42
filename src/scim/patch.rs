//! RFC 7644 §3.5.2 PATCH, plus the dialects real IdPs send
//! (see `shared/idp-dialects.md`): capitalised op names, booleans as
//! strings, member removal with a `value` array, path-less replace with
//! dotted and URN-prefixed keys, and filter paths that create the entry
//! they select when it does not exist yet.
//!
//! All operations apply to an in-memory copy; the caller writes the result
//! in one conditional store write, so a PATCH is all-or-nothing.

use serde_json::{Map, Value};

use super::error::{ScimError, ScimResult};
use super::filter::{self, AttrPath, CompareOp, Filter, Literal, PatchPath};
use super::resource::{self, MemberInput, Mode};
use super::schema::{AttrDef, Kind, Mutability, PATCH_URN, Resolved, SchemaDef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// A change to a group's members, in request order. The service turns the
/// sequence into one store `MemberDelta` without loading the member list,
/// except for `RemoveWhere`, which needs to see the members.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    Add(Vec<MemberInput>),
    Remove(Vec<String>),
    RemoveAll,
    Replace(Vec<MemberInput>),
    /// `remove members[<filter other than value eq>]`.
    RemoveWhere(Filter),
}

#[derive(Debug, Clone)]
pub struct Patched {
    pub attrs: Map<String, Value>,
    pub member_ops: Vec<MemberOp>,
}

/// Parses a PatchOp message.
pub fn parse(body: &Value) -> ScimResult<Vec<Operation>> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the PATCH body must be a PatchOp JSON object"))?;
    let schemas = get_ci(obj, "schemas").and_then(Value::as_array);
    let is_patch = schemas.is_some_and(|s| {
        s.iter().any(|u| {
            u.as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(PATCH_URN))
        })
    });
    if !is_patch {
        return Err(ScimError::invalid_syntax(format!(
            "'schemas' must be [\"{PATCH_URN}\"]"
        )));
    }
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("'Operations' must be an array of operations"))?;
    if ops.is_empty() {
        return Err(ScimError::invalid_syntax("'Operations' must not be empty"));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| parse_op(i, op))
        .collect()
}

fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn parse_op(i: usize, op: &Value) -> ScimResult<Operation> {
    let obj = op
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax(format!("Operations[{i}] must be an object")))?;
    let name = get_ci(obj, "op").and_then(Value::as_str).ok_or_else(|| {
        ScimError::invalid_syntax(format!(
            "Operations[{i}] needs an 'op' of add, remove or replace"
        ))
    })?;
    let kind = match name.to_ascii_lowercase().as_str() {
        "add" => OpKind::Add,
        "remove" => OpKind::Remove,
        "replace" => OpKind::Replace,
        other => {
            return Err(ScimError::invalid_syntax(format!(
                "Operations[{i}]: unknown op '{other}'; use add, remove or replace"
            )));
        }
    };
    let path = match get_ci(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(filter::parse_path(p.trim())?),
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "Operations[{i}]: 'path' must be a string"
            )));
        }
    };
    let value = get_ci(obj, "value").cloned();
    if kind != OpKind::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "Operations[{i}]: '{name}' needs a 'value'"
        )));
    }
    if kind == OpKind::Remove && path.is_none() {
        return Err(ScimError::no_target(format!(
            "Operations[{i}]: 'remove' needs a 'path'"
        )));
    }
    Ok(Operation {
        op: kind,
        path,
        value,
    })
}

/// What a path designates.
enum Target {
    /// A whole extension object (`urn:...:enterprise:2.0:User`).
    Extension(&'static SchemaDef),
    Attr(AttrTarget),
    /// Group `members`, handled as membership records.
    Members {
        filter: Option<Filter>,
        sub: bool,
    },
}

struct AttrTarget {
    res: Resolved,
    filter: Option<Filter>,
    sub: Option<&'static AttrDef>,
}

fn resolve_target(kind: Kind, path: &PatchPath) -> ScimResult<Target> {
    let a = &path.attr;
    if let Some(urn) = &a.urn
        && a.sub.is_none()
        && path.filter.is_none()
        && let Some(ext) = kind.extension(&format!("{urn}:{}", a.name))
    {
        return Ok(Target::Extension(ext));
    }
    let res = super::schema::resolve(kind, a.urn.as_deref(), &a.name, None).ok_or_else(|| {
        ScimError::invalid_path(format!(
            "'{}' is not an attribute of {}",
            display_path(a),
            kind.name()
        ))
    })?;
    let sub_name = if path.filter.is_some() {
        path.sub_after_filter.as_deref()
    } else {
        a.sub.as_deref()
    };
    let sub = match sub_name {
        None => None,
        Some(s) => Some(res.attr.sub_attr(s).ok_or_else(|| {
            ScimError::invalid_path(format!(
                "'{s}' is not a sub-attribute of '{}'",
                res.attr.name
            ))
        })?),
    };
    if kind == Kind::Group && res.extension.is_none() && res.attr.name == "members" {
        return Ok(Target::Members {
            filter: path.filter.clone(),
            sub: sub.is_some(),
        });
    }
    if path.filter.is_some() && !(res.attr.multi && res.attr.is_complex()) {
        return Err(ScimError::invalid_path(format!(
            "a value filter needs a multi-valued complex attribute; '{}' is not one",
            res.attr.name
        )));
    }
    if res.attr.mutability == Mutability::ReadOnly
        || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly)
    {
        return Err(ScimError::mutability(format!(
            "'{}' is read-only",
            display_path(a)
        )));
    }
    Ok(Target::Attr(AttrTarget {
        res: Resolved { sub, ..res },
        filter: path.filter.clone(),
        sub,
    }))
}

fn display_path(a: &AttrPath) -> String {
    let mut s = String::new();
    if let Some(u) = &a.urn {
        s.push_str(u);
        s.push(':');
    }
    s.push_str(&a.name);
    if let Some(sub) = &a.sub {
        s.push('.');
        s.push_str(sub);
    }
    s
}

/// Applies every operation to a copy of `attrs`; `id` is the resource id
/// (Okta repeats it in path-less replaces).
fn is_product_path(path: &filter::PatchPath) -> bool {
    use super::schema::PRODUCT_URN;
    match &path.attr.urn {
        Some(urn) => {
            urn.eq_ignore_ascii_case(PRODUCT_URN)
                || format!("{urn}:{}", path.attr.name).eq_ignore_ascii_case(PRODUCT_URN)
        }
        None => false,
    }
}

pub fn apply(
    kind: Kind,
    id: &str,
    attrs: &Map<String, Value>,
    ops: &[Operation],
) -> ScimResult<Patched> {
    let mut doc = attrs.clone();
    let mut member_ops = Vec::new();
    for op in ops {
        match &op.path {
            // The product extension is the product's to set: an IdP's
            // change to it is ignored, not refused.
            Some(path) if is_product_path(path) => {}
            Some(path) => {
                let target = resolve_target(kind, path)?;
                apply_target(
                    kind,
                    &mut doc,
                    &mut member_ops,
                    op.op,
                    target,
                    op.value.as_ref(),
                )?;
            }
            None => apply_pathless(kind, id, &mut doc, &mut member_ops, op)?,
        }
    }
    resource::prune(&mut doc);
    resource::check_required(kind, &doc)?;
    resource::check_immutable(kind, attrs, &doc)?;
    Ok(Patched {
        attrs: doc,
        member_ops,
    })
}

fn apply_pathless(
    kind: Kind,
    id: &str,
    doc: &mut Map<String, Value>,
    member_ops: &mut Vec<MemberOp>,
    op: &Operation,
) -> ScimResult<()> {
    let obj = op
        .value
        .as_ref()
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ScimError::invalid_value(
                "an operation without 'path' needs an object 'value' of attributes",
            )
        })?;
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") || key.eq_ignore_ascii_case("meta") {
            continue;
        }
        if key.eq_ignore_ascii_case("id") {
            if value.as_str() == Some(id) {
                continue;
            }
            return Err(ScimError::mutability(
                "'id' is read-only and cannot be changed",
            ));
        }
        let target = match kind.extension(key) {
            Some(ext) => Target::Extension(ext),
            // Keys may be dotted (`name.givenName`) or URN-prefixed attributes.
            None => resolve_target(kind, &filter::parse_path(key)?)?,
        };
        apply_target(kind, doc, member_ops, op.op, target, Some(value))?;
    }
    Ok(())
}

fn apply_target(
    kind: Kind,
    doc: &mut Map<String, Value>,
    member_ops: &mut Vec<MemberOp>,
    op: OpKind,
    target: Target,
    value: Option<&Value>,
) -> ScimResult<()> {
    match target {
        Target::Extension(ext) => match op {
            OpKind::Remove => {
                doc.remove(ext.id);
                Ok(())
            }
            OpKind::Add | OpKind::Replace => {
                let obj = value.and_then(Value::as_object).ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "the value for {} must be an object of its attributes",
                        ext.id
                    ))
                })?;
                // Some clients repeat `schemas` inside the extension object.
                for (k, v) in obj
                    .iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
                {
                    let attr = ext.attr(k).ok_or_else(|| {
                        ScimError::invalid_path(format!("'{k}' is not an attribute of {}", ext.id))
                    })?;
                    if attr.mutability == Mutability::ReadOnly {
                        continue;
                    }
                    let t = AttrTarget {
                        res: Resolved {
                            extension: Some(ext.id),
                            attr,
                            sub: None,
                        },
                        filter: None,
                        sub: None,
                    };
                    apply_attr(kind, doc, op, &t, Some(v))?;
                }
                Ok(())
            }
        },
        Target::Members { filter, sub } => {
            member_ops.push(member_op(op, filter, sub, value)?);
            Ok(())
        }
        Target::Attr(t) => apply_attr(kind, doc, op, &t, value),
    }
}

fn member_op(
    op: OpKind,
    filter: Option<Filter>,
    sub: bool,
    value: Option<&Value>,
) -> ScimResult<MemberOp> {
    if sub {
        return Err(ScimError::mutability(
            "member sub-attributes cannot be changed; add or remove the member instead",
        ));
    }
    match (op, filter) {
        (OpKind::Add, None) => Ok(MemberOp::Add(resource::parse_members(
            value.unwrap_or(&Value::Null),
        )?)),
        (OpKind::Replace, None) => Ok(MemberOp::Replace(resource::parse_members(
            value.unwrap_or(&Value::Null),
        )?)),
        (OpKind::Remove, None) => match value {
            // Entra ID and JumpCloud: remove only the listed members.
            Some(v) if !resource::is_empty(v) => Ok(MemberOp::Remove(
                resource::parse_members(v)?
                    .into_iter()
                    .map(|m| m.id)
                    .collect(),
            )),
            _ => Ok(MemberOp::RemoveAll),
        },
        (OpKind::Remove, Some(f)) => Ok(match member_ids_of(&f) {
            Some(ids) => MemberOp::Remove(ids),
            None => MemberOp::RemoveWhere(f),
        }),
        (_, Some(_)) => Err(ScimError::invalid_path(
            "members cannot be replaced through a value filter; remove and add them instead",
        )),
    }
}

/// `value eq "a"` or `value eq "a" or value eq "b"`: the ids, so removal
/// needs no read of the member list.
fn member_ids_of(f: &Filter) -> Option<Vec<String>> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Literal::String(s),
        } if path.urn.is_none()
            && path.sub.is_none()
            && path.name.eq_ignore_ascii_case("value") =>
        {
            Some(vec![s.clone()])
        }
        Filter::Or(a, b) => {
            let mut ids = member_ids_of(a)?;
            ids.extend(member_ids_of(b)?);
            Some(ids)
        }
        _ => None,
    }
}

fn apply_attr(
    kind: Kind,
    doc: &mut Map<String, Value>,
    op: OpKind,
    t: &AttrTarget,
    value: Option<&Value>,
) -> ScimResult<()> {
    let def = t.res.attr;
    let ext = t.res.extension;
    if def.mutability == Mutability::WriteOnly {
        // Accepted (e.g. a password change) but never stored.
        if let Some(v) = value {
            resource::canonical_attr(ext, def, v, Mode::Patch)?;
        }
        return Ok(());
    }
    let c = resource::container(doc, &t.res)?;
    match (&t.filter, t.sub) {
        (None, None) => whole_attr(ext, c, def, op, value),
        (None, Some(sub)) => sub_attr_all(ext, c, def, sub, op, value),
        (Some(f), sub) => filtered(kind, ext, c, def, f, sub, op, value),
    }
}

fn whole_attr(
    ext: Option<&str>,
    c: &mut Map<String, Value>,
    def: &'static AttrDef,
    op: OpKind,
    value: Option<&Value>,
) -> ScimResult<()> {
    let name = def.name;
    match op {
        OpKind::Remove => {
            match value {
                // Remove the listed values of a multi-valued attribute.
                Some(v) if def.multi && !resource::is_empty(v) => {
                    let gone =
                        resource::canonical_attr(ext, def, v, Mode::Patch)?.unwrap_or(Value::Null);
                    let gone = gone.as_array().cloned().unwrap_or_default();
                    if let Some(Value::Array(items)) = c.get_mut(name) {
                        items.retain(|e| !gone.iter().any(|g| same_value(e, g)));
                    }
                }
                _ => {
                    c.remove(name);
                }
            }
            Ok(())
        }
        OpKind::Add | OpKind::Replace => {
            let Some(new) =
                resource::canonical_attr(ext, def, value.unwrap_or(&Value::Null), Mode::Patch)?
            else {
                if op == OpKind::Replace {
                    c.remove(name);
                }
                return Ok(());
            };
            if def.multi {
                let new_items = new.as_array().cloned().unwrap_or_default();
                let mut items = match (op, c.remove(name)) {
                    (OpKind::Add, Some(Value::Array(old))) => old,
                    _ => Vec::new(),
                };
                if new_items.iter().any(is_primary) {
                    clear_primary(&mut items);
                }
                for item in new_items {
                    // Adding a value that is already there updates it instead
                    // of duplicating it (same `value` and `type`).
                    match items.iter_mut().find(|e| same_entry(e, &item)) {
                        Some(Value::Object(existing)) => {
                            if let Value::Object(n) = item {
                                existing.extend(n);
                            }
                        }
                        Some(existing) => *existing = item,
                        None => items.push(item),
                    }
                }
                resource::check_primary(ext, def, &items)?;
                c.insert(name.to_owned(), Value::Array(items));
            } else if def.is_complex() {
                // RFC 7644 §3.5.2.3: sub-attributes not given are left unchanged.
                let mut merged = match c.remove(name) {
                    Some(Value::Object(o)) => o,
                    _ => Map::new(),
                };
                if let Value::Object(n) = new {
                    merged.extend(n);
                }
                c.insert(name.to_owned(), Value::Object(merged));
            } else {
                c.insert(name.to_owned(), new);
            }
            Ok(())
        }
    }
}

/// `name.givenName` (single complex) or `emails.type` without a filter
/// (every value of a multi-valued attribute).
fn sub_attr_all(
    ext: Option<&str>,
    c: &mut Map<String, Value>,
    def: &'static AttrDef,
    sub: &'static AttrDef,
    op: OpKind,
    value: Option<&Value>,
) -> ScimResult<()> {
    let new = match op {
        OpKind::Remove => None,
        _ => sub_value(ext, def, sub, value)?,
    };
    if def.multi {
        let Some(Value::Array(items)) = c.get_mut(def.name) else {
            return match op {
                OpKind::Remove => Ok(()),
                _ => Err(ScimError::no_target(format!(
                    "'{}' has no values to set '{}' on",
                    def.name, sub.name
                ))),
            };
        };
        for item in items.iter_mut() {
            set_sub(item, sub, new.clone());
        }
        return Ok(());
    }
    let entry = c
        .entry(def.name.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    set_sub(entry, sub, new);
    Ok(())
}

fn sub_value(
    ext: Option<&str>,
    def: &'static AttrDef,
    sub: &'static AttrDef,
    value: Option<&Value>,
) -> ScimResult<Option<Value>> {
    let mut wrapper = Map::new();
    wrapper.insert(sub.name.to_owned(), value.cloned().unwrap_or(Value::Null));
    let canon = resource::canonical_single(ext, def, &Value::Object(wrapper), Mode::Patch)?;
    Ok(canon.and_then(|c| c.get(sub.name).cloned()))
}

fn set_sub(item: &mut Value, sub: &AttrDef, value: Option<Value>) {
    if !item.is_object() {
        *item = Value::Object(Map::new());
    }
    if let Value::Object(o) = item {
        match value {
            Some(v) => {
                o.insert(sub.name.to_owned(), v);
            }
            None => {
                o.remove(sub.name);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn filtered(
    kind: Kind,
    ext: Option<&'static str>,
    c: &mut Map<String, Value>,
    def: &'static AttrDef,
    f: &Filter,
    sub: Option<&'static AttrDef>,
    op: OpKind,
    value: Option<&Value>,
) -> ScimResult<()> {
    let vp = Filter::ValuePath {
        path: AttrPath {
            urn: ext.map(str::to_owned),
            name: def.name.to_owned(),
            sub: None,
        },
        filter: Box::new(f.clone()),
    };
    let mut items = match c.remove(def.name) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let mut hits = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if element_matches(kind, ext, def, &vp, item)? {
            hits.push(i);
        }
    }
    match op {
        OpKind::Remove => match sub {
            Some(s) => hits.iter().for_each(|&i| {
                if let Some(item) = items.get_mut(i) {
                    set_sub(item, s, None);
                }
            }),
            None => {
                let mut i = 0;
                items.retain(|_| {
                    let keep = !hits.contains(&i);
                    i += 1;
                    keep
                });
            }
        },
        OpKind::Add | OpKind::Replace => {
            let new: Value = match sub {
                Some(s) => {
                    let v = sub_value(ext, def, s, value)?;
                    let mut o = Map::new();
                    if let Some(v) = v {
                        o.insert(s.name.to_owned(), v);
                    }
                    Value::Object(o)
                }
                None => resource::canonical_single(
                    ext,
                    def,
                    value.unwrap_or(&Value::Null),
                    Mode::Patch,
                )?
                .unwrap_or(Value::Object(Map::new())),
            };
            let Value::Object(new) = new else {
                return Err(ScimError::invalid_value(format!(
                    "the value for '{}' must be an object",
                    def.name
                )));
            };
            if new.get("primary") == Some(&Value::Bool(true)) {
                clear_primary(&mut items);
            }
            if hits.is_empty() {
                // Entra ID: `add emails[type eq "work"].value` creates the entry.
                let seed = eq_assignments(f).ok_or_else(|| {
                    ScimError::no_target(format!("no value of '{}' matches the filter", def.name))
                })?;
                let mut obj = Map::new();
                for (k, v) in seed {
                    obj.insert(k, v);
                }
                obj.extend(new);
                let item = resource::canonical_single(ext, def, &Value::Object(obj), Mode::Patch)?;
                items.extend(item);
            } else {
                for &i in &hits {
                    if let Some(Value::Object(item)) = items.get_mut(i) {
                        if op == OpKind::Replace && sub.is_none() {
                            item.clear();
                        }
                        item.extend(new.clone());
                    }
                }
            }
        }
    }
    resource::check_primary(ext, def, &items)?;
    if !items.is_empty() {
        c.insert(def.name.to_owned(), Value::Array(items));
    }
    Ok(())
}

fn element_matches(
    kind: Kind,
    ext: Option<&str>,
    def: &AttrDef,
    vp: &Filter,
    item: &Value,
) -> ScimResult<bool> {
    let mut inner = Map::new();
    inner.insert(def.name.to_owned(), Value::Array(vec![item.clone()]));
    let doc = match ext {
        None => Value::Object(inner),
        Some(urn) => {
            let mut outer = Map::new();
            outer.insert(urn.to_owned(), Value::Object(inner));
            Value::Object(outer)
        }
    };
    filter::matches(vp, kind, &doc)
}

/// `type eq "work" and primary eq true` → the sub-attributes a new entry gets.
fn eq_assignments(f: &Filter) -> Option<Vec<(String, Value)>> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.urn.is_none() && path.sub.is_none() => {
            let v = match value {
                Literal::String(s) => Value::String(s.clone()),
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Number(n) => Value::Number(n.clone()),
                Literal::Null => return None,
            };
            Some(vec![(path.name.clone(), v)])
        }
        Filter::And(a, b) => {
            let mut v = eq_assignments(a)?;
            v.extend(eq_assignments(b)?);
            Some(v)
        }
        _ => None,
    }
}

fn is_primary(v: &Value) -> bool {
    v.get("primary") == Some(&Value::Bool(true))
}

/// RFC 7644 §3.5.2: a new primary value demotes the previous one.
fn clear_primary(items: &mut [Value]) {
    for item in items {
        if let Value::Object(o) = item
            && o.get("primary") == Some(&Value::Bool(true))
        {
            o.insert("primary".into(), Value::Bool(false));
        }
    }
}

/// An added value is an existing entry when `value` and `type` agree.
fn same_entry(a: &Value, b: &Value) -> bool {
    a == b
        || (a.get("value").is_some()
            && a.get("value") == b.get("value")
            && a.get("type") == b.get("type"))
}

/// Two values of a multi-valued attribute are the same when their `value`
/// sub-attributes are equal (or, without one, when they are equal).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}
