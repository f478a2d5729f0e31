//! A grant: a permission of the `lbasedb` app held for one feed, and, for
//! reads, optionally for some of its columns and a window of its rows:
//! `lbasedb.view_data=sensors[t,temp]@-100000..`. One shape wherever a
//! grant is read, checked, given, parsed or dumped: authentication, the
//! privilege rules, the service, the command line, scoped tokens and
//! `dumpdata`.
//!
//! What a user's grants of one permission on one feed allow together is a
//! `Reach`: the union of their grants (their own and their groups'), cut
//! down by a scoped token's scopes. A read is allowed when every column
//! it names, over every row it names, lies in some grant.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::lbasedb::names::is_valid_name;
use crate::lbasedb::perms::{APP_LABEL, Perm, VIEW_COL, VIEW_DATA};

/// Most columns one grant names (the most a feed may have by default,
/// `MAX_COLUMNS_PER_FEED`).
pub const MAX_GRANT_COLUMNS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    /// The permission's full codename (`lbasedb.view_data`); a dump names
    /// it `permission`.
    #[serde(rename = "permission", alias = "codename")]
    pub codename: String,
    pub feed: String,
    /// The columns it covers (`view_data`, `view_col`); `None`: every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<BTreeSet<String>>,
    /// The rows it covers (`view_data`); `None`: every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<Window>,
}

impl Grant {
    /// The permission on the whole feed.
    pub fn new(codename: impl Into<String>, feed: impl Into<String>) -> Self {
        Self { codename: codename.into(), feed: feed.into(), columns: None, rows: None }
    }

    /// Whether this is `codename` on `feed` (whatever columns and rows).
    pub fn is(&self, codename: &str, feed: &str) -> bool {
        self.codename == codename && self.feed == feed
    }

    /// As a database row keeps it: the columns comma-separated, the window
    /// as `FROM..TO`. What was stored was checked; a window that no longer
    /// reads covers no row, rather than every one.
    pub fn stored(
        codename: String,
        feed: String,
        columns: Option<&str>,
        rows: Option<&str>,
    ) -> Self {
        let columns = columns.map(|list| list.split(',').map(str::to_owned).collect());
        let nothing = Window { from: Bound::Start(0), to: Bound::Start(0) };
        let rows = rows.map(|text| text.parse().unwrap_or(nothing));
        Self { codename, feed, columns, rows }
    }

    /// The columns as a row keeps them (`stored`).
    pub fn stored_columns(&self) -> Option<String> {
        let columns = self.columns.as_ref()?;
        Some(columns.iter().map(String::as_str).collect::<Vec<_>>().join(","))
    }

    /// Its columns and window as written after the feed (`[t,temp]@-100..`);
    /// empty for the whole feed.
    pub fn limits(&self) -> String {
        let columns = self.columns.as_ref().map(column_list).unwrap_or_default();
        match &self.rows {
            Some(window) => format!("{columns}@{window}"),
            None => columns,
        }
    }

    /// Whether it covers the whole feed.
    pub fn is_whole(&self) -> bool {
        self.columns.is_none() && self.rows.is_none()
    }

    /// Only the `lbasedb` app's permissions are held per feed, only on a
    /// name a feed can have; columns only for reads of data or of the
    /// column list, rows only for reads of data (a write extends or
    /// changes every column, so writes are granted feed-wide).
    pub fn check(&self) -> Result<(), String> {
        if !Perm::ALL.iter().any(|perm| perm.codename() == self.codename) {
            return Err(format!(
                "grant {self}: only the {APP_LABEL} app's permissions are granted per feed"
            ));
        }
        if !is_valid_name(&self.feed) {
            return Err(format!("grant {self}: {:?} is not a valid feed name", self.feed));
        }
        if let Some(columns) = &self.columns {
            if self.codename != VIEW_DATA && self.codename != VIEW_COL {
                return Err(format!(
                    "grant {self}: columns are granted only with {VIEW_DATA} and {VIEW_COL}; \
                     writes are granted on the whole feed"
                ));
            }
            if columns.is_empty() || columns.len() > MAX_GRANT_COLUMNS {
                return Err(format!(
                    "grant {self}: name between 1 and {MAX_GRANT_COLUMNS} columns"
                ));
            }
            if let Some(bad) = columns.iter().find(|c| !is_valid_name(c)) {
                return Err(format!("grant {self}: {bad:?} is not a valid column name"));
            }
        }
        if let Some(window) = &self.rows {
            if self.codename != VIEW_DATA {
                return Err(format!(
                    "grant {self}: rows are granted only with {VIEW_DATA}; \
                     writes are granted on the whole feed"
                ));
            }
            if window.to.always_le(window.from) {
                return Err(format!("grant {self}: the window {window} holds no row"));
            }
        }
        Ok(())
    }

    /// Whether this holds everything `other` does, in a feed of any size:
    /// the same permission on the same feed, its columns among these, its
    /// window inside this one whatever the feed's size.
    pub fn covers(&self, other: &Grant) -> bool {
        let columns = match (&self.columns, &other.columns) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs.is_subset(mine),
        };
        let (mine, theirs) = (self.rows.unwrap_or(Window::ALL), other.rows.unwrap_or(Window::ALL));
        self.is(&other.codename, &other.feed)
            && columns
            && mine.from.always_le(theirs.from)
            && theirs.to.always_le(mine.to)
    }
}

/// `CODENAME=FEED[COL,COL]@FROM..TO`, as the command line, scopes, dumps
/// and messages write it; the columns and the window only when limited.
impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}{}", self.codename, self.feed, self.limits())
    }
}

/// `lbasedb.view_data=sensors`, `lbasedb.view_data=sensors[t,temp]@0..1000`,
/// checked.
impl FromStr for Grant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || format!("grant {text:?}: expected CODENAME=FEED[COLUMNS]@FROM..TO");
        let (codename, rest) = text.split_once('=').ok_or_else(expected)?;
        let feed_end = rest.find(['[', '@']).unwrap_or(rest.len());
        let (feed, mut rest) = rest.split_at(feed_end);
        let mut grant = Self::new(codename, feed);
        if let Some(inside) = rest.strip_prefix('[') {
            let (list, after) = inside.split_once(']').ok_or_else(expected)?;
            grant.columns = Some(list.split(',').map(|c| c.trim().to_owned()).collect());
            rest = after;
        }
        if let Some(window) = rest.strip_prefix('@') {
            grant.rows = Some(window.parse().map_err(|why| format!("grant {text:?}: {why}"))?);
        } else if !rest.is_empty() {
            return Err(expected());
        }
        grant.check()?;
        Ok(grant)
    }
}

/// `[a,b]`.
fn column_list(columns: &BTreeSet<String>) -> String {
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    format!("[{}]", names.join(","))
}

/// Splits a list of grants (or scopes) given in one string, on commas and
/// white space outside brackets: `a=x[t,temp], b=y` is two.
pub fn split_list(text: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    text.split(move |c: char| {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        depth == 0 && (c == ',' || c.is_whitespace())
    })
    .map(str::trim)
    .filter(|item| !item.is_empty())
}

/// Where a window starts or ends: a row from the start of the feed, or a
/// count of rows back from its end (which moves as the feed grows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bound {
    Start(u64),
    End(u64),
}

impl Bound {
    /// The row it falls on in a feed of `size` rows.
    fn at(self, size: u64) -> u64 {
        match self {
            Self::Start(row) => row.min(size),
            Self::End(back) => size - back.min(size),
        }
    }

    /// Whether it falls on or before `other` in a feed of every size.
    pub fn always_le(self, other: Bound) -> bool {
        match (self, other) {
            (Self::Start(a), Self::Start(b)) => a <= b,
            (Self::End(a), Self::End(b)) => a >= b,
            // Row `a` is before "`k` from the end" in every feed only if it
            // is row 0, or if `k` is 0 (the end itself).
            (Self::Start(a), Self::End(k)) => a == 0 || k == 0,
            (Self::End(_), Self::Start(_)) => false,
        }
    }

    fn needs_size(self) -> bool {
        matches!(self, Self::End(back) if back > 0)
    }
}

/// Rows `from` (included) to `to` (excluded): `0..1000000`, `-100000..`
/// (the last 100,000), `..-1000` (all but the last 1,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Window {
    pub from: Bound,
    pub to: Bound,
}

impl Window {
    pub const ALL: Window = Window { from: Bound::Start(0), to: Bound::End(0) };

    fn needs_size(&self) -> bool {
        matches!(self.from, Bound::End(_)) || self.to.needs_size()
    }

    /// Its rows in a feed of `size` rows (`None`: unknown, and not needed
    /// by this window). A window open at the end runs on past the feed's
    /// size: the rows there do not exist, and the upstream refuses a read
    /// of them itself.
    fn rows(&self, size: Option<u64>) -> std::ops::Range<u64> {
        // A feed the upstream does not know has no rows.
        let size = if self.needs_size() { size.unwrap_or(0) } else { u64::MAX };
        let to = match self.to {
            Bound::End(0) => u64::MAX,
            to => to.at(size),
        };
        self.from.at(size)..to
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            Bound::Start(row) => write!(f, "{row}..")?,
            Bound::End(back) => write!(f, "-{back}..")?,
        }
        match self.to {
            Bound::End(0) => Ok(()),
            Bound::Start(row) => write!(f, "{row}"),
            Bound::End(back) => write!(f, "-{back}"),
        }
    }
}

impl FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("rows {text:?}: expected FROM..TO, as 0..1000, -100.. or ..-10");
        let (from, to) = text.split_once("..").ok_or_else(bad)?;
        let bound = |part: &str, empty: Bound| -> Result<Bound, String> {
            let (back, digits) = match part.strip_prefix('-') {
                Some(digits) => (true, digits),
                None => (false, part),
            };
            if part.is_empty() {
                return Ok(empty);
            }
            if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(bad());
            }
            let n: u64 = digits.parse().map_err(|_| bad())?;
            match (back, n) {
                (true, 0) => Err(bad()),
                (true, n) => Ok(Bound::End(n)),
                (false, n) => Ok(Bound::Start(n)),
            }
        };
        Ok(Self { from: bound(from, Bound::Start(0))?, to: bound(to, Bound::End(0))? })
    }
}

impl TryFrom<String> for Window {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Window> for String {
    fn from(window: Window) -> String {
        window.to_string()
    }
}

/// What a permission's grants on one feed allow together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every column and row: a feed-wide grant, or the permission held
    /// everywhere.
    Whole,
    /// The union of these parts.
    Parts(Vec<Part>),
}

/// Columns over the rows inside every one of `windows` (a grant has one
/// window at most; a scoped token's part is a grant cut by a scope's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub columns: Option<BTreeSet<String>>,
    pub windows: Vec<Window>,
}

/// A read as the reach checks it: the columns named, and its rows
/// (`None` when it names no `ix` or `size`).
#[derive(Debug, Clone, Copy)]
pub struct Read<'a> {
    pub columns: &'a [String],
    pub rows: Option<(u64, u64)>,
}

impl Reach {
    pub const WHOLE: Reach = Reach::Whole;

    pub fn of(grant: &Grant) -> Reach {
        if grant.is_whole() {
            return Reach::Whole;
        }
        Reach::Parts(vec![Part {
            columns: grant.columns.clone(),
            windows: grant.rows.into_iter().collect(),
        }])
    }

    /// The union with `other`.
    pub fn add(&mut self, other: Reach) {
        match (&mut *self, other) {
            (Reach::Whole, _) => {}
            (_, Reach::Whole) => *self = Reach::Whole,
            (Reach::Parts(mine), Reach::Parts(theirs)) => mine.extend(theirs),
        }
    }

    /// What both allow; `None` when that is nothing.
    pub fn intersect(&self, other: &Reach) -> Option<Reach> {
        let (mine, theirs) = match (self, other) {
            (Reach::Whole, reach) | (reach, Reach::Whole) => return Some(reach.clone()),
            (Reach::Parts(mine), Reach::Parts(theirs)) => (mine, theirs),
        };
        let mut parts = Vec::new();
        for a in mine {
            for b in theirs {
                let columns = match (&a.columns, &b.columns) {
                    (None, columns) | (columns, None) => columns.clone(),
                    (Some(x), Some(y)) => Some(x.intersection(y).cloned().collect()),
                };
                if columns.as_ref().is_some_and(BTreeSet::is_empty) {
                    continue;
                }
                let windows = a.windows.iter().chain(&b.windows).copied().collect();
                parts.push(Part { columns, windows });
            }
        }
        (!parts.is_empty()).then_some(Reach::Parts(parts))
    }

    /// `codename` and each part's columns and windows, as grants write them.
    pub fn describe(&self, codename: &str) -> Vec<String> {
        let Reach::Parts(parts) = self else {
            return vec![codename.to_owned()];
        };
        let described = parts.iter().map(|part| {
            let mut text = codename.to_owned();
            if let Some(columns) = &part.columns {
                text.push_str(&column_list(columns));
            }
            for window in &part.windows {
                text.push_str(&format!("@{window}"));
            }
            text
        });
        described.collect()
    }

    /// Whether checking a read needs the feed's size (a window counted
    /// from the end).
    pub fn needs_size(&self) -> bool {
        match self {
            Reach::Whole => false,
            Reach::Parts(parts) => parts.iter().flat_map(|p| &p.windows).any(Window::needs_size),
        }
    }

    /// Whether any row of `column` is allowed (`GET /col` lists it).
    pub fn shows_column(&self, column: &str) -> bool {
        match self {
            Reach::Whole => true,
            Reach::Parts(parts) => parts.iter().any(|part| part.covers_column(column)),
        }
    }

    /// Allows `read` of `feed` (of `size` rows, when `needs_size`), or says
    /// why not: which column, or which rows are allowed. The same answer
    /// whether a column exists or not.
    pub fn check(&self, feed: &str, read: Read<'_>, size: Option<u64>) -> Result<(), String> {
        let Reach::Parts(parts) = self else {
            return Ok(());
        };
        if read.columns.is_empty() {
            return Err(format!(
                "Your grants on feed \"{feed}\" cover some of its columns or rows only: \
                 name the columns to read."
            ));
        }
        let mut allowed = allowed_rows(parts, read.columns, size);
        for column in read.columns {
            let Some(mut allowed) = allowed.remove(column.as_str()) else {
                continue; // Named twice: checked once.
            };
            if allowed.is_empty() {
                return Err(format!(
                    "Your grants on feed \"{feed}\" do not cover column \"{column}\"."
                ));
            }
            if allowed.contains(&(0..u64::MAX)) {
                continue;
            }
            // A range past the largest row number is nobody's (the upstream
            // refuses it too).
            let covered = read.rows.is_some_and(|(ix, count)| {
                count == 0 || ix.checked_add(count).is_some_and(|end| covers(&mut allowed, ix..end))
            });
            if !covered {
                return Err(refusal(feed, column, read.rows, allowed));
            }
        }
        Ok(())
    }
}

/// The rows each column of `columns` may be read over, part by part (a
/// column no part covers has none): one pass over the parts, each met
/// from its smaller side, so that a read's cost grows with the grants'
/// size and the columns it names, not with their product.
fn allowed_rows<'a>(
    parts: &[Part],
    columns: &'a [String],
    size: Option<u64>,
) -> HashMap<&'a str, Vec<std::ops::Range<u64>>> {
    let mut allowed: HashMap<&str, Vec<std::ops::Range<u64>>> =
        columns.iter().map(|column| (column.as_str(), Vec::new())).collect();
    let add = |rows: &mut Vec<std::ops::Range<u64>>, part: std::ops::Range<u64>| {
        // Every row already: nothing to add.
        if !rows.contains(&(0..u64::MAX)) {
            rows.push(part);
        }
    };
    for part in parts {
        let rows = part.rows(size);
        match &part.columns {
            Some(named) if named.len() < allowed.len() => {
                for column in named {
                    if let Some(held) = allowed.get_mut(column.as_str()) {
                        add(held, rows.clone());
                    }
                }
            }
            named => {
                for (column, held) in allowed.iter_mut() {
                    if named.as_ref().is_none_or(|named| named.contains(*column)) {
                        add(held, rows.clone());
                    }
                }
            }
        }
    }
    allowed
}

impl Part {
    fn covers_column(&self, column: &str) -> bool {
        self.columns.as_ref().is_none_or(|columns| columns.contains(column))
    }

    /// Its rows in a feed of `size` rows: inside every window.
    fn rows(&self, size: Option<u64>) -> std::ops::Range<u64> {
        self.windows.iter().fold(0..u64::MAX, |rows, window| {
            let w = window.rows(size);
            rows.start.max(w.start)..rows.end.min(w.end)
        })
    }
}

/// Whether the union of `allowed` holds every row of `wanted` (not empty).
fn covers(allowed: &mut [std::ops::Range<u64>], wanted: std::ops::Range<u64>) -> bool {
    allowed.sort_by_key(|rows| rows.start);
    let mut reached = wanted.start;
    for rows in allowed.iter().filter(|rows| rows.start < rows.end) {
        if rows.start > reached {
            break;
        }
        reached = reached.max(rows.end);
        if reached >= wanted.end {
            return true;
        }
    }
    false
}

/// A read outside the rows allowed, with the rows that are.
fn refusal(
    feed: &str,
    column: &str,
    wanted: Option<(u64, u64)>,
    mut allowed: Vec<std::ops::Range<u64>>,
) -> String {
    allowed.retain(|rows| rows.start < rows.end);
    allowed.sort_by_key(|rows| rows.start);
    let ranges: Vec<String> = allowed
        .iter()
        .map(|rows| match rows.end {
            u64::MAX => format!("{}..", rows.start),
            end => format!("{}..{end}", rows.start),
        })
        .collect();
    let allowed = match ranges.is_empty() {
        true => "none of its rows now".to_owned(),
        false => format!("rows {}", ranges.join(", ")),
    };
    match wanted {
        Some((ix, count)) => format!(
            "Rows {ix}..{} of column \"{column}\" of feed \"{feed}\" are outside your grants, \
             which allow {allowed} (ix and size are not clipped).",
            ix.saturating_add(count)
        ),
        None => format!(
            "Your grants on column \"{column}\" of feed \"{feed}\" allow {allowed}: \
             name ix and size."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn reach(grants: &[&str]) -> Reach {
        let mut reach = Reach::Parts(Vec::new());
        for grant in grants {
            reach.add(Reach::of(&grant.parse().unwrap()));
        }
        reach
    }

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

    #[test]
    fn columns_and_windows_read_and_write_back_the_same() {
        for (text, shown) in [
            ("lbasedb.view_data=s[temp,t]", "lbasedb.view_data=s[t,temp]"),
            ("lbasedb.view_data=s[t]@0..1000000", "lbasedb.view_data=s[t]@0..1000000"),
            ("lbasedb.view_data=s@-100000..", "lbasedb.view_data=s@-100000.."),
            ("lbasedb.view_data=s@..-1000", "lbasedb.view_data=s@0..-1000"),
            ("lbasedb.view_data=s[ t , t ]@-10..-5", "lbasedb.view_data=s[t]@-10..-5"),
            ("lbasedb.view_col=s[a.b,_c]", "lbasedb.view_col=s[_c,a.b]"),
        ] {
            let grant: Grant = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(grant.to_string(), shown);
            assert_eq!(shown.parse::<Grant>().unwrap(), grant);
            let json = serde_json::to_value(&grant).unwrap();
            assert_eq!(serde_json::from_value::<Grant>(json).unwrap(), grant, "{text}");
        }
        let json = serde_json::json!({
            "permission": "lbasedb.view_data", "feed": "s", "columns": ["t"], "rows": "-5.."
        });
        let grant: Grant = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(grant.to_string(), "lbasedb.view_data=s[t]@-5..");
        assert_eq!(serde_json::to_value(&grant).unwrap(), json);
    }

    #[test]
    fn what_cannot_be_a_limited_grant_is_refused() {
        for bad in [
            "lbasedb.add_data=s[t]",
            "lbasedb.change_data=s@0..5",
            "lbasedb.view_col=s@0..5",
            "lbasedb.view_data=s[]",
            "lbasedb.view_data=s[1t]",
            "lbasedb.view_data=s[t",
            "lbasedb.view_data=s[t]x",
            "lbasedb.view_data=s@",
            "lbasedb.view_data=s@5",
            "lbasedb.view_data=s@5..5",
            "lbasedb.view_data=s@9..3",
            "lbasedb.view_data=s@-0..",
            "lbasedb.view_data=s@-5..-5",
            "lbasedb.view_data=s@-5..-9",
            "lbasedb.view_data=s@+5..",
            "lbasedb.view_data=s@ 5..",
            "lbasedb.view_data=s@99999999999999999999..",
            "lbasedb.view_data=s@0..10@0..10",
            "lbasedb.view_data=s@0..10[t]",
        ] {
            assert!(bad.parse::<Grant>().is_err(), "{bad} was accepted");
        }
        let mut grant = Grant::new("lbasedb.view_data", "s");
        grant.columns = Some((0..=MAX_GRANT_COLUMNS).map(|i| format!("c{i}")).collect());
        assert!(grant.check().is_err());
    }

    #[test]
    fn lists_split_outside_brackets() {
        let items: Vec<&str> = split_list("a=x[t,temp], b=y\nc=z[ u , v ]@0..5,,").collect();
        assert_eq!(items, ["a=x[t,temp]", "b=y", "c=z[ u , v ]@0..5"]);
    }

    #[test]
    fn a_grant_covers_what_it_holds_in_a_feed_of_any_size() {
        let covers =
            |a: &str, b: &str| a.parse::<Grant>().unwrap().covers(&b.parse::<Grant>().unwrap());
        let yes = [
            ("lbasedb.view_data=s", "lbasedb.view_data=s[t]@-5.."),
            ("lbasedb.view_data=s[t,u]", "lbasedb.view_data=s[t]"),
            ("lbasedb.view_data=s@0..100", "lbasedb.view_data=s@10..20"),
            ("lbasedb.view_data=s@-100..", "lbasedb.view_data=s@-50.."),
            ("lbasedb.view_data=s@-100..", "lbasedb.view_data=s@-100..-50"),
            ("lbasedb.view_data=s@0..", "lbasedb.view_data=s@-50..-10"),
            ("lbasedb.view_data=s@..-10", "lbasedb.view_data=s@5..-20"),
        ];
        let no = [
            ("lbasedb.view_data=s[t]", "lbasedb.view_data=s"),
            ("lbasedb.view_data=s[t]", "lbasedb.view_data=s[t,u]"),
            ("lbasedb.view_data=s@0..100", "lbasedb.view_data=s@-50.."),
            ("lbasedb.view_data=s@-50..", "lbasedb.view_data=s@0..100"),
            ("lbasedb.view_data=s@5..", "lbasedb.view_data=s@-50.."),
            ("lbasedb.view_data=s@..-10", "lbasedb.view_data=s@-5.."),
            ("lbasedb.view_data=s@0..100", "lbasedb.view_data=s"),
            ("lbasedb.view_data=s", "lbasedb.view_data=t"),
            ("lbasedb.view_data=s", "lbasedb.view_col=s"),
        ];
        for (a, b) in yes {
            assert!(covers(a, b), "{a} should cover {b}");
        }
        for (a, b) in no {
            assert!(!covers(a, b), "{a} should not cover {b}");
        }
    }

    #[test]
    fn a_read_is_allowed_only_inside_the_union_of_grants() {
        let r = reach(&["lbasedb.view_data=s[t]@0..100", "lbasedb.view_data=s[t,u]@100..200"]);
        let read = |columns: &[&str], rows| Read { columns: &cols(columns), rows }.clone_check(&r);
        assert!(read(&["t"], Some((50, 100))).is_ok(), "two grants together");
        assert!(read(&["t", "t"], Some((0, 200))).is_ok());
        assert!(read(&["u"], Some((100, 100))).is_ok());
        assert!(read(&["u"], Some((50, 100))).unwrap_err().contains("allow rows 100..200"));
        assert!(read(&["t"], Some((150, 100))).is_err());
        assert!(read(&["v"], Some((0, 1))).unwrap_err().contains("do not cover column \"v\""));
        assert!(read(&[], Some((0, 1))).is_err(), "no column named");
        assert!(read(&["t"], None).unwrap_err().contains("name ix and size"));
        assert!(read(&["t"], Some((u64::MAX, 5))).is_err(), "overflow");
        assert!(Reach::Whole.check("s", Read { columns: &[], rows: None }, None).is_ok());
    }

    #[test]
    fn a_window_from_the_end_moves_with_the_size() {
        let r = reach(&["lbasedb.view_data=s@-100.."]);
        assert!(r.needs_size());
        let check = |ix, count, size| {
            r.check("s", Read { columns: &cols(&["x"]), rows: Some((ix, count)) }, Some(size))
        };
        assert!(check(900, 100, 1000).is_ok());
        assert!(check(899, 1, 1000).unwrap_err().contains("allow rows 900.."));
        assert!(check(0, 50, 50).is_ok(), "a feed smaller than the window");
        assert!(check(950, 100, 1050).is_ok());
        let embargo = reach(&["lbasedb.view_data=s@..-10"]);
        let check = |ix, count, size| {
            embargo.check("s", Read { columns: &cols(&["x"]), rows: Some((ix, count)) }, Some(size))
        };
        assert!(check(0, 90, 100).is_ok());
        assert!(check(0, 91, 100).unwrap_err().contains("allow rows 0..90"));
        assert!(!reach(&["lbasedb.view_data=s@5.."]).needs_size());
    }

    #[test]
    fn a_scope_narrows_a_reach() {
        let user = reach(&["lbasedb.view_data=s[t,u]@0..100"]);
        let scope = reach(&["lbasedb.view_data=s[t]@50.."]);
        let both = user.intersect(&scope).unwrap();
        let read =
            |columns: &[&str], rows| Read { columns: &cols(columns), rows }.clone_check(&both);
        assert!(read(&["t"], Some((50, 50))).is_ok());
        assert!(read(&["t"], Some((40, 20))).is_err());
        assert!(read(&["u"], Some((50, 10))).is_err());
        assert!(both.shows_column("t") && !both.shows_column("u"));
        assert_eq!(Reach::Whole.intersect(&scope), Some(scope.clone()));
        let disjoint = reach(&["lbasedb.view_data=s[v]"]);
        assert_eq!(user.intersect(&disjoint), None);
    }

    /// By hand (`cargo test --release --lib grant_check_cost -- --ignored
    /// --nocapture`): what one check costs, in nanoseconds, for the
    /// benchmark's read (10 rows of one column) under each grant shape.
    #[test]
    #[ignore]
    fn grant_check_cost() {
        let columns = cols(&["x"]);
        let read = Read { columns: &columns, rows: Some((900_000, 10)) };
        for grant in
            ["lbasedb.view_data=xy", "lbasedb.view_data=xy[x]", "lbasedb.view_data=xy[x]@-500000.."]
        {
            let reach = reach(&[grant]);
            let rounds = 1_000_000u32;
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(reach.check(
                    "xy",
                    std::hint::black_box(read),
                    Some(1_000_000),
                ))
                .unwrap();
            }
            println!(
                "{grant}: {:.0} ns a check",
                started.elapsed().as_nanos() as f64 / f64::from(rounds)
            );
        }
    }

    impl Read<'_> {
        fn clone_check(self, reach: &Reach) -> Result<(), String> {
            reach.check("s", self, Some(1000))
        }
    }
}
