//! Two-factor login: RFC 6238 codes (SHA-1, six digits, 30-second steps:
//! what every authenticator app makes), checked one step either side for
//! clock drift, each step accepted once (`queries::accept_step`); and ten
//! single-use recovery codes, kept as SHA-256 digests (each is 50 random
//! bits: a slow hash would add nothing but cost). `REQUIRE_2FA` says whom
//! it is forced on.

use std::str::FromStr;

use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Secret, TOTP};

/// The issuer an authenticator app shows beside the account.
const ISSUER: &str = "lbasedb-proxy";
const STEP: u64 = 30;
const DIGITS: usize = 6;
pub const RECOVERY_CODES: usize = 10;

/// `REQUIRE_2FA`: who must log in to the admin with a second factor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    #[default]
    None,
    Superusers,
    Staff,
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(Self::None),
            "superusers" => Ok(Self::Superusers),
            "staff" => Ok(Self::Staff),
            other => Err(format!("{other:?}: REQUIRE_2FA is none, superusers or staff")),
        }
    }
}

impl Policy {
    /// Whether a user with these flags must have a second factor.
    pub fn applies(self, staff: bool, superuser: bool) -> bool {
        match self {
            Self::None => false,
            Self::Superusers => superuser,
            Self::Staff => staff || superuser,
        }
    }
}

/// A new secret, base32 (160 random bits, RFC 4226's advice).
pub fn new_secret() -> String {
    match Secret::Raw(rand::random::<[u8; 20]>().to_vec()).to_encoded() {
        Secret::Encoded(text) => text,
        Secret::Raw(_) => unreachable!("to_encoded encodes"),
    }
}

fn totp(secret: &str, username: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().ok()?;
    // The label is the username; a `:` (which no username has) would make
    // the URL ambiguous, so it is left out rather than refused.
    let label = username.replace(':', "");
    TOTP::new(Algorithm::SHA1, DIGITS, 1, STEP, bytes, Some(ISSUER.into()), label).ok()
}

/// The `otpauth://` URL an authenticator app reads, and its QR code as an
/// SVG image.
pub fn provisioning(secret: &str, username: &str) -> Option<(String, String)> {
    let url = totp(secret, username)?.get_url();
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Some((url, svg))
}

/// The time step (of the one before `now`, `now`'s and the one after)
/// whose code `code` is, if any.
pub fn matching_step(secret: &str, code: &str, now: u64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, "")?;
    let step = now / STEP;
    [step.saturating_sub(1), step, step + 1].into_iter().find_map(|candidate| {
        let made = totp.generate(candidate * STEP);
        crate::secret::constant_time_eq(made.as_bytes(), code.as_bytes())
            .then(|| i64::try_from(candidate).ok())
            .flatten()
    })
}

/// A code as it is typed: six digits are a TOTP code; anything else is
/// read as a recovery code.
pub fn looks_like_totp(code: &str) -> bool {
    let code = code.trim();
    code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

/// Ten new recovery codes, `xxxxx-xxxxx` in lowercase base32.
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let text = match Secret::Raw(rand::random::<[u8; 7]>().to_vec()).to_encoded() {
                Secret::Encoded(text) => text.to_lowercase(),
                Secret::Raw(_) => unreachable!("to_encoded encodes"),
            };
            format!("{}-{}", &text[..5], &text[5..10])
        })
        .collect()
}

/// What is kept of a recovery code: the digest of its letters, whatever
/// the case, dashes or spaces it was typed with.
pub fn recovery_digest(code: &str) -> String {
    let letters: String =
        code.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    hex::encode(Sha256::digest(letters.as_bytes()))
}

/// The code an authenticator makes at `time` (tests compute their own).
#[cfg(test)]
fn code_at(secret: &str, time: u64) -> String {
    totp(secret, "").unwrap().generate(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_its_step_and_the_neighbours_only() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now);
        assert_eq!(matching_step(&secret, &code, now), Some((now / STEP) as i64));
        assert_eq!(matching_step(&secret, &code, now + STEP), Some((now / STEP) as i64));
        assert_eq!(matching_step(&secret, &code, now + 3 * STEP), None);
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn rfc_6238_test_vector() {
        // RFC 6238, appendix B: SHA-1 at T = 59 s is 94287082 (8 digits);
        // its last six.
        let secret = match Secret::Raw(b"12345678901234567890".to_vec()).to_encoded() {
            Secret::Encoded(text) => text,
            Secret::Raw(_) => unreachable!(),
        };
        assert_eq!(code_at(&secret, 59), "287082");
    }

    #[test]
    fn recovery_codes_are_ten_distinct_and_read_loosely() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes.iter().collect::<std::collections::HashSet<_>>().len(), 10);
        assert_eq!(
            recovery_digest(&codes[0]),
            recovery_digest(&codes[0].to_uppercase().replace('-', " "))
        );
    }

    #[test]
    fn policy_reads_and_applies() {
        assert_eq!("staff".parse::<Policy>().unwrap(), Policy::Staff);
        assert!("all".parse::<Policy>().is_err());
        assert!(Policy::Superusers.applies(true, true) && !Policy::Superusers.applies(true, false));
        assert!(Policy::Staff.applies(true, false) && !Policy::None.applies(true, true));
    }
}
