//! Management commands, for people and for provisioning scripts: each
//! fails with a message and a non-zero status on bad input.

use std::io::{BufRead, IsTerminal, Write};

use super::Command;
use crate::auth::grant::Grant;
use crate::auth::password;
use crate::auth::perms::Granted;
use crate::auth::users::{self, UserSpec};
use crate::config::DbArgs;
use crate::db::{self, Pool, queries};

type Result<T> = std::result::Result<T, String>;

fn open(db_args: &DbArgs) -> Result<Pool> {
    let pool = db::connect(&db_args.database_path()).map_err(|e| e.to_string())?;
    db::migrate(&pool).map_err(|e| e.to_string())?;
    Ok(pool)
}

fn with_conn<T, E: std::fmt::Display>(
    pool: &Pool,
    f: impl FnOnce(&mut crate::db::DbConnection) -> std::result::Result<T, E>,
) -> Result<T> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    f(&mut conn).map_err(|e| e.to_string())
}

pub(crate) fn run(command: Command) -> Result<()> {
    match command {
        Command::Migrate(db_args) => migrate(&db_args),
        Command::Createsuperuser { username, email, noinput, db } => {
            createsuperuser(username, email, noinput, &db)
        }
        Command::Changepassword { username, db } => changepassword(&username, &db),
        Command::TwoFactor(super::TwoFactorCommand::Reset { username, db }) => {
            reset_two_factor(&username, &db)
        }
        Command::Linkidentity { username, issuer, subject, client, db } => {
            linkidentity(&username, &issuer, subject, client, &db)
        }
        Command::Createuser { username, email, staff, superuser, groups, holds, db } => {
            let spec = UserSpec {
                username,
                email,
                staff,
                superuser,
                groups,
                grants: parse_grants(&holds.grants)?,
                perms: holds.perms,
            };
            createuser(spec, &db)
        }
        Command::Creategroup { name, holds, write_quota, db } => {
            let grants = parse_grants(&holds.grants)?;
            let quota = (!write_quota.is_empty()).then(|| write_quota.join(","));
            let group = with_conn(&open(&db)?, |conn| {
                let (perms, quota) = (&holds.perms, quota.as_deref());
                users::create_group(conn, &Granted::system(), &name, perms, &grants, quota)
            })?;
            println!("Group '{}' created (id {}).", group.name, group.id);
            Ok(())
        }
        Command::Createtoken {
            username,
            name,
            expires_in,
            scopes,
            allow_ips,
            max_tokens_per_user,
            token_max_lifetime,
            db,
        } => {
            let restrictions = crate::auth::scopes::Restrictions::parse(&scopes, &allow_ips)?;
            let expires_at = expires_in
                .map(crate::auth::token::expiry_after)
                .transpose()
                .map_err(|e| format!("--expires-in: {e}"))?;
            let spec = users::TokenSpec {
                name: &name,
                expires_at,
                restrictions,
                limits: users::TokenLimits {
                    max_live: max_tokens_per_user,
                    max_lifetime: token_max_lifetime,
                },
            };
            createtoken(&username, &spec, &db)
        }
        Command::Revoketoken { prefix, db } => revoketoken(&prefix, &db),
        Command::Dumpdata { db } => {
            let dump = with_conn(&open(&db)?, db::dump::dump)?;
            let text = serde_json::to_string_pretty(&dump).map_err(|e| e.to_string())?;
            println!("{text}");
            Ok(())
        }
        Command::Loaddata { file, db } => loaddata(&file, &db),
        Command::Importdjango { source, replace, db } => importdjango(&source, replace, &db),
        Command::Serve(_) | Command::Lbasedb(_) => unreachable!("not a management command"),
    }
}

fn migrate(db_args: &DbArgs) -> Result<()> {
    let pool = db::connect(&db_args.database_path()).map_err(|e| e.to_string())?;
    let applied = db::migrate(&pool).map_err(|e| e.to_string())?;
    if applied.is_empty() {
        println!("No migrations to apply.");
    }
    for name in applied {
        println!("Applied {name}");
    }
    Ok(())
}

/// As Django's: prompts for what is not given, or with `--noinput` takes
/// the password from `LBASEDB_PROXY_SUPERUSER_PASSWORD`.
fn createsuperuser(
    username: Option<String>,
    email: Option<String>,
    noinput: bool,
    db: &DbArgs,
) -> Result<()> {
    let pool = open(db)?;
    let username = match (username, noinput) {
        (Some(name), _) => name,
        (None, true) => return Err("--username is required with --noinput".into()),
        (None, false) => prompt("Username: ")?,
    };
    let email = match (email, noinput) {
        (Some(email), _) => email,
        (None, true) => String::new(),
        (None, false) => prompt("Email address: ")?,
    };
    let secret = if noinput {
        std::env::var("LBASEDB_PROXY_SUPERUSER_PASSWORD")
            .map_err(|_| "--noinput needs LBASEDB_PROXY_SUPERUSER_PASSWORD".to_string())?
    } else {
        new_password(&username, &email)?
    };
    check_password(&secret, &username, &email)?;
    let spec = UserSpec { username, email, superuser: true, staff: true, ..Default::default() };
    let phc = password::hash(&secret);
    with_conn(&pool, |conn| users::create_user(conn, &Granted::system(), &spec, &phc))?;
    println!("Superuser created successfully.");
    Ok(())
}

/// A new password from `LBASEDB_PROXY_PASSWORD` (scripts and CI have no
/// terminal), or asked twice.
fn password_from_env_or_prompt(username: &str, email: &str) -> Result<String> {
    match std::env::var("LBASEDB_PROXY_PASSWORD") {
        Ok(secret) => Ok(secret),
        Err(_) => new_password(username, email),
    }
}

fn revoketoken(prefix: &str, db: &DbArgs) -> Result<()> {
    let granted = Granted::system();
    if with_conn(&open(db)?, |conn| users::revoke_token_by_prefix(conn, &granted, prefix))? {
        println!("Token {prefix} revoked.");
        Ok(())
    } else {
        Err(format!("no token with prefix {prefix:?}"))
    }
}

fn reset_two_factor(username: &str, db: &DbArgs) -> Result<()> {
    let pool = open(db)?;
    let was_on =
        with_conn(&pool, |conn| users::reset_two_factor(conn, &Granted::system(), username))?;
    match was_on {
        true => println!("Two-factor login turned off for user '{username}'."),
        false => println!("User '{username}' had no two-factor login; nothing changed."),
    }
    Ok(())
}

fn linkidentity(
    username: &str,
    issuer: &str,
    subject: Option<String>,
    client: Option<String>,
    db: &DbArgs,
) -> Result<()> {
    let (kind, subject) = match (subject, client) {
        (Some(subject), _) => (queries::PERSON, subject),
        (None, Some(client)) => (queries::CLIENT, client),
        (None, None) => return Err("--subject or --client".into()),
    };
    let pool = open(db)?;
    with_conn(&pool, |conn| {
        users::link_identity(conn, &Granted::system(), username, issuer, kind, &subject)
    })?;
    println!("User '{username}' linked to {kind} {subject:?} at {issuer}.");
    Ok(())
}

fn changepassword(username: &str, db: &DbArgs) -> Result<()> {
    let pool = open(db)?;
    let user = find_user(&pool, username)?;
    println!("Changing password for user '{username}'");
    let secret = password_from_env_or_prompt(username, &user.email)?;
    check_password(&secret, username, &user.email)?;
    let phc = password::hash(&secret);
    with_conn(&pool, |conn| users::set_password(conn, &Granted::system(), user.id, &phc))?;
    println!("Password changed successfully for user '{username}'");
    Ok(())
}

fn createuser(spec: UserSpec, db: &DbArgs) -> Result<()> {
    let pool = open(db)?;
    let secret = password_from_env_or_prompt(&spec.username, &spec.email)?;
    check_password(&secret, &spec.username, &spec.email)?;
    let phc = password::hash(&secret);
    let user = with_conn(&pool, |conn| users::create_user(conn, &Granted::system(), &spec, &phc))?;
    println!("User '{}' created (id {}).", user.username, user.id);
    Ok(())
}

/// Prints the token alone on standard output's last line (for scripts);
/// what it is goes to standard error.
fn createtoken(username: &str, spec: &users::TokenSpec<'_>, db: &DbArgs) -> Result<()> {
    let pool = open(db)?;
    let user = find_user(&pool, username)?;
    let (token, plain) = with_conn(&pool, |conn| {
        users::issue_restricted_token(conn, &Granted::system(), user.id, spec)
    })?;
    let expiry = token.expires_at.map(|at| format!(", expires {at} UTC")).unwrap_or_default();
    eprintln!(
        "Token '{}' ({}) for '{username}'{expiry}; it is shown this once:",
        token.name, token.prefix
    );
    println!("{}", plain.secret);
    Ok(())
}

fn importdjango(source: &str, replace: bool, db: &DbArgs) -> Result<()> {
    let django = match source.split_once("://") {
        Some(("postgres" | "postgresql", _)) => db::django::read_postgres(source),
        Some((scheme, _)) => {
            return Err(format!(
                "{scheme}: give the path of the Django database's SQLite file, or a \
                 postgres:// URL"
            ));
        }
        None => db::django::read_sqlite(std::path::Path::new(source)),
    }
    .map_err(|e| e.to_string())?;
    let report =
        with_conn(&open(db)?, |conn| crate::auth::import::import_django(conn, &django, replace))?;
    let shown = source.rsplit_once('@').map_or(source, |(_, host)| host);
    print!("Imported from {shown}:\n{report}");
    Ok(())
}

fn loaddata(file: &std::path::Path, db: &DbArgs) -> Result<()> {
    let pool = open(db)?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let dump: db::dump::Dump =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a dump: {e}", file.display()))?;
    let counts = with_conn(&pool, |conn| db::dump::load(conn, &dump))?;
    println!(
        "Installed {} group(s), {} user(s) and {} token(s).",
        counts.groups, counts.users, counts.tokens
    );
    for (user, why) in &counts.cannot_log_in {
        println!("cannot log in: {user}: {why}");
    }
    Ok(())
}

fn find_user(pool: &Pool, username: &str) -> Result<crate::db::models::User> {
    with_conn(pool, |conn| queries::user_by_username(conn, username))?
        .ok_or_else(|| format!("user '{username}' does not exist"))
}

fn parse_grants(grants: &[String]) -> Result<Vec<Grant>> {
    grants.iter().map(|g| g.parse()).collect()
}

fn check_password(secret: &str, username: &str, email: &str) -> Result<()> {
    password::validate(secret, username, email).map_err(|errors| errors.join(" "))
}

fn prompt(label: &str) -> Result<String> {
    eprint!("{label}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim().to_owned();
    if line.is_empty() {
        Err(format!("{} cannot be blank", label.trim_end_matches(": ")))
    } else {
        Ok(line)
    }
}

/// Asks twice, as Django does; refuses without a terminal rather than
/// reading a password from a pipe unasked.
fn new_password(username: &str, email: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        return Err(
            "no terminal to ask for a password on (set LBASEDB_PROXY_PASSWORD, or --noinput)"
                .into(),
        );
    }
    for _ in 0..3 {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Password (again): ").map_err(|e| e.to_string())?;
        if first != again {
            eprintln!("Error: Your passwords didn't match.");
            continue;
        }
        match password::validate(&first, username, email) {
            Ok(()) => return Ok(first),
            Err(errors) => eprintln!("Error: {}", errors.join(" ")),
        }
    }
    Err("too many attempts".into())
}
