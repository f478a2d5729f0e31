//! Single sign-on with an OpenID provider (the authorization code flow with
//! PKCE, `state` and `nonce`) and JWT bearers on the API, verified against
//! the issuers' published keys (`keys`). What a verified token says about
//! a person (`Person`) is turned into a local user by the service layer
//! (`auth::users::idp`); the rest of the product (groups, grants, the
//! session, the audit) is the same as for a password login.
//!
//! The flow is written here rather than taken from the `openidconnect`
//! crate: its HTTP client would be a second one beside awc, and the ID
//! token check is the same code as the bearers' (one verifier, one key
//! cache, one algorithm allow-list).

mod keys;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use keys::Issuer;

use crate::config::Identity as Settings;

/// Signing algorithms accepted, from ID tokens and bearers alike: never
/// `none`, never a shared-secret HMAC (whose "secret" a confused verifier
/// would take from the public key).
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// The longest JWT looked at: far above any provider's, and checked before
/// any decoding.
pub const MAX_JWT_LEN: usize = 16 * 1024;

/// Claims of a token made for an end user's login: such a token is never
/// taken as a client acting for itself.
const END_USER_CLAIMS: [&str; 5] = ["auth_time", "sid", "nonce", "acr", "amr"];

/// A login started and not finished is forgotten after this.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(600);

/// Groups read from one token's claim, and the length of one.
const MAX_CLAIMED_GROUPS: usize = 1000;
const MAX_GROUP_LEN: usize = 255;

/// Why a token or a login was refused: said to the person (or client), and
/// logged; never the token itself.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Token(String),
    #[error("the identity provider could not be used: {0}")]
    Provider(String),
    #[error("{0}")]
    Login(String),
}

fn refuse(why: impl Into<String>) -> Refused {
    Refused::Token(why.into())
}

/// `idp-group:local-group`, the local side a group name or `@staff` or
/// `@superuser`.
pub fn parse_mapping(text: &str) -> Result<(String, String), String> {
    let (idp, local) = text
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: expected idp-group:local-group"))?;
    let (idp, local) = (idp.trim(), local.trim());
    if idp.is_empty() || local.is_empty() {
        return Err(format!("{text:?}: expected idp-group:local-group"));
    }
    if local.starts_with('@') && local != STAFF && local != SUPERUSER {
        return Err(format!("{text:?}: the local side is a group, {STAFF} or {SUPERUSER}"));
    }
    Ok((idp.to_owned(), local.to_owned()))
}

const STAFF: &str = "@staff";
const SUPERUSER: &str = "@superuser";

/// What the login asks of the provider, and where the answer comes back:
/// kept in the session between the two.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    nonce: String,
    verifier: String,
    pub redirect_uri: String,
    pub next: String,
    /// Unix seconds.
    started: i64,
}

/// Someone as the provider vouches for them.
#[derive(Debug, Clone)]
pub struct Person {
    pub issuer: String,
    pub subject: String,
    /// For a new user's name (`OIDC_USERNAME_CLAIM`, else `email`).
    pub username: Option<String>,
    pub email: String,
    /// The local groups the provider's groups map to.
    pub groups: BTreeSet<String>,
    /// Every local group the mapping names: these the provider manages,
    /// others are left as an administrator set them.
    pub managed: BTreeSet<String>,
    pub staff: bool,
    pub superuser: bool,
}

/// Who a JWT bearer stands for: a person (`sub`), or a client acting for
/// itself (client credentials: `client_id`/`azp` naming the client, and
/// `sub` that client or absent).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bearer {
    Person { issuer: String, subject: String },
    Client { issuer: String, client_id: String },
}

/// The login's client and what it does with a person.
struct Login {
    issuer: Arc<Issuer>,
    client_id: String,
    client_secret: String,
    display_name: String,
    scopes: String,
    redirect_url: Option<String>,
}

/// The identity settings, ready: issuers with their key caches.
pub struct Oidc {
    login: Option<Login>,
    /// `JWT_AUDIENCE` and the issuers trusted for bearers.
    bearers: Option<(String, Vec<Arc<Issuer>>)>,
    create_users: bool,
    username_claim: String,
    groups_claim: String,
    group_map: Vec<(String, String)>,
    only: bool,
    break_glass: Option<String>,
    require_acr: Vec<String>,
    require_amr: Vec<String>,
    leeway: u64,
}

impl Oidc {
    /// Checks the settings together; a half-configured provider is an
    /// error at start, not at the first login.
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let (refresh, timeout) = (settings.jwks_refresh_interval, settings.oidc_http_timeout);
        let mut issuers: HashMap<String, Arc<Issuer>> = HashMap::new();
        let mut issuer = |url: &str| -> Result<Arc<Issuer>, String> {
            let url = url.trim().trim_end_matches('/').to_owned();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!("{url:?}: an issuer is an http(s) URL"));
            }
            Ok(issuers
                .entry(url.clone())
                .or_insert_with(|| Arc::new(Issuer::new(url, refresh, timeout)))
                .clone())
        };
        let login = match &settings.oidc_issuer {
            None => None,
            Some(url) => {
                let (Some(client_id), Some(client_secret)) =
                    (&settings.oidc_client_id, &settings.oidc_client_secret)
                else {
                    return Err("OIDC_ISSUER needs OIDC_CLIENT_ID and OIDC_CLIENT_SECRET".into());
                };
                Some(Login {
                    issuer: issuer(url)?,
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                    display_name: settings.oidc_display_name.clone(),
                    scopes: settings.oidc_scopes.clone(),
                    redirect_url: settings.oidc_redirect_url.clone(),
                })
            }
        };
        let bearers = match &settings.jwt_audience {
            None => None,
            Some(audience) => {
                let named: Vec<&String> = if settings.jwt_issuers.is_empty() {
                    settings.oidc_issuer.iter().collect()
                } else {
                    settings.jwt_issuers.iter().collect()
                };
                if named.is_empty() {
                    return Err("JWT_AUDIENCE needs JWT_ISSUERS or OIDC_ISSUER".into());
                }
                let trusted = named.into_iter().map(|url| issuer(url)).collect::<Result<_, _>>()?;
                Some((audience.clone(), trusted))
            }
        };
        if settings.oidc_only && login.is_none() {
            return Err("OIDC_ONLY needs OIDC_ISSUER: nobody could log in".into());
        }
        Ok(Self {
            login,
            bearers,
            create_users: settings.oidc_create_users,
            username_claim: settings.oidc_username_claim.clone(),
            groups_claim: settings.oidc_groups_claim.clone(),
            group_map: settings.oidc_group_map.clone(),
            only: settings.oidc_only,
            break_glass: settings.oidc_break_glass.clone(),
            require_acr: settings.oidc_require_acr.clone(),
            require_amr: settings.oidc_require_amr.clone(),
            leeway: settings.jwt_leeway.as_secs(),
        })
    }

    /// The login button's name, when there is a provider to log in with.
    pub fn display_name(&self) -> Option<&str> {
        self.login.as_ref().map(|login| login.display_name.as_str())
    }

    pub fn creates_users(&self) -> bool {
        self.create_users
    }

    /// Whether `username` may log in with a password: always, unless
    /// `OIDC_ONLY` (then only the break-glass account, which must also be
    /// an active superuser: the caller checks that once the password is).
    pub fn password_login_allowed(&self, username: &str) -> bool {
        !self.only || self.break_glass.as_deref() == Some(username)
    }

    pub fn password_login_only_break_glass(&self) -> bool {
        self.only
    }

    /// Whether the API takes JWT bearers.
    pub fn takes_bearers(&self) -> bool {
        self.bearers.is_some()
    }

    /// Starts a login: what to keep in the session, and where to send the
    /// browser. `here` is this server's own origin, for the callback URL
    /// when `OIDC_REDIRECT_URL` does not name it.
    pub async fn start(&self, here: &str, next: &str) -> Result<(Pending, String), Refused> {
        let login = self.login.as_ref().ok_or_else(|| Refused::Login("no provider".into()))?;
        let meta = login.issuer.metadata().await?;
        let redirect_uri = login
            .redirect_url
            .clone()
            .unwrap_or_else(|| format!("{here}{}", crate::admin::registry::OIDC_CALLBACK));
        let pending = Pending {
            state: random_text(),
            nonce: random_text(),
            verifier: random_text(),
            redirect_uri,
            next: next.to_owned(),
            started: chrono::Utc::now().timestamp(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &login.client_id)
            .append_pair("redirect_uri", &pending.redirect_uri)
            .append_pair("scope", &login.scopes)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if !self.require_acr.is_empty() {
            query.append_pair("acr_values", &self.require_acr.join(" "));
        }
        let sep = if meta.authorization_endpoint.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}{}", meta.authorization_endpoint, query.finish());
        Ok((pending, url))
    }

    /// Ends a login: the callback's `code` exchanged (with the PKCE
    /// verifier and the client's secret), the ID token checked (signature,
    /// issuer, audience, times, nonce, `acr`/`amr`), the person read.
    /// `pending` is the session's, already matched to the callback's
    /// `state` by the caller.
    pub async fn finish(
        &self,
        pending: &Pending,
        code: &str,
        iss: Option<&str>,
    ) -> Result<Person, Refused> {
        let login = self.login.as_ref().ok_or_else(|| Refused::Login("no provider".into()))?;
        let age = chrono::Utc::now().timestamp() - pending.started;
        if !(0..=LOGIN_TIMEOUT.as_secs() as i64).contains(&age) {
            return Err(Refused::Login("This login took too long; start again.".into()));
        }
        // RFC 9207: a provider that names itself on the callback must be ours.
        if iss.is_some_and(|iss| iss.trim_end_matches('/') != login.issuer.url()) {
            return Err(Refused::Login("The answer came from another provider.".into()));
        }
        let meta = login.issuer.metadata().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &pending.redirect_uri),
            ("code_verifier", &pending.verifier),
        ];
        let client = (login.client_id.as_str(), login.client_secret.as_str());
        let answer: TokenAnswer =
            login.issuer.post_form(&meta.token_endpoint, &form, client).await?;
        let claims = self
            .verify(&answer.id_token, &login.client_id, std::slice::from_ref(&login.issuer))
            .await?;
        // A token made for several clients names us as its `azp`.
        if claims.get("azp").and_then(Value::as_str).is_some_and(|azp| azp != login.client_id) {
            return Err(refuse("The ID token was made for another client."));
        }
        let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or_default();
        if !crate::secret::constant_time_eq(nonce.as_bytes(), pending.nonce.as_bytes()) {
            return Err(refuse("The ID token's nonce is not this login's."));
        }
        self.check_strength(&claims)?;
        self.person(login.issuer.url(), &claims)
    }

    /// `OIDC_REQUIRE_ACR` and `OIDC_REQUIRE_AMR`: the provider's word on
    /// how the person authenticated (its second factor stands for ours).
    fn check_strength(&self, claims: &Map<String, Value>) -> Result<(), Refused> {
        if !self.require_acr.is_empty() {
            let acr = claims.get("acr").and_then(Value::as_str).unwrap_or_default();
            if !self.require_acr.iter().any(|wanted| wanted == acr) {
                return Err(refuse("The provider did not authenticate you strongly enough (acr)."));
            }
        }
        if !self.require_amr.is_empty() {
            let amr = string_list(claims.get("amr"));
            if !self.require_amr.iter().any(|wanted| amr.contains(wanted)) {
                return Err(refuse("The provider did not authenticate you strongly enough (amr)."));
            }
        }
        Ok(())
    }

    /// The person an ID token names, with their groups mapped.
    fn person(&self, issuer: &str, claims: &Map<String, Value>) -> Result<Person, Refused> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| !sub.is_empty() && sub.len() <= 255)
            .ok_or_else(|| refuse("The ID token names nobody (sub)."))?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        // An address the provider says it has not verified is anyone's to
        // type: never a username, never kept. One it vouches for may name a
        // new user; one it says nothing of (Entra ID's) is kept as the
        // user's email only.
        let verified = claims.get("email_verified").and_then(Value::as_bool);
        let email = text("email").filter(|_| verified != Some(false));
        let vouched = |name: &str| match name {
            "email" => email.clone().filter(|_| verified == Some(true)),
            other => text(other),
        };
        let claimed = string_list(claims.get(&self.groups_claim));
        let mut person = Person {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            username: vouched(&self.username_claim).or_else(|| vouched("email")),
            email: email.unwrap_or_default(),
            groups: BTreeSet::new(),
            managed: BTreeSet::new(),
            staff: false,
            superuser: false,
        };
        for (idp, local) in &self.group_map {
            let held = claimed.contains(idp);
            match local.as_str() {
                STAFF => person.staff |= held,
                SUPERUSER => person.superuser |= held,
                group => {
                    person.managed.insert(group.to_owned());
                    if held {
                        person.groups.insert(group.to_owned());
                    }
                }
            }
        }
        person.staff |= person.superuser;
        Ok(person)
    }

    /// Whom a JWT bearer stands for, once verified against `JWT_AUDIENCE`
    /// and the trusted issuers, and its `exp` (unix seconds).
    pub async fn bearer(&self, token: &str) -> Result<(Bearer, i64), Refused> {
        let (audience, issuers) =
            self.bearers.as_ref().ok_or_else(|| refuse("JWT bearers are not accepted here."))?;
        let claims = self.verify(token, audience, issuers).await?;
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or_default();
        let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
        let issuer = issuer.trim_end_matches('/').to_owned();
        let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
        let client = text("client_id").or_else(|| text("azp"));
        // A token that says how an end user authenticated is a person's,
        // whatever its `sub`.
        let end_user = END_USER_CLAIMS.iter().any(|claim| claims.contains_key(*claim));
        match (text("sub"), client) {
            // Client credentials: the client is its own subject.
            (sub, Some(client)) if !end_user && sub.is_none_or(|sub| sub == client) => {
                Ok((Bearer::Client { issuer, client_id: client.to_owned() }, exp))
            }
            (Some(sub), _) => Ok((Bearer::Person { issuer, subject: sub.to_owned() }, exp)),
            (None, _) => Err(refuse("The token names nobody (sub, client_id).")),
        }
    }

    /// Checks a JWT from one of `issuers` for `audience`: the algorithm
    /// allowed and the key's, the signature by the issuer's current key,
    /// `iss`, `aud`, `exp` and `nbf` within the leeway. Answers its claims.
    async fn verify(
        &self,
        token: &str,
        audience: &str,
        issuers: &[Arc<Issuer>],
    ) -> Result<Map<String, Value>, Refused> {
        if token.len() > MAX_JWT_LEN {
            return Err(refuse("The token is too long."));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| refuse("The token is not a JWT."))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(refuse(format!("The token's algorithm {:?} is not accepted.", header.alg)));
        }
        // The issuer is read before the signature is checked, to know whose
        // keys check it; it is checked again, signed, below.
        #[derive(Deserialize)]
        struct Unverified {
            iss: Option<String>,
        }
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Unverified>(token)
            .map_err(|_| refuse("The token is not a JWT."))?;
        let iss = unverified.claims.iss.unwrap_or_default();
        let issuer = issuers
            .iter()
            .find(|issuer| issuer.url() == iss.trim_end_matches('/'))
            .ok_or_else(|| refuse("The token's issuer is not trusted here."))?;
        let key = issuer.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[iss.as_str()]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|err| refuse(token_error(&err)))
    }
}

/// A verification failure in words a client can act on.
fn token_error(err: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "The token has expired.".into(),
        ErrorKind::ImmatureSignature => "The token is not valid yet (nbf).".into(),
        ErrorKind::InvalidAudience => "The token is not for this service (aud).".into(),
        ErrorKind::InvalidIssuer => "The token's issuer is not trusted here.".into(),
        ErrorKind::InvalidSignature => "The token's signature is wrong.".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("The token has no {claim:?} claim."),
        ErrorKind::InvalidAlgorithm => "The token's algorithm is not its key's.".into(),
        _ => "The token is not valid.".into(),
    }
}

/// A claim that is a string or a list of strings (`groups`, `amr`), as a
/// bounded list.
fn string_list(value: Option<&Value>) -> BTreeSet<String> {
    match value {
        Some(Value::String(one)) => std::iter::once(one.clone()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|item| item.len() <= MAX_GROUP_LEN)
            .take(MAX_CLAIMED_GROUPS)
            .map(str::to_owned)
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// Whether a bearer is a JWT (three base64url parts) rather than one of
/// our tokens, which have no dot.
pub fn looks_like_jwt(bearer: &str) -> bool {
    bearer.bytes().filter(|b| *b == b'.').count() == 2
}

/// 32 random bytes, URL-safe: a `state`, `nonce` or PKCE verifier.
fn random_text() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_are_checked() {
        assert_eq!(parse_mapping("admins:@superuser").unwrap().1, "@superuser");
        assert_eq!(parse_mapping("urn:idp:readers:readers").unwrap().0, "urn:idp:readers");
        assert!(parse_mapping("admins:@root").is_err());
        assert!(parse_mapping("admins:").is_err());
        assert!(parse_mapping("noseparator").is_err());
    }

    #[test]
    fn group_claims_are_bounded() {
        let many = Value::Array((0..5000).map(|i| Value::String(i.to_string())).collect());
        assert_eq!(string_list(Some(&many)).len(), MAX_CLAIMED_GROUPS);
        let long = Value::Array(vec![Value::String("x".repeat(300))]);
        assert!(string_list(Some(&long)).is_empty());
        assert_eq!(string_list(Some(&Value::String("one".into()))).len(), 1);
    }
}
