//! What a request costs the storage, in bytes, from its columns' datatypes:
//! a read of `n` rows allocates `n` times the widths of the columns it
//! names (and as JSON, a record per value on top), a write as much of what
//! it touches; a size is a promise of a file per column. Which columns and
//! sizes are refused. The proxy and the embedded server share these, so
//! that the two refuse the same requests.

use lbasedb::prelude::Datatype;

use crate::config::Limits;

/// A column's width in bytes, or `None` for a datatype the storage cannot
/// hold: unknown (the upstream's worker panics on it) or of no fixed size
/// (`Blob`, `Text`, `Bytes[0]`: the crate divides by the width).
pub fn width(datatype: &str) -> Option<u64> {
    let width = datatype.parse::<Datatype>().ok()?.size();
    (width > 0).then_some(width as u64)
}

/// Why a new column of `datatype` is refused, if it is: unknown, or wider
/// than `MAX_COLUMN_WIDTH` (`Bytes[1000000000000]` is accepted by the
/// storage, which then aborts on the first read or resize).
pub fn refuse_new_column(datatype: &str, limits: &Limits) -> Option<String> {
    match width(datatype) {
        None => Some("Unknown datatype".into()),
        Some(width) if width > limits.max_column_width => Some(format!(
            "datatype {datatype} is {width} bytes wide; a column is at most {} bytes wide \
             (MAX_COLUMN_WIDTH)",
            limits.max_column_width
        )),
        Some(_) => None,
    }
}

/// How an answer or a body is written: raw column bytes (`/bytes`, `/raw`),
/// or JSON (`/data`), where the storage also keeps a record per value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Binary,
    Json,
}

/// What one value of `width` bytes costs the storage in JSON, measured on
/// the `lbasedb` crate: a 32-byte record, a buffer of its own with an
/// allocation's overhead, its text (Base64 for `Bytes[N]`), its bytes. A
/// `Bytes[1]` value read as JSON takes 62 bytes, an `Int32` 30; a JSON
/// write of `""` for a `Bytes[N]` column takes N and more. Rounded up.
pub fn json_value_cost(width: u64) -> u64 {
    96u64.saturating_add(width.saturating_mul(4))
}

/// What one row of a column of `width` bytes costs in `form`.
fn row_cost(width: u64, form: Form) -> u64 {
    match form {
        Form::Binary => width,
        Form::Json => json_value_cost(width),
    }
}

/// What a read of `rows` rows of these columns (name, datatype) makes the
/// storage allocate, in bytes: a column named twice counts twice; a
/// datatype of no width counts nothing (`refuse_read` refuses it first).
/// Saturating, so that no query overflows it.
pub fn read_cost(rows: u64, cols: &[(&str, &str)], form: Form) -> u64 {
    cols.iter()
        .map(|(_, datatype)| width(datatype).map_or(0, |w| row_cost(w, form)))
        .fold(0u64, u64::saturating_add)
        .saturating_mul(rows)
}

/// Why a read of `rows` rows of these columns (name, datatype) is refused,
/// if it is: a column the storage cannot read (no width: it would divide
/// by zero), one wider than any that may be made (made before the limit,
/// or on the upstream directly), or more bytes than `MAX_READ_BYTES`.
pub fn refuse_read(
    rows: u64,
    cols: &[(&str, &str)],
    form: Form,
    limits: &Limits,
) -> Option<String> {
    for (name, datatype) in cols {
        match width(datatype) {
            None => return Some(format!("column {name} is a {datatype}: it cannot be read")),
            Some(width) if width > limits.max_column_width => {
                return Some(format!(
                    "column {name} is a {datatype}, {width} bytes wide, over MAX_COLUMN_WIDTH \
                     ({}): it cannot be read",
                    limits.max_column_width
                ));
            }
            Some(_) => {}
        }
    }
    let bytes = read_cost(rows, cols, form);
    let as_json = if form == Form::Json { " as JSON (/bytes costs less)" } else { "" };
    (bytes > limits.max_read_bytes).then(|| {
        format!(
            "This read takes {bytes} bytes ({rows} rows of {} column(s){as_json}); a read is at \
             most {} bytes (MAX_READ_BYTES): ask for fewer rows or columns at a time",
            cols.len(),
            limits.max_read_bytes
        )
    })
}

/// Why a write costing `bytes` is refused, if it is.
pub fn refuse_write(bytes: u64, limits: &Limits) -> Option<String> {
    (bytes > limits.max_write_bytes).then(|| {
        format!(
            "This write makes Lbasedb build {bytes} bytes at once; a write is at most {} \
             (MAX_WRITE_BYTES): write fewer rows at a time",
            limits.max_write_bytes
        )
    })
}

/// The largest file a column may become (rows × width): ext4 takes 16 TiB
/// in one file, and a size the file system refuses is recorded all the
/// same by the storage, whose reads of that column then fail for good.
pub const MAX_COLUMN_FILE: u64 = 1 << 40;

/// Why a feed of `rows` rows with columns of these widths is refused, if
/// it is: some column's file would be over `MAX_COLUMN_FILE`.
pub fn refuse_size(rows: u64, widths: impl IntoIterator<Item = u64>) -> Option<String> {
    let widest = widths.into_iter().max().unwrap_or(0);
    (rows.saturating_mul(widest) > MAX_COLUMN_FILE).then(|| {
        format!(
            "{rows} rows of a {widest}-byte column is a file of over {MAX_COLUMN_FILE} bytes, \
             more than a column's file may be"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_of_every_datatype() {
        let cases = [
            ("Int64", Some(8)),
            ("Int32", Some(4)),
            ("Float64", Some(8)),
            ("Float32", Some(4)),
            ("Bytes[16]", Some(16)),
            ("String[3]", Some(3)),
            ("Bytes[1000000000000]", Some(1_000_000_000_000)),
            ("Bytes[0]", None),
            ("Blob", None),
            ("Text", None),
            ("Nope", None),
            ("Bytes[-1]", None),
            ("Bytes[99999999999999999999999]", None),
        ];
        for (datatype, expected) in cases {
            assert_eq!(width(datatype), expected, "{datatype}");
        }
    }

    #[test]
    fn new_columns_reads_writes_and_sizes_past_the_limits_are_refused() {
        let limits = Limits {
            max_column_width: 64,
            max_read_bytes: 1000,
            max_write_bytes: 500,
            ..Limits::DEFAULT
        };
        assert!(refuse_new_column("Bytes[64]", &limits).is_none());
        assert!(refuse_new_column("Bytes[65]", &limits).is_some());
        assert!(refuse_new_column("String[1000000000000]", &limits).is_some());
        assert!(refuse_new_column("Nope", &limits).is_some());
        let x = ("x", "Float64");
        let binary = Form::Binary;
        assert!(refuse_read(125, &[x], binary, &limits).is_none());
        assert!(refuse_read(126, &[x], binary, &limits).is_some());
        // Named twice, counted twice.
        assert!(refuse_read(62, &[x, x], binary, &limits).is_none());
        assert_eq!(read_cost(62, &[x, x], binary), 992);
        assert!(refuse_read(63, &[x, x], binary, &limits).is_some());
        // As JSON, each value costs its record too.
        assert_eq!(read_cost(1, &[x], Form::Json), 128);
        assert!(refuse_read(8, &[x], Form::Json, &limits).is_some());
        assert_eq!(read_cost(10, &[("b", "Bytes[1]")], Form::Json), 1000);
        // Too wide to read at all, even one row; or of no width.
        assert!(refuse_read(1, &[("b", "Bytes[65]")], binary, &limits).is_some());
        assert!(refuse_read(1, &[("b", "Blob")], binary, &limits).is_some());
        assert!(refuse_read(u64::MAX, &[x], binary, &limits).is_some());
        assert_eq!(read_cost(u64::MAX, &[("b", "Bytes[1000000000000]"), x], binary), u64::MAX);
        assert!(refuse_write(500, &limits).is_none());
        assert!(refuse_write(501, &limits).is_some());
        assert!(refuse_size(1 << 20, [1 << 20]).is_none());
        assert!(refuse_size((1 << 20) + 1, [8, 1 << 20]).is_some());
        assert!(refuse_size(u64::MAX, []).is_none());
    }
}
