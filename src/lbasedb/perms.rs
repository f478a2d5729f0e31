//! The permissions of the `lbasedb` app, Django-style (`lbasedb.view_data`):
//! an action on an object of the upstream. The proxy's classifier decides
//! which one a request needs; grants and the admin's feed pages name them.

/// Their app label, as Django's `auth_permission.app_label`.
pub const APP_LABEL: &str = "lbasedb";

/// The three read permissions that the admin and the feed list check by name.
pub const VIEW_FEED: &str = Perm::new(Action::View, Object::Feed).codename();
pub const VIEW_COL: &str = Perm::new(Action::View, Object::Col).codename();
pub const VIEW_DATA: &str = Perm::new(Action::View, Object::Data).codename();
/// What the admin's feed pages offer forms for.
pub const ADD_FEED: &str = Perm::new(Action::Add, Object::Feed).codename();
pub const CHANGE_FEED: &str = Perm::new(Action::Change, Object::Feed).codename();
pub const DELETE_FEED: &str = Perm::new(Action::Delete, Object::Feed).codename();
pub const ADD_COL: &str = Perm::new(Action::Add, Object::Col).codename();

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
    /// Every action on every object.
    pub const ALL: [Self; 12] = {
        use Action::*;
        use Object::*;
        let mut all = [Self::new(View, Feed); 12];
        let (actions, objects) = ([View, Add, Change, Delete], [Feed, Col, Data]);
        let mut i = 0;
        while i < 12 {
            all[i] = Self::new(actions[i / 3], objects[i % 3]);
            i += 1;
        }
        all
    };

    pub const fn new(action: Action, object: Object) -> Self {
        Self { action, object }
    }

    /// `lbasedb.view_data` and the like: Django's `<action>_<model>`.
    pub const fn codename(self) -> &'static str {
        // By object, in the order of `Object`'s variants.
        let names = match self.action {
            Action::View => ["lbasedb.view_feed", "lbasedb.view_col", "lbasedb.view_data"],
            Action::Add => ["lbasedb.add_feed", "lbasedb.add_col", "lbasedb.add_data"],
            Action::Change => ["lbasedb.change_feed", "lbasedb.change_col", "lbasedb.change_data"],
            Action::Delete => ["lbasedb.delete_feed", "lbasedb.delete_col", "lbasedb.delete_data"],
        };
        names[self.object as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_codename_is_the_action_and_the_object() {
        use Action::*;
        use Object::*;
        for action in [View, Add, Change, Delete] {
            for object in [Feed, Col, Data] {
                let expected = format!("lbasedb.{action:?}_{object:?}").to_lowercase();
                assert_eq!(Perm::new(action, object).codename(), expected);
            }
        }
        assert_eq!(
            (VIEW_FEED, VIEW_COL, VIEW_DATA),
            ("lbasedb.view_feed", "lbasedb.view_col", "lbasedb.view_data")
        );
    }
}
