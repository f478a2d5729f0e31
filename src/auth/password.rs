//! Passwords: argon2id with OWASP's parameters, a dummy hash so that an
//! unknown username costs what a wrong password costs, and Django's four
//! password validators.

use std::collections::HashSet;
use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP's argon2id minimum: 19 MiB, two passes, one lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string. Slow by design: call it off the
/// async workers (`web::block`).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters")
        .to_string()
}

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash("an unknown user's password"));

/// Checks a password against a stored hash; with no hash (no such user) it
/// checks against a dummy, so both cases take the same time. Slow.
pub fn verify(password: &str, phc: Option<&str>) -> bool {
    let stored = phc.unwrap_or(DUMMY_HASH.as_str());
    let matches = PasswordHash::new(stored).is_ok_and(|parsed| {
        hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    });
    matches && phc.is_some()
}

/// "argon2id" and a masked summary, as Django's admin shows a hash.
pub fn summary(phc: &str) -> String {
    match PasswordHash::new(phc) {
        Ok(parsed) => format!(
            "algorithm: {} {} salt: {}****** hash: {}******",
            parsed.algorithm,
            parsed.params,
            parsed
                .salt
                .map(|s| s.as_str().chars().take(6).collect::<String>())
                .unwrap_or_default(),
            parsed
                .hash
                .map(|h| h.to_string().chars().take(6).collect::<String>())
                .unwrap_or_default(),
        ),
        Err(_) => "No password set.".into(),
    }
}

/// Django's `common-passwords.txt.gz` (20,000 passwords), lowercased.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .map(str::trim)
        .collect()
});

const MIN_LENGTH: usize = 8;
const MAX_SIMILARITY: f64 = 0.7;

/// Django's `AUTH_PASSWORD_VALIDATORS` defaults, with Django's messages.
pub fn validate(password: &str, username: &str, email: &str) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let lower = password.to_lowercase();
    for (attribute, value) in [("username", username), ("email address", email)] {
        if too_similar(&lower, &value.to_lowercase()) {
            errors.push(format!("The password is too similar to the {attribute}."));
            break;
        }
    }
    if password.chars().count() < MIN_LENGTH {
        errors.push(format!(
            "This password is too short. It must contain at least {MIN_LENGTH} characters."
        ));
    }
    if COMMON.contains(lower.trim()) {
        errors.push("This password is too common.".into());
    }
    if !password.is_empty() && password.chars().all(|c| c.is_ascii_digit()) {
        errors.push("This password is entirely numeric.".into());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Django's `UserAttributeSimilarityValidator`: the value, and each of its
/// word parts, compared by difflib's `quick_ratio`.
fn too_similar(password: &str, value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let parts = std::iter::once(value).chain(value.split(|c: char| !c.is_alphanumeric()));
    parts
        .filter(|part| !part.is_empty())
        .any(|part| quick_ratio(password, part) >= MAX_SIMILARITY)
}

/// difflib.SequenceMatcher.quick_ratio: twice the size of the multiset
/// intersection of characters over the total length.
fn quick_ratio(a: &str, b: &str) -> f64 {
    let total = a.chars().count() + b.chars().count();
    if total == 0 {
        return 1.0;
    }
    let mut counts = std::collections::HashMap::new();
    for c in b.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let mut matches = 0;
    for c in a.chars() {
        if let Some(n) = counts.get_mut(&c)
            && *n > 0
        {
            *n -= 1;
            matches += 1;
        }
    }
    2.0 * matches as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_wrong_or_unknown_do_not() {
        let phc = hash("correct horse battery");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery", Some(&phc)));
        assert!(!verify("wrong", Some(&phc)));
        assert!(!verify("correct horse battery", None));
    }

    #[test]
    fn validators_answer_with_djangos_messages() {
        let cases: [(&str, &str, &[&str]); 6] = [
            ("Tr0ub4dor&3x", "alice", &[]),
            (
                "short1!",
                "alice",
                &["This password is too short. It must contain at least 8 characters."],
            ),
            ("password", "alice", &["This password is too common."]),
            (
                "84736251908",
                "alice",
                &["This password is entirely numeric."],
            ),
            (
                "alicealice1",
                "alicealice",
                &["The password is too similar to the username."],
            ),
            (
                "12345678",
                "bob",
                &[
                    "This password is too common.",
                    "This password is entirely numeric.",
                ],
            ),
        ];
        for (password, username, expected) in cases {
            let got = validate(password, username, "").err().unwrap_or_default();
            assert_eq!(got, expected, "{password}");
        }
    }
}
