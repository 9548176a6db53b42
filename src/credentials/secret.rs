//! Secret formats: SCIM tokens, admin keys and reveal links.
//!
//! Tokens follow GitHub's format: a prefix that names what leaked, 43
//! random base62 characters (256 bits from the OS-seeded CSPRNG) and a
//! 6-character CRC32 checksum, so a scanner can tell a real token from a
//! look-alike offline, without asking the service. Only SHA-256 hashes are
//! ever stored; the inputs are 256-bit random, so no stretching is needed.

use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SCIM bearer tokens.
pub const TOKEN_PREFIX: &str = "scim_";
/// Admin API keys (local mode).
pub const ADMIN_KEY_PREFIX: &str = "scimadm_";

/// 43 base62 characters carry 256.03 bits.
const RANDOM_CHARS: usize = 43;
/// 62^6 > 2^32: a CRC32 fits in six base62 characters.
const CHECKSUM_CHARS: usize = 6;
/// Random characters of a reveal link's secret (190 bits).
const LINK_CHARS: usize = 32;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_chars(n: usize) -> String {
    // ThreadRng is a CSPRNG (ChaCha12) seeded and reseeded from the OS.
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// A new secret: `prefix`, 43 random characters, 6 checksum characters.
pub fn generate(prefix: &str) -> String {
    let body = format!("{prefix}{}", random_chars(RANDOM_CHARS));
    let sum = checksum(&body);
    format!("{body}{sum}")
}

/// Whether `secret` has the shape and a valid checksum of one made by
/// [`generate`] with `prefix` (what a secret scanner checks).
pub fn well_formed(prefix: &str, secret: &str) -> bool {
    let Some(rest) = secret.strip_prefix(prefix) else {
        return false;
    };
    if rest.len() != RANDOM_CHARS + CHECKSUM_CHARS
        || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return false;
    }
    let (body, sum) = secret.split_at(secret.len() - CHECKSUM_CHARS);
    checksum(body) == sum
}

/// Hex SHA-256: what is stored in place of a secret.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn matches(secret: &str, stored_hash: &str) -> bool {
    hash(secret).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret part of a "Get Secret Token" link.
pub fn link_secret() -> String {
    random_chars(LINK_CHARS)
}

/// The key a link's secret seals its token under: HMAC-SHA256 with the
/// secret as key, so only someone holding the link can derive it.
pub fn link_key(link_secret: &str) -> Option<[u8; 32]> {
    // HMAC takes keys of any length, so this is never `None` in practice.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(link_secret.as_bytes()).ok()?;
    mac.update(b"scim-provisioning reveal key v1");
    Some(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_long_and_checksummed() {
        let t = generate(TOKEN_PREFIX);
        assert_eq!(t.len(), TOKEN_PREFIX.len() + 49);
        assert!(well_formed(TOKEN_PREFIX, &t), "{t}");
        assert!(!well_formed(ADMIN_KEY_PREFIX, &t));
        // One changed character breaks the checksum.
        let mut chars: Vec<char> = t.chars().collect();
        let i = TOKEN_PREFIX.len() + 3;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let tampered: String = chars.into_iter().collect();
        assert!(!well_formed(TOKEN_PREFIX, &tampered));
        assert!(!well_formed(TOKEN_PREFIX, "scim_short"));
        assert_ne!(generate(TOKEN_PREFIX), t);
    }

    #[test]
    fn hashes_compare_in_constant_time_and_only_match_the_secret() {
        let t = generate(TOKEN_PREFIX);
        let h = hash(&t);
        assert_eq!(h.len(), 64);
        assert!(matches(&t, &h));
        assert!(!matches(&generate(TOKEN_PREFIX), &h));
    }

    #[test]
    fn link_keys_depend_on_the_secret() {
        let (a, b) = (link_secret(), link_secret());
        assert_eq!(a.len(), 32);
        assert_eq!(link_key(&a), link_key(&a));
        assert_ne!(link_key(&a), link_key(&b));
    }
}
