//! `/admin/auth/user/`: the list, the two-step add, the change form with
//! effective permissions, set-password, delete with confirmation, history.

use std::collections::BTreeMap;

use actix_identity::Identity;
use actix_web::web;
use askama::Template;
use serde::{Deserialize, Serialize};

use super::changelist::{ChangeList, Column, Filter, Order, PageLink};
use super::fields::{Choice, PermFields, grant_columns, grant_input};
use super::{
    AdminError, Checkbox, CsrfForm, DeletePage, Doomed, Errors, HistoryOf, Layout, NoFields, Reply,
    Staff, USERS, after_save, choices, grant_rows, history_page, ok, redirect,
};
use crate::auth::perms::{self, Granted, Model};
use crate::auth::users::{self, FieldChange, ServiceError};
use crate::auth::{AuthState, password};
use crate::db::models::{Group, Permission, User};
use crate::db::{self, DbError, queries};
use crate::proxy::upstream::Upstream;

const PER_PAGE: i64 = 100;

#[derive(Deserialize, Serialize, Default)]
pub struct ListQuery {
    q: Option<String>,
    is_staff: Option<String>,
    is_superuser: Option<String>,
    is_active: Option<String>,
    o: Option<String>,
    group: Option<i32>,
    /// The page: a link to another view of the list starts on the first.
    #[serde(skip_serializing)]
    p: Option<i64>,
}

fn flag(value: &Option<String>) -> Option<bool> {
    match value.as_deref() {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    }
}

#[derive(Template)]
#[template(path = "admin/user_list.html")]
struct ListPage<'a> {
    layout: &'a Layout,
    users: Vec<User>,
    total: i64,
    search: String,
    filters: Vec<Filter>,
    columns: Vec<Column>,
    page: i64,
    pages: i64,
    page_links: Vec<PageLink>,
    can_add: bool,
    can_delete: bool,
}

const COLUMNS: [(&str, &str); 5] = [
    ("Username", "username"),
    ("Email address", "email"),
    ("First name", "first_name"),
    ("Last name", "last_name"),
    ("Staff status", "is_staff"),
];

pub async fn list(staff: Staff, query: web::Query<ListQuery>) -> Reply {
    staff.require_view(Model::User)?;
    let order = Order::parse(query.o.as_deref());
    let filter = queries::UserQuery {
        search: query.q.clone().unwrap_or_default().trim().to_owned(),
        is_staff: flag(&query.is_staff),
        is_superuser: flag(&query.is_superuser),
        is_active: flag(&query.is_active),
        group: query.group,
        order: order.clone().map(|o| (o.column, o.descending)),
        page: query.p.unwrap_or(0).max(0),
        per_page: PER_PAGE,
    };
    let q = filter.clone();
    let (found, total, groups) = db::run(&staff.auth.pool, move |conn| {
        let (found, total) = queries::list_users(conn, &q)?;
        Ok::<_, DbError>((found, total, queries::all_groups(conn)?))
    })
    .await?;
    let list = ChangeList::of(&*query);
    let group_choices = groups.iter().map(|g| (g.name.clone(), g.id.to_string())).collect();
    let current_group = query.group.map(|g| g.to_string());
    let filters = vec![
        list.yes_no("is_staff", "By staff status", filter.is_staff),
        list.yes_no("is_superuser", "By superuser status", filter.is_superuser),
        list.yes_no("is_active", "By active", filter.is_active),
        list.filter("group", "By group", group_choices, current_group.as_deref()),
    ];
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    ok(&ListPage {
        layout: &staff.layout,
        users: found,
        total,
        search: filter.search,
        filters,
        columns: list.columns(&COLUMNS, order.as_ref(), "username"),
        page: filter.page + 1,
        pages,
        page_links: list.pages(pages),
        can_add: staff.holds::<perms::AddUser>(),
        can_delete: staff.holds::<perms::DeleteUser>(),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct BulkForm {
    action: String,
    #[serde(rename = "_selected_action")]
    selected: Vec<String>,
    post: String,
}

/// "Delete selected users": a confirmation page, then the deletion.
pub async fn bulk_action(
    staff: Staff,
    CsrfForm(form): CsrfForm<BulkForm>,
    identity: Option<Identity>,
) -> Reply {
    let granted = staff.require::<perms::DeleteUser>()?;
    if form.action != "delete_selected" {
        staff.flash("warning", "No action selected.");
        return redirect(USERS.list());
    }
    let ids: Vec<i32> = form.selected.iter().filter_map(|v| v.parse().ok()).collect();
    if ids.is_empty() {
        staff.flash("warning",
            "Items must be selected in order to perform actions on them. No items have been changed.",
        );
        return redirect(USERS.list());
    }
    let found: Vec<User> = db::run(&staff.auth.pool, move |conn| {
        ids.iter()
            .filter_map(|id| queries::user_by_id(conn, *id).transpose())
            .collect::<Result<_, _>>()
    })
    .await?;
    if form.post != "yes" {
        return ok(&DeletePage {
            layout: &staff.layout,
            title: "Are you sure?",
            kind: "User",
            objects: found
                .iter()
                .map(|u| Doomed { id: u.id, name: u.username.clone(), note: String::new() })
                .collect(),
            affected: Vec::new(),
            action: USERS.list().into(),
            cancel: USERS.list().into(),
        });
    }
    for user in &found {
        delete_one(&staff.auth, &granted, user.id).await?;
    }
    if found.iter().any(|u| u.id == staff.principal.user_id) {
        return signed_out(identity);
    }
    let message = format!("Successfully deleted {} user(s).", found.len());
    staff.flash("success", message);
    redirect(USERS.list())
}

/// Deletes one user through the service layer (history, privilege rules,
/// the cache cleared so its tokens stop at once).
async fn delete_one(
    auth: &AuthState,
    granted: &Granted<perms::DeleteUser>,
    id: i32,
) -> Result<User, AdminError> {
    let granted = granted.clone();
    Ok(auth.write(move |conn| users::delete_user(conn, &granted, id)).await?)
}

/// After deleting oneself there is no session left to write a message to:
/// log out and go to the login page.
fn signed_out(identity: Option<Identity>) -> Reply {
    if let Some(identity) = identity {
        identity.logout();
    }
    redirect(super::registry::LOGIN)
}

#[derive(Template)]
#[template(path = "admin/user_add.html")]
struct AddPage<'a> {
    layout: &'a Layout,
    username: String,
    errors: Errors,
}

pub async fn add_form(staff: Staff) -> Reply {
    staff.require::<perms::AddUser>()?;
    ok(&AddPage { layout: &staff.layout, username: String::new(), errors: Errors::new() })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AddForm {
    username: String,
    password1: String,
    password2: String,
}

/// The two password fields: the same, and passing the validators.
fn check_new_password(p1: &str, p2: &str, username: &str, email: &str) -> Vec<String> {
    if p1 != p2 {
        return vec!["The two password fields didn’t match.".to_owned()];
    }
    password::validate(p1, username, email).err().unwrap_or_default()
}

/// Hashes a password off the async workers, within the process's bound.
async fn hash(auth: &AuthState, secret: String) -> Result<String, AdminError> {
    Ok(auth.hasher.hash(secret).await?)
}

/// Step one of two, as Django's: a username and a password twice; the
/// full form follows.
pub async fn add(staff: Staff, CsrfForm(form): CsrfForm<AddForm>) -> Reply {
    let granted = staff.require::<perms::AddUser>()?;
    let username = form.username.trim().to_owned();
    let mut errors = Errors::new();
    if let Err(err) = users::validate_username(&username) {
        errors.entry("username").or_default().push(err.to_string());
    }
    let problems = check_new_password(&form.password1, &form.password2, &username, "");
    if !problems.is_empty() {
        errors.entry("password2").or_default().extend(problems);
    }
    if errors.is_empty() {
        let phc = hash(&staff.auth, form.password1).await?;
        let spec = users::UserSpec { username: username.clone(), ..Default::default() };
        match staff.auth.write(move |conn| users::create_user(conn, &granted, &spec, &phc)).await {
            Ok(user) => {
                let message = format!(
                    "The user “{}” was added successfully. You may edit it again below.",
                    user.username
                );
                staff.flash("success", message);
                return redirect(&USERS.change(user.id));
            }
            Err(ServiceError::Invalid(invalid)) => {
                errors.entry(invalid.field).or_default().push(invalid.message)
            }
            Err(other) => return Err(other.into()),
        }
    }
    // A failed form keeps what was typed, never the password.
    ok(&AddPage { layout: &staff.layout, username, errors })
}

/// Empty, or one `@` with something either side (Django checks more; the
/// address is only shown, never mailed).
fn valid_email(email: &str) -> bool {
    email.is_empty()
        || email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
}

#[derive(Template)]
#[template(path = "admin/user_change.html")]
struct ChangePage<'a> {
    layout: &'a Layout,
    target: User,
    password_summary: String,
    groups: Vec<Choice>,
    links: PermFields,
    effective_perms: Vec<String>,
    effective_grants: Vec<(String, Vec<String>)>,
    /// Its write quota and what it wrote today, in words.
    write_quota: String,
    errors: Errors,
    can_change: bool,
    can_delete: bool,
}

async fn load_user(auth: &AuthState, id: i32) -> Result<User, AdminError> {
    db::run(&auth.pool, move |conn| queries::user_by_id(conn, id))
        .await?
        .ok_or(AdminError::NotFound)
}

struct Catalog {
    groups: Vec<Group>,
    perms: Vec<Permission>,
}

async fn catalog(auth: &AuthState) -> Result<Catalog, AdminError> {
    Ok(db::run(&auth.pool, |conn| {
        Ok::<_, DbError>(Catalog {
            groups: queries::all_groups(conn)?,
            perms: queries::all_permissions(conn)?,
        })
    })
    .await?)
}

/// A user's write quota (`auth::quota`) and what it wrote today (UTC).
async fn write_quota(auth: &AuthState, target: &User) -> Result<String, AdminError> {
    let held = auth.principal_of(target.id).await?.ok_or(AdminError::NotFound)?;
    let (quota, rows, bytes) = auth.write_quota_of(&held).await?;
    let limit = if quota.is_unlimited() { "none".to_owned() } else { quota.to_string() };
    Ok(format!("{limit}; written today (UTC): {rows} rows, {bytes} bytes"))
}

/// What the user holds in effect: every permission for a superuser.
async fn effective(
    auth: &AuthState,
    target: &User,
    catalog: &Catalog,
) -> Result<(Vec<String>, Vec<(String, Vec<String>)>), AdminError> {
    let held = auth.principal_of(target.id).await?.ok_or(AdminError::NotFound)?;
    let mut perms: Vec<String> = if target.is_superuser {
        catalog.perms.iter().map(Permission::full_codename).collect()
    } else {
        held.perms.iter().cloned().collect()
    };
    perms.sort();
    let grants = held.described_grants().into_iter().collect();
    Ok((perms, grants))
}

async fn change_page<'a>(
    staff: &'a Staff,
    auth: &AuthState,
    upstream: &Upstream,
    target: User,
    links: queries::UserLinks,
    errors: Errors,
) -> Result<ChangePage<'a>, AdminError> {
    let catalog = catalog(auth).await?;
    let (effective_perms, effective_grants) = effective(auth, &target, &catalog).await?;
    let write_quota = write_quota(auth, &target).await?;
    Ok(ChangePage {
        layout: &staff.layout,
        password_summary: password::summary(&target.password),
        groups: catalog
            .groups
            .iter()
            .map(|g| Choice::new(g.id, g.name.clone(), &links.groups))
            .collect(),
        links: PermFields::new(
            &catalog.perms,
            &links.perms,
            &links.grants,
            &grant_columns(upstream, &staff.principal, &links.grants).await,
        ),
        effective_perms,
        effective_grants,
        write_quota,
        errors,
        can_change: staff.holds::<perms::ChangeUser>(),
        can_delete: staff.holds::<perms::DeleteUser>(),
        target,
    })
}

pub async fn change_form(staff: Staff, path: web::Path<i32>, upstream: Upstream) -> Reply {
    staff.require_view(Model::User)?;
    let target = load_user(&staff.auth, *path).await?;
    let id = target.id;
    let links = db::run(&staff.auth.pool, move |conn| queries::user_links(conn, id)).await?;
    ok(&change_page(&staff, &staff.auth, &upstream, target, links, BTreeMap::new()).await?)
}

/// What the change form shows as a field's value in the history.
fn snapshot(
    user: &User,
    links: &queries::UserLinks,
    catalog: &Catalog,
) -> Vec<(&'static str, String)> {
    let group_name = |id: &i32| catalog.groups.iter().find(|g| g.id == *id).map(|g| g.name.clone());
    let perm_name =
        |id: &i32| catalog.perms.iter().find(|p| p.id == *id).map(Permission::full_codename);
    let sorted = |mut names: Vec<String>| {
        names.sort();
        names.join(", ")
    };
    let grants = links.grants.iter().map(|grant| grant.to_string()).collect();
    vec![
        ("username", user.username.clone()),
        ("email", user.email.clone()),
        ("first_name", user.first_name.clone()),
        ("last_name", user.last_name.clone()),
        ("is_active", user.is_active.to_string()),
        ("is_staff", user.is_staff.to_string()),
        ("is_superuser", user.is_superuser.to_string()),
        ("groups", sorted(links.groups.iter().filter_map(group_name).collect())),
        ("user_permissions", sorted(links.perms.iter().filter_map(perm_name).collect())),
        ("feed_grants", sorted(grants)),
    ]
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ChangeForm {
    username: String,
    email: String,
    first_name: String,
    last_name: String,
    is_active: Checkbox,
    is_staff: Checkbox,
    is_superuser: Checkbox,
    groups: Vec<String>,
    user_permissions: Vec<String>,
    grant_perm: Vec<String>,
    grant_feed: Vec<String>,
    grant_column: Vec<String>,
    grant_from: Vec<String>,
    grant_to: Vec<String>,
    #[serde(rename = "_action")]
    action: String,
}

/// The form read into an update, with the errors of what it holds.
fn read_change(form: &ChangeForm, catalog: &Catalog, errors: &mut Errors) -> queries::UserUpdate {
    let username = form.username.trim().to_owned();
    if let Err(err) = users::validate_username(&username) {
        errors.entry("username").or_default().push(err.to_string());
    }
    let email = form.email.trim().to_owned();
    if !valid_email(&email) {
        errors.entry("email").or_default().push("Enter a valid email address.".into());
    }
    let group_ids: Vec<i32> = catalog.groups.iter().map(|g| g.id).collect();
    let perm_ids: Vec<i32> = catalog.perms.iter().map(|p| p.id).collect();
    queries::UserUpdate {
        username,
        email,
        first_name: form.first_name.trim().to_owned(),
        last_name: form.last_name.trim().to_owned(),
        is_active: form.is_active.0,
        is_staff: form.is_staff.0,
        is_superuser: form.is_superuser.0,
        links: queries::UserLinks {
            groups: choices(&form.groups, "groups", &group_ids, errors),
            perms: choices(&form.user_permissions, "user_permissions", &perm_ids, errors),
            grants: grant_rows(grant_input!(form), &catalog.perms, errors),
        },
    }
}

pub async fn change(
    staff: Staff,
    id: web::Path<i32>,
    form: CsrfForm<ChangeForm>,
    upstream: Upstream,
) -> Reply {
    let granted = staff.require::<perms::ChangeUser>()?;
    let before = load_user(&staff.auth, *id).await?;
    let id = before.id;
    let old_links = db::run(&staff.auth.pool, move |conn| queries::user_links(conn, id)).await?;
    let catalog = catalog(&staff.auth).await?;
    let mut errors = Errors::new();
    let update = read_change(&form, &catalog, &mut errors);
    let mut after = before.clone();
    after.username.clone_from(&update.username);
    after.email.clone_from(&update.email);
    after.first_name.clone_from(&update.first_name);
    after.last_name.clone_from(&update.last_name);
    (after.is_active, after.is_staff, after.is_superuser) =
        (update.is_active, update.is_staff, update.is_superuser);
    let changes: Vec<FieldChange> = snapshot(&before, &old_links, &catalog)
        .into_iter()
        .zip(snapshot(&after, &update.links, &catalog))
        .filter(|(old, new)| old.1 != new.1)
        .map(|((field, old), (_, new))| FieldChange::new(field, old, new))
        .collect();
    if errors.is_empty() {
        let saving = update.clone();
        let saved = staff
            .auth
            .write(move |conn| users::update_user(conn, &granted, id, &saving, &changes))
            .await;
        match saved {
            Ok(()) => {}
            Err(ServiceError::Invalid(invalid)) => {
                errors.entry(invalid.field).or_default().push(invalid.message)
            }
            Err(other) => return Err(other.into()),
        }
    }
    if !errors.is_empty() {
        // What was typed stays in the form, beside its errors.
        return ok(&change_page(&staff, &staff.auth, &upstream, after, update.links, errors).await?);
    }
    let message = format!("The user “{}” was changed successfully.", after.username);
    staff.flash("success", message);
    after_save(&form.action, USERS.list(), &USERS.add(), &USERS.change(id))
}

#[derive(Template)]
#[template(path = "admin/user_password.html")]
struct PasswordPage<'a> {
    layout: &'a Layout,
    target: User,
    errors: Vec<String>,
}

pub async fn password_form(staff: Staff, path: web::Path<i32>) -> Reply {
    staff.require::<perms::ChangeUser>()?;
    let target = load_user(&staff.auth, *path).await?;
    ok(&PasswordPage { layout: &staff.layout, target, errors: Vec::new() })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    password1: String,
    password2: String,
}

pub async fn password(staff: Staff, id: web::Path<i32>, form: CsrfForm<PasswordForm>) -> Reply {
    let granted = staff.require::<perms::ChangeUser>()?;
    let target = load_user(&staff.auth, *id).await?;
    let errors =
        check_new_password(&form.password1, &form.password2, &target.username, &target.email);
    if !errors.is_empty() {
        return ok(&PasswordPage { layout: &staff.layout, target, errors });
    }
    let phc = hash(&staff.auth, form.0.password1).await?;
    let id = target.id;
    staff.auth.write(move |conn| users::set_password(conn, &granted, id, &phc)).await?;
    staff.flash("success", "Password changed successfully.");
    redirect(&USERS.change(id))
}

pub async fn delete_form(staff: Staff, path: web::Path<i32>) -> Reply {
    staff.require::<perms::DeleteUser>()?;
    let target = load_user(&staff.auth, *path).await?;
    let id = target.id;
    let tokens = db::run(&staff.auth.pool, move |conn| queries::user_token_count(conn, id)).await?;
    ok(&DeletePage {
        layout: &staff.layout,
        title: "Are you sure?",
        kind: "User",
        affected: Vec::new(),
        objects: vec![Doomed {
            id,
            name: target.username.clone(),
            note: format!("with {tokens} API token(s) and every session"),
        }],
        action: USERS.delete(id),
        cancel: USERS.change(id),
    })
}

pub async fn delete(
    staff: Staff,
    path: web::Path<i32>,
    _form: CsrfForm<NoFields>,
    identity: Option<Identity>,
) -> Reply {
    let granted = staff.require::<perms::DeleteUser>()?;
    let target = delete_one(&staff.auth, &granted, *path).await?;
    if target.id == staff.principal.user_id {
        return signed_out(identity);
    }
    let message = format!("The user “{}” was deleted successfully.", target.username);
    staff.flash("success", message);
    redirect(USERS.list())
}

pub async fn history(staff: Staff, path: web::Path<i32>) -> Reply {
    staff.require_view(Model::User)?;
    let target = load_user(&staff.auth, *path).await?;
    history_page(&staff, HistoryOf::new(Model::User, target.id, target.username)).await
}
