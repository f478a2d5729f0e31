//! Secrets: random strings for tokens, session keys, CSRF tokens and
//! passwords, and the one comparison of a secret someone sent with the
//! one expected.

use rand::Rng;
use rand::distributions::Alphanumeric;
use subtle::ConstantTimeEq;

/// `len` random letters and digits (about 5.95 bits each) from the
/// thread's cryptographically secure generator: safe in a URL, a header, a
/// cookie and a form without escaping.
pub fn random_alphanumeric(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// `N` random bytes from the same generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::thread_rng().fill(&mut bytes[..]);
    bytes
}

/// Whether a secret sent equals the one expected, in a time that tells
/// nothing of where they differ (only whether their lengths do).
pub fn constant_time_eq(sent: &[u8], expected: &[u8]) -> bool {
    sent.ct_eq(expected).into()
}

/// A secret a client presents (an API token, a JWT, the `Cookie` header of
/// a session) as the key of the
/// authentication cache: the cache is looked up by the secret itself, so
/// that a request that hits it is not hashed with SHA-256 (1.1% of a
/// token request's CPU, more for a JWT of a kilobyte); the SHA-256 digest
/// is for the database, where a stolen copy must not be usable, and is
/// computed on a miss only.
/// Keys compare in constant time, and never print.
#[derive(Clone)]
pub struct Presented(Box<str>);

impl Presented {
    pub fn new(secret: &str) -> Self {
        Self(secret.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Presented {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Presented {}

impl std::hash::Hash for Presented {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Presented(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_secrets_compare_equal_and_others_do_not() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        let made = random_alphanumeric(64);
        assert_eq!(made.len(), 64);
        assert!(made.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(made, random_alphanumeric(64));
        assert_ne!(random_bytes::<32>(), [0u8; 32]);
    }

    #[test]
    fn a_presented_secret_is_its_own_key_and_never_prints() {
        use std::collections::HashMap;
        let token = "lbp_0123456789abcdef0123456789abcdef01234567";
        let mut cache = HashMap::new();
        cache.insert(Presented::new(token), 1);
        assert_eq!(cache.get(&Presented::new(token)), Some(&1));
        // One character off, at either end, or a prefix: not found.
        for other in [
            "lbp_0123456789abcdef0123456789abcdef01234568",
            "mbp_0123456789abcdef0123456789abcdef01234567",
            "lbp_0123456789abcdef0123456789abcdef0123456",
            "",
        ] {
            assert_eq!(cache.get(&Presented::new(other)), None, "{other}");
        }
        assert!(!format!("{:?}", Presented::new(token)).contains("0123"));
    }
}
