//! The one error type of the SCIM core and its mapping to RFC 7644 §3.12.
//!
//! Every failure a request can meet ends up as a [`ScimError`]; the HTTP
//! adapter renders it with [`ScimError::status`] and [`ScimError::scim_type`]
//! and nothing else decides a status code.

use thiserror::Error;

/// `scimType` values of RFC 7644 §3.12 and RFC 9865 §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
    InvalidCursor,
    ExpiredCursor,
    InvalidCount,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
            ScimType::InvalidCursor => "invalidCursor",
            ScimType::ExpiredCursor => "expiredCursor",
            ScimType::InvalidCount => "invalidCount",
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ScimError {
    /// 400 with a `scimType`: the request is wrong and says how.
    #[error("{detail}")]
    BadRequest { scim_type: ScimType, detail: String },
    /// 400 without a `scimType` (RFC 7644 has none for e.g. a bad startIndex).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A body declared as something other than JSON (RFC 7644 §3.1, §8.1).
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotImplemented(String),
    /// The backend is overloaded or unreachable; retry after the given seconds.
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after_secs: u32,
    },
    #[error("{0}")]
    Internal(String),
}

impl ScimError {
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError::BadRequest {
            scim_type,
            detail: detail.into(),
        }
    }
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::InvalidValue, detail)
    }
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::InvalidSyntax, detail)
    }
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::InvalidFilter, detail)
    }
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::InvalidPath, detail)
    }
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::NoTarget, detail)
    }
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::Mutability, detail)
    }
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        ScimError::Conflict(detail.into())
    }

    /// HTTP status code of RFC 7644 §3.12.
    pub fn status(&self) -> u16 {
        match self {
            ScimError::BadRequest { .. } | ScimError::Invalid(_) => 400,
            ScimError::Unauthorized(_) => 401,
            ScimError::Forbidden(_) => 403,
            ScimError::NotFound(_) => 404,
            ScimError::MethodNotAllowed(_) => 405,
            ScimError::Conflict(_) => 409,
            ScimError::PreconditionFailed(_) => 412,
            ScimError::PayloadTooLarge(_) => 413,
            ScimError::UnsupportedMediaType(_) => 415,
            ScimError::Internal(_) => 500,
            ScimError::NotImplemented(_) => 501,
            ScimError::Unavailable { .. } => 503,
        }
    }

    /// `scimType` of the Error response, where RFC 7644 defines one.
    pub fn scim_type(&self) -> Option<ScimType> {
        match self {
            ScimError::BadRequest { scim_type, .. } => Some(*scim_type),
            ScimError::Conflict(_) => Some(ScimType::Uniqueness),
            _ => None,
        }
    }

    pub fn detail(&self) -> String {
        self.to_string()
    }

    /// The SCIM Error resource (RFC 7644 §3.12); `status` is a string.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "schemas": [crate::scim::schema::ERROR_URN],
            "status": self.status().to_string(),
            "detail": self.detail(),
        });
        if let (Some(t), Some(obj)) = (self.scim_type(), body.as_object_mut()) {
            obj.insert("scimType".into(), t.as_str().into());
        }
        body
    }
}

pub type ScimResult<T> = Result<T, ScimError>;
