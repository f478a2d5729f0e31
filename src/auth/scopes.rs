//! Tokens that can do less than their owner: scopes (permissions, each
//! optionally for one feed) and networks the token may be used from. A
//! scoped token holds the intersection of its scopes and its user's
//! permissions; a token with networks is refused (403) from anywhere else.

use std::net::IpAddr;

use ipnet::IpNet;

use super::principal::Principal;
use crate::lbasedb::names::is_valid_name;
use crate::net::{in_networks, parse_net};

/// A permission a token keeps: on every feed, or on one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub codename: String,
    pub feed: Option<String>,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.feed {
            Some(feed) => write!(f, "{}={feed}", self.codename),
            None => f.write_str(&self.codename),
        }
    }
}

/// A token's restrictions; empty lists restrict nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrictions {
    pub scopes: Vec<Scope>,
    pub networks: Vec<IpNet>,
}

/// `lbasedb.view_data` or `lbasedb.view_data=xy`.
pub fn parse_scope(text: &str) -> Result<Scope, String> {
    let text = text.trim();
    let (codename, feed) = match text.split_once('=') {
        Some((codename, feed)) => (codename, Some(feed)),
        None => (text, None),
    };
    let well_formed = codename.split_once('.').is_some_and(|(app, code)| {
        !app.is_empty()
            && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            && !code.is_empty()
    });
    if !well_formed {
        return Err(format!("scope {text:?}: expected CODENAME or CODENAME=FEED"));
    }
    if let Some(feed) = feed.filter(|f| !is_valid_name(f)) {
        return Err(format!("scope {text:?}: {feed:?} is not a valid feed name"));
    }
    Ok(Scope { codename: codename.to_owned(), feed: feed.map(str::to_owned) })
}

/// Items given one by one or comma- or space-separated in one string.
fn items(values: &[String]) -> impl Iterator<Item = &str> {
    values
        .iter()
        .flat_map(|v| v.split([',', ' ', '\n', '\r']))
        .map(str::trim)
        .filter(|v| !v.is_empty())
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
            scopes: vec![Scope { codename: "none.none".into(), feed: None }],
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
            let codename = &scope.codename;
            match &scope.feed {
                Some(feed) if user.has_feed_perm(codename, feed) => {
                    held.grants.entry(feed.clone()).or_default().insert(codename.clone());
                }
                Some(_) => {}
                None if user.has_perm(codename) => {
                    held.perms.insert(codename.clone());
                }
                None => {
                    for (feed, codenames) in &user.grants {
                        if codenames.contains(codename) {
                            held.grants.entry(feed.clone()).or_default().insert(codename.clone());
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
    use std::collections::{HashMap, HashSet};

    fn principal(superuser: bool, perms: &[&str], grants: &[(&str, &str)]) -> Principal {
        let mut by_feed: HashMap<String, HashSet<String>> = HashMap::new();
        for (codename, feed) in grants {
            by_feed.entry(feed.to_string()).or_default().insert(codename.to_string());
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
            perms: perms.iter().map(|p| p.to_string()).collect(),
            grants: by_feed,
        }
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
