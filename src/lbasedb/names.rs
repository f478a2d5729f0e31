//! Lbasedb's rule for feed and column names, and the length past which a
//! name cannot be a file name everywhere.

/// Longest feed or column name, in bytes. A feed is a folder and a column
/// a file `<name>.col` inside it; 255 bytes is the common limit for one path
/// component (ext4, XFS, btrfs, APFS), less on some (eCryptfs: 143). A
/// longer column name is written to the feed's list before its file fails,
/// and the storage then refuses to open at all; 128 leaves room everywhere.
pub const MAX_NAME_LEN: usize = 128;

/// Lbasedb's name rule (`lbasedb::utils::ALLOWED_NAME_PATTERN`): dot-separated
/// segments of letters, digits and `_`, none starting with a digit; and at
/// most `MAX_NAME_LEN` bytes. Written out because the crate compiles its
/// regex on every call, and this runs on every proxied request.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('.').all(|segment| {
            let mut bytes = segment.bytes();
            matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// A name whose length alone keeps it from being stored.
pub fn is_too_long(name: &str) -> bool {
    name.len() > MAX_NAME_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule_matches_the_lbasedb_crate() {
        let names = [
            "xy",
            "x",
            "_",
            "a.b",
            "a_1.B_2.c3",
            "A",
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "1a",
            "a.1b",
            "a-b",
            "a b",
            "é",
            "a/b",
            "a\0",
        ];
        for name in names {
            assert_eq!(
                is_valid_name(name),
                lbasedb::utils::validate_allowed_name(name).is_ok(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn names_longer_than_a_file_system_takes_are_refused() {
        let longest = "a".repeat(MAX_NAME_LEN);
        assert!(is_valid_name(&longest));
        assert!(!is_valid_name(&format!("{longest}b")));
        assert!(!is_valid_name(&"a".repeat(252)));
        assert!(is_too_long(&"a".repeat(252)));
    }
}
