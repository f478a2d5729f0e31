//! `oidc_identity`: users as an OpenID provider knows them.

use super::*;
use crate::db::schema::oidc_identity;

/// A person (`sub`) or a client (client credentials), as stored.
pub const PERSON: &str = "person";
pub const CLIENT: &str = "client";

type IssuerAndKind<'a> = diesel::dsl::And<
    diesel::dsl::Eq<oidc_identity::issuer, &'a str>,
    diesel::dsl::Eq<oidc_identity::kind, &'a str>,
>;
type Identity<'a> =
    diesel::dsl::And<IssuerAndKind<'a>, diesel::dsl::Eq<oidc_identity::subject, &'a str>>;

/// The row of `(issuer, kind, subject)`.
fn identity<'a>(issuer: &'a str, kind: &'a str, subject: &'a str) -> Identity<'a> {
    oidc_identity::issuer
        .eq(issuer)
        .and(oidc_identity::kind.eq(kind))
        .and(oidc_identity::subject.eq(subject))
}

/// The user linked to `(issuer, kind, subject)`, if any.
pub fn user_by_identity(
    conn: &mut Conn,
    issuer: &str,
    kind: &str,
    subject: &str,
) -> Result<Option<i32>, DbError> {
    let found = oidc_identity::table.filter(identity(issuer, kind, subject));
    Ok(found.select(oidc_identity::user_id).first(conn).optional()?)
}

pub fn link_identity(
    conn: &mut Conn,
    user_id: i32,
    issuer: &str,
    kind: &str,
    subject: &str,
) -> Result<(), DbError> {
    diesel::insert_into(oidc_identity::table)
        .values((
            oidc_identity::issuer.eq(issuer),
            oidc_identity::kind.eq(kind),
            oidc_identity::subject.eq(subject),
            oidc_identity::user_id.eq(user_id),
            oidc_identity::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn touch_identity(
    conn: &mut Conn,
    issuer: &str,
    kind: &str,
    subject: &str,
) -> Result<(), DbError> {
    diesel::update(oidc_identity::table.filter(identity(issuer, kind, subject)))
        .set(oidc_identity::last_seen.eq(Some(now())))
        .execute(conn)?;
    Ok(())
}

/// A user's identities: (issuer, kind, subject).
pub fn identities_of(
    conn: &mut Conn,
    user_id: i32,
) -> Result<Vec<(String, String, String)>, DbError> {
    Ok(oidc_identity::table
        .filter(oidc_identity::user_id.eq(user_id))
        .order(oidc_identity::id)
        .select((oidc_identity::issuer, oidc_identity::kind, oidc_identity::subject))
        .load(conn)?)
}

pub fn remove_user_from_group(conn: &mut Conn, user_id: i32, group_id: i32) -> Result<(), DbError> {
    diesel::delete(
        auth_user_groups::table
            .filter(auth_user_groups::user_id.eq(user_id))
            .filter(auth_user_groups::group_id.eq(group_id)),
    )
    .execute(conn)?;
    Ok(())
}

pub fn set_staff_flags(
    conn: &mut Conn,
    user_id: i32,
    staff: bool,
    superuser: bool,
) -> Result<(), DbError> {
    diesel::update(auth_user::table.find(user_id))
        .set((auth_user::is_staff.eq(staff), auth_user::is_superuser.eq(superuser)))
        .execute(conn)?;
    Ok(())
}
