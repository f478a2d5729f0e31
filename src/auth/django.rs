//! Django's password hashes, as users imported from the Django proxy bring
//! them (`importdjango`): `pbkdf2_sha256` (Django 5.2: 1,000,000
//! iterations), `pbkdf2_sha1`, `argon2` (`argon2$argon2id$…`) and
//! `bcrypt_sha256`. An unusable password (`!…`) and any other algorithm
//! never log in. After a successful login the hash is replaced by our
//! argon2id (Django's `must_update`), see `auth::login::check_credentials`.

use base64::prelude::{BASE64_STANDARD, Engine as _};
use sha2::{Digest, Sha256};

/// The algorithms accepted, by their Django names.
pub const SUPPORTED: [&str; 4] = ["pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256"];

/// A Django-encoded hash's algorithm (`pbkdf2_sha256`), or `None` for an
/// unusable password.
pub fn algorithm(encoded: &str) -> Option<&str> {
    if encoded.starts_with('!') || encoded.is_empty() {
        return None;
    }
    encoded.split('$').next()
}

/// Whether a stored hash is one of Django's that logs in here.
pub fn is_supported(encoded: &str) -> bool {
    algorithm(encoded).is_some_and(|a| SUPPORTED.contains(&a))
}

/// What checking a password against a Django hash costs, or why no
/// password logs in with it: unusable, an algorithm not accepted here, or
/// parameters past `password`'s bounds (Django caps nothing: a forged
/// hash with billions of rounds would pin a thread for hours).
pub fn assess(encoded: &str) -> Result<super::password::Work, String> {
    use super::password::{MAX_BCRYPT_COST, MAX_PBKDF2_ITERATIONS, Work};
    let light = Work { memory_kib: 0 };
    match algorithm(encoded) {
        None => Err("unusable password (as in Django)".into()),
        Some("pbkdf2_sha256" | "pbkdf2_sha1") => {
            let iterations = encoded.split('$').nth(1).and_then(|i| i.parse::<u32>().ok());
            match iterations {
                Some(n) if (1..=MAX_PBKDF2_ITERATIONS).contains(&n) => Ok(light),
                Some(n) => Err(format!(
                    "PBKDF2 with {n} iterations is past the bound of {MAX_PBKDF2_ITERATIONS}"
                )),
                None => Err("an unreadable PBKDF2 hash".into()),
            }
        }
        Some("argon2") => super::password::assess_argon2(&encoded["argon2".len()..]),
        Some("bcrypt_sha256") => {
            // `bcrypt_sha256$$2b$12$…`: the cost is bcrypt's third field.
            let cost = encoded.split('$').nth(3).and_then(|c| c.parse::<u32>().ok());
            match cost {
                Some(cost) if (4..=MAX_BCRYPT_COST).contains(&cost) => Ok(light),
                Some(cost) => {
                    Err(format!("bcrypt cost {cost} is past the bound of {MAX_BCRYPT_COST}"))
                }
                None => Err("an unreadable bcrypt hash".into()),
            }
        }
        Some(algorithm) => Err(format!("{algorithm} hashes are not accepted here")),
    }
}

/// Checks a password against a Django-encoded hash. Slow by design: call
/// it off the async workers.
pub fn verify(password: &str, encoded: &str) -> bool {
    match algorithm(encoded) {
        Some("pbkdf2_sha256") => pbkdf2(password, encoded, ::pbkdf2::pbkdf2_hmac::<Sha256>),
        Some("pbkdf2_sha1") => pbkdf2(password, encoded, ::pbkdf2::pbkdf2_hmac::<sha1::Sha1>),
        Some("argon2") => encoded
            .strip_prefix("argon2")
            .is_some_and(|phc| super::password::verify(password, Some(phc))),
        Some("bcrypt_sha256") => bcrypt_sha256(password, encoded),
        _ => false,
    }
}

/// The PBKDF2 function of one digest: password, salt, rounds, output.
type Derive = fn(&[u8], &[u8], u32, &mut [u8]);

/// `pbkdf2_<digest>$<iterations>$<salt>$<base64 of the derived key>`.
fn pbkdf2(password: &str, encoded: &str, derive: Derive) -> bool {
    let mut parts = encoded.splitn(4, '$');
    let (Some(_), Some(iterations), Some(salt), Some(expected)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        return false;
    };
    let Ok(expected) = BASE64_STANDARD.decode(expected) else {
        return false;
    };
    // Bounded by `assess` too; checked here, where the work is done.
    if iterations == 0
        || iterations > super::password::MAX_PBKDF2_ITERATIONS
        || expected.is_empty()
        || expected.len() > 64
    {
        return false;
    }
    let mut derived = vec![0u8; expected.len()];
    derive(password.as_bytes(), salt.as_bytes(), iterations, &mut derived);
    crate::secret::constant_time_eq(&derived, &expected)
}

/// `bcrypt_sha256$<bcrypt hash>`: bcrypt over the hex SHA-256 of the
/// password, so that passwords over bcrypt's 72 bytes still count whole.
fn bcrypt_sha256(password: &str, encoded: &str) -> bool {
    let Some(hash) = encoded.strip_prefix("bcrypt_sha256$") else {
        return false;
    };
    if assess(encoded).is_err() {
        return false;
    }
    let prehashed = hex::encode(Sha256::digest(password.as_bytes()));
    bcrypt::verify(prehashed, hash).unwrap_or(false)
}

/// What Django's admin shows of a hash: its algorithm and masked parts.
pub fn summary(encoded: &str) -> String {
    let Some(algorithm) = algorithm(encoded) else {
        return "No password set.".into();
    };
    let parts: Vec<&str> = encoded.split('$').collect();
    let masked = |s: &str| format!("{}******", s.chars().take(6).collect::<String>());
    match (algorithm, parts.as_slice()) {
        ("pbkdf2_sha256" | "pbkdf2_sha1", [_, iterations, salt, _hash]) => format!(
            "algorithm: {algorithm} iterations: {iterations} salt: {} hash: ******",
            masked(salt)
        ),
        ("bcrypt_sha256", _) => format!("algorithm: {algorithm} hash: ******"),
        ("argon2", _) => format!(
            "algorithm: {algorithm} {}",
            super::password::summary(encoded.trim_start_matches("argon2"))
                .trim_start_matches("algorithm: ")
        ),
        _ => format!("algorithm: {algorithm} (not accepted here: set a new password)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by Django 5.2: PBKDF2PasswordHasher().encode("secret", "salt", iterations=1000).
    const PBKDF2_SHA256: &str =
        "pbkdf2_sha256$1000$salt$qN+JnzxPIE2WfgrWPAkph8EAVeuwF7PZ0ordIY1Peq0=";

    #[test]
    fn pbkdf2_checks_the_password_and_refuses_forgeries() {
        assert!(verify("secret", PBKDF2_SHA256));
        assert!(!verify("Secret", PBKDF2_SHA256));
        assert!(!verify("secret", "pbkdf2_sha256$1000$salt$"));
        assert!(!verify("secret", "pbkdf2_sha256$0$salt$AAAA"));
        assert!(!verify("secret", "pbkdf2_sha256$99999999999$salt$AAAA"));
        assert!(!verify("secret", "pbkdf2_sha256$abc$salt$AAAA"));
        assert!(!verify("secret", "!unusable"));
        assert!(!verify("secret", "md5$salt$5ebe2294ecd0e0f08eab7690d2a6ee69"));
        assert!(!verify("secret", ""));
    }

    #[test]
    fn algorithms_and_summaries() {
        assert_eq!(algorithm(PBKDF2_SHA256), Some("pbkdf2_sha256"));
        assert_eq!(algorithm("!xyz"), None);
        assert!(is_supported(PBKDF2_SHA256) && !is_supported("md5$a$b"));
        assert_eq!(
            summary(PBKDF2_SHA256),
            "algorithm: pbkdf2_sha256 iterations: 1000 salt: salt****** hash: ******"
        );
        assert_eq!(summary("!x"), "No password set.");
    }
}
