//! `/admin/auth/group/`: list with search, add and change (name, a
//! permission chooser, feed grants), delete with the members it affects.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    AdminError, DeletePage, Errors, Message, choices, flash, grant_rows, log_action, ok, redirect,
    staff, staff_form, upstream_feeds,
};
use crate::auth::{AuthState, users};
use crate::db::models::{Group, Permission};
use crate::db::{self, queries};
use crate::proxy::ProxyState;

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/group_list.html")]
struct ListPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    groups: Vec<(Group, i64)>,
    search: String,
    can_add: bool,
}

pub async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require_view("auth", "group")?;
    let search = query.q.clone().unwrap_or_default().trim().to_owned();
    let term = search.clone();
    let groups = db::run(&auth.pool, move |conn| queries::list_groups(conn, &term)).await?;
    ok(&ListPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        groups,
        search,
        can_add: ctx.can("auth.add_group"),
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
#[template(path = "admin/group_change.html")]
struct ChangePage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    /// None when adding.
    id: Option<i32>,
    name: String,
    perms: Vec<Choice>,
    lbasedb_perms: Vec<(i32, String)>,
    grants: Vec<GrantRow>,
    feeds: Vec<String>,
    members: Vec<String>,
    errors: Errors,
    can_save: bool,
    can_delete: bool,
}

struct Form2 {
    name: String,
    perms: Vec<i32>,
    grants: Vec<(i32, String)>,
}

#[allow(clippy::too_many_arguments)]
async fn page<'a>(
    ctx: &'a super::Ctx,
    auth: &AuthState,
    proxy: &ProxyState,
    client: &awc::Client,
    id: Option<i32>,
    values: Form2,
    errors: Errors,
) -> Result<ChangePage<'a>, AdminError> {
    let all: Vec<Permission> = db::run(&auth.pool, queries::all_permissions).await?;
    let members = match id {
        Some(id) => db::run(&auth.pool, move |conn| queries::group_members(conn, id))
            .await?
            .into_iter()
            .map(|u| u.username)
            .collect(),
        None => Vec::new(),
    };
    let mut grants: Vec<GrantRow> = values
        .grants
        .into_iter()
        .map(|(perm, feed)| GrantRow { perm, feed })
        .collect();
    grants.extend((0..3).map(|_| GrantRow {
        perm: 0,
        feed: String::new(),
    }));
    let can_save = if id.is_some() {
        ctx.can("auth.change_group")
    } else {
        ctx.can("auth.add_group")
    };
    Ok(ChangePage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        id,
        name: values.name,
        perms: all
            .iter()
            .map(|p| Choice {
                id: p.id,
                label: format!("{} | {}", p.app_label, p.name),
                selected: values.perms.contains(&p.id),
            })
            .collect(),
        lbasedb_perms: all
            .iter()
            .filter(|p| p.app_label == "lbasedb")
            .map(|p| (p.id, p.full_codename()))
            .collect(),
        grants,
        feeds: upstream_feeds(proxy, client).await,
        members,
        errors,
        can_save,
        can_delete: ctx.can("auth.delete_group"),
    })
}

pub async fn add_form(
    req: HttpRequest,
    auth: web::Data<AuthState>,
    proxy: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require("auth.add_group")?;
    let empty = Form2 {
        name: String::new(),
        perms: Vec::new(),
        grants: Vec::new(),
    };
    ok(&page(&ctx, &auth, &proxy, &client, None, empty, Errors::new()).await?)
}

pub async fn change_form(
    req: HttpRequest,
    path: web::Path<i32>,
    auth: web::Data<AuthState>,
    proxy: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require_view("auth", "group")?;
    let id = *path;
    let (group, (perms, grants)) = db::run(&auth.pool, move |conn| {
        let group = queries::group_by_id(conn, id)?;
        Ok((group, queries::group_links(conn, id)?))
    })
    .await?;
    let group = group.ok_or(AdminError::NotFound)?;
    ok(&page(
        &ctx,
        &auth,
        &proxy,
        &client,
        Some(id),
        Form2 {
            name: group.name,
            perms,
            grants,
        },
        Errors::new(),
    )
    .await?)
}

/// Add (no id) or change (an id): the same form, the same checks.
async fn save(
    req: HttpRequest,
    id: Option<i32>,
    body: web::Bytes,
    auth: web::Data<AuthState>,
    proxy: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, AdminError> {
    let needed = if id.is_some() {
        "auth.change_group"
    } else {
        "auth.add_group"
    };
    let (ctx, form) = staff_form(&req, &auth, &body, needed).await?;
    let all: Vec<Permission> = db::run(&auth.pool, queries::all_permissions).await?;
    let before = match id {
        Some(id) => {
            let (group, links) = db::run(&auth.pool, move |conn| {
                Ok((
                    queries::group_by_id(conn, id)?,
                    queries::group_links(conn, id)?,
                ))
            })
            .await?;
            Some((group.ok_or(AdminError::NotFound)?, links))
        }
        None => None,
    };
    let mut errors = Errors::new();
    let name = form.get("name").trim().to_owned();
    if name.is_empty() || name.len() > 150 {
        errors
            .entry("name")
            .or_default()
            .push("This field is required (150 characters or fewer).".into());
    }
    let perm_ids: Vec<i32> = all.iter().map(|p| p.id).collect();
    let perms = choices(&form, "permissions", &perm_ids, &mut errors);
    let grants = grant_rows(&form, &all, &mut errors);
    if errors.is_empty() && before.as_ref().is_none_or(|(g, _)| g.name != name) {
        let n = name.clone();
        if db::run(&auth.pool, move |conn| queries::group_by_name(conn, &n))
            .await?
            .is_some()
        {
            errors
                .entry("name")
                .or_default()
                .push("Group with this Name already exists.".into());
        }
    }
    if !errors.is_empty() {
        return ok(&page(
            &ctx,
            &auth,
            &proxy,
            &client,
            id,
            Form2 {
                name,
                perms,
                grants,
            },
            errors,
        )
        .await?);
    }
    let describe = |perms: &[i32], grants: &[(i32, String)]| {
        let code = |id: i32| {
            all.iter()
                .find(|p| p.id == id)
                .map(Permission::full_codename)
                .unwrap_or_default()
        };
        let mut p: Vec<String> = perms.iter().map(|id| code(*id)).collect();
        p.sort();
        let mut g: Vec<String> = grants
            .iter()
            .map(|(id, f)| format!("{}={f}", code(*id)))
            .collect();
        g.sort();
        (p.join(", "), g.join(", "))
    };
    let (new_perms, new_grants) = describe(&perms, &grants);
    let (saved_name, saved_perms, saved_grants) = (name.clone(), perms.clone(), grants.clone());
    let actor = ctx.as_actor();
    let saved = db::run(&auth.pool, move |conn| {
        users::save_group(conn, actor, id, &saved_name, &saved_perms, &saved_grants)
    })
    .await;
    auth.cache.clear();
    let saved_id = saved?;
    let actor = ctx.actor();
    let (action, changes) = match &before {
        None => ("add", json!([])),
        Some((group, (old_perms, old_grants))) => {
            let (old_p, old_g) = describe(old_perms, old_grants);
            let fields = [
                ("name", group.name.clone(), name.clone()),
                ("permissions", old_p, new_perms),
                ("feed_grants", old_g, new_grants),
            ];
            let changed: Vec<Value> = fields
                .into_iter()
                .filter(|(_, old, new)| old != new)
                .map(|(field, old, new)| json!({"field": field, "old": old, "new": new}))
                .collect();
            ("change", Value::Array(changed))
        }
    };
    log_action(
        &auth,
        actor,
        ("auth.group", saved_id.to_string(), name.clone()),
        action,
        changes,
    )
    .await?;
    let verb = if before.is_some() { "changed" } else { "added" };
    flash(
        &req,
        "success",
        format!("The group “{name}” was {verb} successfully."),
    );
    match form.get("_action") {
        "_continue" => redirect(&format!("/admin/auth/group/{saved_id}/change/")),
        "_addanother" => redirect("/admin/auth/group/add/"),
        _ => redirect("/admin/auth/group/"),
    }
}

pub async fn add(
    req: HttpRequest,
    body: web::Bytes,
    auth: web::Data<AuthState>,
    proxy: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, AdminError> {
    save(req, None, body, auth, proxy, client).await
}

pub async fn change(
    req: HttpRequest,
    path: web::Path<i32>,
    body: web::Bytes,
    auth: web::Data<AuthState>,
    proxy: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, AdminError> {
    save(req, Some(*path), body, auth, proxy, client).await
}

pub async fn delete_form(
    req: HttpRequest,
    path: web::Path<i32>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require("auth.delete_group")?;
    let id = *path;
    let (group, members) = db::run(&auth.pool, move |conn| {
        Ok((
            queries::group_by_id(conn, id)?,
            queries::group_members(conn, id)?,
        ))
    })
    .await?;
    let group = group.ok_or(AdminError::NotFound)?;
    ok(&DeletePage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        title: "Are you sure?".into(),
        kind: "Group",
        objects: vec![(id, group.name, String::new())],
        affected: members.into_iter().map(|u| u.username).collect(),
        action: format!("/admin/auth/group/{id}/delete/"),
        cancel: format!("/admin/auth/group/{id}/change/"),
    })
}

pub async fn delete(
    req: HttpRequest,
    path: web::Path<i32>,
    body: web::Bytes,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let (ctx, _) = staff_form(&req, &auth, &body, "auth.delete_group").await?;
    let id = *path;
    let group = db::run(&auth.pool, move |conn| queries::group_by_id(conn, id))
        .await?
        .ok_or(AdminError::NotFound)?;
    db::run(&auth.pool, move |conn| queries::delete_group(conn, id)).await?;
    auth.cache.clear();
    log_action(
        &auth,
        ctx.actor(),
        ("auth.group", id.to_string(), group.name.clone()),
        "delete",
        json!([]),
    )
    .await?;
    flash(
        &req,
        "success",
        format!("The group “{}” was deleted successfully.", group.name),
    );
    redirect("/admin/auth/group/")
}

pub async fn history(
    req: HttpRequest,
    path: web::Path<i32>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require_view("auth", "group")?;
    let id = *path;
    let group = db::run(&auth.pool, move |conn| queries::group_by_id(conn, id))
        .await?
        .ok_or(AdminError::NotFound)?;
    super::history_page(
        &ctx,
        &auth,
        "auth.group",
        id,
        group.name,
        format!("/admin/auth/group/{id}/change/"),
    )
    .await
}
