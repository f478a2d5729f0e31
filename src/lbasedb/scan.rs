//! A JSON dataset (`{"col": [v, v, …], …}`, the body of a `/data` write)
//! counted as its bytes go by: how many values each key has, without
//! holding the body or any value. What a JSON write costs the storage
//! depends on that (`datatype::json_value_cost`), and the body must be
//! refused before the storage parses it: the proxy counts while it streams
//! the body on (and cuts it, so that the upstream never acts on it), the
//! embedded server before it parses.
//!
//! Not a validator: a body that is not a dataset is counted as far as it
//! goes, and the storage's own parser says what is wrong with it.

/// Longest key kept, decoded: no column name is longer
/// (`names::MAX_NAME_LEN`); a longer key is counted under its first bytes.
const MAX_KEY: usize = 256;
/// Longest key read as written: `MAX_KEY` characters each escaped
/// (`\uXXXX`, a surrogate pair for one outside the BMP). A longer key is
/// no column's name whatever it decodes to.
const MAX_RAW_KEY: usize = 12 * MAX_KEY;
/// Most keys a dataset may name: a feed has at most `MAX_COLUMNS_PER_FEED`
/// columns (1,024 by default). Past it the write is refused: each key is
/// kept while the body streams (a 64 MiB body of `"":[],` is ten million
/// keys).
pub const MAX_KEYS: usize = 4096;
/// Keys searched for one by one; past them, a set.
const SEARCHED: usize = 16;

/// The bytes `step` acts on outside a string: `"`, brackets, braces and
/// commas.
const STRUCTURAL: [bool; 256] = {
    let mut table = [false; 256];
    let bytes = *b"\"{}[],";
    let mut i = 0;
    while i < bytes.len() {
        table[bytes[i] as usize] = true;
        i += 1;
    }
    table
};

#[derive(Debug, Default, Clone)]
pub struct DatasetScan {
    /// Nesting: 1 inside the dataset's object, 2 inside a column's list.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At depth 1, the string being read is a key (not a value).
    key_next: bool,
    key: Vec<u8>,
    reading_key: bool,
    /// The key last read (its place in `counts`), if it was kept.
    current: Option<usize>,
    /// The column whose list is open, and whether it has a value yet.
    column: Option<usize>,
    value_seen: bool,
    /// Values per key, decoded as the storage's parser decodes it, in the
    /// order met (a key met twice counts twice).
    counts: Vec<(String, u64)>,
    /// The keys met once there are more than `SEARCHED`, to tell a key met
    /// twice (`"x"` and `"\u0078"` too).
    seen: std::collections::HashSet<String>,
    repeated: bool,
    /// More than `MAX_KEYS` keys: the write is refused.
    too_many: bool,
    /// The longest list so far.
    most: u64,
    /// What the write costs as it is counted, when the feed's columns
    /// were given (`priced`): the proxy asks at every chunk of a body, and
    /// adding it up again then cost time in chunks times keys (a trickle
    /// of two-byte chunks after 4,096 keys: seconds of a worker's time).
    prices: Option<Prices>,
}

/// A priced scan's running cost.
#[derive(Debug, Default, Clone)]
struct Prices {
    /// Each column's width, by name.
    widths: std::collections::HashMap<String, u64>,
    /// What one value of each key in `counts` costs (`json_value_cost`).
    per_value: Vec<u64>,
    /// The values' cost so far.
    values: u64,
    /// The widths of the columns no key has named yet (what a PUT zeroes,
    /// for every row).
    unnamed: u64,
}

impl DatasetScan {
    pub fn new() -> Self {
        Self::default()
    }

    /// A scan that keeps what the write costs a feed of these columns
    /// (name, width) as it counts (`cost`).
    pub fn priced(columns: Vec<(String, u64)>) -> Self {
        let widths: std::collections::HashMap<String, u64> = columns.into_iter().collect();
        let unnamed = widths.values().fold(0u64, |sum, w| sum.saturating_add(*w));
        Self { prices: Some(Prices { widths, unnamed, ..Prices::default() }), ..Self::default() }
    }

    /// What the write costs so far, as `write_cost` counts it, for a scan
    /// made `priced` (else nothing).
    pub fn cost(&self, zeroes_others: bool) -> u64 {
        let Some(prices) = &self.prices else {
            return 0;
        };
        let zeroed = if zeroes_others { prices.unnamed.saturating_mul(self.most) } else { 0 };
        prices.values.saturating_add(zeroed)
    }

    /// Counts the values in the next bytes of the body. After each byte
    /// that may change the count, the run of bytes that cannot (the rest
    /// of a number, of a string value) is passed over in bulk: a 34 MB
    /// write of numbers took the proxy about 60 ms of CPU a byte at a time
    /// (`docs/performance.md`).
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some((&byte, tail)) = rest.split_first() {
            self.step(byte);
            let inert = if self.in_string {
                // A value's text (a key's is kept, byte by byte): only a
                // quote or a backslash matters.
                if self.escaped || self.reading_key {
                    0
                } else {
                    memchr::memchr2(b'"', b'\\', tail).unwrap_or(tail.len())
                }
            } else if self.depth != 2 || self.value_seen {
                // Between structural bytes, nothing but a value's first
                // byte in a column's list counts, and that is not here.
                tail.iter().position(|&b| STRUCTURAL[usize::from(b)]).unwrap_or(tail.len())
            } else {
                0
            };
            rest = &tail[inert..];
        }
    }

    /// `feed`, a byte at a time: what it must always agree with.
    #[cfg(test)]
    fn feed_bytewise(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.step(byte);
        }
    }

    fn step(&mut self, byte: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
                if self.reading_key {
                    self.reading_key = false;
                    self.key_read();
                }
                return;
            }
            if self.reading_key && self.key.len() < MAX_RAW_KEY {
                self.key.push(byte);
            }
            return;
        }
        if byte.is_ascii_whitespace() {
            return;
        }
        // A value's first byte inside a column's list.
        if self.depth == 2 && !matches!(byte, b',' | b']') && !self.value_seen {
            self.value_seen = true;
            if let Some(column) = self.column {
                let count = &mut self.counts[column].1;
                *count += 1;
                self.most = self.most.max(*count);
                if let Some(prices) = &mut self.prices {
                    prices.values = prices.values.saturating_add(prices.per_value[column]);
                }
            }
        }
        match byte {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.key_next {
                    self.reading_key = true;
                    self.key_next = false;
                }
            }
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth == 1 {
                    self.key_next = true;
                }
                if self.depth == 2 && byte == b'[' {
                    self.column = self.current.take();
                    self.value_seen = false;
                }
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 1 {
                    self.column = None;
                }
            }
            b',' => match self.depth {
                1 => self.key_next = true,
                2 => self.value_seen = false,
                _ => {}
            },
            _ => {}
        }
    }

    /// A key read whole: decoded as JSON (a key the storage reads as `b`
    /// is priced as `b` however it is escaped), kept unless there are too
    /// many.
    fn key_read(&mut self) {
        let as_written = |raw: &[u8]| String::from_utf8_lossy(raw).into_owned();
        // Without a backslash a key is its own text.
        let mut key = if self.key.contains(&b'\\') {
            let mut quoted = Vec::with_capacity(self.key.len() + 2);
            quoted.push(b'"');
            quoted.extend_from_slice(&self.key);
            quoted.push(b'"');
            serde_json::from_slice::<String>(&quoted).unwrap_or_else(|_| as_written(&self.key))
        } else {
            as_written(&self.key)
        };
        self.key.clear();
        if key.len() > MAX_KEY {
            let mut end = MAX_KEY;
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            key.truncate(end);
        }
        if self.counts.len() >= MAX_KEYS {
            self.too_many = true;
            self.current = None;
            return;
        }
        let first = !self.named(&key);
        self.repeated |= !first;
        if let Some(prices) = &mut self.prices {
            let width = prices.widths.get(&key).copied();
            if first {
                prices.unnamed = prices.unnamed.saturating_sub(width.unwrap_or(0));
            }
            prices.per_value.push(super::datatype::json_value_cost(width.unwrap_or(0)));
        }
        self.current = Some(self.counts.len());
        match self.counts.len() {
            n if n < SEARCHED => {}
            n if n == SEARCHED => {
                self.seen = self.counts.iter().map(|(k, _)| k.clone()).collect();
                self.seen.insert(key.clone());
            }
            _ => {
                self.seen.insert(key.clone());
            }
        }
        self.counts.push((key, 0));
    }

    /// Whether a key was named: searched for among a few (no set made for
    /// them: a dataset names a handful of columns), looked up past them.
    fn named(&self, key: &str) -> bool {
        if self.counts.len() <= SEARCHED {
            self.counts.iter().any(|(k, _)| k == key)
        } else {
            self.seen.contains(key)
        }
    }

    /// Values per key so far.
    pub fn counts(&self) -> &[(String, u64)] {
        &self.counts
    }

    /// Whether the dataset names more than `MAX_KEYS` keys.
    pub fn too_many_keys(&self) -> bool {
        self.too_many
    }

    /// The most values any key has (so far): the rows a write would take,
    /// and the rows the dataset holds at least.
    pub fn rows(&self) -> u64 {
        self.most
    }

    /// The rows an append of this dataset adds, when that is certain: every
    /// key once, each with as many values (what the storage takes; it
    /// refuses lists of other lengths, and of a key met twice keeps one).
    pub fn uniform_rows(&self) -> Option<u64> {
        let first = self.counts.first().map_or(0, |(_, n)| *n);
        let distinct = !self.repeated && !self.too_many;
        (distinct && self.counts.iter().all(|(_, n)| *n == first)).then_some(first)
    }
}

/// What a counted JSON write costs the storage, given the feed's columns
/// and their widths: each value a record (`datatype::json_value_cost`; a
/// key that is no column costs its records all the same: it is parsed),
/// and when the write zeroes the columns it does not name (a `PUT`), their
/// rows too.
pub fn write_cost(scan: &DatasetScan, columns: &[(String, u64)], zeroes_others: bool) -> u64 {
    // Counted again at each chunk of a body: by look-ups, not by searching
    // the columns for each key (a feed may have 1,024, a body 4,096 keys).
    let widths: std::collections::HashMap<&str, u64> =
        columns.iter().map(|(name, width)| (name.as_str(), *width)).collect();
    let width = |name: &str| widths.get(name).copied().unwrap_or(0);
    let values = scan
        .counts()
        .iter()
        .map(|(key, n)| n.saturating_mul(super::datatype::json_value_cost(width(key))))
        .fold(0u64, u64::saturating_add);
    let zeroed = if zeroes_others {
        let others: u64 = columns
            .iter()
            .filter(|(name, _)| !scan.named(name))
            .map(|(_, w)| *w)
            .fold(0u64, u64::saturating_add);
        others.saturating_mul(scan.rows())
    } else {
        0
    };
    values.saturating_add(zeroed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(body: &str) -> DatasetScan {
        let mut scan = DatasetScan::new();
        // Byte by byte: the count must not depend on where chunks end.
        for byte in body.as_bytes() {
            scan.feed(std::slice::from_ref(byte));
        }
        let mut whole = DatasetScan::new();
        whole.feed(body.as_bytes());
        assert_eq!(whole.counts(), scan.counts(), "{body}");
        scan
    }

    fn pieces() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            4 => prop::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"", "\\", "\\\"", " ", "\n", "\"x\"", "\"y\":",
                "1.5", "-2e3", "null", "\"a,b]\"",
            ])
            .prop_map(str::to_owned),
            1 => any::<String>(),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Skipping in bulk counts what stepping through every byte does,
        /// wherever the body's chunks end.
        #[test]
        fn bulk_skips_count_as_every_byte_does(body in pieces(), cuts in proptest::collection::vec(0usize..400, 0..6)) {
            let bytes = body.as_bytes();
            let mut reference = DatasetScan::new();
            reference.feed_bytewise(bytes);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut chunked = DatasetScan::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                chunked.feed(&bytes[from..cut]);
                from = cut;
            }
            proptest::prop_assert_eq!(chunked.counts(), reference.counts());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The running cost of a priced scan is what `write_cost` adds up
        /// from the counts, at every chunk of a body.
        #[test]
        fn a_priced_scan_costs_what_write_cost_counts(
            body in pieces(),
            cuts in proptest::collection::vec(0usize..400, 0..6),
            widths in proptest::collection::vec(0u64..2000, 3),
            zeroes in proptest::prelude::any::<bool>(),
        ) {
            let columns: Vec<(String, u64)> =
                ["x", "y", "a,b]\"["].iter().zip(&widths).map(|(c, w)| (c.to_string(), *w)).collect();
            let bytes = body.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut priced = DatasetScan::priced(columns.clone());
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                priced.feed(&bytes[from..cut]);
                from = cut;
                proptest::prop_assert_eq!(
                    priced.cost(zeroes),
                    write_cost(&priced, &columns, zeroes)
                );
            }
        }
    }

    /// By hand: `cargo test --release --lib scan_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn scan_speed() {
        let rows = 1_000_000;
        let xs: Vec<String> = (0..rows).map(|i: u32| (f64::from(i) / 3.0).to_string()).collect();
        let body = format!(r#"{{"x":[{}],"y":[{}]}}"#, xs.join(","), xs.join(","));
        for (name, bulk) in
            [("bytewise", false), ("bulk", true), ("bytewise", false), ("bulk", true)]
        {
            let started = std::time::Instant::now();
            let mut scan = DatasetScan::new();
            for chunk in body.as_bytes().chunks(64 << 10) {
                if bulk { scan.feed(chunk) } else { scan.feed_bytewise(chunk) }
            }
            assert_eq!(scan.rows(), u64::from(rows));
            println!("{name}: {} MB in {:?}", body.len() / 1_000_000, started.elapsed());
        }
    }

    fn counts(body: &str) -> Vec<(String, u64)> {
        scan(body).counts().to_vec()
    }

    #[test]
    fn values_are_counted_per_key_however_they_are_written() {
        let pairs = |list: &[(&str, u64)]| -> Vec<(String, u64)> {
            list.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        assert_eq!(
            counts(r#"{"x": [1, 2, 3], "y": [1.5, -2e3, 0]}"#),
            pairs(&[("x", 3), ("y", 3)])
        );
        assert_eq!(counts(r#"{"b":["","",""]}"#), pairs(&[("b", 3)]));
        assert_eq!(counts(r#"{"b":["a,b]\"[", "c"]}"#), pairs(&[("b", 2)]));
        assert_eq!(counts(r#"{"x":[]}"#), pairs(&[("x", 0)]));
        assert_eq!(
            counts(r#"{"x":[[1,2],[3]], "y":[{"a":[1,2,3]}]}"#),
            pairs(&[("x", 2), ("y", 1)])
        );
        // Keys as the storage's parser reads them: escapes decoded.
        assert_eq!(counts(r#"{"k\"ey":[1]}"#), pairs(&[("k\"ey", 1)]));
        assert_eq!(counts(r#"{"\u0062":["",""]}"#), pairs(&[("b", 2)]));
        assert_eq!(counts(r#"{"\ud83d\ude00":[1]}"#), pairs(&[("\u{1f600}", 1)]));
        assert_eq!(counts(" { \"x\" :\n[ 1 ,\t2 ] } "), pairs(&[("x", 2)]));
        assert_eq!(counts(r#"{"x":[1],"x":[1,2]}"#), pairs(&[("x", 1), ("x", 2)]));
        assert_eq!(scan(r#"{"x":[1,2],"y":[1,2,3,4]}"#).rows(), 4);
        // What an append adds, only where it is certain.
        assert_eq!(scan(r#"{"x":[1,2],"y":[3,4]}"#).uniform_rows(), Some(2));
        assert_eq!(scan(r#"{}"#).uniform_rows(), Some(0));
        assert_eq!(scan(r#"{"x":[1,2],"y":[1,2,3,4]}"#).uniform_rows(), None);
        assert_eq!(scan(r#"{"x":[1,2],"x":[1,2]}"#).uniform_rows(), None, "a key twice");
        // Not a dataset: counted as far as it goes, never a panic.
        for junk in ["", "[1,2]", "{", "}}}]]]", r#"{"x": 5}"#, "\"unterminated", r#"{"x":[1,"#] {
            let _ = scan(junk).rows();
        }
        assert_eq!(counts(&format!(r#"{{"{}":[1]}}"#, "k".repeat(1000)))[0].0.len(), MAX_KEY);
    }

    #[test]
    fn a_key_is_read_as_the_storage_reads_it_and_keys_are_bounded() {
        // The same key escaped: a key named twice, rows not certain.
        assert_eq!(scan(r#"{"x":[1],"\u0078":[1,2]}"#).uniform_rows(), None);
        assert_eq!(scan(r#"{"x":[1],"\u0078":[1,2]}"#).rows(), 2);
        // An escape the parser refuses: counted under its text.
        assert_eq!(counts(r#"{"\q":[1]}"#), vec![("\\q".to_owned(), 1)]);
        let keys = |n: usize| {
            let keys: Vec<String> = (0..n).map(|i| format!(r#""k{i}":[{i}]"#)).collect();
            format!("{{{}}}", keys.join(","))
        };
        // A repeated key is found among a few keys and among many.
        for n in [3, SEARCHED, SEARCHED + 1, 40] {
            let once = keys(n);
            assert_eq!(scan(&once).uniform_rows(), Some(1), "{n} keys");
            let twice = format!("{},\"k{}\":[0]}}", &once[..once.len() - 1], n - 1);
            assert_eq!(scan(&twice).uniform_rows(), None, "{n} keys, the last twice");
            let first_again = format!("{},\"k0\":[0]}}", &once[..once.len() - 1]);
            assert_eq!(scan(&first_again).uniform_rows(), None, "{n} keys, the first twice");
        }
        let within = scan(&keys(MAX_KEYS));
        assert!(!within.too_many_keys());
        assert_eq!(within.uniform_rows(), Some(1));
        let past = scan(&keys(MAX_KEYS + 1));
        assert!(past.too_many_keys());
        assert_eq!(past.counts().len(), MAX_KEYS, "no key kept past the bound");
        assert_eq!(past.uniform_rows(), None);
    }

    #[test]
    fn a_write_costs_its_values_and_what_a_put_zeroes() {
        let columns = vec![("b".to_owned(), 1 << 20), ("x".to_owned(), 8)];
        let tiny = scan(r#"{"b":["","",""]}"#);
        // Three empty strings become three 1 MiB values.
        assert_eq!(write_cost(&tiny, &columns, false), 3 * (96 + 4 * (1 << 20)));
        let narrow = scan(r#"{"x":[1,2]}"#);
        assert_eq!(write_cost(&narrow, &columns, false), 2 * (96 + 32));
        // A PUT zeroes the column it does not name, for every row.
        assert_eq!(write_cost(&narrow, &columns, true), 2 * (96 + 32) + 2 * (1 << 20));
        let unknown = scan(r#"{"nope":[1,2,3]}"#);
        assert_eq!(write_cost(&unknown, &columns, false), 3 * 96);
    }

    #[test]
    fn a_large_body_of_tiny_values_is_counted_in_one_pass() {
        let body = format!(r#"{{"b":[{}""]}}"#, "\"\",".repeat(100_000));
        let scan = scan(&body);
        assert_eq!(scan.counts(), &[("b".to_owned(), 100_001)]);
    }
}
