//! Creating and changing users, groups and tokens with their permissions
//! and grants: the one place the CLI, the API and the admin site do it
//! through. Each write that a person makes names its `Actor`, and the
//! rules of `guard` run inside the write's own transaction. Transactions
//! that read before they write begin IMMEDIATE: a deferred one would fail
//! with "database is locked" when another writer got in between, rather
//! than wait its turn.

use crate::db::DbConnection;
use chrono::NaiveDateTime;

mod idp;
mod records;
mod two_factor;
pub use idp::{link_identity, sign_in, user_of_bearer};
pub use records::{
    Link, add_link, put_group, put_token, put_user, set_group_holds, set_user_holds,
    validate_token_record,
};
pub use two_factor::{
    check_second_factor, confirm_two_factor, has_two_factor, renew_recovery_codes,
    reset_two_factor, turn_off_two_factor,
};

use super::grant::Grant;
use super::guard::{self, Actor, Denied, Powers};
use super::perms::{self, Granted, Model};
use super::quota::Quota;
use super::ratelimit::{Rate, effective_rate};
use super::scopes::{Restrictions, Scope};
use super::token::{self, PlainToken};
use crate::db::DbError;
use crate::db::models::{Group, NewUser, Permission, Token, User};
use crate::db::queries::{self, Holder, NewLogEntry, NewToken, UserUpdate};

/// Why the service refused a write, or could not make it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input the rules refuse (a taken name, an unknown group): a form
    /// shows it beside its field, the API as a 400.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Refused by the privilege rules (`guard`), with the reason shown to
    /// the one who tried.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// What the write is about is not there (any more).
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ServiceError {
    fn from(err: diesel::result::Error) -> Self {
        Self::Db(err.into())
    }
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(Invalid { field, message: message.into() })
    }

    /// Input refused as part of a bigger one (a row of a load): the message
    /// says which.
    pub fn about(self, row: &str) -> Self {
        match self {
            Self::Invalid(Invalid { field, message }) => {
                Self::Invalid(Invalid { field, message: format!("{row}: {message}") })
            }
            other => other,
        }
    }
}

/// What is wrong with one field of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

/// A permission by its full codename; an unknown one is refused as input.
pub fn permission(conn: &mut DbConnection, codename: &str) -> Result<Permission, ServiceError> {
    queries::permission_by_codename(conn, codename)?.ok_or_else(|| {
        ServiceError::invalid(
            "permissions",
            format!("unknown permission {codename:?} (expected e.g. lbasedb.view_data)"),
        )
    })
}

#[derive(Debug, Default, Clone)]
pub struct UserSpec {
    pub username: String,
    pub email: String,
    pub staff: bool,
    pub superuser: bool,
    pub groups: Vec<String>,
    pub perms: Vec<String>,
    pub grants: Vec<Grant>,
}

/// What people may store, in length and in number, whatever the way in
/// (the admin, the API, the command line, `loaddata`, `importdjango`):
/// Django's model lengths where it has them, and bounds on every list a
/// form can make long (a request of a megabyte could otherwise store
/// thousands of rows).
pub const MAX_USERNAME_LEN: usize = 150;
pub const MAX_PERSON_NAME_LEN: usize = 150;
pub const MAX_EMAIL_LEN: usize = 254;
pub const MAX_GROUP_NAME_LEN: usize = 150;
pub const MAX_TOKEN_NAME_LEN: usize = 100;
/// Scopes, and allowed networks, of one token.
pub const MAX_TOKEN_RESTRICTIONS: usize = 100;
/// Feed grants of one user (its own) or one group.
pub const MAX_GRANTS: usize = 1000;
/// `MAX_TOKENS_PER_USER`'s default: live (not revoked, not expired)
/// tokens one user may have.
pub const DEFAULT_MAX_TOKENS_PER_USER: usize = 100;

pub fn validate_username(username: &str) -> Result<(), ServiceError> {
    let ok = !username.is_empty()
        && username.len() <= MAX_USERNAME_LEN
        && username.chars().all(|c| c.is_alphanumeric() || "@.+-_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "username",
            "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
        ))
    }
}

/// A stored password hash, as an import or a dump brings it: one no
/// password logs in with is kept (and reported), but not one longer than
/// any hash is (`password::MAX_HASH_LEN`).
pub fn validate_hash(hash: &str) -> Result<(), ServiceError> {
    if hash.len() > super::password::MAX_HASH_LEN {
        return Err(ServiceError::invalid(
            "password",
            format!(
                "a hash of {} characters; a hash has at most {}",
                hash.len(),
                super::password::MAX_HASH_LEN
            ),
        ));
    }
    Ok(())
}

/// A user's other fields: an e-mail and names of Django's lengths, without
/// control characters.
pub fn validate_person(email: &str, first_name: &str, last_name: &str) -> Result<(), ServiceError> {
    for (field, value, max) in [
        ("email", email, MAX_EMAIL_LEN),
        ("first_name", first_name, MAX_PERSON_NAME_LEN),
        ("last_name", last_name, MAX_PERSON_NAME_LEN),
    ] {
        if value.chars().count() > max {
            return Err(ServiceError::invalid(
                field,
                format!(
                    "Ensure this value has at most {max} characters (it has {}).",
                    value.chars().count()
                ),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(ServiceError::invalid(field, "Control characters are not allowed."));
        }
    }
    Ok(())
}

/// Grants name permissions that exist (`check_grants` checked their form).
fn known_grants(conn: &mut DbConnection, grants: &[Grant]) -> Result<(), ServiceError> {
    let mut known: Vec<&str> = Vec::new();
    for grant in grants {
        if !known.contains(&grant.codename.as_str()) {
            permission(conn, &grant.codename)?;
            known.push(&grant.codename);
        }
    }
    Ok(())
}

/// Grants as a holder may have them: each of an lbasedb permission on a
/// valid feed name, at most `MAX_GRANTS`.
pub fn check_grants(grants: &[Grant]) -> Result<(), ServiceError> {
    if grants.len() > MAX_GRANTS {
        return Err(ServiceError::invalid(
            "feed_grants",
            format!("At most {MAX_GRANTS} feed grants (there are {}).", grants.len()),
        ));
    }
    for (i, grant) in grants.iter().enumerate() {
        grant.check().map_err(|why| ServiceError::invalid("grants", why))?;
        if let Some(twin) = grants[..i].iter().find(|g| g.is(&grant.codename, &grant.feed)) {
            return Err(ServiceError::invalid(
                "grants",
                format!(
                    "{twin} and {grant}: one grant per permission and feed; \
                     name all its columns and rows in it"
                ),
            ));
        }
    }
    Ok(())
}

/// What an import brings, checked row by row as the admin checks a form,
/// before anything is written: an import takes all or nothing, and says
/// which rows it refused. At most `REPORTED` problems are listed.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

const REPORTED: usize = 100;

impl Problems {
    /// Notes `checked`'s error against `row` (a short name of the row).
    pub fn check(&mut self, row: impl std::fmt::Display, checked: Result<(), ServiceError>) {
        if let Err(err) = checked {
            self.0.push(format!("{row}: {err}"));
        }
    }

    /// Nothing wrong, or an error that lists what is.
    pub fn into_result(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let total = self.0.len();
        let mut report: Vec<String> = self.0.into_iter().take(REPORTED).collect();
        if total > REPORTED {
            report.push(format!("… and {} more", total - REPORTED));
        }
        Err(ServiceError::invalid(
            "import",
            format!(
                "refused, nothing was written: {total} row(s) would not pass the admin's checks:\n{}",
                report.join("\n")
            ),
        ))
    }
}

/// How a row names itself in a report: its kind and what it holds, cut
/// short and quoted (the text came from elsewhere).
pub fn row_name(kind: &str, name: &str) -> String {
    let short: String = name.chars().take(40).collect();
    let cut = if short.len() < name.len() { "…" } else { "" };
    format!("{kind} {short:?}{cut}")
}

/// One changed field, as the history pages show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: String,
    pub new: String,
}

impl FieldChange {
    pub fn new(field: &str, old: impl Into<String>, new: impl Into<String>) -> Self {
        Self { field: field.into(), old: old.into(), new: new.into() }
    }
}

/// What a history entry is about.
struct Object<'a> {
    kind: &'static str,
    id: String,
    repr: &'a str,
}

/// Records an action of a person in the admin's history, in the caller's
/// transaction. The command line leaves no history (as Django's shell).
fn record(
    conn: &mut DbConnection,
    actor: Actor,
    object: Object<'_>,
    action: &str,
    changes: &[FieldChange],
) -> Result<(), ServiceError> {
    let Actor::User(id) = actor else {
        return Ok(());
    };
    let username = queries::user_by_id(conn, id)?.map(|u| u.username).unwrap_or_default();
    let changes = serde_json::to_string(changes).unwrap_or_else(|_| "[]".into());
    Ok(queries::log_action(
        conn,
        &NewLogEntry {
            user_id: Some(id),
            username: &username,
            object_type: object.kind,
            object_id: &object.id,
            object_repr: object.repr,
            action,
            changes: &changes,
        },
    )?)
}

/// How the admin's history names a feed (its name is its key: the
/// upstream has no other).
pub const FEED_OBJECT: &str = "lbasedb.feed";

/// Records a change the admin made to a feed of the upstream (made
/// there already, under its write lock: `proxy::on_behalf`).
pub fn record_feed_change(
    conn: &mut DbConnection,
    user_id: i32,
    feed: &str,
    action: &str,
    changes: &[FieldChange],
) -> Result<(), ServiceError> {
    let object = Object { kind: FEED_OBJECT, id: feed.to_owned(), repr: feed };
    record(conn, Actor::User(user_id), object, action, changes)
}

fn group_object(id: i32, name: &str) -> Object<'_> {
    Object { kind: Model::Group.object_type(), id: id.to_string(), repr: name }
}

fn user_object(user: &User) -> Object<'_> {
    Object { kind: Model::User.object_type(), id: user.id.to_string(), repr: &user.username }
}

/// At most `max` characters of what someone typed: a failed login names
/// what was typed, which no rule has checked.
fn truncated(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Records an admin login, or a failed one (`user` is then who it would
/// have been, if anyone).
pub fn record_login(
    conn: &mut DbConnection,
    user: Option<&User>,
    username: &str,
    succeeded: bool,
) -> Result<(), ServiceError> {
    Ok(queries::log_action(
        conn,
        &NewLogEntry {
            user_id: user.map(|u| u.id),
            username: &user
                .map_or_else(|| truncated(username, MAX_USERNAME_LEN), |u| u.username.clone()),
            object_type: Model::User.object_type(),
            object_id: &user.map(|u| u.id.to_string()).unwrap_or_default(),
            object_repr: &truncated(username, MAX_USERNAME_LEN),
            action: if succeeded { "login" } else { "login_failed" },
            changes: "[]",
        },
    )?)
}

/// Creates a user (the password already hashed) with groups, permissions
/// and grants, all or nothing; a taken name is a validation error (the
/// unique index says so, no read first).
pub fn create_user(
    conn: &mut DbConnection,
    by: &Granted<perms::AddUser>,
    spec: &UserSpec,
    phc: &str,
) -> Result<User, ServiceError> {
    validate_username(&spec.username)?;
    validate_person(&spec.email, "", "")?;
    check_grants(&spec.grants)?;
    conn.write_transaction(|conn| {
        let user = queries::create_user(
            conn,
            &NewUser {
                username: &spec.username,
                password: phc,
                email: &spec.email,
                is_staff: spec.staff || spec.superuser,
                is_superuser: spec.superuser,
                date_joined: queries::now(),
            },
        )
        .map_err(|e| unique_as(e, "username", "A user with that username already exists."))?;
        for name in &spec.groups {
            let group = queries::group_by_name(conn, name)?.ok_or_else(|| {
                ServiceError::invalid("groups", format!("unknown group {name:?}"))
            })?;
            queries::add_user_to_group(conn, user.id, group.id)?;
        }
        for codename in &spec.perms {
            let perm = permission(conn, codename)?;
            queries::add_permission(conn, Holder::User(user.id), perm.id)?;
        }
        known_grants(conn, &spec.grants)?;
        for grant in &spec.grants {
            queries::add_grant(conn, Holder::User(user.id), grant)?;
        }
        record(conn, by.actor(), user_object(&user), "add", &[])?;
        Ok(user)
    })
}

/// A unique violation as the form error it stands for.
fn unique_as(err: DbError, field: &'static str, message: &str) -> ServiceError {
    if err.is_unique_violation() { ServiceError::invalid(field, message) } else { err.into() }
}

/// Creates a group from codenames (the command line's and tests' form).
pub fn create_group(
    conn: &mut DbConnection,
    by: &Granted<perms::AddGroup>,
    name: &str,
    perms: &[String],
    grants: &[Grant],
    write_quota: Option<&str>,
) -> Result<Group, ServiceError> {
    let ids = perms
        .iter()
        .map(|c| Ok(permission(conn, c)?.id))
        .collect::<Result<Vec<i32>, ServiceError>>()?;
    let spec = GroupSpec { name, perms: &ids, grants, rate_limit: None, write_quota };
    let id = add_group(conn, by, &spec)?;
    queries::group_by_id(conn, id)?.ok_or_else(not_found)
}

/// Issues a token for a user: the secret is in the answer, and nowhere
/// else. Making a token for someone else is acting as them (`guard`).
pub fn issue_token(
    conn: &mut DbConnection,
    by: &Granted<perms::AddToken>,
    user_id: i32,
    name: &str,
    expires_at: Option<NaiveDateTime>,
) -> Result<(Token, PlainToken), ServiceError> {
    let spec = TokenSpec { name, expires_at, ..TokenSpec::default() };
    issue_restricted_token(conn, by, user_id, &spec)
}

/// A token for a user that may do only what `spec` keeps of its user's
/// permissions, from where `spec` says.
pub fn issue_restricted_token(
    conn: &mut DbConnection,
    by: &Granted<perms::AddToken>,
    user_id: i32,
    spec: &TokenSpec<'_>,
) -> Result<(Token, PlainToken), ServiceError> {
    conn.write_transaction(|conn| {
        let target = find_user(conn, user_id)?;
        if let Some((actor_id, powers)) = actor_powers(conn, by)? {
            let target_powers = powers_of(conn, &target, by.default_rate())?;
            guard::may_act_as(actor_id, &powers, user_id, &target_powers)?;
        }
        let (stored, plain) = insert_token(conn, user_id, spec)?;
        let repr = format!("{} ({})", stored.prefix, target.username);
        let object =
            Object { kind: Model::Token.object_type(), id: stored.id.to_string(), repr: &repr };
        record(conn, by.actor(), object, "add", &[])?;
        Ok((stored, plain))
    })
}

/// A user's token for itself (`POST /api/auth/token/`): its password was
/// the check.
pub fn issue_own_token(
    conn: &mut DbConnection,
    user_id: i32,
    spec: &TokenSpec<'_>,
) -> Result<(Token, PlainToken), ServiceError> {
    conn.write_transaction(|conn| insert_token(conn, user_id, spec))
}

/// What a new token is: a name, a lifetime, what it may not do of what
/// its user may, and how many live tokens its user may have in all.
#[derive(Default, Debug, Clone)]
pub struct TokenSpec<'a> {
    pub name: &'a str,
    pub expires_at: Option<NaiveDateTime>,
    pub restrictions: Restrictions,
    pub limits: TokenLimits,
}

/// What bounds every new token, whoever makes it (the API, the admin, the
/// command line).
#[derive(Debug, Clone, Copy)]
pub struct TokenLimits {
    /// `MAX_TOKENS_PER_USER`: live tokens one user may have.
    pub max_live: usize,
    /// `TOKEN_MAX_LIFETIME`: the latest a new token may expire, from now
    /// (a token asked for without an expiry gets this one).
    pub max_lifetime: Option<std::time::Duration>,
}

impl Default for TokenLimits {
    fn default() -> Self {
        Self { max_live: DEFAULT_MAX_TOKENS_PER_USER, max_lifetime: None }
    }
}

impl TokenLimits {
    /// A new token's expiry, `asked` held to `max_lifetime`.
    pub fn expiry(&self, asked: Option<NaiveDateTime>) -> Option<NaiveDateTime> {
        let Some(max) = self.max_lifetime else {
            return asked;
        };
        let max = chrono::Duration::from_std(max).unwrap_or(chrono::Duration::MAX);
        let latest = queries::now().checked_add_signed(max).unwrap_or(NaiveDateTime::MAX);
        Some(asked.map_or(latest, |at| at.min(latest)))
    }
}

/// A new token's name, restrictions and its user's count of live tokens,
/// within their bounds. The oldest token is never dropped to make room:
/// which one a script depends on is not ours to guess.
fn check_token(
    conn: &mut DbConnection,
    user_id: i32,
    spec: &TokenSpec<'_>,
) -> Result<(), ServiceError> {
    if spec.name.trim().is_empty() || spec.name.chars().count() > MAX_TOKEN_NAME_LEN {
        return Err(ServiceError::invalid(
            "name",
            format!("A token's name has 1 to {MAX_TOKEN_NAME_LEN} characters."),
        ));
    }
    if spec.name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("name", "Control characters are not allowed."));
    }
    let restrictions = &spec.restrictions;
    if restrictions.scopes.len() > MAX_TOKEN_RESTRICTIONS
        || restrictions.networks.len() > MAX_TOKEN_RESTRICTIONS
    {
        return Err(ServiceError::invalid(
            "scopes",
            format!("A token has at most {MAX_TOKEN_RESTRICTIONS} scopes and as many networks."),
        ));
    }
    let live = queries::live_token_count(conn, user_id)?;
    if live >= spec.limits.max_live as i64 {
        return Err(ServiceError::invalid(
            "name",
            format!(
                "This user has {live} live tokens, the most allowed (MAX_TOKENS_PER_USER = {}): \
                 revoke one first.",
                spec.limits.max_live
            ),
        ));
    }
    Ok(())
}

fn insert_token(
    conn: &mut DbConnection,
    user_id: i32,
    spec: &TokenSpec<'_>,
) -> Result<(Token, PlainToken), ServiceError> {
    check_token(conn, user_id, spec)?;
    queries::trim_dead_tokens(conn, user_id)?;
    // A scope names one of our permissions.
    for scope in &spec.restrictions.scopes {
        let codename = match scope {
            Scope::Everywhere(codename) => codename,
            Scope::Grant(grant) => &grant.codename,
        };
        if queries::permission_by_codename(conn, codename)?.is_none() {
            let message = format!("unknown permission {codename}");
            return Err(ServiceError::invalid("scopes", message));
        }
    }
    let plain = token::generate();
    let (scopes, networks) = (spec.restrictions.scopes_text(), spec.restrictions.networks_text());
    let stored = queries::create_token(
        conn,
        &NewToken {
            user_id,
            name: spec.name,
            prefix: &plain.prefix,
            digest: &plain.digest,
            expires_at: spec.limits.expiry(spec.expires_at),
            scopes: scopes.as_deref(),
            allowed_networks: networks.as_deref(),
        },
    )?;
    Ok((stored, plain))
}

/// One of `user_id`'s own tokens that still works, or not found (another
/// user's token is as unknown as none).
fn own_live_token(
    conn: &mut DbConnection,
    user_id: i32,
    token_id: i32,
) -> Result<Token, ServiceError> {
    let (token, _) = queries::token_by_id(conn, token_id)?.ok_or_else(not_found)?;
    let live = !token.revoked && token.expires_at.is_none_or(|at| at > queries::now());
    if token.user_id != user_id || !live {
        return Err(not_found());
    }
    Ok(token)
}

fn own_token_change(
    conn: &mut DbConnection,
    user_id: i32,
    token: &Token,
    changes: &[FieldChange],
) -> Result<(), ServiceError> {
    let id = token.id.to_string();
    let object = Object { kind: Model::Token.object_type(), id, repr: &token.prefix };
    record(conn, Actor::User(user_id), object, "change", changes)
}

/// Revokes one of the user's own tokens (the account page), at once.
pub fn revoke_token_of(
    conn: &mut DbConnection,
    user_id: i32,
    token_id: i32,
) -> Result<(), ServiceError> {
    conn.write_transaction(|conn| {
        let token = own_live_token(conn, user_id, token_id)?;
        queries::revoke_token_by_id(conn, token_id)?;
        own_token_change(conn, user_id, &token, &[FieldChange::new("revoked", "false", "true")])
    })
}

/// Rotates one of the user's own tokens: a new token (a new secret) with
/// the same name, scopes, networks and expiry, and the old one working
/// for `grace` more (never past its own expiry; no grace: it stops now),
/// so that what uses it can be moved without a gap.
pub fn rotate_token_of(
    conn: &mut DbConnection,
    user_id: i32,
    token_id: i32,
    grace: std::time::Duration,
    limits: TokenLimits,
) -> Result<(Token, PlainToken), ServiceError> {
    conn.write_transaction(|conn| {
        let old = own_live_token(conn, user_id, token_id)?;
        let restrictions =
            Restrictions::stored(old.scopes.as_deref(), old.allowed_networks.as_deref());
        // The old one's place is given back first when it ends now.
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let ends = queries::now().checked_add_signed(grace).unwrap_or(NaiveDateTime::MAX);
        let ends = old.expires_at.map_or(ends, |at| at.min(ends));
        if grace.is_zero() {
            queries::revoke_token_by_id(conn, token_id)?;
        }
        let spec = TokenSpec { name: &old.name, expires_at: old.expires_at, restrictions, limits };
        let (new, plain) = insert_token(conn, user_id, &spec)?;
        if !grace.is_zero() {
            queries::set_token_expiry(conn, token_id, ends)?;
        }
        let until = if grace.is_zero() { "now".to_owned() } else { ends.to_string() };
        let changes =
            [FieldChange::new("rotated", "", format!("to {}, until {until}", new.prefix))];
        own_token_change(conn, user_id, &old, &changes)?;
        Ok((new, plain))
    })
}

/// Revokes a token at once (the caller clears the cache).
pub fn revoke_token(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeToken>,
    token_id: i32,
) -> Result<Token, ServiceError> {
    conn.write_transaction(|conn| {
        let (token, owner) = queries::token_by_id(conn, token_id)?.ok_or_else(not_found)?;
        queries::revoke_token_by_id(conn, token_id)?;
        let repr = format!("{} ({owner})", token.prefix);
        let object =
            Object { kind: Model::Token.object_type(), id: token_id.to_string(), repr: &repr };
        let changes = [FieldChange::new("revoked", "false", "true")];
        record(conn, by.actor(), object, "change", &changes)?;
        Ok(token)
    })
}

/// Revokes the token of this prefix (the command line's way to name one);
/// answers whether there was one.
pub fn revoke_token_by_prefix(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeToken>,
    prefix: &str,
) -> Result<bool, ServiceError> {
    records::system_only(by)?;
    Ok(queries::revoke_token(conn, prefix)?)
}

/// A token revoking itself (`DELETE /api/auth/token/`): holding it was
/// the check.
pub fn revoke_own_token(conn: &mut DbConnection, token_id: i32) -> Result<(), ServiceError> {
    Ok(queries::revoke_token_by_id(conn, token_id)?)
}

/// Sets a user's password (already hashed) and ends all its sessions.
/// Setting someone else's password is acting as them (`guard`).
pub fn set_password(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeUser>,
    user_id: i32,
    phc: &str,
) -> Result<(), ServiceError> {
    conn.write_transaction(|conn| {
        let target = find_user(conn, user_id)?;
        if let Some((actor_id, powers)) = actor_powers(conn, by)? {
            let target_powers = powers_of(conn, &target, by.default_rate())?;
            guard::may_act_as(actor_id, &powers, user_id, &target_powers)?;
        }
        queries::set_password(conn, user_id, phc)?;
        queries::sessions_end_for_user(conn, user_id, None)?;
        let changes = [FieldChange::new("password", "(hidden)", "(changed)")];
        record(conn, by.actor(), user_object(&target), "change", &changes)
    })
}

/// A user's own password change: every other session ends, the one that
/// changed it (by its key digest) stays.
pub fn change_own_password(
    conn: &mut DbConnection,
    user_id: i32,
    phc: &str,
    keep_session: Option<&str>,
) -> Result<(), ServiceError> {
    conn.write_transaction(|conn| {
        let user = find_user(conn, user_id)?;
        queries::set_password(conn, user_id, phc)?;
        queries::sessions_end_for_user(conn, user_id, keep_session)?;
        let changes = [FieldChange::new("password", "(hidden)", "(changed)")];
        record(conn, Actor::User(user_id), user_object(&user), "change", &changes)
    })
}

/// Activates or deactivates a user. Deactivating ends the user's sessions
/// and revokes its tokens at once; the last active superuser stays.
pub fn set_active(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeUser>,
    user_id: i32,
    active: bool,
) -> Result<(), ServiceError> {
    conn.write_transaction(|conn| {
        let target = find_user(conn, user_id)?;
        if let Some((_, powers)) = actor_powers(conn, by)? {
            guard::may_change_user(&powers, target.is_superuser, target.is_superuser)?;
            if active && !target.is_active {
                let target_powers = powers_of(conn, &target, by.default_rate())?;
                guard::may_manage(&powers, &target.username, &target_powers)?;
                guard::may_take_rate(&powers, target_powers.rate)?;
            }
        }
        keep_a_superuser(conn, &target, target.is_superuser && active)?;
        queries::set_active(conn, user_id, active)?;
        if target.is_active && !active {
            end_access(conn, user_id)?;
        }
        let changes =
            [FieldChange::new("is_active", target.is_active.to_string(), active.to_string())];
        record(conn, by.actor(), user_object(&target), "change", &changes)
    })
}

/// Saves the change form: fields, groups, permissions and grants, by the
/// rules of `guard` for what was added, and never leaving no active
/// superuser. Deactivating ends sessions and tokens at once. `changes` is
/// what the history shows.
pub fn update_user(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeUser>,
    user_id: i32,
    update: &UserUpdate,
    changes: &[FieldChange],
) -> Result<(), ServiceError> {
    validate_username(&update.username)?;
    validate_person(&update.email, &update.first_name, &update.last_name)?;
    check_grants(&update.links.grants)?;
    conn.write_transaction(|conn| {
        known_grants(conn, &update.links.grants)?;
        let before = find_user(conn, user_id)?;
        if let Some((_, powers)) = actor_powers(conn, by)? {
            guard::may_change_user(&powers, before.is_superuser, update.is_superuser)?;
            let old = queries::user_links(conn, user_id)?;
            // Reactivating, or changing the groups of, a user who holds
            // more than the actor (active or not) is acting above itself.
            let regrouped = {
                let (mut was, mut now) = (old.groups.clone(), update.links.groups.clone());
                was.sort_unstable();
                now.sort_unstable();
                now.dedup();
                was != now
            };
            let target = powers_of(conn, &before, by.default_rate())?;
            let reactivated = update.is_active && !before.is_active;
            if regrouped || reactivated {
                guard::may_manage(&powers, &before.username, &target)?;
            }
            if reactivated {
                guard::may_take_rate(&powers, target.rate)?;
            }
            if regrouped {
                let groups = &update.links.groups;
                let after = rate_in_groups(conn, update.is_superuser, groups, by.default_rate())?;
                guard::may_change_rate(&powers, &before.username, target.rate, after)?;
            }
            check_gifts(
                conn,
                &powers,
                (&old.perms, &old.grants),
                (&update.links.perms, &update.links.grants),
            )?;
            for group in update.links.groups.iter().filter(|g| !old.groups.contains(g)) {
                check_joining(conn, &powers, *group)?;
            }
            for left in old.groups.iter().filter(|g| !update.links.groups.contains(g)) {
                let group = queries::group_by_id(conn, *left)?.ok_or_else(not_found)?;
                if group.write_quota.is_some() {
                    guard::may_touch_quota(&powers, &group.name)?;
                }
            }
        }
        keep_a_superuser(conn, &before, update.is_superuser && update.is_active)?;
        queries::update_user(conn, user_id, update)
            .map_err(|e| unique_as(e, "username", "A user with that username already exists."))?;
        if before.is_active && !update.is_active {
            end_access(conn, user_id)?;
        }
        let after = find_user(conn, user_id)?;
        record(conn, by.actor(), user_object(&after), "change", changes)
    })
}

/// Adding someone to a group that holds more than the actor, or whose
/// request rate is above the actor's, is refused.
fn check_joining(conn: &mut DbConnection, powers: &Powers, group: i32) -> Result<(), ServiceError> {
    let held = queries::held(conn, queries::HeldBy::Groups(&[group]))?;
    let group = queries::group_by_id(conn, group)?.ok_or_else(not_found)?;
    let holds = Powers {
        perms: held.perms.into_iter().collect(),
        grants: held.grants.into_iter().collect(),
        ..Powers::default()
    };
    guard::may_add_to_group(powers, &group.name, &holds)?;
    let rate = group.rate_limit.as_deref().and_then(|rate| rate.parse().ok());
    guard::may_add_to_rated_group(powers, &group.name, rate)?;
    if group.write_quota.is_some() {
        guard::may_touch_quota(powers, &group.name)?;
    }
    Ok(())
}

/// Deletes a user (its tokens and sessions go with it); a superuser only
/// by a superuser, and never the last active one.
pub fn delete_user(
    conn: &mut DbConnection,
    by: &Granted<perms::DeleteUser>,
    user_id: i32,
) -> Result<User, ServiceError> {
    conn.write_transaction(|conn| {
        let target = find_user(conn, user_id)?;
        if let Some((_, powers)) = actor_powers(conn, by)? {
            guard::may_delete_user(&powers, target.is_superuser)?;
        }
        keep_a_superuser(conn, &target, false)?;
        // Before the deletion: an actor deleting itself is still there to
        // be named (the entry's user id then becomes NULL).
        record(conn, by.actor(), user_object(&target), "delete", &[])?;
        queries::delete_user(conn, user_id)?;
        Ok(target)
    })
}

/// A group as the admin's form gives it: permission ids, grants, and its
/// members' rate limit ("600/min"), if any.
#[derive(Debug, Clone, Copy)]
pub struct GroupSpec<'a> {
    pub name: &'a str,
    pub perms: &'a [i32],
    pub grants: &'a [Grant],
    pub rate_limit: Option<&'a str>,
    /// Its members' write quota ("10000000rows/day,2GB/day"), if any.
    pub write_quota: Option<&'a str>,
}

impl GroupSpec<'_> {
    /// Its name, grants, rate and quota by the rules; answers the rate,
    /// read.
    fn checked(&self) -> Result<Option<Rate>, ServiceError> {
        validate_group_name(self.name)?;
        check_grants(self.grants)?;
        parse_quota(self.write_quota)?;
        parse_rate(self.rate_limit)
    }
}

/// A group's write quota as typed, read.
pub fn parse_quota(quota: Option<&str>) -> Result<Option<Quota>, ServiceError> {
    quota
        .map(|text| {
            text.parse::<Quota>()
                .map_err(|why| ServiceError::invalid("write_quota", format!("Enter {why}.")))
        })
        .transpose()
}

/// Adds a group from the admin's form (permission ids), giving only what
/// the actor holds. Answers the group's id; a taken name is a validation
/// error.
pub fn add_group(
    conn: &mut DbConnection,
    by: &Granted<perms::AddGroup>,
    group: &GroupSpec<'_>,
) -> Result<i32, ServiceError> {
    let GroupSpec { name, perms, grants, rate_limit, write_quota } = *group;
    let rate = group.checked()?;
    conn.write_transaction(|conn| {
        known_grants(conn, grants)?;
        if let Some((_, powers)) = actor_powers(conn, by)? {
            check_gifts(conn, &powers, (&[], &[]), (perms, grants))?;
            guard::may_give_rate(&powers, name, rate.or(by.default_rate()))?;
            if write_quota.is_some() {
                guard::may_touch_quota(&powers, name)?;
            }
        }
        let group = queries::create_group(conn, name)
            .map_err(|e| unique_as(e, "name", "Group with this Name already exists."))?;
        queries::update_group(conn, group.id, name, perms, grants)?;
        queries::set_group_limits(conn, group.id, rate_limit, write_quota)?;
        record(conn, by.actor(), group_object(group.id, name), "add", &[])?;
        Ok(group.id)
    })
}

/// Changes a group, giving only what the actor holds.
pub fn change_group(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeGroup>,
    id: i32,
    group: &GroupSpec<'_>,
    changes: &[FieldChange],
) -> Result<(), ServiceError> {
    let GroupSpec { name, perms, grants, rate_limit, write_quota } = *group;
    let rate = group.checked()?;
    conn.write_transaction(|conn| {
        known_grants(conn, grants)?;
        if let Some((_, powers)) = actor_powers(conn, by)? {
            let (old_perms, old_grants) = queries::group_links(conn, id)?;
            check_gifts(conn, &powers, (&old_perms, &old_grants), (perms, grants))?;
            let old = queries::group_by_id(conn, id)?.ok_or_else(not_found)?;
            if old.rate_limit.as_deref() != rate_limit {
                guard::may_give_rate(&powers, name, rate.or(by.default_rate()))?;
            }
            if old.write_quota.as_deref() != write_quota {
                guard::may_touch_quota(&powers, name)?;
            }
        }
        queries::update_group(conn, id, name, perms, grants)
            .map_err(|e| unique_as(e, "name", "Group with this Name already exists."))?;
        queries::set_group_limits(conn, id, rate_limit, write_quota)?;
        record(conn, by.actor(), group_object(id, name), "change", changes)
    })
}

/// Deletes a group (its members lose what it gave them).
pub fn delete_group(
    conn: &mut DbConnection,
    by: &Granted<perms::DeleteGroup>,
    id: i32,
) -> Result<Group, ServiceError> {
    conn.write_transaction(|conn| {
        let group = queries::group_by_id(conn, id)?.ok_or_else(not_found)?;
        if group.write_quota.is_some()
            && let Some((_, powers)) = actor_powers(conn, by)?
        {
            guard::may_touch_quota(&powers, &group.name)?;
        }
        // A rated group's members may fall back to a faster rate without
        // it: no faster than the actor's own.
        if group.rate_limit.is_some()
            && let Some((_, powers)) = actor_powers(conn, by)?
        {
            for member in queries::group_members(conn, id)? {
                let target = powers_of(conn, &member, by.default_rate())?;
                let rest: Vec<i32> = queries::user_links(conn, member.id)?
                    .groups
                    .into_iter()
                    .filter(|g| *g != id)
                    .collect();
                let after = rate_in_groups(conn, member.is_superuser, &rest, by.default_rate())?;
                guard::may_change_rate(&powers, &member.username, target.rate, after)?;
            }
        }
        record(conn, by.actor(), group_object(id, &group.name), "delete", &[])?;
        queries::delete_group(conn, id)?;
        Ok(group)
    })
}

pub fn validate_group_name(name: &str) -> Result<(), ServiceError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_GROUP_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(ServiceError::invalid(
            "name",
            "This field is required (150 characters or fewer, no control characters).",
        ));
    }
    Ok(())
}

/// A group's rate as typed ("600/min"), read.
pub fn parse_rate(rate: Option<&str>) -> Result<Option<Rate>, ServiceError> {
    rate.map(|text| {
        text.parse::<Rate>()
            .map_err(|why| ServiceError::invalid("rate_limit", format!("Enter {why}.")))
    })
    .transpose()
}

/// What happened to a feed through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedChange {
    Deleted(String),
    Renamed {
        old: String,
        new: String,
    },
    /// A column removed: grants naming it lose it (a new column of the same
    /// name is not the old one's data), and a grant left with no column
    /// goes.
    ColumnDeleted {
        feed: String,
        column: String,
    },
    ColumnRenamed {
        feed: String,
        old: String,
        new: String,
    },
}

/// Grants follow their feed (gone with it, or moved to its new name) and
/// the columns they name.
pub fn feed_changed(conn: &mut DbConnection, change: &FeedChange) -> Result<usize, ServiceError> {
    let changed = conn.write_transaction(|conn| match change {
        FeedChange::Deleted(feed) => queries::delete_feed_grants(conn, feed),
        FeedChange::Renamed { old, new } => queries::rename_feed_grants(conn, old, new),
        FeedChange::ColumnDeleted { feed, column } => {
            queries::edit_grant_columns(conn, feed, |columns| columns.remove(column))
        }
        FeedChange::ColumnRenamed { feed, old, new } => {
            queries::edit_grant_columns(conn, feed, |columns| {
                columns.remove(old) && columns.insert(new.clone())
            })
        }
    })?;
    Ok(changed)
}

fn not_found() -> ServiceError {
    ServiceError::NotFound
}

fn find_user(conn: &mut DbConnection, user_id: i32) -> Result<User, ServiceError> {
    queries::user_by_id(conn, user_id)?.ok_or_else(not_found)
}

/// What a user holds, read in the caller's transaction, whether or not it
/// is active now: a deactivated superuser is still a superuser to the
/// rules of who may change whom, since reactivating it gives it all back.
/// Its request rate is its groups' most generous, else `default_rate`
/// (unlimited for a superuser).
pub fn powers_of(
    conn: &mut DbConnection,
    user: &User,
    default_rate: Option<Rate>,
) -> Result<Powers, ServiceError> {
    let holdings = queries::holdings(conn, user.id)?;
    let rates: Vec<Rate> = holdings.group_rates.iter().filter_map(|r| r.parse().ok()).collect();
    Ok(Powers {
        superuser: user.is_superuser,
        rate: effective_rate(user.is_superuser, &rates, default_rate),
        perms: holdings.perms.into_iter().collect(),
        grants: holdings.grants.into_iter().collect(),
    })
}

/// A user's request rate were it in `groups`.
fn rate_in_groups(
    conn: &mut DbConnection,
    superuser: bool,
    groups: &[i32],
    default_rate: Option<Rate>,
) -> Result<Option<Rate>, ServiceError> {
    let rates: Vec<Rate> =
        queries::group_rates(conn, groups)?.iter().filter_map(|r| r.parse().ok()).collect();
    Ok(effective_rate(superuser, &rates, default_rate))
}

/// The acting user's id and powers, its own request rate among them;
/// `None` for the system. An actor whose account was deactivated or
/// deleted meanwhile may do nothing.
fn actor_powers<P: perms::AdminPermission>(
    conn: &mut DbConnection,
    by: &Granted<P>,
) -> Result<Option<(i32, Powers)>, ServiceError> {
    let Actor::User(id) = by.actor() else {
        return Ok(None);
    };
    let user = match queries::user_by_id(conn, id)? {
        Some(user) if user.is_active => user,
        _ => return Err(Denied("Your account is no longer active.".into()).into()),
    };
    Ok(Some((id, powers_of(conn, &user, by.default_rate())?)))
}

/// Permissions and grants added by a write must be held by its actor.
fn check_gifts(
    conn: &mut DbConnection,
    powers: &Powers,
    old: (&[i32], &[Grant]),
    new: (&[i32], &[Grant]),
) -> Result<(), ServiceError> {
    let added_perms: Vec<i32> = new.0.iter().filter(|p| !old.0.contains(p)).copied().collect();
    let added_grants: Vec<Grant> = new.1.iter().filter(|g| !old.1.contains(g)).cloned().collect();
    let names = queries::permission_codenames(conn, &added_perms)?;
    let name = |id: &i32| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let perms: Vec<String> = added_perms.iter().map(name).collect();
    guard::may_give(powers, &perms, &added_grants)?;
    Ok(())
}

/// Refuses a write that would leave no active superuser: someone must
/// always be able to administer everything.
fn keep_a_superuser(
    conn: &mut DbConnection,
    user: &User,
    remains: bool,
) -> Result<(), ServiceError> {
    if user.is_superuser
        && user.is_active
        && !remains
        && queries::other_active_superusers(conn, user.id)? == 0
    {
        return Err(Denied(
            "This is the last active superuser: it cannot be deleted, deactivated or demoted \
             until there is another."
                .into(),
        )
        .into());
    }
    Ok(())
}

/// A deactivated user's sessions end and its tokens are revoked at once.
fn end_access(conn: &mut DbConnection, user_id: i32) -> Result<(), ServiceError> {
    queries::sessions_end_for_user(conn, user_id, None)?;
    queries::revoke_tokens_of_user(conn, user_id)?;
    Ok(())
}
