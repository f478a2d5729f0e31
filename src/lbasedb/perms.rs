//! The permissions of the `lbasedb` app, Django-style (`lbasedb.view_data`):
//! an action on an object of the upstream. The proxy's classifier decides
//! which one a request needs; grants and the admin's feed pages name them.

/// Their app label, as Django's `auth_permission.app_label`.
pub const APP_LABEL: &str = "lbasedb";

pub const VIEW_FEED: &str = "lbasedb.view_feed";
pub const ADD_FEED: &str = "lbasedb.add_feed";
pub const CHANGE_FEED: &str = "lbasedb.change_feed";
pub const DELETE_FEED: &str = "lbasedb.delete_feed";
pub const VIEW_COL: &str = "lbasedb.view_col";
pub const ADD_COL: &str = "lbasedb.add_col";
pub const CHANGE_COL: &str = "lbasedb.change_col";
pub const DELETE_COL: &str = "lbasedb.delete_col";
pub const VIEW_DATA: &str = "lbasedb.view_data";
pub const ADD_DATA: &str = "lbasedb.add_data";
pub const CHANGE_DATA: &str = "lbasedb.change_data";
pub const DELETE_DATA: &str = "lbasedb.delete_data";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    View,
    Add,
    Change,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Object {
    Feed,
    Col,
    Data,
}

/// A Django-style model permission of the `lbasedb` app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perm {
    pub action: Action,
    pub object: Object,
}

impl Perm {
    pub const fn new(action: Action, object: Object) -> Self {
        Self { action, object }
    }

    /// `lbasedb.view_data` and the like.
    pub fn codename(self) -> &'static str {
        use Action::*;
        use Object::*;
        match (self.action, self.object) {
            (View, Feed) => VIEW_FEED,
            (Add, Feed) => ADD_FEED,
            (Change, Feed) => CHANGE_FEED,
            (Delete, Feed) => DELETE_FEED,
            (View, Col) => VIEW_COL,
            (Add, Col) => ADD_COL,
            (Change, Col) => CHANGE_COL,
            (Delete, Col) => DELETE_COL,
            (View, Data) => VIEW_DATA,
            (Add, Data) => ADD_DATA,
            (Change, Data) => CHANGE_DATA,
            (Delete, Data) => DELETE_DATA,
        }
    }
}
