//! API tokens: random, prefixed so they are recognisable (and findable by
//! secret scanners), shown once, stored only as a SHA-256 digest. A fast
//! hash is right for secrets of this much entropy; argon2 is for passwords.

use chrono::NaiveDateTime;
use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "lbp_";
const SECRET_LEN: usize = 40;
/// How much of a token is kept in clear to identify it (`lbp_` + 8).
const SHOWN_LEN: usize = TOKEN_PREFIX.len() + 8;

/// A freshly made token: the secret, to show once, and what is stored.
pub struct PlainToken {
    pub secret: String,
    pub prefix: String,
    pub digest: String,
}

impl std::fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlainToken({}…)", self.prefix)
    }
}

pub fn generate() -> PlainToken {
    let random = crate::secret::random_alphanumeric(SECRET_LEN);
    let secret = format!("{TOKEN_PREFIX}{random}");
    PlainToken { prefix: secret[..SHOWN_LEN].to_owned(), digest: digest(&secret), secret }
}

/// The longest lifetime a token may be given: beyond it the expiry is no
/// longer a date anyone will see, and far beyond it the arithmetic overflows.
pub const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

/// When a token made now with `lifetime` stops working. Checked, so that
/// `300000y` is an error and never a panic.
pub fn expiry_after(lifetime: std::time::Duration) -> Result<NaiveDateTime, String> {
    if lifetime > MAX_LIFETIME {
        return Err("too long (100 years at most)".into());
    }
    chrono::Duration::from_std(lifetime)
        .ok()
        .and_then(|lifetime| crate::db::queries::now().checked_add_signed(lifetime))
        .ok_or_else(|| "too long (100 years at most)".into())
}

/// A lifetime as typed in a form or an API call ("30d", "12h", "90min"):
/// `None` when empty (no expiry).
pub fn expiry_from_text(text: &str) -> Result<Option<NaiveDateTime>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let lifetime = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if lifetime.is_zero() {
        return Err("must be longer than zero".into());
    }
    expiry_after(lifetime).map(Some)
}

pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_stored_as_digests() {
        let a = generate();
        let b = generate();
        assert!(a.secret.starts_with("lbp_") && a.secret.len() == 44);
        assert!(a.secret.starts_with(&a.prefix));
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.digest, digest(&a.secret));
        assert_eq!(a.digest.len(), 64);
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn lifetimes_are_checked_not_panicking() {
        assert_eq!(expiry_from_text(""), Ok(None));
        assert!(expiry_from_text("30d").unwrap().is_some());
        for text in ["300000y", "9999999999999999y", "0s", "soon", "-1d"] {
            assert!(expiry_from_text(text).is_err(), "{text}");
        }
    }
}
