//! Bulk (RFC 7644 §3.7): the BulkRequest envelope, `bulkId` references,
//! the order operations run in, and the BulkResponse. No I/O: `crate::bulk`
//! runs the operations through the service.
//!
//! Decisions (README "Bulk"):
//! * A malformed envelope refuses the whole request with 400 before
//!   anything is written: not an object, wrong `schemas`, `Operations`
//!   missing, not an array or empty, an operation that is not an object,
//!   `method` missing or unknown, `bulkId` missing on a POST, a `bulkId`
//!   used twice, a bad `failOnErrors`; and a cycle of `bulkId` references.
//!   More than `maxOperations` operations is a 413.
//! * What one operation says about its resource (`path`, `data`) is that
//!   operation's own 400, as the same single request would be.
//! * A reference to a `bulkId` no POST of the request defines fails that
//!   operation (400 `invalidValue`); a reference to a POST that failed
//!   fails the dependent operation with 400 `invalidValue` naming the
//!   `bulkId` (409 would carry `scimType: uniqueness` here, which is not
//!   what happened).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::discovery::BULK_MAX_OPERATIONS;
use super::error::{ScimError, ScimResult};
use super::schema::Kind;

pub const BULK_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// A JSON string `"bulkId:<id>"` stands for the id the POST with that
/// `bulkId` created.
pub const REFERENCE_PREFIX: &str = "bulkId:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn parse(s: &str) -> Option<Method> {
        [Method::Post, Method::Put, Method::Patch, Method::Delete]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// One operation of a BulkRequest, as sent (references unresolved).
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    pub bulk_id: Option<String>,
    /// The ETag the resource must have (an `If-Match`).
    pub version: Option<String>,
    path: Option<Value>,
    data: Option<Value>,
    /// The `bulkId`s referenced in `path` and `data`.
    refs: BTreeSet<String>,
}

impl Operation {
    /// The resource type its `path` names, if it names one.
    pub fn kind(&self) -> Option<Kind> {
        let path = self.path.as_ref()?.as_str()?;
        let first = path.trim_start_matches('/').split('/').next()?;
        [Kind::User, Kind::Group]
            .into_iter()
            .find(|k| k.endpoint().eq_ignore_ascii_case(first))
    }

    /// Its `data`, as sent.
    pub fn data(&self) -> Option<&Value> {
        self.data.as_ref()
    }
}

/// A parsed BulkRequest.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    /// Stop after this many failed operations.
    pub fail_on_errors: Option<usize>,
    pub operations: Vec<Operation>,
}

/// An operation ready to run: its resource type, id and body, with every
/// `bulkId` reference replaced by the id it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub kind: Kind,
    /// `None` for a POST.
    pub id: Option<String>,
    /// `Null` for a DELETE.
    pub data: Value,
}

/// The outcome of one operation, as the BulkResponse reports it.
#[derive(Debug, Clone)]
pub struct OpResult {
    pub method: Method,
    pub bulk_id: Option<String>,
    pub location: Option<String>,
    pub version: Option<String>,
    /// The success status, or the error.
    pub outcome: Result<u16, ScimError>,
}

fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Parses and checks the envelope (see the module comment for what
/// refuses the whole request).
pub fn parse(body: &Value) -> ScimResult<BulkRequest> {
    let obj = body.as_object().ok_or_else(|| {
        ScimError::invalid_syntax("the Bulk body must be a BulkRequest JSON object")
    })?;
    let is_bulk = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|u| {
                u.as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(BULK_REQUEST_URN))
            })
        });
    if !is_bulk {
        return Err(ScimError::invalid_syntax(format!(
            "'schemas' must be [\"{BULK_REQUEST_URN}\"]"
        )));
    }
    let fail_on_errors = match get_ci(obj, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => {
                return Err(ScimError::invalid_value(
                    "'failOnErrors' must be an integer of at least 1",
                ));
            }
        },
    };
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("'Operations' must be an array of operations"))?;
    if ops.len() > BULK_MAX_OPERATIONS {
        return Err(ScimError::PayloadTooLarge(format!(
            "the BulkRequest has {} operations; maxOperations is {BULK_MAX_OPERATIONS} \
             (see /ServiceProviderConfig): split it into several requests",
            ops.len()
        )));
    }
    if ops.is_empty() {
        return Err(ScimError::invalid_syntax("'Operations' must not be empty"));
    }
    let operations = ops
        .iter()
        .enumerate()
        .map(|(i, op)| parse_op(i, op))
        .collect::<ScimResult<Vec<_>>>()?;
    let mut seen = HashSet::new();
    for (i, op) in operations.iter().enumerate() {
        if let Some(b) = &op.bulk_id
            && !seen.insert(b.as_str())
        {
            return Err(ScimError::invalid_value(format!(
                "Operations[{i}]: bulkId {b:?} is used by more than one operation"
            )));
        }
    }
    Ok(BulkRequest {
        fail_on_errors,
        operations,
    })
}

fn parse_op(i: usize, op: &Value) -> ScimResult<Operation> {
    let obj = op
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax(format!("Operations[{i}] must be an object")))?;
    let string = |name: &str| -> ScimResult<Option<String>> {
        match get_ci(obj, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ScimError::invalid_syntax(format!(
                "Operations[{i}].{name} must be a string"
            ))),
        }
    };
    let method = match string("method")? {
        None => {
            return Err(ScimError::invalid_value(format!(
                "Operations[{i}].method is required (POST, PUT, PATCH or DELETE)"
            )));
        }
        Some(m) => Method::parse(&m).ok_or_else(|| {
            ScimError::invalid_value(format!(
                "Operations[{i}].method {m:?} is not one of POST, PUT, PATCH, DELETE"
            ))
        })?,
    };
    let bulk_id = string("bulkId")?;
    if bulk_id.as_deref().is_some_and(str::is_empty) {
        return Err(ScimError::invalid_value(format!(
            "Operations[{i}].bulkId must not be empty"
        )));
    }
    if method == Method::Post && bulk_id.is_none() {
        return Err(ScimError::invalid_value(format!(
            "Operations[{i}].bulkId is required for a POST"
        )));
    }
    let version = string("version")?;
    let path = get_ci(obj, "path").cloned();
    let data = match method {
        Method::Delete => None,
        _ => get_ci(obj, "data").cloned(),
    };
    let mut refs = BTreeSet::new();
    if let Some(Value::String(p)) = &path {
        for seg in p.split('/') {
            if let Some(r) = reference(seg) {
                refs.insert(r.to_owned());
            }
        }
    }
    if let Some(d) = &data {
        collect_refs(d, &mut refs);
    }
    Ok(Operation {
        method,
        bulk_id,
        version,
        path,
        data,
        refs,
    })
}

/// The `bulkId` a string refers to, if it is a reference.
fn reference(s: &str) -> Option<&str> {
    s.strip_prefix(REFERENCE_PREFIX).filter(|r| !r.is_empty())
}

/// A PATCH operation's `path` may name a member by reference inside its
/// filter: `members[value eq "bulkId:u"]`. Those quoted references count
/// too (the odd pieces of the string split at `"` are the quoted ones).
fn is_patch_path(key: &str) -> bool {
    key.eq_ignore_ascii_case("path")
}

fn quoted_refs(s: &str) -> impl Iterator<Item = &str> {
    s.split('"').skip(1).step_by(2).filter_map(reference)
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            if let Some(r) = reference(s) {
                out.insert(r.to_owned());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                if let (true, Value::String(s)) = (is_patch_path(k), x) {
                    out.extend(quoted_refs(s).map(str::to_owned));
                }
                collect_refs(x, out);
            }
        }
        _ => {}
    }
}

/// Replaces every reference by the id it names (all are known).
fn substitute(v: &Value, created: &HashMap<String, String>) -> Value {
    match v {
        Value::String(s) => match reference(s).and_then(|r| created.get(r)) {
            Some(id) => Value::String(id.clone()),
            None => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, created)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| match (is_patch_path(k), x) {
                    (true, Value::String(s)) if reference(s).is_none() => {
                        (k.clone(), Value::String(substitute_quoted(s, created)))
                    }
                    _ => (k.clone(), substitute(x, created)),
                })
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// `s` with each quoted reference replaced by the id it names.
fn substitute_quoted(s: &str, created: &HashMap<String, String>) -> String {
    s.split('"')
        .enumerate()
        .map(
            |(i, piece)| match (i % 2, reference(piece).and_then(|r| created.get(r))) {
                (1, Some(id)) => id.as_str(),
                _ => piece,
            },
        )
        .collect::<Vec<_>>()
        .join("\"")
}

impl BulkRequest {
    /// Index of the POST that defines each `bulkId`.
    fn definers(&self) -> HashMap<&str, usize> {
        self.operations
            .iter()
            .enumerate()
            .filter(|(_, op)| op.method == Method::Post)
            .filter_map(|(i, op)| op.bulk_id.as_deref().map(|b| (b, i)))
            .collect()
    }

    /// The order to run the operations in: the request's order, each
    /// operation preceded by the POSTs it references (and theirs), depth
    /// first. Only what a reference needs moves forward, so operations on
    /// the same resource keep their order (`[PUT X (refs u), DELETE X,
    /// POST u]` runs POST u, PUT X, DELETE X). A cycle of references
    /// refuses the request, naming its `bulkId`s.
    pub fn execution_order(&self) -> ScimResult<Vec<usize>> {
        let definers = self.definers();
        let deps: Vec<BTreeSet<usize>> = self
            .operations
            .iter()
            .map(|op| {
                op.refs
                    .iter()
                    .filter_map(|r| definers.get(r.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut state = vec![Visit::New; deps.len()];
        let mut order = Vec::with_capacity(deps.len());
        let mut path = Vec::new();
        for i in 0..deps.len() {
            if let Err(cycle) = visit(i, &deps, &mut state, &mut order, &mut path) {
                let names: Vec<String> = cycle
                    .iter()
                    .filter_map(|&i| self.operations.get(i))
                    .map(|op| op.bulk_id.clone().unwrap_or_default())
                    .collect();
                return Err(ScimError::invalid_value(format!(
                    "the bulkId references form a cycle: {} (each operation's data \
                     references the next one's bulkId); nothing was performed",
                    names.join(" → ")
                )));
            }
        }
        Ok(order)
    }

    /// Operation `i` with its references resolved against the ids the
    /// POSTs so far created, and its `path` and `data` checked. When only
    /// `data` is wrong, the error comes with the resource it names.
    pub fn resolve(
        &self,
        i: usize,
        created: &HashMap<String, String>,
    ) -> Result<Resolved, (Option<(Kind, String)>, ScimError)> {
        let op = self
            .operations
            .get(i)
            .ok_or_else(|| (None, ScimError::Internal(format!("no operation {i}"))))?;
        let definers = self.definers();
        for r in &op.refs {
            if !definers.contains_key(r.as_str()) {
                return Err((
                    None,
                    ScimError::invalid_value(format!(
                        "bulkId {r:?} is not defined by any POST of this request"
                    )),
                ));
            }
            if !created.contains_key(r) {
                return Err((
                    None,
                    ScimError::invalid_value(format!(
                        "the POST with bulkId {r:?} failed, so this operation, which \
                         references it, was not performed"
                    )),
                ));
            }
        }
        let path = match &op.path {
            Some(Value::String(p)) => p,
            Some(_) => return Err((None, ScimError::invalid_path("'path' must be a string"))),
            None => return Err((None, ScimError::invalid_path("'path' is required"))),
        };
        let (kind, id) = parse_path(op.method, path).map_err(|e| (None, e))?;
        let id = id.map(|id| match reference(id).and_then(|r| created.get(r)) {
            Some(real) => real.clone(),
            None => id.to_owned(),
        });
        let data = match (&op.method, &op.data) {
            (Method::Delete, _) => Value::Null,
            (_, Some(d @ Value::Object(_))) => substitute(d, created),
            (m, _) => {
                let e = ScimError::invalid_syntax(format!(
                    "'data' must be a JSON object for a {}",
                    m.as_str()
                ));
                return Err((id.map(|id| (kind, id)), e));
            }
        };
        Ok(Resolved { kind, id, data })
    }
}

/// `/Users`, `/Groups` for a POST; `/Users/{id}`, `/Groups/{id}` otherwise.
fn parse_path(method: Method, path: &str) -> ScimResult<(Kind, Option<&str>)> {
    let bad = || {
        let want = match method {
            Method::Post => "\"/Users\" or \"/Groups\"",
            _ => "\"/Users/{id}\" or \"/Groups/{id}\"",
        };
        ScimError::invalid_path(format!(
            "path {path:?} is not valid for a {}: use {want}",
            method.as_str()
        ))
    };
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    let (endpoint, id) = match rest.split_once('/') {
        Some((e, id)) => (e, Some(id)),
        None => (rest, None),
    };
    let kind = [Kind::User, Kind::Group]
        .into_iter()
        .find(|k| k.endpoint().eq_ignore_ascii_case(endpoint))
        .ok_or_else(bad)?;
    match (method, id) {
        (Method::Post, None) => Ok((kind, None)),
        (Method::Post, Some(_)) | (_, None) => Err(bad()),
        (_, Some(id)) if id.is_empty() || id.contains(['/', '?', '#']) => Err(bad()),
        (_, Some(id)) => Ok((kind, Some(id))),
    }
}

/// The BulkResponse: one entry per reported operation, in the request's
/// order.
pub fn response<'a>(results: impl IntoIterator<Item = &'a OpResult>) -> Value {
    let ops: Vec<Value> = results.into_iter().map(op_json).collect();
    json!({ "schemas": [BULK_RESPONSE_URN], "Operations": ops })
}

fn op_json(r: &OpResult) -> Value {
    let mut o = Map::new();
    o.insert("method".into(), r.method.as_str().into());
    if let Some(b) = &r.bulk_id {
        o.insert("bulkId".into(), b.clone().into());
    }
    if let Some(l) = &r.location {
        o.insert("location".into(), l.clone().into());
    }
    if let Some(v) = &r.version {
        o.insert("version".into(), v.clone().into());
    }
    match &r.outcome {
        Ok(status) => {
            o.insert("status".into(), status.to_string().into());
        }
        Err(e) => {
            o.insert("status".into(), e.status().to_string().into());
            o.insert("response".into(), e.to_json());
        }
    }
    Value::Object(o)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    /// On the current path: meeting it again closes a cycle.
    Open,
    Done,
}

/// Depth-first: `i`'s dependencies, then `i`. A cycle comes back as the
/// operations on it, the first repeated at the end. The depth is bounded by
/// `maxOperations`.
fn visit(
    i: usize,
    deps: &[BTreeSet<usize>],
    state: &mut [Visit],
    order: &mut Vec<usize>,
    path: &mut Vec<usize>,
) -> Result<(), Vec<usize>> {
    match state.get(i).copied() {
        Some(Visit::Done) | None => return Ok(()),
        Some(Visit::Open) => {
            let from = path.iter().position(|&p| p == i).unwrap_or(0);
            let mut cycle = path[from..].to_vec();
            cycle.push(i);
            return Err(cycle);
        }
        Some(Visit::New) => {}
    }
    state[i] = Visit::Open;
    path.push(i);
    for &d in deps.get(i).into_iter().flatten() {
        visit(d, deps, state, order, path)?;
    }
    path.pop();
    state[i] = Visit::Done;
    order.push(i);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn req(ops: Value) -> Value {
        json!({"schemas": [BULK_REQUEST_URN], "Operations": ops})
    }

    fn post(kind: &str, bulk_id: &str, data: Value) -> Value {
        json!({"method": "post", "path": format!("/{kind}"), "bulkId": bulk_id, "data": data})
    }

    #[test]
    fn forward_references_run_after_what_they_reference() {
        let r = parse(&req(json!([
            post("Groups", "g", json!({"members": [{"value": "bulkId:u1"}, {"value": "bulkId:u2"}]})),
            {"method": "PATCH", "path": "/Users/bulkId:u2", "data": {}},
            post("Users", "u1", json!({})),
            post("Users", "u2", json!({})),
        ])))
        .unwrap();
        assert_eq!(r.execution_order().unwrap(), vec![2, 3, 0, 1]);
        let created: HashMap<String, String> = [("u1", "A"), ("u2", "B")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        let g = r.resolve(0, &created).unwrap();
        assert_eq!(g.data, json!({"members": [{"value": "A"}, {"value": "B"}]}));
        let p = r.resolve(1, &created).unwrap();
        assert_eq!((p.kind, p.id.as_deref()), (Kind::User, Some("B")));
    }

    #[test]
    fn a_reference_inside_a_patch_filter_path_is_resolved() {
        let r = parse(&req(json!([
            {"method": "PATCH", "path": "/Groups/g", "data": {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "remove", "path": "members[value eq \"bulkId:u\"]"}]}},
            post("Users", "u", json!({})),
        ])))
        .unwrap();
        assert_eq!(r.execution_order().unwrap(), vec![1, 0]);
        let created: HashMap<String, String> = [("u".to_owned(), "ID".to_owned())].into();
        let p = r.resolve(0, &created).unwrap();
        assert_eq!(
            p.data["Operations"][0]["path"],
            json!("members[value eq \"ID\"]")
        );
    }

    #[test]
    fn only_what_a_reference_needs_moves_forward() {
        let r = parse(&req(json!([
            {"method": "PUT", "path": "/Users/x", "data": {"manager": {"value": "bulkId:u"}}},
            {"method": "DELETE", "path": "/Users/x"},
            post("Users", "u", json!({})),
            {"method": "PATCH", "path": "/Users/y", "data": {}},
        ])))
        .unwrap();
        assert_eq!(r.execution_order().unwrap(), vec![2, 0, 1, 3]);
    }

    #[test]
    fn a_cycle_names_its_bulk_ids() {
        let r = parse(&req(json!([
            post("Users", "u", json!({})),
            post("Groups", "a", json!({"members": [{"value": "bulkId:b"}]})),
            post("Groups", "b", json!({"members": [{"value": "bulkId:a"}]})),
        ])))
        .unwrap();
        let e = r.execution_order().unwrap_err();
        assert_eq!(e.status(), 400);
        let d = e.detail();
        assert!(d.contains("a → b → a") || d.contains("b → a → b"), "{d}");
        let selfref = parse(&req(json!([post(
            "Groups",
            "s",
            json!({"members": [{"value": "bulkId:s"}]})
        )])))
        .unwrap();
        assert!(selfref.execution_order().is_err());
    }

    #[test]
    fn envelope_errors_refuse_the_request() {
        let bad = [
            json!([]),
            json!({"Operations": [post("Users", "x", json!({}))]}),
            req(json!([])),
            req(json!({})),
            req(json!([{"method": "GET", "path": "/Users"}])),
            req(json!([{"method": "POST", "path": "/Users", "data": {}}])),
            req(json!([
                post("Users", "x", json!({})),
                post("Users", "x", json!({}))
            ])),
            json!({"schemas": [BULK_REQUEST_URN], "failOnErrors": 0, "Operations": [post("Users", "x", json!({}))]}),
        ];
        for b in bad {
            let e = parse(&b).unwrap_err();
            assert_eq!(e.status(), 400, "{b}");
        }
        let many: Vec<Value> = (0..=BULK_MAX_OPERATIONS)
            .map(|i| post("Users", &i.to_string(), json!({})))
            .collect();
        assert_eq!(parse(&req(Value::Array(many))).unwrap_err().status(), 413);
    }

    #[test]
    fn paths_and_references_fail_one_operation() {
        let r = parse(&req(json!([
            {"method": "DELETE", "path": "/Users"},
            {"method": "PUT", "path": "/Widgets/1", "data": {}},
            post("Users", "u", json!({})),
            {"method": "PATCH", "path": "/Users/bulkId:nope", "data": {}},
            {"method": "PATCH", "path": "/Users/bulkId:u", "data": {}},
            {"method": "PUT", "path": "/Users/1"},
        ])))
        .unwrap();
        let none = HashMap::new();
        for i in [0, 1, 3, 4, 5] {
            assert_eq!(r.resolve(i, &none).unwrap_err().1.status(), 400, "{i}");
        }
        assert!(
            r.resolve(3, &none)
                .unwrap_err()
                .1
                .detail()
                .contains("not defined")
        );
        assert!(
            r.resolve(4, &none)
                .unwrap_err()
                .1
                .detail()
                .contains("failed")
        );
        let (target, _) = r.resolve(5, &none).unwrap_err();
        assert_eq!(target, Some((Kind::User, "1".to_owned())));
        assert!(r.resolve(2, &none).is_ok());
    }
}
