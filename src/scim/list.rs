//! Queries (RFC 7644 §3.4.2, §3.4.3) and both paginations: index-based
//! (`startIndex`/`count`) and cursor-based (RFC 9865 `cursor`/`nextCursor`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::{ScimError, ScimResult, ScimType};
use super::filter::{self, AttrPath, Filter};
use super::schema::{LIST_URN, SEARCH_URN};

pub const DEFAULT_PAGE_SIZE: u64 = 100;
pub const MAX_PAGE_SIZE: u64 = 1000;
/// How long a `nextCursor` stays valid.
pub const CURSOR_TTL_SECS: u64 = 3600;

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    /// The filter as sent, so a cursor can be bound to its query.
    pub filter_text: Option<String>,
    pub sort_by: Option<AttrPath>,
    pub sort_text: Option<String>,
    pub descending: bool,
    pub paging: PagingParam,
    pub count: u64,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

/// `Paging` with the cursor kept as text until it is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagingParam {
    Index(u64),
    Cursor(Option<String>),
}

/// Raw parameters, from a query string or a SearchRequest body.
#[derive(Debug, Default)]
pub struct RawQuery {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub start_index: Option<String>,
    pub count: Option<String>,
    pub cursor: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

impl RawQuery {
    /// From `?filter=...&startIndex=...`; parameter names are case-insensitive.
    pub fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> ScimResult<RawQuery> {
        let mut q = RawQuery::default();
        for (k, v) in pairs {
            let slot = match k.to_ascii_lowercase().as_str() {
                "filter" => &mut q.filter,
                "sortby" => &mut q.sort_by,
                "sortorder" => &mut q.sort_order,
                "startindex" => &mut q.start_index,
                "count" => &mut q.count,
                "cursor" => &mut q.cursor,
                "attributes" => &mut q.attributes,
                "excludedattributes" => &mut q.excluded_attributes,
                _ => continue,
            };
            if slot.replace(v.to_owned()).is_some() {
                return Err(ScimError::Invalid(format!(
                    "query parameter '{k}' is given more than once"
                )));
            }
        }
        Ok(q)
    }

    /// From a `POST .search` SearchRequest (RFC 7644 §3.4.3).
    pub fn from_search_body(body: &Value) -> ScimResult<RawQuery> {
        let obj = body.as_object().ok_or_else(|| {
            ScimError::invalid_syntax("the search body must be a SearchRequest object")
        })?;
        let mut q = RawQuery::default();
        let mut has_schema = false;
        for (k, v) in obj {
            let text = |v: &Value| -> ScimResult<Option<String>> {
                match v {
                    Value::Null => Ok(None),
                    Value::String(s) => Ok(Some(s.clone())),
                    Value::Number(n) => Ok(Some(n.to_string())),
                    Value::Array(a) => {
                        let parts: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
                        parts.map(|p| Some(p.join(","))).ok_or_else(|| {
                            ScimError::invalid_syntax(format!("'{k}' must be an array of strings"))
                        })
                    }
                    _ => Err(ScimError::invalid_syntax(format!(
                        "'{k}' has the wrong type"
                    ))),
                }
            };
            match k.to_ascii_lowercase().as_str() {
                "schemas" => {
                    has_schema = v.as_array().is_some_and(|a| {
                        a.iter().any(|s| {
                            s.as_str()
                                .is_some_and(|s| s.eq_ignore_ascii_case(SEARCH_URN))
                        })
                    })
                }
                "filter" => q.filter = text(v)?,
                "sortby" => q.sort_by = text(v)?,
                "sortorder" => q.sort_order = text(v)?,
                "startindex" => q.start_index = text(v)?,
                "count" => q.count = text(v)?,
                "cursor" => q.cursor = text(v)?,
                "attributes" => q.attributes = text(v)?,
                "excludedattributes" => q.excluded_attributes = text(v)?,
                other => {
                    return Err(ScimError::invalid_syntax(format!(
                        "'{other}' is not a SearchRequest attribute"
                    )));
                }
            }
        }
        if !has_schema {
            return Err(ScimError::invalid_syntax(format!(
                "'schemas' must be [\"{SEARCH_URN}\"]"
            )));
        }
        Ok(q)
    }

    pub fn parse(self) -> ScimResult<ListQuery> {
        let filter = match self
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(f) => Some(filter::parse_filter(f)?),
            None => None,
        };
        let sort_by = match self
            .sort_by
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(s) => Some(filter::parse_attr_path(s)?),
            None => None,
        };
        let descending = match self.sort_order.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(o) if o.eq_ignore_ascii_case("ascending") => false,
            Some(o) if o.eq_ignore_ascii_case("descending") => true,
            Some(o) => {
                return Err(ScimError::Invalid(format!(
                    "sortOrder '{o}' must be \"ascending\" or \"descending\""
                )));
            }
        };
        let cursor_mode = self.cursor.is_some();
        let count = match self.count.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_PAGE_SIZE,
            Some(c) => match c.parse::<i64>() {
                // RFC 7644 §3.4.2.4: a negative count is 0.
                Ok(n) if n < 0 && !cursor_mode => 0,
                Ok(n) if n > MAX_PAGE_SIZE as i64 && cursor_mode => {
                    return Err(ScimError::bad(
                        ScimType::InvalidCount,
                        format!("count {n} exceeds the maximum page size of {MAX_PAGE_SIZE}"),
                    ));
                }
                Ok(n) if n < 0 => {
                    return Err(ScimError::bad(
                        ScimType::InvalidCount,
                        format!("count {n} must not be negative"),
                    ));
                }
                // RFC 7644 lets a server return fewer than asked.
                Ok(n) => (n as u64).min(MAX_PAGE_SIZE),
                Err(_) if cursor_mode => {
                    return Err(ScimError::bad(
                        ScimType::InvalidCount,
                        format!("count '{c}' is not an integer"),
                    ));
                }
                Err(_) => {
                    return Err(ScimError::invalid_value(format!(
                        "count '{c}' is not an integer"
                    )));
                }
            },
        };
        let paging = match (self.cursor, self.start_index.as_deref().map(str::trim)) {
            (Some(_), Some(s)) if !s.is_empty() => {
                return Err(ScimError::invalid_value(
                    "use either startIndex or cursor, not both",
                ));
            }
            (Some(c), _) => PagingParam::Cursor(Some(c).filter(|c| !c.trim().is_empty())),
            (None, None) | (None, Some("")) => PagingParam::Index(1),
            (None, Some(s)) => match s.parse::<i64>() {
                // RFC 7644 §3.4.2.4: a startIndex below 1 is 1.
                Ok(n) => PagingParam::Index(n.max(1) as u64),
                Err(_) => {
                    return Err(ScimError::invalid_value(format!(
                        "startIndex '{s}' is not an integer"
                    )));
                }
            },
        };
        Ok(ListQuery {
            filter,
            filter_text: self.filter,
            sort_by,
            sort_text: self.sort_by,
            descending,
            paging,
            count,
            attributes: self.attributes,
            excluded_attributes: self.excluded_attributes,
        })
    }
}

impl ListQuery {
    /// What a cursor is bound to: the query, not the page.
    pub fn fingerprint(&self, scope: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            Some(scope),
            self.filter_text.as_deref(),
            self.sort_text.as_deref(),
        ] {
            h.update(part.unwrap_or("").as_bytes());
            h.update([0u8]);
        }
        h.update([u8::from(self.descending)]);
        URL_SAFE_NO_PAD.encode(&h.finalize()[..12])
    }
}

/// The position a cursor stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    /// Tenant the cursor was issued to.
    pub t: String,
    /// Query fingerprint.
    pub q: String,
    /// Number of results before the next page.
    pub o: u64,
    /// Last id returned, for keyset continuation of unsorted listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
    /// Expiry, seconds since the epoch.
    pub e: u64,
}

/// Signs cursors so they are opaque and cannot be forged or moved between
/// tenants.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl CursorCodec {
    pub fn new(key: &[u8]) -> CursorCodec {
        CursorCodec { key: key.to_vec() }
    }

    fn mac(&self, payload: &[u8]) -> ScimResult<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .map_err(|e| ScimError::Internal(e.to_string()))?;
        mac.update(payload);
        Ok(mac)
    }

    pub fn encode(&self, state: &CursorState) -> ScimResult<String> {
        let payload = serde_json::to_vec(state).map_err(|e| ScimError::Internal(e.to_string()))?;
        let tag = self.mac(&payload)?.finalize().into_bytes();
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        ))
    }

    /// Checks signature, tenant, query and expiry, in that order.
    pub fn decode(
        &self,
        cursor: &str,
        tenant: &str,
        fingerprint: &str,
        now: u64,
    ) -> ScimResult<CursorState> {
        let invalid = |why: &str| {
            ScimError::bad(
                ScimType::InvalidCursor,
                format!("the cursor {why}; start again with cursor= (empty)"),
            )
        };
        let (p, t) = cursor
            .split_once('.')
            .ok_or_else(|| invalid("is malformed"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| invalid("is malformed"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(t)
            .map_err(|_| invalid("is malformed"))?;
        self.mac(&payload)?
            .verify_slice(&tag)
            .map_err(|_| invalid("was not issued by this service"))?;
        let state: CursorState =
            serde_json::from_slice(&payload).map_err(|_| invalid("is malformed"))?;
        if state.t != tenant {
            return Err(invalid("was not issued for this tenant"));
        }
        if state.q != fingerprint {
            return Err(invalid(
                "belongs to a different query (filter, sortBy or sortOrder changed)",
            ));
        }
        if state.e < now {
            return Err(ScimError::bad(
                ScimType::ExpiredCursor,
                format!(
                    "the cursor has expired (cursors last {CURSOR_TTL_SECS} s); start again with cursor= (empty)"
                ),
            ));
        }
        Ok(state)
    }
}

/// A ListResponse (RFC 7644 §3.4.2 and RFC 9865 §3).
pub fn list_response(
    resources: Vec<Value>,
    total: u64,
    start_index: Option<u64>,
    next_cursor: Option<String>,
) -> Value {
    let mut v = json!({
        "schemas": [LIST_URN],
        "totalResults": total,
        "itemsPerPage": resources.len(),
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(s) = start_index {
            obj.insert("startIndex".into(), json!(s));
        }
        if let Some(c) = next_cursor {
            obj.insert("nextCursor".into(), Value::String(c));
        }
        obj.insert("Resources".into(), Value::Array(resources));
    }
    v
}
