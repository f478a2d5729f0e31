//! Passwords: argon2id with OWASP's parameters, a dummy hash so that an
//! unknown username costs what a wrong password costs, bounds on what any
//! stored hash may cost to check, one bound on the hashing of the whole
//! process (`Hasher`), and Django's four password validators.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::budget::{Place, Places};

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

/// The most an argon2 hash may ask for: Django's default memory (100 MiB,
/// the most an imported hash carries), and that memory's two passes (or
/// three) at most; more parallel lanes than these are not made. Here such
/// a hash takes 0.16 s (`m=102400,t=3,p=8`).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 102_400;
const MAX_ARGON2_WORK: u64 = 3 * MAX_ARGON2_MEMORY_KIB as u64;
const MAX_ARGON2_LANES: u32 = 16;
/// PBKDF2's iterations (Django 5.2: 1,000,000; 0.08 s here) and bcrypt's
/// cost (Django: 12; 13 is 0.38 s here), at most.
pub const MAX_PBKDF2_ITERATIONS: u32 = 2_000_000;
pub const MAX_BCRYPT_COST: u32 = 13;

/// The longest stored hash read: every algorithm accepted writes well
/// under 200 characters; a longer one (a salt of megabytes) is refused
/// unread.
pub const MAX_HASH_LEN: usize = 512;

/// What checking a password against a stored hash takes: the memory it
/// works in, in KiB (0 for hashes that need next to none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    pub memory_kib: u32,
}

/// What checking a password against `stored` will cost, or why no
/// password ever logs in with it: unusable, an algorithm not accepted, or
/// parameters past the bounds above (a forged or hostile hash would
/// otherwise make one login allocate gigabytes or take minutes).
pub fn assess(stored: &str) -> Result<Work, String> {
    if stored.len() > MAX_HASH_LEN {
        return Err(format!(
            "a hash of {} characters, over the {MAX_HASH_LEN} a hash has",
            stored.len()
        ));
    }
    if stored.starts_with('$') {
        return assess_argon2(stored);
    }
    // A hash imported from Django (`importdjango`).
    super::django::assess(stored)
}

/// An argon2 PHC string's cost, within the bounds.
pub fn assess_argon2(phc: &str) -> Result<Work, String> {
    let parsed = PasswordHash::new(phc).map_err(|_| "not an argon2 hash".to_owned())?;
    let params = Params::try_from(&parsed).map_err(|_| "unreadable argon2 parameters")?;
    let (memory, passes, lanes) = (params.m_cost(), params.t_cost(), params.p_cost());
    if memory > MAX_ARGON2_MEMORY_KIB
        || u64::from(memory) * u64::from(passes) > MAX_ARGON2_WORK
        || lanes > MAX_ARGON2_LANES
    {
        return Err(format!(
            "argon2 parameters m={memory},t={passes},p={lanes} are past the bounds \
             (m at most {MAX_ARGON2_MEMORY_KIB} KiB, m times t at most {MAX_ARGON2_WORK}, \
             p at most {MAX_ARGON2_LANES})"
        ));
    }
    Ok(Work { memory_kib: memory })
}

/// Checks a password against a stored hash; with no hash (no such user),
/// or one no password logs in with, it checks against a dummy, so that
/// every case takes the same time. Slow.
pub fn verify(password: &str, phc: Option<&str>) -> bool {
    let usable = phc.filter(|stored| assess(stored).is_ok());
    let stored = usable.unwrap_or(DUMMY_HASH.as_str());
    let matches = if stored.starts_with('$') {
        check(password, stored).unwrap_or(false)
    } else {
        super::django::verify(password, stored)
    };
    matches && usable.is_some()
}

/// One bound on the password hashing of the whole process. Each login
/// costs an argon2 hash (19 MiB, tens of milliseconds): a flood of them,
/// each for a new username (which no per-account count stops), would take
/// the memory and the cores. Hashes run a few at a time (as many as the
/// cores; a larger imported hash takes the room of several, up to all),
/// a waiting one waits briefly and is then refused, and one client
/// address has at most two checks running or waiting at once, so that one
/// flooding client holds two places and everyone else gets the rest.
#[derive(Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    total: u32,
    per_address: Places<IpAddr>,
}

/// How long a check waits for its place before it is refused (429).
pub const HASH_WAIT: Duration = Duration::from_secs(2);
/// Checks one address may have running or waiting at once.
const PER_ADDRESS: usize = 2;

/// No place to hash now: come back in a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many passwords are being checked; retry in a second")]
pub struct Busy;

/// Hashes at once, at most: four of our argon2 hashes are 76 MiB, and
/// hundreds of logins a second are far more than any login page sees.
const MOST_SLOTS: usize = 4;

impl Default for Hasher {
    /// As many slots as cores, up to `MOST_SLOTS`.
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()).min(MOST_SLOTS))
    }
}

impl Hasher {
    /// Room for `slots` of our argon2 hashes at once.
    pub fn new(slots: usize) -> Self {
        let total = u32::try_from(slots.max(1)).unwrap_or(u32::MAX);
        Self {
            slots: Arc::new(Semaphore::new(total as usize)),
            total,
            per_address: Places::default(),
        }
    }

    /// Slots a check of `stored` takes: one per 19 MiB of its memory.
    fn slots_for(&self, stored: Option<&str>) -> u32 {
        let memory = stored.and_then(|s| assess(s).ok()).map_or(0, |work| work.memory_kib);
        memory.div_ceil(params().m_cost()).clamp(1, self.total)
    }

    async fn run<T: Send + 'static>(
        &self,
        slots: u32,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let acquire = self.slots.clone().acquire_many_owned(slots);
        let permit = match tokio::time::timeout(HASH_WAIT, acquire).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(Busy),
        };
        let done = actix_web::web::block(move || {
            let _permit = permit;
            work()
        })
        .await;
        done.map_err(|_| Busy)
    }

    /// A place for a check from `from`, taken before any other work on
    /// the attempt (its counts, its user's look-up): a client address past
    /// its two costs nothing more than this.
    pub fn admit(&self, from: IpAddr) -> Result<Admitted<'_>, Busy> {
        let place = self.per_address.take_below(crate::net::counted_as(from), PER_ADDRESS);
        Ok(Admitted { hasher: self, _place: place.ok_or(Busy)? })
    }

    /// Hashes a new password (a change by a logged-in user, or a login's
    /// upgrade of an old hash).
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(1, move || hash(&password)).await
    }
}

/// A client's place among the checks, held until its check is done.
pub struct Admitted<'a> {
    hasher: &'a Hasher,
    _place: Place<IpAddr>,
}

impl Admitted<'_> {
    /// Checks a password (see `verify`) within the process's bound.
    pub async fn verify(self, password: String, phc: Option<String>) -> Result<bool, Busy> {
        let slots = self.hasher.slots_for(phc.as_deref());
        self.hasher.run(slots, move || verify(&password, phc.as_deref())).await
    }
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
    assess_argon2(stored).ok()?;
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
    fn hashes_past_the_bounds_never_log_in_and_cost_nothing_more() {
        let make = |m: u32, t: u32, p: u32| {
            let salt = SaltString::generate(&mut OsRng);
            let params = Params::new(m, t, p, Some(32)).unwrap();
            PasswordHash {
                algorithm: ARGON2ID_IDENT,
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params).unwrap(),
                salt: Some(salt.as_salt()),
                hash: Some(Output::new(&[0u8; 32]).unwrap()),
            }
            .to_string()
        };
        assert_eq!(assess(&make(19_456, 2, 1)), Ok(Work { memory_kib: 19_456 }));
        assert!(assess(&make(102_400, 3, 8)).is_ok(), "Django's default, and a pass more");
        for (m, t, p) in
            [(102_401, 1, 1), (4_194_304, 1, 1), (102_400, 4, 1), (8, 100_000, 1), (1024, 1, 17)]
        {
            let hostile = make(m, t, p);
            assert!(assess(&hostile).is_err(), "m={m},t={t},p={p}");
            let started = std::time::Instant::now();
            assert!(!verify("anything", Some(&hostile)));
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }

    #[tokio::test]
    async fn the_hasher_keeps_one_address_to_two_checks_and_makes_the_rest_wait_briefly() {
        let hasher = Hasher::new(1);
        let flood: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let phc = hash("right password");
        let checks: Vec<_> = (0..5)
            .map(|_| {
                let (hasher, phc) = (hasher.clone(), phc.clone());
                tokio::spawn(
                    async move { hasher.admit(flood)?.verify("wrong".into(), Some(phc)).await },
                )
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let valid = hasher.admit(other).unwrap().verify("right password".into(), Some(phc)).await;
        assert_eq!(valid, Ok(true), "another address still gets its turn");
        let outcomes: Vec<_> =
            futures_util::future::join_all(checks).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == Err(Busy)).count(), 3, "{outcomes:?}");
        assert_eq!(outcomes.iter().filter(|o| **o == Ok(false)).count(), 2);
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
