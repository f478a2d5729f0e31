//! The admin's pages in one table: what the index lists, under which
//! section, at which URL, and which model's permissions and history they
//! stand for. Routes, the index, history's back links, redirects and
//! templates take their URLs from here, so that adding a page touches this
//! table, a handler module and a template.

use std::fmt::Display;

use crate::auth::perms::Model;

/// Where the site is mounted; every URL below begins with it.
pub const SCOPE: &str = "/admin";

/// The site's own pages.
pub const INDEX: &str = "/admin/";
pub const LOGIN: &str = "/admin/login/";
pub const LOGOUT: &str = "/admin/logout/";
/// Single sign-on: where a login starts, and where the provider sends the
/// browser back (the redirect URI registered there).
pub const OIDC_LOGIN: &str = "/admin/oidc/login/";
pub const OIDC_CALLBACK: &str = "/admin/oidc/callback/";
/// The second step of a login with two factors (or the enrolment that
/// `REQUIRE_2FA` sends a user to).
pub const LOGIN_2FA: &str = "/admin/login/2fa/";
/// Everyone's own pages (any signed-in user).
pub const ACCOUNT: &str = "/account/";
/// Everyone's own two-factor settings.
pub const ACCOUNT_2FA: &str = "/account/2fa/";
pub const PASSWORD_CHANGE: &str = "/admin/password_change/";

/// One kind of page in the index: a list, its objects' pages below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// As the index and the lists' titles name it.
    pub title: &'static str,
    /// The index's section it is listed under.
    pub section: &'static str,
    /// Its list's URL; an object's pages are `{base}{id}/{action}/`.
    pub base: &'static str,
    /// The model whose permissions it shows and whose history it keeps,
    /// if it is one of the admin's models.
    pub model: Option<Model>,
}

pub const USERS: Entry = Entry {
    title: "Users",
    section: "Authentication and authorization",
    base: "/admin/auth/user/",
    model: Some(Model::User),
};

pub const GROUPS: Entry = Entry {
    title: "Groups",
    section: "Authentication and authorization",
    base: "/admin/auth/group/",
    model: Some(Model::Group),
};

pub const TOKENS: Entry = Entry {
    title: "Tokens",
    section: "API",
    base: "/admin/authtoken/token/",
    model: Some(Model::Token),
};

/// Feeds are made through the API; the pages show them.
pub const FEEDS: Entry =
    Entry { title: "Feeds", section: "Lbasedb", base: "/admin/lbasedb/feed/", model: None };

pub const ACCESS: Entry =
    Entry { title: "Access log", section: "Lbasedb", base: "/admin/lbasedb/access/", model: None };

/// The index's order.
pub const ALL: [Entry; 5] = [USERS, GROUPS, TOKENS, FEEDS, ACCESS];

impl Entry {
    /// The entry of an admin model.
    pub fn of(model: Model) -> Entry {
        match model {
            Model::User => USERS,
            Model::Group => GROUPS,
            Model::Token => TOKENS,
        }
    }

    pub fn list(&self) -> &'static str {
        self.base
    }

    pub fn add(&self) -> String {
        format!("{}add/", self.base)
    }

    /// An object's page: `change`, `delete`, `history`, `password`, … (a
    /// feed's, by its name, is `detail`).
    pub fn object(&self, id: impl Display, action: &str) -> String {
        match action {
            "detail" => format!("{}{id}/", self.base),
            _ => format!("{}{id}/{action}/", self.base),
        }
    }

    pub fn change(&self, id: impl Display) -> String {
        self.object(id, "change")
    }

    pub fn history(&self, id: impl Display) -> String {
        self.object(id, "history")
    }

    pub fn delete(&self, id: impl Display) -> String {
        self.object(id, "delete")
    }

    /// Where an object's pages lead back to: its change page, or the list
    /// for what has none (a token).
    pub fn back(&self, id: impl Display) -> String {
        match self.model {
            Some(Model::Token) | None => self.base.to_owned(),
            Some(_) => self.change(id),
        }
    }

    /// A route's pattern under the `/admin` scope: `tail` after the base
    /// (`"{id}/change/"`, or `""` for the list).
    pub fn route(&self, tail: &str) -> String {
        let base = self.base.strip_prefix(SCOPE).unwrap_or(self.base);
        format!("{base}{tail}")
    }
}

/// `path` under the `/admin` scope, for the site's own pages.
pub fn route(path: &'static str) -> &'static str {
    path.strip_prefix(SCOPE).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_the_entrys_base_and_routes_match_them() {
        assert_eq!(USERS.change(7), "/admin/auth/user/7/change/");
        assert_eq!(GROUPS.add(), "/admin/auth/group/add/");
        assert_eq!(FEEDS.object("xy", "detail"), "/admin/lbasedb/feed/xy/");
        assert_eq!(TOKENS.back(3), "/admin/authtoken/token/");
        assert_eq!(USERS.back(3), "/admin/auth/user/3/change/");
        assert_eq!(USERS.route("{id}/change/"), "/auth/user/{id}/change/");
        assert_eq!(route(LOGIN), "/login/");
        for entry in ALL {
            assert!(entry.base.starts_with(INDEX) && entry.base.ends_with('/'), "{entry:?}");
            if let Some(model) = entry.model {
                assert_eq!(Entry::of(model), entry);
            }
        }
    }
}
