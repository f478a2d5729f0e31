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
}
