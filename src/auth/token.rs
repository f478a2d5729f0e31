//! API tokens: random, prefixed so they are recognisable (and findable by
//! secret scanners), shown once, stored only as a SHA-256 digest. A fast
//! hash is right for secrets of this much entropy; argon2 is for passwords.

use rand::Rng;
use rand::distributions::Alphanumeric;
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
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    let secret = format!("{TOKEN_PREFIX}{random}");
    PlainToken {
        prefix: secret[..SHOWN_LEN].to_owned(),
        digest: digest(&secret),
        secret,
    }
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
}
