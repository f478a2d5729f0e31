//! `/admin/auth/group/`: list with search, add and change (name, a
//! permission chooser, feed grants), delete with the members it affects.

use actix_web::web;
use askama::Template;
use serde::Deserialize;

use super::fields::{PermFields, grant_columns, grant_input};
use super::{
    AdminError, CsrfForm, DeletePage, Doomed, Errors, GROUPS, HistoryOf, Layout, NoFields, Reply,
    Staff, after_save, choices, grant_rows, history_page, ok, redirect,
};
use crate::auth::AuthState;
use crate::auth::grant::Grant;
use crate::auth::perms::{self, Model};
use crate::auth::users::{self, FieldChange, ServiceError};
use crate::db::models::{Group, Permission};
use crate::db::{self, DbError, queries};
use crate::lbasedb::perms::VIEW_FEED;
use crate::proxy::upstream::Upstream;

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/group_list.html")]
struct ListPage<'a> {
    layout: &'a Layout,
    groups: Vec<queries::GroupRow>,
    search: String,
    can_add: bool,
}

pub async fn list(staff: Staff, query: web::Query<ListQuery>) -> Reply {
    staff.require_view(Model::Group)?;
    let search = query.q.clone().unwrap_or_default().trim().to_owned();
    let term = search.clone();
    let groups = db::run(&staff.auth.pool, move |conn| queries::list_groups(conn, &term)).await?;
    ok(&ListPage {
        layout: &staff.layout,
        groups,
        search,
        can_add: staff.holds::<perms::AddGroup>(),
    })
}

#[derive(Template)]
#[template(path = "admin/group_change.html")]
struct ChangePage<'a> {
    layout: &'a Layout,
    /// None when adding.
    id: Option<i32>,
    name: String,
    rate_limit: String,
    write_quota: String,
    links: PermFields,
    feeds: Vec<String>,
    members: Vec<String>,
    errors: Errors,
    can_save: bool,
    can_delete: bool,
}

/// A group as the form holds it.
struct Values {
    name: String,
    perms: Vec<i32>,
    grants: Vec<Grant>,
    /// Its members' rate limit, as typed ("" for none).
    rate_limit: String,
    /// Its members' write quota, as typed ("" for none).
    write_quota: String,
}

impl Values {
    fn spec(&self) -> users::GroupSpec<'_> {
        users::GroupSpec {
            name: &self.name,
            perms: &self.perms,
            grants: &self.grants,
            rate_limit: Some(self.rate_limit.as_str()).filter(|r| !r.is_empty()),
            write_quota: Some(self.write_quota.as_str()).filter(|q| !q.is_empty()),
        }
    }
}

/// The form page, for a group (`id`) or a new one, with `values` and the
/// errors they have.
async fn page<'a>(
    staff: &'a Staff,
    upstream: &Upstream,
    id: Option<i32>,
    values: Values,
    errors: Errors,
) -> Result<ChangePage<'a>, AdminError> {
    let (all, members) = db::run(&staff.auth.pool, move |conn| {
        let members = match id {
            Some(id) => queries::group_members(conn, id)?,
            None => Vec::new(),
        };
        Ok::<_, DbError>((queries::all_permissions(conn)?, members))
    })
    .await?;
    let can_save = match id {
        Some(_) => staff.holds::<perms::ChangeGroup>(),
        None => staff.holds::<perms::AddGroup>(),
    };
    Ok(ChangePage {
        layout: &staff.layout,
        id,
        name: values.name,
        rate_limit: values.rate_limit,
        write_quota: values.write_quota,
        links: PermFields::new(
            &all,
            &values.perms,
            &values.grants,
            &grant_columns(upstream, &staff.principal, &values.grants).await,
        ),
        // Only the feeds this user could list through the API.
        feeds: upstream
            .feeds()
            .await
            .into_iter()
            .filter(|feed| staff.principal.has_feed_perm(VIEW_FEED, feed))
            .collect(),
        members: members.into_iter().map(|u| u.username).collect(),
        errors,
        can_save,
        can_delete: staff.holds::<perms::DeleteGroup>(),
    })
}

pub async fn add_form(staff: Staff, upstream: Upstream) -> Reply {
    staff.require::<perms::AddGroup>()?;
    let empty = Values {
        name: String::new(),
        perms: Vec::new(),
        grants: Vec::new(),
        rate_limit: String::new(),
        write_quota: String::new(),
    };
    ok(&page(&staff, &upstream, None, empty, Errors::new()).await?)
}

async fn load(auth: &AuthState, id: i32) -> Result<(Group, Values), AdminError> {
    let (group, (perms, grants)) = db::run(&auth.pool, move |conn| {
        Ok::<_, DbError>((queries::group_by_id(conn, id)?, queries::group_links(conn, id)?))
    })
    .await?;
    let group = group.ok_or(AdminError::NotFound)?;
    let values = Values {
        name: group.name.clone(),
        perms,
        grants,
        rate_limit: group.rate_limit.clone().unwrap_or_default(),
        write_quota: group.write_quota.clone().unwrap_or_default(),
    };
    Ok((group, values))
}

pub async fn change_form(staff: Staff, path: web::Path<i32>, upstream: Upstream) -> Reply {
    staff.require_view(Model::Group)?;
    let (group, values) = load(&staff.auth, *path).await?;
    ok(&page(&staff, &upstream, Some(group.id), values, Errors::new()).await?)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct GroupForm {
    name: String,
    permissions: Vec<String>,
    grant_perm: Vec<String>,
    grant_feed: Vec<String>,
    grant_column: Vec<String>,
    grant_from: Vec<String>,
    grant_to: Vec<String>,
    rate_limit: String,
    write_quota: String,
    #[serde(rename = "_action")]
    action: String,
}

/// The form read into a group's values, with its errors.
fn read(form: &GroupForm, all: &[Permission], errors: &mut Errors) -> Values {
    let name = form.name.trim().to_owned();
    if name.is_empty() || name.len() > 150 {
        errors
            .entry("name")
            .or_default()
            .push("This field is required (150 characters or fewer).".into());
    }
    let rate_limit = form.rate_limit.trim().to_owned();
    if let Err(why) = rate_limit
        .parse::<crate::auth::ratelimit::Rate>()
        .map(drop)
        .or_else(|why| if rate_limit.is_empty() { Ok(()) } else { Err(why) })
    {
        errors.entry("rate_limit").or_default().push(format!("Enter {why}."));
    }
    let write_quota = form.write_quota.trim().to_owned();
    if let Err(ServiceError::Invalid(why)) =
        users::parse_quota(Some(write_quota.as_str()).filter(|q| !q.is_empty()))
    {
        errors.entry("write_quota").or_default().push(why.message);
    }
    let perm_ids: Vec<i32> = all.iter().map(|p| p.id).collect();
    Values {
        name,
        perms: choices(&form.permissions, "permissions", &perm_ids, errors),
        grants: grant_rows(grant_input!(form), all, errors),
        rate_limit,
        write_quota,
    }
}

/// The history's view of a group's permissions and grants.
fn describe(all: &[Permission], values: &Values) -> (String, String) {
    let code = |id: i32| {
        all.iter().find(|p| p.id == id).map(Permission::full_codename).unwrap_or_default()
    };
    let mut perms: Vec<String> = values.perms.iter().map(|id| code(*id)).collect();
    perms.sort();
    let mut grants: Vec<String> = values.grants.iter().map(|grant| grant.to_string()).collect();
    grants.sort();
    (perms.join(", "), grants.join(", "))
}

fn changes(all: &[Permission], before: &Values, after: &Values) -> Vec<FieldChange> {
    let (old_perms, old_grants) = describe(all, before);
    let (new_perms, new_grants) = describe(all, after);
    [
        ("name", before.name.clone(), after.name.clone()),
        ("permissions", old_perms, new_perms),
        ("feed_grants", old_grants, new_grants),
        ("rate_limit", before.rate_limit.clone(), after.rate_limit.clone()),
        ("write_quota", before.write_quota.clone(), after.write_quota.clone()),
    ]
    .into_iter()
    .filter(|(_, old, new)| old != new)
    .map(|(field, old, new)| FieldChange::new(field, old, new))
    .collect()
}

/// What a save came to: the group's id, or the form again with errors.
enum Saved {
    Id(i32),
    Invalid(Values, Errors),
}

/// Saves through the service layer; a taken name is a form error.
async fn save(
    staff: &Staff,
    id: Option<i32>,
    values: Values,
    mut errors: Errors,
) -> Result<Saved, AdminError> {
    if !errors.is_empty() {
        return Ok(Saved::Invalid(values, errors));
    }
    let auth = &staff.auth;
    let all = db::run(&auth.pool, queries::all_permissions).await?;
    let saving = Values {
        name: values.name.clone(),
        perms: values.perms.clone(),
        grants: values.grants.clone(),
        rate_limit: values.rate_limit.clone(),
        write_quota: values.write_quota.clone(),
    };
    let saved = match id {
        None => {
            let granted = staff.require::<perms::AddGroup>()?;
            auth.write(move |conn| users::add_group(conn, &granted, &saving.spec())).await
        }
        Some(id) => {
            let granted = staff.require::<perms::ChangeGroup>()?;
            let (_, before) = load(auth, id).await?;
            let changes = changes(&all, &before, &values);
            auth.write(move |conn| {
                users::change_group(conn, &granted, id, &saving.spec(), &changes)
            })
            .await
            .map(|()| id)
        }
    };
    match saved {
        Ok(id) => Ok(Saved::Id(id)),
        Err(ServiceError::Invalid(invalid)) => {
            errors.entry(invalid.field).or_default().push(invalid.message);
            Ok(Saved::Invalid(values, errors))
        }
        Err(other) => Err(other.into()),
    }
}

/// Add (no id) or change (an id): the same form, the same checks.
async fn submit(staff: Staff, id: Option<i32>, form: GroupForm, upstream: &Upstream) -> Reply {
    match id {
        Some(_) => staff.require::<perms::ChangeGroup>().map(drop)?,
        None => staff.require::<perms::AddGroup>().map(drop)?,
    }
    let all = db::run(&staff.auth.pool, queries::all_permissions).await?;
    let mut errors = Errors::new();
    let values = read(&form, &all, &mut errors);
    let name = values.name.clone();
    let saved_id = match save(&staff, id, values, errors).await? {
        Saved::Id(saved) => saved,
        Saved::Invalid(values, errors) => {
            return ok(&page(&staff, upstream, id, values, errors).await?);
        }
    };
    let verb = if id.is_some() { "changed" } else { "added" };
    staff.flash("success", format!("The group “{name}” was {verb} successfully."));
    after_save(&form.action, GROUPS.list(), &GROUPS.add(), &GROUPS.change(saved_id))
}

pub async fn add(staff: Staff, form: CsrfForm<GroupForm>, upstream: Upstream) -> Reply {
    submit(staff, None, form.0, &upstream).await
}

pub async fn change(
    staff: Staff,
    id: web::Path<i32>,
    form: CsrfForm<GroupForm>,
    upstream: Upstream,
) -> Reply {
    submit(staff, Some(*id), form.0, &upstream).await
}

pub async fn delete_form(staff: Staff, path: web::Path<i32>) -> Reply {
    staff.require::<perms::DeleteGroup>()?;
    let id = *path;
    let (group, members) = db::run(&staff.auth.pool, move |conn| {
        Ok::<_, DbError>((queries::group_by_id(conn, id)?, queries::group_members(conn, id)?))
    })
    .await?;
    let group = group.ok_or(AdminError::NotFound)?;
    ok(&DeletePage {
        layout: &staff.layout,
        title: "Are you sure?",
        kind: "Group",
        objects: vec![Doomed { id, name: group.name, note: String::new() }],
        affected: members.into_iter().map(|u| u.username).collect(),
        action: GROUPS.delete(id),
        cancel: GROUPS.change(id),
    })
}

pub async fn delete(staff: Staff, path: web::Path<i32>, _form: CsrfForm<NoFields>) -> Reply {
    let granted = staff.require::<perms::DeleteGroup>()?;
    let id = *path;
    let group = staff.auth.write(move |conn| users::delete_group(conn, &granted, id)).await?;
    let message = format!("The group “{}” was deleted successfully.", group.name);
    staff.flash("success", message);
    redirect(GROUPS.list())
}

pub async fn history(staff: Staff, path: web::Path<i32>) -> Reply {
    staff.require_view(Model::Group)?;
    let (group, _) = load(&staff.auth, *path).await?;
    history_page(&staff, HistoryOf::new(Model::Group, group.id, group.name)).await
}
