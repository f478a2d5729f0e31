//! Who may give what. Django lets `auth.change_user` tick `is_superuser`,
//! and `auth.change_group` give its own group every permission; here a
//! staff permission is never superuser in disguise:
//!
//! - only a superuser may set or clear `is_superuser`, or change, set the
//!   password of, delete, or mint a token for a superuser;
//! - a non-superuser may give (to a user, a group, or itself through a
//!   group) only permissions and feed grants it holds itself, and may add
//!   no one to a group that holds more than it does;
//! - setting another user's password or minting a token for them is acting
//!   as them: allowed only over a user who holds nothing the actor lacks.
//!
//! Pure functions over what the actor holds and what a write changes. The
//! service layer (`auth::users`) runs them inside each write's transaction,
//! with the actor's holdings read fresh there, so that no handler can skip
//! them and no stale cache can widen them.

use std::collections::HashSet;

use super::grant::Grant;
use super::ratelimit::Rate;

/// Who is writing. `System` is the command line (and `loaddata`, and tests
/// arranging data): whoever runs it already has the database file, so the
/// rules would guard nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    System,
    User(i32),
}

/// What a user (or a group) holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Powers {
    pub superuser: bool,
    /// Full codenames (`auth.change_user`).
    pub perms: HashSet<String>,
    pub grants: HashSet<Grant>,
    /// An actor's own request rate through the proxy (`None`: unlimited):
    /// a rate is a privilege too.
    pub rate: Option<Rate>,
}

/// A write the rules refuse, with the reason shown to the one who tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Powers {
    pub fn holds(&self, codename: &str) -> bool {
        self.superuser || self.perms.contains(codename)
    }

    /// Held everywhere, or covered by one grant held: a grant on some
    /// columns or rows is given only by one who holds at least those, in a
    /// feed of any size.
    pub fn holds_grant(&self, grant: &Grant) -> bool {
        self.holds(&grant.codename) || self.grants.iter().any(|held| held.covers(grant))
    }

    /// Whether this holds everything `other` holds.
    pub fn covers(&self, other: &Powers) -> bool {
        self.superuser
            || (!other.superuser
                && other.perms.iter().all(|p| self.holds(p))
                && other.grants.iter().all(|g| self.holds_grant(g)))
    }
}

/// Changing a user's own fields: a superuser, or `is_superuser` itself,
/// only by a superuser.
pub fn may_change_user(
    actor: &Powers,
    target_is_superuser: bool,
    superuser_after: bool,
) -> Result<(), Denied> {
    if actor.superuser {
        return Ok(());
    }
    if target_is_superuser {
        return Err(Denied("Only a superuser may change a superuser.".into()));
    }
    if superuser_after {
        return Err(Denied("Only a superuser may give superuser status.".into()));
    }
    Ok(())
}

/// Giving permissions and grants (to a user or a group): each one held.
pub fn may_give(actor: &Powers, perms: &[String], grants: &[Grant]) -> Result<(), Denied> {
    if let Some(perm) = perms.iter().find(|p| !actor.holds(p)) {
        return Err(Denied(format!("You cannot give the permission {perm}: you do not hold it.")));
    }
    if let Some(grant) = grants.iter().find(|g| !actor.holds_grant(g)) {
        return Err(Denied(format!("You cannot grant {grant}: you do not hold it.")));
    }
    Ok(())
}

/// Adding someone (oneself included) to a group: the group holds nothing
/// the actor lacks.
pub fn may_add_to_group(actor: &Powers, group: &str, holds: &Powers) -> Result<(), Denied> {
    if actor.covers(holds) {
        Ok(())
    } else {
        Err(Denied(format!(
            "You cannot add anyone to the group {group}: it holds permissions you do not."
        )))
    }
}

/// Setting a user's password or minting a token for them: oneself, or a
/// user who holds nothing the actor lacks (and so no superuser, unless the
/// actor is one).
pub fn may_act_as(
    actor_id: i32,
    actor: &Powers,
    target_id: i32,
    target: &Powers,
) -> Result<(), Denied> {
    if actor_id == target_id {
        return Ok(());
    }
    if actor.covers(target) {
        return may_take_rate(actor, target.rate);
    }
    if target.superuser {
        return Err(Denied(
            "Only a superuser may set a superuser's password or make a token for one.".into(),
        ));
    }
    Err(Denied(
        "You cannot set the password of, or make a token for, a user who holds permissions you do not."
            .into(),
    ))
}

/// Acting as (or handing back the rights of) someone whose request rate
/// is `rate`: not above the actor's own, unless a superuser.
pub fn may_take_rate(actor: &Powers, rate: Option<Rate>) -> Result<(), Denied> {
    if actor.superuser || !more_than(rate, actor.rate) {
        return Ok(());
    }
    Err(Denied(
        "You cannot act as, or give access back to, a user whose request rate is above yours."
            .into(),
    ))
}

/// A change of someone's groups taking its request rate from `before` to
/// `after`: not above the actor's own (leaving a rated group lifts a
/// limit as joining a generous one does), unless it does not rise.
pub fn may_change_rate(
    actor: &Powers,
    who: &str,
    before: Option<Rate>,
    after: Option<Rate>,
) -> Result<(), Denied> {
    if actor.superuser || !more_than(after, before) || !more_than(after, actor.rate) {
        return Ok(());
    }
    Err(Denied(format!(
        "This would give {who} a request rate ({}) above your own.",
        after.map_or_else(|| "unlimited".into(), |r| r.to_string())
    )))
}

/// Whether `rate` is more than `limit` allows (`None`: unlimited).
fn more_than(rate: Option<Rate>, limit: Option<Rate>) -> bool {
    match (rate, limit) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(rate), Some(limit)) => rate.per_second() > limit.per_second(),
    }
}

/// Setting a group's rate: its members then get `given` (the group's own
/// rate, or the default one when it has none; `None`: unlimited), which
/// must not be more than the actor's own.
pub fn may_give_rate(actor: &Powers, group: &str, given: Option<Rate>) -> Result<(), Denied> {
    if actor.superuser || !more_than(given, actor.rate) {
        return Ok(());
    }
    Err(Denied(format!(
        "You cannot give the group {group} a request rate above your own ({}).",
        actor.rate.map_or_else(|| "unlimited".into(), |r| r.to_string())
    )))
}

/// Adding someone (oneself included) to a group with its own rate: not
/// one above the actor's.
pub fn may_add_to_rated_group(
    actor: &Powers,
    group: &str,
    rate: Option<Rate>,
) -> Result<(), Denied> {
    match rate {
        Some(rate) => may_give_rate(actor, group, Some(rate)).map_err(|_| {
            Denied(format!(
                "You cannot add anyone to the group {group}: its request rate ({rate}) is above \
                 your own."
            ))
        }),
        None => Ok(()),
    }
}

/// A write quota is a privilege as a rate is, but one a staff user does
/// not hold in a comparable form: only a superuser sets, changes or clears
/// a group's quota, deletes a group that has one, or changes who is in one.
pub fn may_touch_quota(actor: &Powers, group: &str) -> Result<(), Denied> {
    if actor.superuser {
        return Ok(());
    }
    Err(Denied(format!(
        "Only a superuser may set the write quota of the group {group}, delete it, or change \
         who is in it while it has one."
    )))
}

/// Acting on a user who holds more than the actor (reactivating it,
/// changing its groups), whatever its active flag: not allowed.
pub fn may_manage(actor: &Powers, target_name: &str, target: &Powers) -> Result<(), Denied> {
    if actor.covers(target) {
        return Ok(());
    }
    Err(Denied(format!(
        "You cannot reactivate {target_name} or change its groups: it holds permissions you do \
         not (or is a superuser), active or not."
    )))
}

/// Deleting a user: a superuser only by a superuser.
pub fn may_delete_user(actor: &Powers, target_is_superuser: bool) -> Result<(), Denied> {
    if target_is_superuser && !actor.superuser {
        return Err(Denied("Only a superuser may delete a superuser.".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn powers(superuser: bool, perms: &[&str], grants: &[(&str, &str)]) -> Powers {
        Powers {
            superuser,
            perms: perms.iter().map(|p| p.to_string()).collect(),
            grants: grants.iter().map(|(p, f)| Grant::new(*p, *f)).collect(),
            rate: None,
        }
    }

    #[test]
    fn giving_needs_holding_as_a_table() {
        let superuser = powers(true, &[], &[]);
        let staff = powers(
            false,
            &["auth.change_user", "lbasedb.view_data"],
            &[("lbasedb.add_data", "xy")],
        );
        let cases = [
            (&superuser, vec!["auth.delete_user"], vec![], true),
            (&staff, vec!["auth.change_user"], vec![], true),
            (&staff, vec!["auth.delete_user"], vec![], false),
            (&staff, vec![], vec![("lbasedb.view_data", "any")], true),
            (&staff, vec![], vec![("lbasedb.add_data", "xy")], true),
            (&staff, vec![], vec![("lbasedb.add_data", "other")], false),
            (&staff, vec!["lbasedb.add_data"], vec![], false),
        ];
        for (actor, perms, grants, ok) in cases {
            let perms: Vec<String> = perms.into_iter().map(String::from).collect();
            let grants: Vec<Grant> = grants.into_iter().map(|(p, f)| Grant::new(p, f)).collect();
            assert_eq!(may_give(actor, &perms, &grants).is_ok(), ok, "{perms:?} {grants:?}");
        }
    }

    #[test]
    fn superuser_status_and_superusers_are_a_superusers_business() {
        let superuser = powers(true, &[], &[]);
        let staff = powers(false, &["auth.change_user"], &[]);
        assert!(may_change_user(&superuser, true, false).is_ok());
        assert!(may_change_user(&superuser, false, true).is_ok());
        assert!(may_change_user(&staff, false, false).is_ok());
        assert!(may_change_user(&staff, false, true).is_err());
        assert!(may_change_user(&staff, true, true).is_err());
        assert!(may_delete_user(&staff, true).is_err());
        assert!(may_delete_user(&staff, false).is_ok());
        assert!(may_delete_user(&superuser, true).is_ok());
    }

    #[test]
    fn acting_as_someone_needs_covering_them() {
        let superuser = powers(true, &[], &[]);
        let staff = powers(false, &["lbasedb.view_data"], &[("lbasedb.add_data", "xy")]);
        let less = powers(false, &[], &[("lbasedb.view_data", "xy"), ("lbasedb.add_data", "xy")]);
        let more = powers(false, &["auth.change_user"], &[]);
        assert!(may_act_as(1, &staff, 1, &staff).is_ok(), "oneself");
        assert!(may_act_as(1, &staff, 2, &less).is_ok());
        assert!(may_act_as(1, &staff, 2, &more).is_err());
        assert!(may_act_as(1, &staff, 2, &superuser).is_err());
        assert!(may_act_as(1, &superuser, 2, &more).is_ok());
        assert!(may_add_to_group(&staff, "g", &less).is_ok());
        assert!(may_add_to_group(&staff, "g", &more).is_err());
        assert!(may_manage(&staff, "t", &less).is_ok());
        assert!(may_manage(&staff, "t", &superuser).is_err());
    }

    #[test]
    fn no_one_gives_a_rate_above_their_own() {
        let rate = |r: &str| Some(r.parse::<Rate>().unwrap());
        let limited = Powers { rate: rate("10/min"), ..powers(false, &[], &[]) };
        let unlimited = powers(false, &[], &[]);
        let superuser = Powers { rate: rate("1/min"), ..powers(true, &[], &[]) };
        let cases = [
            (&limited, rate("10/min"), true),
            (&limited, rate("1/s"), false),
            (&limited, rate("5/min"), true),
            (&limited, None, false),
            (&unlimited, rate("1000/s"), true),
            (&unlimited, None, true),
            (&superuser, None, true),
        ];
        for (actor, given, ok) in cases {
            assert_eq!(may_give_rate(actor, "g", given).is_ok(), ok, "{actor:?} {given:?}");
        }
        assert!(may_add_to_rated_group(&limited, "g", None).is_ok());
        assert!(may_add_to_rated_group(&limited, "g", rate("11/min")).is_err());
        // Acting as, or regrouping, someone faster.
        assert!(may_take_rate(&limited, rate("10/min")).is_ok());
        assert!(may_take_rate(&limited, None).is_err());
        assert!(may_take_rate(&superuser, None).is_ok());
        assert!(
            may_change_rate(&limited, "t", rate("1/min"), None).is_err(),
            "leaving a rated group"
        );
        assert!(may_change_rate(&limited, "t", None, None).is_ok(), "no rise");
        assert!(may_change_rate(&limited, "t", rate("1/min"), rate("5/min")).is_ok());
        assert!(may_change_rate(&unlimited, "t", rate("1/min"), None).is_ok());
    }
}
