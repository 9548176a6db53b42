//! From stored data to the JSON a client sees: `schemas`, `meta`, computed
//! `members`/`groups`, and the `attributes`/`excludedAttributes` projection
//! of RFC 7644 §3.4.2.5 driven by each attribute's `returned` setting.

use serde_json::{Map, Value, json};

use super::error::ScimResult;
use super::filter;
use super::model::{MemberRef, Product, StoredResource};
use super::schema::{self, AttrDef, COMMON_ATTRS, Kind, PRODUCT_URN, Returned};

/// A group a user belongs to, for the user's read-only `groups` attribute.
#[derive(Debug, Clone)]
pub struct GroupRef {
    pub id: String,
    pub display: Option<String>,
}

/// `meta.version` and the ETag header of a group: a weak validator of
/// its version (member changes bump it).
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// A user's ETag. Its `groups` change when a group gains or loses it or is
/// renamed, none of which writes the user (so member changes never contend
/// with user writes): the tag is the user's version plus a digest of the
/// `groups` it shows, and changes whenever the representation does.
pub fn user_etag(version: u64, groups: &[GroupRef]) -> String {
    use sha2::{Digest, Sha256};
    if groups.is_empty() {
        return etag(version);
    }
    let mut h = Sha256::new();
    for g in groups {
        h.update(g.id.as_bytes());
        h.update([0x1f]);
        h.update(g.display.as_deref().unwrap_or("").as_bytes());
        h.update([0x1e]);
    }
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("W/\"{version}-{hex}\"")
}

/// What ends the tag of a group in the middle of a chunked member change.
const SETTLING: &str = "-settling";

/// The ETag of a resource as rendered: `groups` must be the user's groups.
/// A group in the middle of a chunked member change (`settling`) has the
/// new version but not yet all its members: its tag is one that the
/// finished state does not share, and that no header matches.
pub fn etag_of(r: &StoredResource, groups: Option<&[GroupRef]>) -> String {
    match r.kind {
        Kind::User => user_etag(r.version, groups.unwrap_or_default()),
        Kind::Group if r.settling => format!("W/\"{}{SETTLING}\"", r.version),
        Kind::Group => etag(r.version),
    }
}

/// Parses an `If-Match`/`If-None-Match` header into opaque tags (weak
/// comparison: `W/` and quotes dropped); `None` for `*`.
pub fn parse_etags(header: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for part in header.split(',') {
        let p = part.trim();
        if p == "*" {
            return None;
        }
        out.push(opaque(p).to_owned());
    }
    Some(out)
}

/// Whether a header's tags name the current ETag (`*` always does). A
/// settling group's tag names a state that is still changing: neither a
/// 304 nor a conditional write may rely on it, so only `*` matches it.
pub fn etag_matches(header: &str, current: &str) -> bool {
    match parse_etags(header) {
        None => true,
        Some(_) if opaque(current).ends_with(SETTLING) => false,
        Some(tags) => tags.iter().any(|t| t == opaque(current)),
    }
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"')
}

pub fn location(base_url: &str, kind: Kind, id: &str) -> String {
    format!("{base_url}/{}/{id}", kind.endpoint())
}

/// The full representation, before projection.
/// The product extension of a user: label, licence, admin role.
pub fn product_extension(p: &Product) -> Value {
    let mut o = Map::new();
    let by = if p.provisioned_at.is_some() {
        "scim"
    } else {
        "manual"
    };
    o.insert("provisionedBy".into(), json!(by));
    if let Some(at) = &p.provisioned_at {
        o.insert("provisionedAt".into(), json!(at));
    }
    o.insert("licence".into(), json!(p.licence.name()));
    o.insert("admin".into(), json!(p.admin));
    Value::Object(o)
}

pub fn render(
    kind: Kind,
    r: &StoredResource,
    base_url: &str,
    members: Option<&[MemberRef]>,
    groups: Option<&[GroupRef]>,
) -> Value {
    let mut out = Map::new();
    let mut schemas = vec![Value::String(kind.schema().id.to_owned())];
    for ext in kind.extensions() {
        if r.attrs.contains_key(ext.id) || (kind == Kind::User && ext.id == PRODUCT_URN) {
            schemas.push(Value::String(ext.id.to_owned()));
        }
    }
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), Value::String(r.id.clone()));
    if let Some(x) = r.attrs.get("externalId") {
        out.insert("externalId".into(), x.clone());
    }
    for (k, v) in &r.attrs {
        if k != "externalId" {
            out.insert(k.clone(), v.clone());
        }
    }
    if let Some(ms) = members
        && !ms.is_empty()
    {
        let list = ms
            .iter()
            .map(|m| json!({"value": m.id, "$ref": location(base_url, m.kind, &m.id), "type": m.kind.name()}))
            .collect();
        out.insert("members".into(), Value::Array(list));
    }
    if let Some(gs) = groups
        && !gs.is_empty()
    {
        let list = gs
            .iter()
            .map(|g| {
                let mut o = json!({"value": g.id, "$ref": location(base_url, Kind::Group, &g.id), "type": "direct"});
                if let (Some(d), Some(obj)) = (&g.display, o.as_object_mut()) {
                    obj.insert("display".into(), Value::String(d.clone()));
                }
                o
            })
            .collect();
        out.insert("groups".into(), Value::Array(list));
    }
    if kind == Kind::User {
        out.insert(PRODUCT_URN.into(), product_extension(&r.product));
    }
    out.insert(
        "meta".into(),
        json!({
            "resourceType": kind.name(),
            "created": r.created,
            "lastModified": r.last_modified,
            "location": location(base_url, kind, &r.id),
            "version": etag_of(r, groups),
        }),
    );
    Value::Object(out)
}

/// One entry of `attributes` or `excludedAttributes`.
#[derive(Debug, Clone, PartialEq)]
struct Sel {
    ext: Option<&'static str>,
    /// `None`: the whole extension.
    attr: Option<&'static str>,
    sub: Option<&'static str>,
}

/// What a response includes (RFC 7644 §3.4.2.5 and §3.9).
#[derive(Debug, Clone, Default)]
pub struct Projection {
    include: Option<Vec<Sel>>,
    exclude: Vec<Sel>,
}

impl Projection {
    /// `attributes` takes precedence over `excludedAttributes` when both are
    /// given. Names that are not attributes of `kind` are ignored, as RFC
    /// 7644 lets a server do, so one list can serve a root search.
    pub fn parse(
        kind: Kind,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> ScimResult<Projection> {
        let include = match attributes.map(str::trim).filter(|s| !s.is_empty()) {
            Some(list) => Some(parse_list(kind, list)?),
            None => None,
        };
        let exclude = match excluded.map(str::trim).filter(|s| !s.is_empty()) {
            Some(list) if include.is_none() => parse_list(kind, list)?,
            _ => Vec::new(),
        };
        Ok(Projection { include, exclude })
    }

    /// Whether the response shows a top-level core attribute, so the
    /// service can skip loading `members` or `groups` it would drop.
    pub fn wants(&self, kind: Kind, name: &str) -> bool {
        let Some(def) = kind
            .schema()
            .attr(name)
            .or_else(|| COMMON_ATTRS.iter().find(|a| a.name == name))
        else {
            return false;
        };
        match (&self.include, def.returned) {
            (_, Returned::Always) => true,
            (_, Returned::Never) => false,
            (Some(inc), _) => inc
                .iter()
                .any(|s| s.ext.is_none() && s.attr == Some(def.name)),
            (None, Returned::Request) => false,
            (None, _) => !self
                .exclude
                .iter()
                .any(|s| s.ext.is_none() && s.attr == Some(def.name) && s.sub.is_none()),
        }
    }

    /// Whether `attributes` names this top-level core attribute.
    pub fn explicitly_requests(&self, name: &str) -> bool {
        self.include
            .as_ref()
            .is_some_and(|inc| inc.iter().any(|s| s.ext.is_none() && s.attr == Some(name)))
    }

    /// The same projection, also leaving out a top-level core attribute.
    pub fn without(&self, name: &'static str) -> Projection {
        let mut p = self.clone();
        match &mut p.include {
            Some(inc) => inc.retain(|s| !(s.ext.is_none() && s.attr == Some(name))),
            None => p.exclude.push(Sel {
                ext: None,
                attr: Some(name),
                sub: None,
            }),
        }
        p
    }

    pub fn apply(&self, kind: Kind, doc: Value) -> Value {
        let Value::Object(map) = doc else {
            return doc;
        };
        let mut out = Map::new();
        for (k, v) in map {
            if k == "schemas" || k == "id" {
                out.insert(k, v);
                continue;
            }
            if let Some(ext) = kind.extension(&k) {
                let Value::Object(inner) = v else { continue };
                let mut o = Map::new();
                for (ak, av) in inner {
                    if let Some(def) = ext.attr(&ak)
                        && let Some(pv) = self.project(Some(ext.id), def, av)
                    {
                        o.insert(ak, pv);
                    }
                }
                if !o.is_empty() {
                    out.insert(k, Value::Object(o));
                }
                continue;
            }
            let def = kind
                .schema()
                .attr(&k)
                .or_else(|| COMMON_ATTRS.iter().find(|a| a.name == k));
            match def {
                Some(def) => {
                    if let Some(pv) = self.project(None, def, v) {
                        out.insert(k, pv);
                    }
                }
                None => {
                    out.insert(k, v);
                }
            }
        }
        Value::Object(out)
    }

    fn project(&self, ext: Option<&'static str>, def: &AttrDef, v: Value) -> Option<Value> {
        match def.returned {
            Returned::Always => return Some(v),
            Returned::Never => return None,
            _ => {}
        }
        let same = |s: &&Sel| s.ext == ext && (s.attr.is_none() || s.attr == Some(def.name));
        match &self.include {
            Some(inc) => {
                let hits: Vec<&Sel> = inc.iter().filter(same).collect();
                if hits.is_empty() {
                    return None;
                }
                if hits.iter().any(|s| s.attr.is_none() || s.sub.is_none()) {
                    return Some(v);
                }
                let subs: Vec<&str> = hits.iter().filter_map(|s| s.sub).collect();
                keep_subs(v, |name| subs.contains(&name))
            }
            None => {
                if def.returned == Returned::Request {
                    return None;
                }
                let hits: Vec<&Sel> = self.exclude.iter().filter(same).collect();
                if hits.iter().any(|s| s.attr.is_none() || s.sub.is_none()) {
                    return None;
                }
                let subs: Vec<&str> = hits.iter().filter_map(|s| s.sub).collect();
                if subs.is_empty() {
                    return Some(v);
                }
                keep_subs(v, |name| !subs.contains(&name))
            }
        }
    }
}

/// Keeps only the selected sub-attributes of a complex value (or of every
/// element of a multi-valued one).
fn keep_subs(v: Value, keep: impl Fn(&str) -> bool) -> Option<Value> {
    let filter_obj = |o: Map<String, Value>| -> Option<Value> {
        let kept: Map<String, Value> = o.into_iter().filter(|(k, _)| keep(k)).collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    };
    match v {
        Value::Object(o) => filter_obj(o),
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .into_iter()
                .filter_map(|i| match i {
                    Value::Object(o) => filter_obj(o),
                    other => Some(other),
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        other => Some(other),
    }
}

fn parse_list(kind: Kind, list: &str) -> ScimResult<Vec<Sel>> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(ext) = kind.extension(item) {
            out.push(Sel {
                ext: Some(ext.id),
                attr: None,
                sub: None,
            });
            continue;
        }
        let path = filter::parse_attr_path(item)?;
        if let Some(r) = schema::resolve(kind, path.urn.as_deref(), &path.name, path.sub.as_deref())
        {
            out.push(Sel {
                ext: r.extension,
                attr: Some(r.attr.name),
                sub: r.sub.map(|s| s.name),
            });
        }
    }
    Ok(out)
}
