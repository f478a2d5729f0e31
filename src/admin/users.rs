//! `/admin/auth/user/`: the list, the two-step add, the change form with
//! effective permissions, set-password, delete with confirmation, history.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminError, DeletePage, Message, flash, log_action, ok, redirect, staff, staff_form};
use actix_identity::Identity;

use crate::auth::guard::Actor;
use crate::auth::principal::Principal;
use crate::auth::{AuthState, password, users};
use crate::db::models::{Group, Permission, User};
use crate::db::{self, DbError, queries};

const PER_PAGE: i64 = 100;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    q: Option<String>,
    is_staff: Option<String>,
    is_superuser: Option<String>,
    is_active: Option<String>,
    group: Option<i32>,
    o: Option<String>,
    p: Option<i64>,
}

fn flag(value: &Option<String>) -> Option<bool> {
    match value.as_deref() {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    }
}

struct FilterLink {
    label: String,
    url: String,
    selected: bool,
}

struct Filter {
    title: &'static str,
    links: Vec<FilterLink>,
}

struct Column {
    label: &'static str,
    url: String,
    sorted: &'static str,
}

#[derive(Template)]
#[template(path = "admin/user_list.html")]
struct ListPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    users: Vec<User>,
    total: i64,
    search: String,
    filters: Vec<Filter>,
    columns: Vec<Column>,
    page: i64,
    pages: i64,
    page_links: Vec<(i64, String)>,
    can_add: bool,
    can_delete: bool,
}

/// The list's URL with one parameter changed (or removed), others kept.
fn with_param(params: &[(&str, String)], key: &str, value: Option<String>) -> String {
    let mut kept: Vec<(&str, String)> = params
        .iter()
        .filter(|(k, _)| *k != key && *k != "p")
        .cloned()
        .collect();
    if let Some(value) = value {
        kept.push((key, value));
    }
    let query = serde_urlencoded::to_string(&kept).unwrap_or_default();
    if query.is_empty() {
        "?".into()
    } else {
        format!("?{query}")
    }
}

pub async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require_view("auth", "user")?;
    let order = query
        .o
        .clone()
        .filter(|o| !o.is_empty())
        .map(|o| match o.strip_prefix('-') {
            Some(col) => (col.to_owned(), true),
            None => (o, false),
        });
    let filter = queries::UserQuery {
        search: query.q.clone().unwrap_or_default().trim().to_owned(),
        is_staff: flag(&query.is_staff),
        is_superuser: flag(&query.is_superuser),
        is_active: flag(&query.is_active),
        group: query.group,
        order: order.clone(),
        page: query.p.unwrap_or(0).max(0),
        per_page: PER_PAGE,
    };
    let q = filter.clone();
    let (found, total, groups) = db::run(&auth.pool, move |conn| {
        let (found, total) = queries::list_users(conn, &q)?;
        Ok((found, total, queries::all_groups(conn)?))
    })
    .await?;

    let mut params: Vec<(&str, String)> = Vec::new();
    for (key, value) in [
        ("q", &query.q),
        ("is_staff", &query.is_staff),
        ("is_superuser", &query.is_superuser),
        ("is_active", &query.is_active),
        ("o", &query.o),
    ] {
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
            params.push((key, v.clone()));
        }
    }
    if let Some(g) = query.group {
        params.push(("group", g.to_string()));
    }
    let yes_no = |key: &'static str, title: &'static str, current: Option<bool>| Filter {
        title,
        links: [("All", None), ("Yes", Some("1")), ("No", Some("0"))]
            .into_iter()
            .map(|(label, v)| FilterLink {
                label: label.into(),
                url: with_param(&params, key, v.map(str::to_owned)),
                selected: current.map(|c| if c { "1" } else { "0" }) == v,
            })
            .collect(),
    };
    let mut filters = vec![
        yes_no("is_staff", "By staff status", filter.is_staff),
        yes_no("is_superuser", "By superuser status", filter.is_superuser),
        yes_no("is_active", "By active", filter.is_active),
    ];
    let mut group_links = vec![FilterLink {
        label: "All".into(),
        url: with_param(&params, "group", None),
        selected: query.group.is_none(),
    }];
    group_links.extend(groups.iter().map(|g| FilterLink {
        label: g.name.clone(),
        url: with_param(&params, "group", Some(g.id.to_string())),
        selected: query.group == Some(g.id),
    }));
    filters.push(Filter {
        title: "By group",
        links: group_links,
    });

    let columns = [
        ("Username", "username"),
        ("Email address", "email"),
        ("First name", "first_name"),
        ("Last name", "last_name"),
        ("Staff status", "is_staff"),
    ]
    .into_iter()
    .map(|(label, col)| {
        let (sorted, next) = match &order {
            Some((c, false)) if c == col => ("ascending", format!("-{col}")),
            Some((c, true)) if c == col => ("descending", col.to_owned()),
            None if col == "username" => ("ascending", "-username".to_owned()),
            _ => ("", col.to_owned()),
        };
        Column {
            label,
            url: with_param(&params, "o", Some(next)),
            sorted,
        }
    })
    .collect();
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let base = with_param(&params, "p", None);
    let page_links = (0..pages)
        .map(|p| {
            (
                p + 1,
                format!("{base}{}p={p}", if base == "?" { "" } else { "&" }),
            )
        })
        .collect();
    ok(&ListPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        users: found,
        total,
        search: filter.search,
        filters,
        columns,
        page: filter.page + 1,
        pages,
        page_links,
        can_add: ctx.can("auth.add_user"),
        can_delete: ctx.can("auth.delete_user"),
    })
}

/// "Delete selected users": a confirmation page, then the deletion.
pub async fn bulk_action(
    req: HttpRequest,
    body: web::Bytes,
    auth: web::Data<AuthState>,
    identity: Option<Identity>,
) -> Result<HttpResponse, AdminError> {
    let (ctx, form) = staff_form(&req, &auth, &body, "auth.delete_user").await?;
    if form.get("action") != "delete_selected" {
        flash(&req, "warning", "No action selected.");
        return redirect("/admin/auth/user/");
    }
    let ids: Vec<i32> = form
        .all("_selected_action")
        .filter_map(|v| v.parse().ok())
        .collect();
    if ids.is_empty() {
        flash(
            &req,
            "warning",
            "Items must be selected in order to perform actions on them. No items have been changed.",
        );
        return redirect("/admin/auth/user/");
    }
    let ids_for_db = ids.clone();
    let found: Vec<User> = db::run(&auth.pool, move |conn| {
        ids_for_db
            .iter()
            .filter_map(|id| queries::user_by_id(conn, *id).transpose())
            .collect::<Result<_, _>>()
    })
    .await?;
    if form.get("post") != "yes" {
        let objects = found
            .iter()
            .map(|u| (u.id, u.username.clone(), String::new()))
            .collect();
        return ok(&DeletePage {
            user: ctx.user(),
            csrf: &ctx.csrf,
            messages: Vec::new(),
            title: "Are you sure?".into(),
            kind: "User",
            objects,
            affected: Vec::new(),
            action: "/admin/auth/user/".into(),
            cancel: "/admin/auth/user/".into(),
        });
    }
    for user in &found {
        delete_one(&auth, &ctx.principal, user).await?;
    }
    if found.iter().any(|u| u.id == ctx.principal.user_id) {
        return signed_out(identity);
    }
    flash(
        &req,
        "success",
        format!("Successfully deleted {} user(s).", found.len()),
    );
    redirect("/admin/auth/user/")
}

/// Deletes one user, with its history entry, by the privilege rules.
/// Sessions and tokens go with the user (ON DELETE CASCADE), and the cache
/// is cleared at once, so its tokens stop working now.
async fn delete_one(auth: &AuthState, actor: &Principal, user: &User) -> Result<(), AdminError> {
    let id = user.id;
    let (actor_id, actor_name, repr) =
        (actor.user_id, actor.username.clone(), user.username.clone());
    let deleted = db::run(&auth.pool, move |conn| {
        let id_text = id.to_string();
        let entry = queries::NewLogEntry {
            user_id: Some(actor_id),
            username: &actor_name,
            object_type: "auth.user",
            object_id: &id_text,
            object_repr: &repr,
            action: "delete",
            changes: "[]",
        };
        users::delete_user(conn, Actor::User(actor_id), id, Some(&entry))
    })
    .await;
    auth.cache.clear();
    deleted?;
    Ok(())
}

/// After deleting oneself there is no session left to write a message to:
/// log out and go to the login page.
fn signed_out(identity: Option<Identity>) -> Result<HttpResponse, AdminError> {
    if let Some(identity) = identity {
        identity.logout();
    }
    redirect("/admin/login/")
}

#[derive(Template)]
#[template(path = "admin/user_add.html")]
struct AddPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    username: String,
    errors: BTreeMap<&'static str, Vec<String>>,
}

pub async fn add_form(
    req: HttpRequest,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require("auth.add_user")?;
    ok(&AddPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        username: String::new(),
        errors: BTreeMap::new(),
    })
}

/// Step one of two, as Django's: a username and a password twice; the
/// full form follows.
pub async fn add(
    req: HttpRequest,
    body: web::Bytes,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let (ctx, form) = staff_form(&req, &auth, &body, "auth.add_user").await?;
    let username = form.get("username").trim().to_owned();
    let (p1, p2) = (form.get("password1"), form.get("password2"));
    let mut errors: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    if let Err(err) = users::validate_username(&username) {
        errors.entry("username").or_default().push(err.to_string());
    }
    if p1 != p2 {
        errors
            .entry("password2")
            .or_default()
            .push("The two password fields didn’t match.".into());
    } else if let Err(problems) = password::validate(p1, &username, "") {
        errors.entry("password2").or_default().extend(problems);
    }
    if errors.is_empty() {
        let secret = p1.to_owned();
        let phc = web::block(move || password::hash(&secret))
            .await
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        let spec = users::UserSpec {
            username: username.clone(),
            ..Default::default()
        };
        match db::run(&auth.pool, move |conn| {
            users::create_user(conn, &spec, &phc)
        })
        .await
        {
            Ok(user) => {
                auth.cache.clear();
                log_action(
                    &auth,
                    ctx.actor(),
                    ("auth.user", user.id.to_string(), user.username.clone()),
                    "add",
                    json!([]),
                )
                .await?;
                flash(
                    &req,
                    "success",
                    format!(
                        "The user “{}” was added successfully. You may edit it again below.",
                        user.username
                    ),
                );
                return redirect(&format!("/admin/auth/user/{}/change/", user.id));
            }
            Err(DbError::Invalid(why)) => errors.entry("username").or_default().push(why),
            Err(other) => return Err(other.into()),
        }
    }
    // A failed form keeps what was typed, never the password.
    ok(&AddPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: Vec::new(),
        username,
        errors,
    })
}

/// Empty, or one `@` with something either side (Django checks more; the
/// address is only shown, never mailed).
fn valid_email(email: &str) -> bool {
    email.is_empty()
        || email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
}

struct Choice {
    id: i32,
    label: String,
    selected: bool,
}

struct GrantRow {
    perm: i32,
    feed: String,
}

#[derive(Template)]
#[template(path = "admin/user_change.html")]
struct ChangePage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    target: User,
    password_summary: String,
    groups: Vec<Choice>,
    perms: Vec<Choice>,
    lbasedb_perms: Vec<(i32, String)>,
    grants: Vec<GrantRow>,
    effective_perms: Vec<String>,
    effective_grants: Vec<(String, Vec<String>)>,
    errors: BTreeMap<&'static str, Vec<String>>,
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
        Ok(Catalog {
            groups: queries::all_groups(conn)?,
            perms: queries::all_permissions(conn)?,
        })
    })
    .await?)
}

async fn change_page<'a>(
    ctx: &'a super::Ctx,
    auth: &AuthState,
    target: User,
    links: queries::UserLinks,
    errors: BTreeMap<&'static str, Vec<String>>,
) -> Result<ChangePage<'a>, AdminError> {
    let catalog = catalog(auth).await?;
    let effective = auth
        .principal_of(target.id)
        .await?
        .ok_or(AdminError::NotFound)?;
    let mut effective_perms: Vec<String> = if target.is_superuser {
        catalog
            .perms
            .iter()
            .map(Permission::full_codename)
            .collect()
    } else {
        effective.perms.iter().cloned().collect()
    };
    effective_perms.sort();
    let mut effective_grants: Vec<(String, Vec<String>)> = effective
        .grants
        .iter()
        .map(|(feed, held)| {
            let mut held: Vec<String> = held.iter().cloned().collect();
            held.sort();
            (feed.clone(), held)
        })
        .collect();
    effective_grants.sort();
    let mut grants: Vec<GrantRow> = links
        .grants
        .iter()
        .map(|(perm, feed)| GrantRow {
            perm: *perm,
            feed: feed.clone(),
        })
        .collect();
    grants.extend((0..3).map(|_| GrantRow {
        perm: 0,
        feed: String::new(),
    }));
    Ok(ChangePage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        password_summary: password::summary(&target.password),
        groups: catalog
            .groups
            .iter()
            .map(|g| Choice {
                id: g.id,
                label: g.name.clone(),
                selected: links.groups.contains(&g.id),
            })
            .collect(),
        perms: catalog
            .perms
            .iter()
            .map(|p| Choice {
                id: p.id,
                label: format!("{} | {}", p.app_label, p.name),
                selected: links.perms.contains(&p.id),
            })
            .collect(),
        lbasedb_perms: catalog
            .perms
            .iter()
            .filter(|p| p.app_label == "lbasedb")
            .map(|p| (p.id, p.full_codename()))
            .collect(),
        grants,
        effective_perms,
        effective_grants,
        errors,
        can_change: ctx.can("auth.change_user"),
        can_delete: ctx.can("auth.delete_user"),
        target,
    })
}

pub async fn change_form(
    req: HttpRequest,
    path: web::Path<i32>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require_view("auth", "user")?;
    let target = load_user(&auth, *path).await?;
    let id = target.id;
    let links = db::run(&auth.pool, move |conn| queries::user_links(conn, id)).await?;
    ok(&change_page(&ctx, &auth, target, links, BTreeMap::new()).await?)
}

/// What the change form shows as a field's value in the history.
fn snapshot(
    user: &User,
    links: &queries::UserLinks,
    catalog: &Catalog,
) -> Vec<(&'static str, String)> {
    let names = |ids: &[i32], list: &dyn Fn(i32) -> Option<String>| {
        let mut names: Vec<String> = ids.iter().filter_map(|id| list(*id)).collect();
        names.sort();
        names.join(", ")
    };
    let group_name = |id| {
        catalog
            .groups
            .iter()
            .find(|g| g.id == id)
            .map(|g| g.name.clone())
    };
    let perm_name = |id| {
        catalog
            .perms
            .iter()
            .find(|p| p.id == id)
            .map(Permission::full_codename)
    };
    let mut grants: Vec<String> = links
        .grants
        .iter()
        .filter_map(|(p, f)| perm_name(*p).map(|p| format!("{p}={f}")))
        .collect();
    grants.sort();
    vec![
        ("username", user.username.clone()),
        ("email", user.email.clone()),
        ("first_name", user.first_name.clone()),
        ("last_name", user.last_name.clone()),
        ("is_active", user.is_active.to_string()),
        ("is_staff", user.is_staff.to_string()),
        ("is_superuser", user.is_superuser.to_string()),
        ("groups", names(&links.groups, &group_name)),
        ("user_permissions", names(&links.perms, &perm_name)),
        ("feed_grants", grants.join(", ")),
    ]
}

pub async fn change(
    req: HttpRequest,
    path: web::Path<i32>,
    body: web::Bytes,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let (ctx, form) = staff_form(&req, &auth, &body, "auth.change_user").await?;
    let before = load_user(&auth, *path).await?;
    let id = before.id;
    let old_links = db::run(&auth.pool, move |conn| queries::user_links(conn, id)).await?;
    let catalog = catalog(&auth).await?;

    let mut errors: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let username = form.get("username").trim().to_owned();
    if let Err(err) = users::validate_username(&username) {
        errors.entry("username").or_default().push(err.to_string());
    }
    let email = form.get("email").trim().to_owned();
    if !valid_email(&email) {
        errors
            .entry("email")
            .or_default()
            .push("Enter a valid email address.".into());
    }
    let group_ids: Vec<i32> = catalog.groups.iter().map(|g| g.id).collect();
    let groups = super::choices(&form, "groups", &group_ids, &mut errors);
    let perm_ids: Vec<i32> = catalog.perms.iter().map(|p| p.id).collect();
    let perms = super::choices(&form, "user_permissions", &perm_ids, &mut errors);
    let grants = super::grant_rows(&form, &catalog.perms, &mut errors);
    let update = queries::UserUpdate {
        username: username.clone(),
        email: email.clone(),
        first_name: form.get("first_name").trim().to_owned(),
        last_name: form.get("last_name").trim().to_owned(),
        is_active: form.flag("is_active"),
        is_staff: form.flag("is_staff"),
        is_superuser: form.flag("is_superuser"),
        links: queries::UserLinks {
            groups,
            perms,
            grants,
        },
    };
    if errors.is_empty() && username != before.username {
        let name = username.clone();
        if db::run(&auth.pool, move |conn| {
            queries::user_by_username(conn, &name)
        })
        .await?
        .is_some()
        {
            errors
                .entry("username")
                .or_default()
                .push("A user with that username already exists.".into());
        }
    }
    let mut after = before.clone();
    (
        after.username,
        after.email,
        after.first_name,
        after.last_name,
    ) = (
        update.username.clone(),
        update.email.clone(),
        update.first_name.clone(),
        update.last_name.clone(),
    );
    (after.is_active, after.is_staff, after.is_superuser) =
        (update.is_active, update.is_staff, update.is_superuser);
    if !errors.is_empty() {
        // What was typed stays in the form, beside its errors.
        return ok(&change_page(&ctx, &auth, after, update.links, errors).await?);
    }
    let changes: Vec<Value> = snapshot(&before, &old_links, &catalog)
        .into_iter()
        .zip(snapshot(&after, &update.links, &catalog))
        .filter(|(old, new)| old.1 != new.1)
        .map(|((field, old), (_, new))| json!({"field": field, "old": old, "new": new}))
        .collect();
    let actor = ctx.as_actor();
    let saved = db::run(&auth.pool, move |conn| {
        users::update_user(conn, actor, id, &update)
    })
    .await;
    // Cleared whatever the outcome: a refused write changed nothing, and a
    // saved one must be enforced at once.
    auth.cache.clear();
    saved?;
    log_action(
        &auth,
        ctx.actor(),
        ("auth.user", id.to_string(), after.username.clone()),
        "change",
        Value::Array(changes),
    )
    .await?;
    flash(
        &req,
        "success",
        format!("The user “{}” was changed successfully.", after.username),
    );
    match form.get("_action") {
        "_continue" => redirect(&format!("/admin/auth/user/{id}/change/")),
        "_addanother" => redirect("/admin/auth/user/add/"),
        _ => redirect("/admin/auth/user/"),
    }
}

#[derive(Template)]
#[template(path = "admin/user_password.html")]
struct PasswordPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    target: User,
    errors: Vec<String>,
}

pub async fn password_form(
    req: HttpRequest,
    path: web::Path<i32>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require("auth.change_user")?;
    let target = load_user(&auth, *path).await?;
    ok(&PasswordPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        target,
        errors: Vec::new(),
    })
}

pub async fn password(
    req: HttpRequest,
    path: web::Path<i32>,
    body: web::Bytes,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let (ctx, form) = staff_form(&req, &auth, &body, "auth.change_user").await?;
    let target = load_user(&auth, *path).await?;
    let (p1, p2) = (form.get("password1"), form.get("password2"));
    let errors = if p1 != p2 {
        vec!["The two password fields didn’t match.".to_owned()]
    } else {
        password::validate(p1, &target.username, &target.email)
            .err()
            .unwrap_or_default()
    };
    if !errors.is_empty() {
        return ok(&PasswordPage {
            user: ctx.user(),
            csrf: &ctx.csrf,
            messages: Vec::new(),
            target,
            errors,
        });
    }
    let secret = p1.to_owned();
    let phc = web::block(move || password::hash(&secret))
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    let id = target.id;
    let actor = ctx.as_actor();
    db::run(&auth.pool, move |conn| {
        users::set_password(conn, actor, id, &phc, None)
    })
    .await?;
    auth.cache.clear();
    log_action(
        &auth,
        ctx.actor(),
        ("auth.user", id.to_string(), target.username.clone()),
        "change",
        json!([{"field": "password", "old": "(hidden)", "new": "(changed)"}]),
    )
    .await?;
    flash(&req, "success", "Password changed successfully.");
    redirect(&format!("/admin/auth/user/{id}/change/"))
}

pub async fn delete_form(
    req: HttpRequest,
    path: web::Path<i32>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require("auth.delete_user")?;
    let target = load_user(&auth, *path).await?;
    let id = target.id;
    let tokens = db::run(&auth.pool, move |conn| queries::user_token_count(conn, id)).await?;
    ok(&DeletePage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        title: "Are you sure?".into(),
        kind: "User",
        affected: Vec::new(),
        objects: vec![(
            id,
            target.username.clone(),
            format!("with {tokens} API token(s) and every session"),
        )],
        action: format!("/admin/auth/user/{id}/delete/"),
        cancel: format!("/admin/auth/user/{id}/change/"),
    })
}

pub async fn delete(
    req: HttpRequest,
    path: web::Path<i32>,
    body: web::Bytes,
    auth: web::Data<AuthState>,
    identity: Option<Identity>,
) -> Result<HttpResponse, AdminError> {
    let (ctx, _) = staff_form(&req, &auth, &body, "auth.delete_user").await?;
    let target = load_user(&auth, *path).await?;
    delete_one(&auth, &ctx.principal, &target).await?;
    if target.id == ctx.principal.user_id {
        return signed_out(identity);
    }
    flash(
        &req,
        "success",
        format!("The user “{}” was deleted successfully.", target.username),
    );
    redirect("/admin/auth/user/")
}

pub async fn history(
    req: HttpRequest,
    path: web::Path<i32>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require_view("auth", "user")?;
    let target = load_user(&auth, *path).await?;
    let back = format!("/admin/auth/user/{}/change/", target.id);
    super::history_page(&ctx, &auth, "auth.user", target.id, target.username, back).await
}
