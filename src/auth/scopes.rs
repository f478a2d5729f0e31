//! Tokens that can do less than their owner: scopes (permissions, each
//! optionally for one feed) and networks the token may be used from. A
//! scoped token holds the intersection of its scopes and its user's
//! permissions; a token with networks is refused (403) from anywhere else.

use std::net::IpAddr;

use ipnet::IpNet;

use super::grant::{Grant, Reach, split_list};
use super::principal::{FeedGrants, Principal};
use crate::net::{in_networks, parse_net};

/// A permission a token keeps: everywhere the user holds it, or as a
/// grant (on one feed, perhaps on some of its columns and rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Everywhere(String),
    Grant(Grant),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Everywhere(codename) => f.write_str(codename),
            Self::Grant(grant) => grant.fmt(f),
        }
    }
}

/// A token's restrictions; empty lists restrict nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrictions {
    pub scopes: Vec<Scope>,
    pub networks: Vec<IpNet>,
}

/// `lbasedb.view_data`, `lbasedb.view_data=xy` or, as any grant,
/// `lbasedb.view_data=xy[t]@-100..`.
pub fn parse_scope(text: &str) -> Result<Scope, String> {
    let text = text.trim();
    if text.contains('=') {
        return text.parse().map(Scope::Grant).map_err(|why| format!("scope {why}"));
    }
    let well_formed = text.split_once('.').is_some_and(|(app, code)| {
        !app.is_empty()
            && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            && !code.is_empty()
    });
    if !well_formed {
        return Err(format!("scope {text:?}: expected CODENAME or a grant, CODENAME=FEED"));
    }
    Ok(Scope::Everywhere(text.to_owned()))
}

/// Items given one by one or comma- or space-separated in one string
/// (a grant's list of columns stays whole).
fn items(values: &[String]) -> impl Iterator<Item = &str> {
    values.iter().flat_map(|v| split_list(v))
}

impl Restrictions {
    /// From what a form, the API or the command line gave.
    pub fn parse(scopes: &[String], networks: &[String]) -> Result<Self, String> {
        Ok(Self {
            scopes: items(scopes).map(parse_scope).collect::<Result<_, _>>()?,
            networks: items(networks).map(parse_net).collect::<Result<_, _>>()?,
        })
    }

    /// From the token's stored columns (what was stored was checked).
    pub fn stored(scopes: Option<&str>, networks: Option<&str>) -> Self {
        let list = |text: Option<&str>| text.map(|t| vec![t.to_owned()]).unwrap_or_default();
        Self::parse(&list(scopes), &list(networks)).unwrap_or_else(|_| Self {
            // Unreadable restrictions restrict everything.
            scopes: vec![Scope::Everywhere("none.none".into())],
            networks: Vec::new(),
        })
    }

    pub fn scopes_text(&self) -> Option<String> {
        (!self.scopes.is_empty()).then(|| {
            let parts: Vec<String> = self.scopes.iter().map(Scope::to_string).collect();
            parts.join(",")
        })
    }

    pub fn networks_text(&self) -> Option<String> {
        (!self.networks.is_empty()).then(|| {
            let parts: Vec<String> = self.networks.iter().map(IpNet::to_string).collect();
            parts.join(",")
        })
    }

    /// Whether the token may be used from `ip`.
    pub fn allows_from(&self, ip: IpAddr) -> bool {
        self.networks.is_empty() || in_networks(&self.networks, ip)
    }

    /// What `user` holds through this token: all of it without scopes,
    /// else only what both the scopes and the user allow (never superuser).
    pub fn restrict(&self, user: &Principal) -> Principal {
        if self.scopes.is_empty() {
            return user.clone();
        }
        let mut held = user.clone();
        held.is_superuser = false;
        held.perms.clear();
        held.grants.clear();
        for scope in &self.scopes {
            match scope {
                Scope::Grant(grant) => {
                    let user_reach = user.reach(&grant.codename, &grant.feed);
                    if let Some(cut) = user_reach.and_then(|r| r.intersect(&Reach::of(grant))) {
                        held.grants
                            .entry(grant.feed.clone())
                            .or_default()
                            .hold(&grant.codename, cut);
                    }
                }
                Scope::Everywhere(codename) if user.has_perm(codename) => {
                    held.perms.insert(codename.clone());
                }
                Scope::Everywhere(codename) => {
                    for (feed, by_codename) in &user.grants {
                        if let Some(reach) = by_codename.get(codename) {
                            held.grants
                                .entry(feed.clone())
                                .or_default()
                                .hold(codename, reach.clone());
                        }
                    }
                }
            }
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn principal(superuser: bool, perms: &[&str], grants: &[(&str, &str)]) -> Principal {
        let mut by_feed: HashMap<String, HashMap<String, Reach>> = HashMap::new();
        for (codename, feed) in grants {
            let grant: Grant = format!("{codename}={feed}").parse().unwrap();
            by_feed.entry(grant.feed.clone()).or_default().hold(codename, Reach::of(&grant));
        }
        Principal {
            user_id: 1,
            username: "u".into(),
            email: String::new(),
            is_active: true,
            is_staff: false,
            is_superuser: superuser,
            groups: Vec::new(),
            group_rates: Vec::new(),
            group_quotas: Vec::new(),
            perms: perms.iter().map(|p| p.to_string()).collect(),
            grants: by_feed,
        }
    }

    #[test]
    fn a_scope_on_columns_narrows_what_the_user_may_read() {
        use crate::auth::grant::Read;
        let scopes = Restrictions::parse(&["lbasedb.view_data=xy[t]@-10..".into()], &[]).unwrap();
        assert_eq!(scopes.scopes_text().unwrap(), "lbasedb.view_data=xy[t]@-10..");
        let user = principal(false, &[], &[("lbasedb.view_data", "xy[t,temp]")]);
        let token = scopes.restrict(&user);
        let reach = token.reach("lbasedb.view_data", "xy").unwrap();
        let cols = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let read = |names: &[&str], ix| {
            reach.check("xy", Read { columns: &cols(names), rows: Some((ix, 10)) }, Some(100))
        };
        assert!(read(&["t"], 90).is_ok());
        assert!(read(&["temp"], 90).is_err(), "the user may, the token may not");
        assert!(read(&["t"], 80).is_err());
        let superuser = scopes.restrict(&principal(true, &[], &[]));
        assert!(superuser.reach("lbasedb.view_data", "xy").unwrap().shows_column("t"));
        assert!(!superuser.reach("lbasedb.view_data", "xy").unwrap().shows_column("temp"));
        let outside = principal(false, &[], &[("lbasedb.view_data", "xy[temp]")]);
        assert!(!scopes.restrict(&outside).has_feed_perm("lbasedb.view_data", "xy"));
    }

    #[test]
    fn a_scoped_token_holds_the_intersection() {
        let scopes =
            Restrictions::parse(&["lbasedb.view_data=xy, lbasedb.view_feed".into()], &[]).unwrap();
        let superuser = scopes.restrict(&principal(true, &[], &[]));
        assert!(!superuser.is_superuser);
        assert!(superuser.has_feed_perm("lbasedb.view_data", "xy"));
        assert!(!superuser.has_feed_perm("lbasedb.view_data", "other"));
        assert!(!superuser.has_feed_perm("lbasedb.add_data", "xy"));
        assert!(superuser.has_perm("lbasedb.view_feed"));

        let granted = scopes.restrict(&principal(
            false,
            &[],
            &[("lbasedb.view_data", "xy"), ("lbasedb.view_feed", "ab")],
        ));
        assert!(granted.has_feed_perm("lbasedb.view_data", "xy"));
        assert!(granted.has_feed_perm("lbasedb.view_feed", "ab"), "a global scope keeps grants");
        assert!(!granted.has_perm("lbasedb.view_feed"));

        let none = scopes.restrict(&principal(false, &["lbasedb.add_data"], &[]));
        assert!(!none.has_feed_perm("lbasedb.view_data", "xy"), "the user lacks it");
        assert!(!none.has_feed_perm("lbasedb.add_data", "xy"), "the token lacks it");
    }

    #[test]
    fn scopes_and_networks_parse_and_refuse() {
        let ok = Restrictions::parse(
            &["lbasedb.view_data=xy".into(), "auth.view_user".into()],
            &["203.0.113.0/24".into(), "10.0.0.1".into()],
        )
        .unwrap();
        assert_eq!(ok.scopes_text().unwrap(), "lbasedb.view_data=xy,auth.view_user");
        assert_eq!(ok.networks_text().unwrap(), "203.0.113.0/24,10.0.0.1/32");
        assert!(ok.allows_from("203.0.113.9".parse().unwrap()));
        assert!(!ok.allows_from("127.0.0.1".parse().unwrap()));
        assert!(Restrictions::default().allows_from("127.0.0.1".parse().unwrap()));
        for bad in ["view_data", "lbasedb.view_data=1x", "lbasedb.=xy", "lbasedb.View"] {
            assert!(Restrictions::parse(&[bad.into()], &[]).is_err(), "{bad}");
        }
        assert!(Restrictions::parse(&[], &["example.com".into()]).is_err());
        assert_eq!(
            Restrictions::stored(ok.scopes_text().as_deref(), ok.networks_text().as_deref()),
            ok
        );
    }
}
