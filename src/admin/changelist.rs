//! The URLs of a change list: each filter, sort and page link keeps the
//! other parameters and drops the page, as Django's `ChangeList` does.

use serde::Serialize;

/// The list's current parameters, in the order they were given.
pub struct ChangeList {
    params: Vec<(String, String)>,
}

pub struct FilterLink {
    pub label: String,
    pub url: String,
    pub selected: bool,
}

pub struct Filter {
    pub title: &'static str,
    pub links: Vec<FilterLink>,
}

pub struct Column {
    pub label: &'static str,
    pub url: String,
    /// "ascending", "descending" or "".
    pub sorted: &'static str,
}

pub struct PageLink {
    pub number: i64,
    pub url: String,
}

/// A sort order: a column, descending or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub column: String,
    pub descending: bool,
}

impl Order {
    /// `o=email` or `o=-email`.
    pub fn parse(o: Option<&str>) -> Option<Self> {
        let o = o.filter(|o| !o.is_empty())?;
        Some(match o.strip_prefix('-') {
            Some(column) => Self { column: column.to_owned(), descending: true },
            None => Self { column: o.to_owned(), descending: false },
        })
    }
}

impl ChangeList {
    /// The parameters of a list's query struct that have a value, in its
    /// fields' order, as serde writes them to a query string (the fields it
    /// skips, such as the page, left out).
    pub fn of(query: &impl Serialize) -> Self {
        let text = serde_urlencoded::to_string(query).unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&text).unwrap_or_default();
        Self { params: pairs.into_iter().filter(|(_, value)| !value.is_empty()).collect() }
    }

    /// The list's URL with `key` set to `value` (or removed), the page
    /// dropped, the rest kept.
    pub fn with(&self, key: &str, value: Option<String>) -> String {
        let mut kept: Vec<(&str, &str)> = self
            .params
            .iter()
            .filter(|(k, _)| k != key && k != "p")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(value) = &value {
            kept.push((key, value));
        }
        let query = serde_urlencoded::to_string(&kept).unwrap_or_default();
        format!("?{query}")
    }

    /// A filter with the given choices (label, value), "All" first.
    pub fn filter(
        &self,
        key: &'static str,
        title: &'static str,
        choices: Vec<(String, String)>,
        current: Option<&str>,
    ) -> Filter {
        let mut links = vec![FilterLink {
            label: "All".into(),
            url: self.with(key, None),
            selected: current.is_none(),
        }];
        links.extend(choices.into_iter().map(|(label, value)| FilterLink {
            label,
            url: self.with(key, Some(value.clone())),
            selected: current == Some(value.as_str()),
        }));
        Filter { title, links }
    }

    /// A Yes/No filter on `key` (`1` and `0`).
    pub fn yes_no(&self, key: &'static str, title: &'static str, current: Option<bool>) -> Filter {
        let choices = vec![("Yes".into(), "1".into()), ("No".into(), "0".into())];
        let current = current.map(|c| if c { "1" } else { "0" });
        self.filter(key, title, choices, current)
    }

    /// Sortable column headers: a click sorts by the column, a second one
    /// reverses it. With no order given, `default` is sorted ascending.
    pub fn columns(
        &self,
        columns: &[(&'static str, &'static str)],
        order: Option<&Order>,
        default: &str,
    ) -> Vec<Column> {
        columns
            .iter()
            .map(|&(label, column)| {
                let (sorted, next) = match order {
                    Some(o) if o.column == column && !o.descending => {
                        ("ascending", format!("-{column}"))
                    }
                    Some(o) if o.column == column => ("descending", column.to_owned()),
                    None if column == default => ("ascending", format!("-{column}")),
                    _ => ("", column.to_owned()),
                };
                Column { label, url: self.with("o", Some(next)), sorted }
            })
            .collect()
    }

    /// A link per page (`p` counts from 0; shown from 1).
    pub fn pages(&self, pages: i64) -> Vec<PageLink> {
        let base = self.with("p", None);
        let join = if base == "?" { "" } else { "&" };
        (0..pages).map(|p| PageLink { number: p + 1, url: format!("{base}{join}p={p}") }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct Query {
        q: Option<String>,
        is_staff: Option<String>,
        o: Option<String>,
        p: Option<i64>,
    }

    #[test]
    fn links_keep_the_other_parameters_and_drop_the_page() {
        let list = ChangeList::of(&Query {
            q: Some("al".to_owned()),
            is_staff: Some("1".to_owned()),
            o: None,
            p: Some(2),
        });
        assert_eq!(list.with("is_staff", None), "?q=al");
        assert_eq!(list.with("o", Some("-email".into())), "?q=al&is_staff=1&o=-email");
        let pages = list.pages(2);
        assert_eq!(pages[1].url, "?q=al&is_staff=1&p=1");
        let order = Order::parse(Some("-email"));
        let columns =
            list.columns(&[("Email", "email"), ("Name", "username")], order.as_ref(), "username");
        assert_eq!((columns[0].sorted, columns[1].sorted), ("descending", ""));
        assert!(columns[0].url.ends_with("o=email"));
        let empty = ChangeList::of(&Query::default());
        assert_eq!(empty.pages(1)[0].url, "?p=0");
    }

    #[test]
    fn a_query_gives_its_fields_in_order_but_the_empty_ones() {
        let query =
            Query { q: Some("a b&c".into()), is_staff: Some(String::new()), ..Query::default() };
        assert_eq!(ChangeList::of(&query).with("o", Some("email".into())), "?q=a+b%26c&o=email");
    }
}
