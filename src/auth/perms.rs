//! The permissions of the admin site as types, and the proof that someone
//! holds one. A write of the service layer (`auth::users`) demands a
//! `Granted<P>` for its permission, and the only ways to get one are to
//! pass the check (`admin::Staff::require`) or to be the command line
//! (`Granted::system`): a handler that forgets the check does not compile.

use std::marker::PhantomData;

use super::guard::Actor;

/// A Django-style permission of the admin site.
pub trait AdminPermission {
    /// `app_label.codename`.
    const CODENAME: &'static str;
}

macro_rules! permissions {
    ($($name:ident => $codename:literal,)*) => {
        $(
            #[doc = concat!("`", $codename, "`")]
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl AdminPermission for $name {
                const CODENAME: &'static str = $codename;
            }
        )*

        /// Every permission of the admin site, as `auth_permission` holds it.
        pub const ADMIN_CODENAMES: &[&str] = &[$($codename),*];
    };
}

permissions! {
    ViewUser => "auth.view_user",
    AddUser => "auth.add_user",
    ChangeUser => "auth.change_user",
    DeleteUser => "auth.delete_user",
    ViewGroup => "auth.view_group",
    AddGroup => "auth.add_group",
    ChangeGroup => "auth.change_group",
    DeleteGroup => "auth.delete_group",
    ViewToken => "authtoken.view_token",
    AddToken => "authtoken.add_token",
    ChangeToken => "authtoken.change_token",
    DeleteToken => "authtoken.delete_token",
    ViewAccess => "lbasedb.view_access",
}

/// Every permission there is: the admin's and the proxy's
/// (`lbasedb::perms`). `migrate` makes exactly these `auth_permission` rows
/// (a test holds the two together), so that a codename checked in code
/// is one an administrator can give.
pub fn all_codenames() -> Vec<&'static str> {
    let mut all = ADMIN_CODENAMES.to_vec();
    all.extend(crate::lbasedb::perms::Perm::ALL.iter().map(|perm| perm.codename()));
    all
}

/// The models of the admin site, for Django's rule on read pages:
/// `view_<model>` or `change_<model>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    User,
    Group,
    Token,
}

impl Model {
    /// Its name in the admin's history (`admin_log.object_type`), as Django
    /// names it: what the service writes and the History page reads.
    pub fn object_type(self) -> &'static str {
        match self {
            Self::User => "auth.user",
            Self::Group => "auth.group",
            Self::Token => "authtoken.token",
        }
    }

    /// The codename that lets one add one.
    pub fn adder(self) -> &'static str {
        match self {
            Self::User => AddUser::CODENAME,
            Self::Group => AddGroup::CODENAME,
            Self::Token => AddToken::CODENAME,
        }
    }

    /// The codenames that let one read the model's pages.
    pub fn readers(self) -> [&'static str; 2] {
        match self {
            Self::User => [ViewUser::CODENAME, ChangeUser::CODENAME],
            Self::Group => [ViewGroup::CODENAME, ChangeGroup::CODENAME],
            Self::Token => [ViewToken::CODENAME, ChangeToken::CODENAME],
        }
    }
}

/// Proof that `actor` held permission `P` when the request was checked.
/// The privilege rules of `guard` still run inside each write, on what the
/// actor holds at that moment.
#[derive(Debug, Clone)]
pub struct Granted<P> {
    actor: Actor,
    /// `USER_RATE_LIMIT`, the rate of anyone none of whose groups has one:
    /// what a group without a rate gives, and the actor's own rate if it
    /// is in no rated group.
    default_rate: Option<super::ratelimit::Rate>,
    _permission: PhantomData<fn() -> P>,
}

impl<P: AdminPermission> Granted<P> {
    /// Only the admin's permission check makes one for a user.
    pub(crate) fn checked(actor: Actor, default_rate: Option<super::ratelimit::Rate>) -> Self {
        Self { actor, default_rate, _permission: PhantomData }
    }

    /// The command line (and `loaddata`, and tests arranging data): whoever
    /// runs it has the database file already.
    pub fn system() -> Self {
        Self::checked(Actor::System, None)
    }

    pub fn actor(&self) -> Actor {
        self.actor
    }

    pub fn default_rate(&self) -> Option<super::ratelimit::Rate> {
        self.default_rate
    }
}
