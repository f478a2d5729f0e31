//! Authentication and authorisation: passwords, tokens, sessions, CSRF,
//! throttling, and the principal every proxied request is decided on.

pub mod api;
pub mod changes;
pub mod csrf;
pub mod django;
pub mod fallback;
pub mod grant;
pub mod guard;
pub mod import;
pub mod login;
pub mod oidc;
pub mod password;
pub mod perms;
pub mod principal;
pub mod quota;
pub mod ratelimit;
pub mod scopes;
pub mod session;
pub mod throttle;
pub mod token;
pub mod totp;
pub mod users;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use actix_identity::IdentityExt;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};

use crate::db::{self, DbError, Pool, queries};
use crate::error::ApiError;
use crate::metrics::AuthFailure;
use crate::net::in_networks;
use principal::{AuthCache, Principal, TokenAuth};
use throttle::Throttle;

/// What the request handlers share for authentication.
#[derive(Clone)]
pub struct AuthState {
    pub pool: Pool,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub limits: ratelimit::UserLimits,
    /// `USER_RATE_LIMIT`: the rate of a user none of whose groups has one.
    pub default_rate: Option<ratelimit::Rate>,
    /// `WRITE_QUOTA`: the quota of a user none of whose groups has one.
    pub default_quota: quota::Quota,
    pub cache: AuthCache,
    pub throttle: Throttle,
    /// Every password check and hash of the process goes through it.
    pub hasher: password::Hasher,
    /// `MAX_TOKENS_PER_USER` and `TOKEN_MAX_LIFETIME`.
    pub token_limits: users::TokenLimits,
    pub secure_cookies: bool,
    /// Single sign-on and JWT bearers (`OIDC_*`, `JWT_*`).
    pub oidc: Arc<oidc::Oidc>,
    /// `REQUIRE_2FA`.
    pub require_2fa: totp::Policy,
    /// `TOKEN_ROTATION_GRACE`.
    pub token_rotation_grace: std::time::Duration,
}

/// Why a login was refused or failed: the JSON API and the HTML admin each
/// put it in their own words (`ApiError`, `admin::AdminError`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// An unknown user, a wrong password or an inactive account: one
    /// answer for all three.
    #[error("Unable to log in with provided credentials.")]
    BadCredentials,
    /// The account has two-factor login on, and no code came with the
    /// password (the API's `otp`).
    #[error("A two-factor code is required: send it as \"otp\".")]
    SecondFactorNeeded,
    /// A wrong or used code.
    #[error("That two-factor code is not right (or was used already).")]
    SecondFactorWrong,
    /// `REQUIRE_2FA` applies and the account has no second factor yet.
    #[error("Your account must have two-factor login: set it up at /account/2fa/ first.")]
    SecondFactorMissing,
    /// `OIDC_ONLY`: people log in through the identity provider.
    #[error("Password login is turned off here: log in with single sign-on.")]
    PasswordLoginOff,
    /// Too many failed attempts for this account from this address.
    #[error("too many failed logins; retry in {0:?}")]
    Throttled(std::time::Duration),
    #[error("reading the user")]
    Db(#[from] DbError),
    #[error("checking the second factor")]
    Service(#[from] users::ServiceError),
    #[error("checking the password")]
    Hashing(#[from] actix_web::error::BlockingError),
}

impl From<password::Busy> for AuthError {
    fn from(_: password::Busy) -> Self {
        Self::Throttled(std::time::Duration::from_secs(1))
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::BadCredentials => Self::BadRequest(err.to_string()),
            AuthError::PasswordLoginOff | AuthError::SecondFactorMissing => {
                Self::Forbidden(err.to_string())
            }
            AuthError::SecondFactorNeeded | AuthError::SecondFactorWrong => {
                Self::BadRequest(err.to_string())
            }
            AuthError::Throttled(wait) => Self::Throttled(wait),
            err => Self::internal(err),
        }
    }
}

/// An authenticated request: who, and by what.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Arc<Principal>,
    pub credential: Credential,
}

/// What a request was authenticated by. Each way in is a variant, so that
/// a new one (an OpenID Connect session, a JWT bearer) is a change the
/// compiler walks through every reader of: the CSRF rule, the audit, the
/// metrics' access, `/api/auth/me/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The session cookie: an unsafe method needs the CSRF header too,
    /// since a browser sends the cookie whoever made the page.
    Session,
    /// An API token (`auth::token`), by its row and the prefix that names it.
    Token { id: i32, prefix: Arc<str> },
    /// A JWT from a trusted OpenID provider (`auth::oidc`).
    Jwt,
}

impl Credential {
    /// Whether a request with an unsafe method must carry the CSRF token.
    pub fn needs_csrf(&self) -> bool {
        match self {
            Self::Session => true,
            Self::Token { .. } | Self::Jwt => false,
        }
    }

    /// The kind, as `/api/auth/me/` says it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Token { .. } => "token",
            Self::Jwt => "jwt",
        }
    }

    /// What the audit names it by: a token's prefix, or the kind.
    pub fn audit_name(&self) -> &str {
        match self {
            Self::Token { prefix, .. } => prefix,
            Self::Session | Self::Jwt => self.kind(),
        }
    }
}

pub use crate::net::client_ip;

impl AuthState {
    /// Token first (when an `Authorization` header is sent), else the
    /// session. `Ok(None)`: no credentials at all.
    pub async fn authenticate(&self, req: &HttpRequest) -> Result<Option<Authenticated>, ApiError> {
        let who = self.authenticated(req).await?;
        if who.is_some() {
            req.extensions_mut().insert(crate::accesslog::Authenticated);
        }
        Ok(who)
    }

    async fn authenticated(&self, req: &HttpRequest) -> Result<Option<Authenticated>, ApiError> {
        if let Some(value) = req.headers().get(header::AUTHORIZATION) {
            let (principal, credential) = match parse_authorization(value.as_bytes())? {
                Presented::Key(key) if self.oidc.takes_bearers() && oidc::looks_like_jwt(key) => {
                    self.by_jwt(key, req).await?
                }
                Presented::Key(key) => self.by_token(key, client_ip(req)).await?,
                Presented::Basic { username, key } => {
                    let (principal, credential) = self.by_token(&key, client_ip(req)).await?;
                    // The token of another user than the one named: as bad
                    // as a wrong password.
                    if username.is_some_and(|name| name != principal.username) {
                        return Err(self.bad_token(client_ip(req)).await);
                    }
                    (principal, credential)
                }
            };
            return Ok(Some(Authenticated { principal, credential }));
        }
        // Gone around the identity middleware (whose `get_identity` would
        // then panic): `session::KnownSessions` read its user.
        let known = req.extensions().get::<session::KnownSession>().map(|known| known.user);
        let user_id = match known {
            Some(user_id) => user_id,
            None => {
                let Ok(identity) = req.get_identity() else {
                    return Ok(None);
                };
                let Ok(Ok(user_id)) = identity.id().map(|id| id.parse::<i32>()) else {
                    return Ok(None);
                };
                user_id
            }
        };
        Ok(self
            .principal_of(user_id)
            .await?
            .filter(|p| p.is_active)
            .map(|principal| Authenticated { principal, credential: Credential::Session }))
    }

    /// A JWT bearer: verified (`oidc::Oidc::bearer`), then the user linked
    /// to its subject or client. Kept (by the JWT itself) until its `exp` (within
    /// the cache's lifetime, and cleared by any change to who may do what),
    /// so that a client reusing its JWT pays for one signature check, not
    /// one per request. A refused JWT counts as a bad token for the
    /// address's throttle.
    async fn by_jwt(
        &self,
        jwt: &str,
        req: &HttpRequest,
    ) -> Result<(Arc<Principal>, Credential), ApiError> {
        let ip = client_ip(req);
        let presented = crate::secret::Presented::new(jwt);
        let now = chrono::Utc::now().timestamp();
        let user = match self.cache.jwt(&presented).filter(|(_, exp)| *exp > now) {
            Some((user, _)) => Some(user),
            None => {
                let generation = self.cache.generation();
                let (bearer, exp) = match self.oidc.bearer(jwt).await {
                    Ok(verified) => verified,
                    Err(oidc::Refused::Provider(why)) => {
                        tracing::warn!("a JWT bearer could not be checked: {why}");
                        return Err(ApiError::ProviderUnavailable);
                    }
                    Err(refused) => {
                        return Err(match self.bad_token(ip).await {
                            throttled @ ApiError::Throttled(_) => throttled,
                            _ => ApiError::NotAuthenticated(refused.to_string()),
                        });
                    }
                };
                let found =
                    db::run(&self.pool, move |conn| users::user_of_bearer(conn, &bearer)).await;
                let user = found.map_err(ApiError::internal)?;
                if let Some(user) = user {
                    self.cache.put_jwt(generation, presented, (user, exp));
                }
                user
            }
        };
        let principal = match user {
            Some(id) => self.principal_of(id).await?,
            None => None,
        };
        match principal {
            Some(principal) if principal.is_active => Ok((principal, Credential::Jwt)),
            Some(_) => {
                self.metrics.auth_failure(AuthFailure::InactiveUser);
                Err(ApiError::NotAuthenticated("User inactive or deleted.".into()))
            }
            None => Err(ApiError::NotAuthenticated(
                "The token's subject has no account here: an administrator links it.".into(),
            )),
        }
    }

    async fn by_token(
        &self,
        key: &str,
        ip: IpAddr,
    ) -> Result<(Arc<Principal>, Credential), ApiError> {
        let presented = crate::secret::Presented::new(key);
        let auth = match self.cache.token(&presented) {
            Some(auth) => auth,
            None => {
                let generation = self.cache.generation();
                let digest = token::digest(key);
                let found = db::run(&self.pool, {
                    let digest = digest.clone();
                    move |conn| -> Result<_, DbError> {
                        let Some((token, user)) = queries::token_with_user(conn, &digest)? else {
                            return Ok(None);
                        };
                        let holdings = queries::holdings(conn, user.id)?;
                        Ok(Some((token, Principal::new(&user, holdings))))
                    }
                })
                .await?;
                let Some((token, principal)) = found else {
                    return Err(self.bad_token(ip).await);
                };
                let restrictions = scopes::Restrictions::stored(
                    token.scopes.as_deref(),
                    token.allowed_networks.as_deref(),
                );
                let auth = Arc::new(TokenAuth {
                    token_id: token.id,
                    prefix: Arc::from(token.prefix.as_str()),
                    expires_at: token.expires_at,
                    revoked: token.revoked,
                    principal: Arc::new(restrictions.restrict(&principal)),
                    networks: restrictions.networks,
                    last_touched: AtomicI64::new(
                        token.last_used_at.map_or(0, |t| t.and_utc().timestamp()),
                    ),
                });
                self.cache.put_token(generation, presented, auth.clone());
                auth
            }
        };
        let now = queries::now();
        if auth.revoked {
            return Err(self.bad_token(ip).await);
        }
        if auth.expires_at.is_some_and(|at| at <= now) {
            self.metrics.auth_failure(AuthFailure::ExpiredToken);
            return Err(ApiError::NotAuthenticated("Token has expired.".into()));
        }
        if !auth.networks.is_empty() && !in_networks(&auth.networks, ip) {
            self.metrics.auth_failure(AuthFailure::TokenNetwork);
            return Err(ApiError::Forbidden(
                "This token may not be used from this address.".into(),
            ));
        }
        if !auth.principal.is_active {
            self.metrics.auth_failure(AuthFailure::InactiveUser);
            return Err(ApiError::NotAuthenticated("User inactive or deleted.".into()));
        }
        if auth.claim_touch(now.and_utc().timestamp()) {
            let (pool, id, from) = (self.pool.clone(), auth.token_id, ip.to_string());
            actix_web::rt::spawn(async move {
                let touched = db::run(&pool, move |conn| queries::touch_token(conn, id, &from));
                if let Err(err) = touched.await {
                    tracing::warn!("could not record token use: {err}");
                }
            });
        }
        let credential = Credential::Token { id: auth.token_id, prefix: auth.prefix.clone() };
        Ok((auth.principal.clone(), credential))
    }

    /// An unknown or revoked token: counted for its address, and 429 rather
    /// than 401 once the address is over the limit. A valid token is never
    /// refused for its neighbours' mistakes.
    async fn bad_token(&self, ip: IpAddr) -> ApiError {
        self.metrics.auth_failure(AuthFailure::BadToken);
        match self.throttle.fail_token(ip).await {
            Ok(Ok(())) => ApiError::NotAuthenticated("Invalid token.".into()),
            Ok(Err(wait)) => ApiError::Throttled(wait),
            // Uncounted, but refused all the same.
            Err(err) => {
                tracing::warn!("cannot count a bad token: {err}");
                ApiError::NotAuthenticated("Invalid token.".into())
            }
        }
    }

    /// Runs a write of the service layer (`users`) on a pooled connection,
    /// off the async workers, then clears the authentication cache whatever
    /// the outcome: what a write changes about who may do what is enforced
    /// from the next request on.
    pub async fn write<F, T>(&self, write: F) -> Result<T, users::ServiceError>
    where
        F: FnOnce(&mut crate::db::DbConnection) -> Result<T, users::ServiceError> + Send + 'static,
        T: Send + 'static,
    {
        let result = db::run(&self.pool, write).await;
        self.cache.clear();
        result
    }

    /// A user's principal, from the cache or the database.
    pub async fn principal_of(&self, user_id: i32) -> Result<Option<Arc<Principal>>, DbError> {
        if let Some(principal) = self.cache.user(user_id) {
            return Ok(Some(principal));
        }
        let generation = self.cache.generation();
        let principal = db::run(&self.pool, move |conn| -> Result<_, DbError> {
            let Some(user) = queries::user_by_id(conn, user_id)? else {
                return Ok(None);
            };
            let holdings = queries::holdings(conn, user.id)?;
            Ok(Some(Arc::new(Principal::new(&user, holdings))))
        })
        .await?;
        if let Some(principal) = &principal {
            self.cache.put_user(generation, user_id, principal.clone());
        }
        Ok(principal)
    }

    /// `who`'s write quota and what it wrote today (UTC): (quota, rows,
    /// bytes).
    pub async fn write_quota_of(
        &self,
        who: &Principal,
    ) -> Result<(quota::Quota, u64, u64), DbError> {
        let quota =
            quota::Quota::effective(who.is_superuser, &who.group_quotas, self.default_quota);
        let user_id = who.user_id;
        let (rows, bytes) =
            db::run(&self.pool, move |conn| queries::write_usage(conn, user_id, &quota::today()))
                .await?;
        Ok((quota, rows, bytes))
    }
}

/// DRF's `Token <key>`, and `Bearer <key>`.
pub(crate) fn parse_authorization(value: &[u8]) -> Result<Presented<'_>, ApiError> {
    let invalid = || ApiError::NotAuthenticated("Invalid token header.".into());
    let value = std::str::from_utf8(value).map_err(|_| invalid())?;
    let mut words = value.split_ascii_whitespace();
    let (Some(scheme), Some(key), None) = (words.next(), words.next(), words.next()) else {
        return Err(invalid());
    };
    if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Presented::Key(key));
    }
    if !scheme.eq_ignore_ascii_case("basic") || key.len() > MAX_BASIC_LEN {
        return Err(invalid());
    }
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(key).map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (user, key) = decoded.split_once(':').ok_or_else(invalid)?;
    let username = (user != "token").then(|| user.to_owned());
    Ok(Presented::Basic { username, key: key.to_owned() })
}

/// The longest `Basic` credentials read: a username and a token, with room.
const MAX_BASIC_LEN: usize = 1024;

/// A token as a request presents it: `Token <key>` or `Bearer <key>`, or
/// as the password of HTTP Basic for tools that cannot set a header
/// (`username:<key>`, or `token:<key>` when the username is not known).
#[derive(Debug)]
pub(crate) enum Presented<'a> {
    Key(&'a str),
    Basic { username: Option<String>, key: String },
}
