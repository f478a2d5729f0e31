//! A grant: a permission of the `lbasedb` app held for one feed only
//! (`lbasedb.view_data=sensors`). One shape wherever a grant is read,
//! checked, given, parsed or dumped: authentication, the privilege rules,
//! the service, the command line and `dumpdata`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::lbasedb::names::is_valid_name;
use crate::lbasedb::perms::APP_LABEL;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    /// The permission's full codename (`lbasedb.view_data`); a dump names
    /// it `permission`.
    #[serde(rename = "permission", alias = "codename")]
    pub codename: String,
    pub feed: String,
}

impl Grant {
    pub fn new(codename: impl Into<String>, feed: impl Into<String>) -> Self {
        Self { codename: codename.into(), feed: feed.into() }
    }

    /// Whether this is `codename` on `feed`.
    pub fn is(&self, codename: &str, feed: &str) -> bool {
        self.codename == codename && self.feed == feed
    }

    /// Only the `lbasedb` app's permissions are held per feed, and only on
    /// a name a feed can have.
    pub fn check(&self) -> Result<(), String> {
        if self.codename.split_once('.').is_none_or(|(app, _)| app != APP_LABEL) {
            return Err(format!("grant {self}: only lbasedb permissions are granted per feed"));
        }
        if !is_valid_name(&self.feed) {
            return Err(format!("grant {self}: {:?} is not a valid feed name", self.feed));
        }
        Ok(())
    }
}

/// `CODENAME=FEED`, as the command line, scopes and messages write it.
impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.codename, self.feed)
    }
}

/// `lbasedb.view_data=sensors`, checked.
impl FromStr for Grant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (codename, feed) = text
            .split_once('=')
            .ok_or_else(|| format!("grant {text:?}: expected CODENAME=FEED"))?;
        let grant = Self::new(codename, feed);
        grant.check()?;
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_reads_and_writes_as_codename_equals_feed() {
        let grant: Grant = "lbasedb.view_data=sensors".parse().unwrap();
        assert_eq!(grant, Grant::new("lbasedb.view_data", "sensors"));
        assert_eq!(grant.to_string(), "lbasedb.view_data=sensors");
        assert!(grant.is("lbasedb.view_data", "sensors"));
        for bad in ["lbasedb.view_data", "auth.view_user=x", "lbasedb.view_data=a/b", "=x"] {
            assert!(bad.parse::<Grant>().is_err(), "{bad}");
        }
        let json = serde_json::to_value(&grant).unwrap();
        assert_eq!(json, serde_json::json!({"permission": "lbasedb.view_data", "feed": "sensors"}));
        assert_eq!(serde_json::from_value::<Grant>(json).unwrap(), grant);
    }
}
