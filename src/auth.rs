//! Who is calling: SCIM bearer tokens (checked by
//! [`crate::credentials::Credentials`]) and admin callers, which are either
//! the holder of the local admin key or, on AWS, an IAM principal that API
//! Gateway authenticated with SigV4. The two never open each other's routes.

use std::path::Path;

use axum::http::{HeaderMap, header};

use crate::credentials::secret::{self, ADMIN_KEY_PREFIX};

/// The credential of `Authorization: Bearer <credential>` (scheme
/// case-insensitive), if the header has that shape.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
}

/// How admin requests are authenticated.
pub enum AdminAuth {
    /// `Authorization: Bearer <admin key>`, compared in constant time with
    /// the key's SHA-256 (the only form the server keeps).
    Key { sha256: String },
    /// API Gateway's `AWS_IAM` authoriser; the function also insists on the
    /// caller's ARN in the event.
    Iam,
}

/// An authenticated admin caller, recorded as the actor of its changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminActor {
    /// The local admin key (never named by its value).
    LocalKey,
    /// An IAM principal's ARN.
    Iam(String),
}

impl std::fmt::Display for AdminActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminActor::LocalKey => f.write_str("admin-key"),
            AdminActor::Iam(arn) => f.write_str(arn),
        }
    }
}

impl AdminAuth {
    pub fn key(key: &str) -> AdminAuth {
        AdminAuth::Key {
            sha256: secret::hash(key),
        }
    }

    /// Checks a presented bearer value (local mode).
    pub fn accepts_key(&self, presented: &str) -> bool {
        match self {
            AdminAuth::Key { sha256 } => secret::matches(presented, sha256),
            AdminAuth::Iam => false,
        }
    }
}

/// Where the local admin key lives: `<data-dir>/admin.key`.
pub fn admin_key_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("admin.key")
}

/// The local admin key: `given` if set, else the one in `admin.key`,
/// else a new one written there with mode 0600. Returns the key and
/// whether a file holds it.
pub fn load_or_create_admin_key(
    data_dir: &Path,
    given: Option<&str>,
) -> std::io::Result<(String, bool)> {
    if let Some(k) = given.map(str::trim).filter(|k| !k.is_empty()) {
        return Ok((k.to_owned(), false));
    }
    let path = admin_key_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => return Ok((k.trim().to_owned(), true)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let key = secret::generate(ADMIN_KEY_PREFIX);
    write_private(&path, &format!("{key}\n"))?;
    Ok((key, true))
}

#[cfg(unix)]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, content)
}
