//! Property tests: whatever a client sends (query strings, headers, JSON
//! bodies, form fields, durations), the readers answer with a value or an
//! error and never panic; and what they let through keeps its promises
//! (a classified feed is a valid name, a `next` is a local path).

use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use crate::admin::{Errors, choices, grant_rows};
use crate::config::Limits;
use crate::lbasedb::names::is_valid_name;
use crate::proxy::classify::{Endpoint, Requirement, classify};
use crate::proxy::limits::{BodyRule, body_rule, check_body, check_query};

const ENDPOINTS: [&str; 9] = ["version", "feed", "col", "size", "data", "bytes", "raw", "nope", ""];
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
const PIECES: [&str; 12] =
    ["feed", "col", "col[]", "col%5B%5D", "name", "ix", "size", "=", "&", "%", "[", "]"];

/// Query strings made of the pieces that matter (keys the upstream reads,
/// brackets, encodings, separators) as well as arbitrary text.
fn query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        // Each piece as likely as each of the three other kinds.
        PIECES.len() as u32 => prop::sample::select(PIECES.to_vec()).prop_map(str::to_owned),
        1 => Just("99999999999999999999999".to_owned()),
        1 => "[a-z0-9_.]{0,6}",
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(METHODS.to_vec()).prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_classifier_never_panics_and_names_only_valid_feeds(
        endpoint in prop::sample::select(ENDPOINTS.to_vec()),
        method in method(),
        query in query(),
    ) {
        if let Ok(classified) = classify(endpoint, &method, &query) {
            if let Requirement::Feed(_, feed) = &classified.requires {
                prop_assert!(is_valid_name(feed), "{feed:?}");
            }
            let _ = check_query(&classified, &method, &Limits::DEFAULT);
        }
    }

    #[test]
    fn small_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..256), json in any::<String>()) {
        for rule in [BodyRule::Name, BodyRule::Size] {
            let _ = check_body(rule, &body, &Limits::DEFAULT);
            let _ = check_body(rule, json.as_bytes(), &Limits::DEFAULT);
            let named = format!(r#"{{"name":{json:?},"size":{}}}"#, body.len());
            let _ = check_body(rule, named.as_bytes(), &Limits::DEFAULT);
        }
        let _ = body_rule(Endpoint::Feed, &Method::PATCH);
    }

    #[test]
    fn the_authorization_header_parser_never_panics(value in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = crate::auth::parse_authorization(&value);
    }

    #[test]
    fn durations_never_panic(text in any::<String>(), number in any::<u64>(), unit in "[a-z]{0,6}") {
        let _ = crate::auth::token::expiry_from_text(&text);
        let _ = crate::auth::token::expiry_from_text(&format!("{number}{unit}"));
        let _ = crate::auth::token::expiry_after(std::time::Duration::from_secs(number));
    }

    #[test]
    fn admin_form_readers_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), text in "[a-z_=&%0-9]{0,64}") {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Fields {
            groups: Vec<String>,
            grant_perm: Vec<String>,
            grant_feed: Vec<String>,
            grant_column: Vec<String>,
            grant_from: Vec<String>,
            grant_to: Vec<String>,
            is_active: crate::admin::Checkbox,
            name: String,
        }
        for raw in [&body[..], text.as_bytes()] {
            if let Ok(form) = serde_html_form::from_bytes::<Fields>(raw) {
                let mut errors = Errors::new();
                let _ = choices(&form.groups, "groups", &[1, 2, 3], &mut errors);
                let input = crate::admin::fields::grant_input!(form);
                let view_data = crate::db::models::Permission {
                    id: 1,
                    name: "Can view data".into(),
                    app_label: "lbasedb".into(),
                    codename: "view_data".into(),
                };
                for grant in grant_rows(input, &[view_data], &mut errors) {
                    prop_assert!(grant.check().is_ok(), "{grant}");
                }
                let _ = (form.is_active, form.name);
            }
        }
    }

    #[test]
    fn next_is_always_a_local_path(next in any::<String>()) {
        let kept = crate::admin::account::safe_next(Some(&next));
        prop_assert!(kept.starts_with('/') && !kept.starts_with("//"));
        prop_assert!(!kept.contains('\\') && !kept.chars().any(char::is_control));
    }

    #[test]
    fn client_address_readers_never_panic(forwarded in any::<String>(), origin in any::<String>(), host in any::<String>()) {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&forwarded) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
        let trusted = crate::net::TrustedProxies::new(vec![crate::net::parse_net("127.0.0.0/8").unwrap()]);
        let _ = crate::net::client_ip_of(Some("127.0.0.1:1".parse().unwrap()), &headers, &trusted);
        let _ = crate::net::same_origin(&origin, &host);
        let _ = crate::net::parse_net(&forwarded);
    }
}

/// Fine-grained grants against a brute-force reading of what they mean:
/// a read is allowed exactly when every cell (column, row) it reads lies
/// in some grant; through a scoped token, in some grant and some scope.
mod fine_grants {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use crate::auth::grant::{Bound, Grant, Reach, Read, Window};

    const COLUMNS: [&str; 3] = ["a", "b", "c"];

    fn bound() -> impl Strategy<Value = Bound> {
        prop_oneof![(0u64..24).prop_map(Bound::Start), (0u64..24).prop_map(Bound::End)]
    }

    fn grant() -> impl Strategy<Value = Grant> {
        let columns = prop::option::of(prop::sample::subsequence(COLUMNS.to_vec(), 1..=3));
        let window = prop::option::of((bound(), bound()));
        (columns, window).prop_filter_map("a grant that checks", |(columns, window)| {
            let mut grant = Grant::new("lbasedb.view_data", "s");
            grant.columns =
                columns.map(|names| names.into_iter().map(str::to_owned).collect::<BTreeSet<_>>());
            grant.rows = window.map(|(from, to)| Window { from, to });
            grant.check().is_ok().then_some(grant)
        })
    }

    /// Whether row `row` of a feed of `size` rows is in `window`, as the
    /// grammar's words say it (`-k` is "k rows back from the end").
    fn in_window(row: u64, window: &Window, size: u64) -> bool {
        let from = match window.from {
            Bound::Start(first) => row >= first,
            Bound::End(back) => row + back >= size,
        };
        let to = match window.to {
            Bound::End(0) => true,
            Bound::Start(end) => row < end,
            Bound::End(back) => row + back < size,
        };
        from && to
    }

    fn holds(grant: &Grant, column: &str, row: u64, size: u64) -> bool {
        grant.columns.as_ref().is_none_or(|names| names.contains(column))
            && grant.rows.as_ref().is_none_or(|window| in_window(row, window, size))
    }

    fn reach_of(grants: &[Grant]) -> Option<Reach> {
        let mut grants = grants.iter();
        let mut reach = Reach::of(grants.next()?);
        for grant in grants {
            reach.add(Reach::of(grant));
        }
        Some(reach)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn a_read_is_allowed_exactly_when_every_cell_is_granted(
            grants in prop::collection::vec(grant(), 1..4),
            scopes in prop::collection::vec(grant(), 0..3),
            columns in prop::collection::vec(prop::sample::select(COLUMNS.to_vec()), 1..4),
            ix in 0u64..32,
            count in 1u64..16,
            size in 0u64..40,
        ) {
            let user = reach_of(&grants).unwrap();
            // A token without scopes holds what its user does.
            let (reach, scoped) = match reach_of(&scopes) {
                Some(scope) => (user.intersect(&scope), true),
                None => (Some(user), false),
            };
            let names: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            let read = Read { columns: &names, rows: Some((ix, count)) };
            let allowed = reach.is_some_and(|reach| reach.check("s", read, Some(size)).is_ok());
            // Rows past the feed's end hold nothing (the upstream refuses
            // a read of them): allowed or not, they leak nothing.
            let every_cell = columns.iter().all(|column| {
                (ix..(ix + count).min(size)).all(|row| {
                    grants.iter().any(|g| holds(g, column, row, size))
                        && (!scoped || scopes.iter().any(|s| holds(s, column, row, size)))
                })
            });
            if allowed {
                prop_assert!(every_cell, "allowed outside: grants {:?} scopes {:?}", grants, scopes);
            }
            if every_cell && ix + count <= size {
                prop_assert!(allowed, "refused inside: grants {:?} scopes {:?}", grants, scopes);
            }
        }

        #[test]
        fn a_grant_covers_another_only_if_it_holds_its_every_cell(
            a in grant(), b in grant(), size in 0u64..40,
        ) {
            if a.covers(&b) {
                for column in COLUMNS {
                    for row in 0..size {
                        prop_assert!(
                            !holds(&b, column, row, size) || holds(&a, column, row, size),
                            "{a} covers {b} but not {column} row {row} of {size}"
                        );
                    }
                }
            }
        }
    }
}
