//! Column datatypes as widths in bytes: what a read of `n` rows makes the
//! storage allocate (`n` times the widths of the columns named), and which
//! new columns are refused. The proxy and the embedded server share these,
//! so that the two refuse the same requests.

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

/// What a read of `rows` rows of these columns (name, datatype) makes the
/// storage allocate, in bytes: a column named twice counts twice; a
/// datatype of no width counts nothing (`refuse_read` refuses it first).
/// Saturating, so that no query overflows it.
pub fn read_cost(rows: u64, cols: &[(&str, &str)]) -> u64 {
    cols.iter()
        .map(|(_, datatype)| width(datatype).unwrap_or(0))
        .fold(0u64, u64::saturating_add)
        .saturating_mul(rows)
}

/// Why a read of `rows` rows of these columns (name, datatype) is refused,
/// if it is: a column the storage cannot read (no width: it would divide
/// by zero), one wider than any that may be made (made before the limit,
/// or on the upstream directly), or more bytes than `MAX_READ_BYTES`.
pub fn refuse_read(rows: u64, cols: &[(&str, &str)], limits: &Limits) -> Option<String> {
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
    let bytes = read_cost(rows, cols);
    (bytes > limits.max_read_bytes).then(|| {
        format!(
            "This read is {bytes} bytes ({rows} rows of {} column(s)); a read is at most {} \
             bytes (MAX_READ_BYTES): ask for fewer rows or columns at a time",
            cols.len(),
            limits.max_read_bytes
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
    fn new_columns_and_reads_past_the_limits_are_refused() {
        let limits = Limits { max_column_width: 64, max_read_bytes: 1000, ..Limits::DEFAULT };
        assert!(refuse_new_column("Bytes[64]", &limits).is_none());
        assert!(refuse_new_column("Bytes[65]", &limits).is_some());
        assert!(refuse_new_column("String[1000000000000]", &limits).is_some());
        assert!(refuse_new_column("Nope", &limits).is_some());
        let x = ("x", "Float64");
        assert!(refuse_read(125, &[x], &limits).is_none());
        assert!(refuse_read(126, &[x], &limits).is_some());
        // Named twice, counted twice.
        assert!(refuse_read(62, &[x, x], &limits).is_none());
        assert_eq!(read_cost(62, &[x, x]), 992);
        assert!(refuse_read(63, &[x, x], &limits).is_some());
        // Too wide to read at all, even one row; or of no width.
        assert!(refuse_read(1, &[("b", "Bytes[65]")], &limits).is_some());
        assert!(refuse_read(1, &[("b", "Blob")], &limits).is_some());
        assert!(refuse_read(u64::MAX, &[x], &limits).is_some());
        assert_eq!(read_cost(u64::MAX, &[("b", "Bytes[1000000000000]"), x]), u64::MAX);
    }
}
