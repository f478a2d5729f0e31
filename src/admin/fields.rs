//! The permission chooser and the feed-grant rows, as the user and the
//! group form both show them (`includes/feed_grants.html`).

use std::collections::HashMap;

use crate::auth::grant::Grant;
use crate::auth::principal::Principal;
use crate::db::models::Permission;
use crate::lbasedb::perms::APP_LABEL;
use crate::lbasedb::perms::VIEW_COL;
use crate::proxy::upstream::Upstream;

/// One option of a multi-select.
pub struct Choice {
    pub id: i32,
    pub label: String,
    pub selected: bool,
}

impl Choice {
    pub fn new(id: i32, label: String, chosen: &[i32]) -> Self {
        Choice { id, label, selected: chosen.contains(&id) }
    }
}

/// One feed-grant row: a permission id (0 for none), a feed name, the
/// columns to choose from (those chosen marked) and the window's bounds as
/// typed (empty: open).
pub struct GrantRow {
    pub perm: i32,
    pub feed: String,
    pub columns: Vec<(String, bool)>,
    pub from: String,
    pub to: String,
}

impl GrantRow {
    fn new(perm: i32, grant: &Grant, known: Option<&Vec<String>>) -> Self {
        let chosen = grant.columns.clone().unwrap_or_default();
        let mut columns: Vec<(String, bool)> =
            chosen.iter().map(|name| (name.clone(), true)).collect();
        for name in known.into_iter().flatten().filter(|name| !chosen.contains(*name)) {
            columns.push((name.clone(), false));
        }
        columns.sort();
        let (from, to) = match grant.rows {
            Some(window) => {
                let text = window.to_string();
                let (from, to) = text.split_once("..").unwrap_or_default();
                (from.to_owned(), to.to_owned())
            }
            None => Default::default(),
        };
        GrantRow { perm, feed: grant.feed.clone(), columns, from, to }
    }
}

/// The grant rows of a form, as sent (`grant_perm`, `grant_feed`,
/// `grant_column`, `grant_from`, `grant_to`): by row, a permission's id, a
/// feed and the window's bounds; the columns chosen as `ROW:NAME`. Fields
/// of each form itself, since `serde(flatten)` loses a list of one.
#[derive(Debug, Clone, Copy)]
pub struct GrantInput<'a> {
    pub perm: &'a [String],
    pub feed: &'a [String],
    pub column: &'a [String],
    pub from: &'a [String],
    pub to: &'a [String],
}

/// Most feeds whose columns a form lists for its grants (each is a request
/// to the upstream); the script (`grants.js`) fetches the rest as chosen.
const COLUMN_FEEDS: usize = 50;

/// The columns of the feeds `grants` name, as many as `COLUMN_FEEDS`, those
/// `who` sees (`Principal::shows_column`): what the chooser offers.
pub async fn grant_columns(
    upstream: &Upstream,
    who: &Principal,
    grants: &[Grant],
) -> HashMap<String, Vec<String>> {
    let mut columns = HashMap::new();
    for grant in grants {
        if columns.len() >= COLUMN_FEEDS || columns.contains_key(&grant.feed) {
            continue;
        }
        columns.insert(grant.feed.clone(), visible_columns(upstream, who, &grant.feed).await);
    }
    columns
}

/// The names of `feed`'s columns that `who` may see: none without
/// `view_col` there.
pub async fn visible_columns(upstream: &Upstream, who: &Principal, feed: &str) -> Vec<String> {
    if !who.has_feed_perm(VIEW_COL, feed) {
        return Vec::new();
    }
    let cols = upstream.cols(feed).await.unwrap_or_default();
    cols.into_iter().map(|col| col.name).filter(|name| who.shows_column(feed, name)).collect()
}

/// A form's grant rows (`GrantInput`), from its fields of the same names.
macro_rules! grant_input {
    ($form:expr) => {
        $crate::admin::fields::GrantInput {
            perm: &$form.grant_perm,
            feed: &$form.grant_feed,
            column: &$form.grant_column,
            from: &$form.grant_from,
            to: &$form.grant_to,
        }
    };
}
pub(crate) use grant_input;

/// How many empty grant rows a form offers below the held ones.
const SPARE_ROWS: usize = 3;

/// Every permission, those `chosen` selected, and the feed grants with
/// spare rows to add more.
pub struct PermFields {
    pub perms: Vec<Choice>,
    /// The permissions a grant can name: Lbasedb's, by full codename.
    pub lbasedb_perms: Vec<(i32, String)>,
    pub grants: Vec<GrantRow>,
}

impl PermFields {
    /// `columns`: the columns of some feeds (those the actor may see), to
    /// choose from.
    pub fn new(
        all: &[Permission],
        chosen: &[i32],
        grants: &[Grant],
        columns: &HashMap<String, Vec<String>>,
    ) -> Self {
        let id_of =
            |codename: &str| all.iter().find(|p| p.full_codename() == codename).map_or(0, |p| p.id);
        let mut rows: Vec<GrantRow> = grants
            .iter()
            .map(|grant| GrantRow::new(id_of(&grant.codename), grant, columns.get(&grant.feed)))
            .collect();
        let empty = Grant::new("", "");
        rows.extend((0..SPARE_ROWS).map(|_| GrantRow::new(0, &empty, None)));
        PermFields {
            perms: all
                .iter()
                .map(|p| Choice::new(p.id, format!("{} | {}", p.app_label, p.name), chosen))
                .collect(),
            lbasedb_perms: all
                .iter()
                .filter(|p| p.app_label == APP_LABEL)
                .map(|p| (p.id, p.full_codename()))
                .collect(),
            grants: rows,
        }
    }
}
