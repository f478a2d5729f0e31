//! Passwords: argon2id with OWASP's parameters, a dummy hash so that an
//! unknown username costs what a wrong password costs, and Django's four
//! password validators.

use std::collections::HashSet;
use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version};

/// OWASP's argon2id minimum: 19 MiB, two passes, one lane.
fn params() -> Params {
    Params::new(19_456, 2, 1, Some(32)).expect("valid argon2 parameters")
}

/// argon2's working memory is allocated here with a capacity over glibc's
/// largest dynamic mmap threshold (32 MiB), so each hash gets its own
/// mapping and gives it back when done. A 19 MiB allocation would instead
/// raise the threshold, and stay resident in the allocator's arena after
/// the first login on each thread: about 19 MiB of idle memory per thread.
const MEMORY_CAPACITY_BLOCKS: usize = 33 * 1024;

/// The raw argon2 output for a password and salt under `params`.
fn raw_hash(
    password: &[u8],
    salt: &[u8],
    params: Params,
    algorithm: Algorithm,
    version: Version,
) -> Option<Vec<u8>> {
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let count = params.block_count();
    let mut blocks: Vec<Block> = Vec::with_capacity(MEMORY_CAPACITY_BLOCKS.max(count));
    blocks.resize(count, Block::default());
    let mut out = vec![0u8; len];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut blocks)
        .ok()?;
    Some(out)
}

/// Hashes a password into a PHC string. Slow by design: call it off the
/// async workers (`web::block`).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut salt_bytes).expect("a generated salt decodes");
    let params = params();
    let out = raw_hash(
        password.as_bytes(),
        raw_salt,
        params.clone(),
        Algorithm::Argon2id,
        Version::V0x13,
    )
    .expect("argon2 hashing with valid parameters");
    PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).expect("argon2 parameters as a PHC string"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("a 32-byte output")),
    }
    .to_string()
}

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash("an unknown user's password"));

/// Checks a password against a stored hash; with no hash (no such user) it
/// checks against a dummy, so both cases take the same time. Slow.
pub fn verify(password: &str, phc: Option<&str>) -> bool {
    let stored = phc.unwrap_or(DUMMY_HASH.as_str());
    let matches = if stored.starts_with('$') {
        check(password, stored).unwrap_or(false)
    } else {
        // A hash imported from Django (`importdjango`).
        super::django::verify(password, stored)
    };
    matches && phc.is_some()
}

/// Whether a stored hash is not our argon2id with today's parameters (an
/// imported Django hash, or older parameters): replaced at the next login,
/// as Django's `must_update` does.
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    parsed.algorithm != ARGON2ID_IDENT || Params::try_from(&parsed).ok() != Some(params())
}

fn check(password: &str, stored: &str) -> Option<bool> {
    let parsed = PasswordHash::new(stored).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = parsed.version.map_or(Some(Version::V0x13), |v| Version::try_from(v).ok())?;
    let params = Params::try_from(&parsed).ok()?;
    let expected = parsed.hash?;
    let mut salt_bytes = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt_bytes).ok()?;
    let out = raw_hash(password.as_bytes(), salt, params, algorithm, version)?;
    // Output's equality is constant-time.
    Some(Output::new(&out).ok()? == expected)
}

/// "argon2id" and a masked summary, as Django's admin shows a hash.
pub fn summary(phc: &str) -> String {
    if !phc.starts_with('$') {
        return super::django::summary(phc);
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => format!(
            "algorithm: {} {} salt: {}****** hash: {}******",
            parsed.algorithm,
            parsed.params,
            parsed.salt.map(|s| s.as_str().chars().take(6).collect::<String>()).unwrap_or_default(),
            parsed
                .hash
                .map(|h| h.to_string().chars().take(6).collect::<String>())
                .unwrap_or_default(),
        ),
        Err(_) => "No password set.".into(),
    }
}

/// Django's `common-passwords.txt.gz` (20,000 passwords), lowercased.
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().map(str::trim).collect());

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
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Django's `UserAttributeSimilarityValidator`: the value, and each of its
/// word parts, compared by difflib's `quick_ratio`.
fn too_similar(password: &str, value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let parts = std::iter::once(value).chain(value.split(|c: char| !c.is_alphanumeric()));
    parts.filter(|part| !part.is_empty()).any(|part| quick_ratio(password, part) >= MAX_SIMILARITY)
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
    fn hashes_made_by_the_argon2_crate_verify_and_the_other_way_round() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"s3cret-words", &salt).unwrap().to_string();
        assert!(verify("s3cret-words", Some(&theirs)));
        assert!(!verify("other-words", Some(&theirs)));
        let ours = hash("s3cret-words");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"s3cret-words", &parsed).is_ok());
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
            ("84736251908", "alice", &["This password is entirely numeric."]),
            ("alicealice1", "alicealice", &["The password is too similar to the username."]),
            (
                "12345678",
                "bob",
                &["This password is too common.", "This password is entirely numeric."],
            ),
        ];
        for (password, username, expected) in cases {
            let got = validate(password, username, "").err().unwrap_or_default();
            assert_eq!(got, expected, "{password}");
        }
    }
}
