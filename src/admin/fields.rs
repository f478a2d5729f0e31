//! The permission chooser and the feed-grant rows, as the user and the
//! group form both show them (`includes/feed_grants.html`).

use crate::auth::grant::Grant;
use crate::db::models::Permission;
use crate::lbasedb::perms::APP_LABEL;

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

/// One feed-grant row: a permission id (0 for none) and a feed name.
pub struct GrantRow {
    pub perm: i32,
    pub feed: String,
}

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
    pub fn new(all: &[Permission], chosen: &[i32], grants: &[Grant]) -> Self {
        let id_of =
            |codename: &str| all.iter().find(|p| p.full_codename() == codename).map_or(0, |p| p.id);
        let mut rows: Vec<GrantRow> = grants
            .iter()
            .map(|grant| GrantRow { perm: id_of(&grant.codename), feed: grant.feed.clone() })
            .collect();
        rows.extend((0..SPARE_ROWS).map(|_| GrantRow { perm: 0, feed: String::new() }));
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
