//! Write quotas, as ClickHouse's `CREATE QUOTA ... KEYED BY user_name`: the
//! rows and the bytes each user may write through the proxy in a day
//! (UTC), `WRITE_QUOTA` by default, overridden per group (the most
//! generous of a user's groups winning, each of rows and bytes on its own),
//! superusers exempt. What a user wrote is counted in the database as each
//! write is acknowledged, so every replica counts into the same day
//! (`proxy::quota`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{NaiveDate, Utc};

/// Rows and bytes a day; `None`: no limit on that one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
}

impl Quota {
    pub fn is_unlimited(&self) -> bool {
        self.rows.is_none() && self.bytes.is_none()
    }

    /// A user's quota: its groups' most generous rows and bytes, each
    /// falling back to the default where no group sets it; none for a
    /// superuser.
    pub fn effective(superuser: bool, groups: &[Quota], default: Quota) -> Quota {
        if superuser {
            return Quota::default();
        }
        let most = |of: fn(&Quota) -> Option<u64>, default: Option<u64>| {
            groups.iter().filter_map(of).max().or(default)
        };
        Quota { rows: most(|q| q.rows, default.rows), bytes: most(|q| q.bytes, default.bytes) }
    }
}

/// `10000000rows/day`, `2GB/day`, `500MiB/day`, or both, comma-separated
/// (`10000000rows/day, 2GB/day`); bytes in decimal (`kB`,
/// `MB`, `GB`, `TB`) or binary (`KiB` … `TiB`) units.
impl FromStr for Quota {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("{text:?}: expected a quota such as 10000000rows/day, 2GB/day or both");
        let mut quota = Quota::default();
        let items = text.split(',').map(str::trim).filter(|item| !item.is_empty());
        for item in items {
            let amount = item.strip_suffix("/day").ok_or_else(invalid)?.trim();
            let split = amount.find(|c: char| !c.is_ascii_digit()).unwrap_or(amount.len());
            let (number, unit) = amount.split_at(split);
            let number: u64 = number.parse().map_err(|_| invalid())?;
            let slot = match unit.trim() {
                "rows" | "row" => &mut quota.rows,
                _ => &mut quota.bytes,
            };
            let scale = match unit.trim() {
                "rows" | "row" | "B" => 1,
                "kB" | "KB" => 1_000,
                "MB" => 1_000_000,
                "GB" => 1_000_000_000,
                "TB" => 1_000_000_000_000,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                "TiB" => 1 << 40,
                _ => return Err(invalid()),
            };
            if slot.is_some() || number == 0 {
                return Err(invalid());
            }
            *slot = Some(number.checked_mul(scale).ok_or_else(invalid)?);
        }
        if quota.is_unlimited() {
            return Err(invalid());
        }
        Ok(quota)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(rows) = self.rows {
            parts.push(format!("{rows}rows/day"));
        }
        if let Some(bytes) = self.bytes {
            parts.push(format!("{}/day", human_bytes(bytes)));
        }
        f.write_str(&parts.join(","))
    }
}

/// `bytes` in the unit that writes it exactly with the fewest digits.
fn human_bytes(bytes: u64) -> String {
    let units = [
        (1u64 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
        (1_000_000_000_000, "TB"),
        (1_000_000_000, "GB"),
        (1_000_000, "MB"),
        (1_000, "kB"),
    ];
    units
        .iter()
        .filter(|(scale, _)| bytes.is_multiple_of(*scale))
        .max_by_key(|(scale, _)| *scale)
        .map_or_else(|| format!("{bytes}B"), |(scale, unit)| format!("{}{unit}", bytes / scale))
}

/// The day (UTC) a write is counted in, as the database keeps it.
pub fn today() -> String {
    Utc::now().date_naive().format("%Y-%m-%d").to_string()
}

/// How long until a spent quota is whole again: the next day (UTC).
pub fn until_tomorrow() -> Duration {
    let now = Utc::now();
    let tomorrow = now.date_naive().succ_opt().unwrap_or(NaiveDate::MAX);
    let midnight = tomorrow.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    (midnight - now).to_std().unwrap_or(Duration::from_secs(1)).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_read_and_write_back() {
        let both: Quota = "10000000rows/day,2GB/day".parse().unwrap();
        assert_eq!(both, Quota { rows: Some(10_000_000), bytes: Some(2_000_000_000) });
        assert_eq!(both.to_string(), "10000000rows/day,2GB/day");
        assert_eq!("512MiB/day".parse::<Quota>().unwrap().bytes, Some(512 << 20));
        assert_eq!("7 rows/day".parse::<Quota>().unwrap().rows, Some(7));
        assert_eq!("1500B/day".parse::<Quota>().unwrap().to_string(), "1500B/day");
        assert_eq!("3GiB/day".parse::<Quota>().unwrap().to_string(), "3GiB/day");
        for bad in [
            "",
            "5/day",
            "5rows",
            "0rows/day",
            "5rows/day,6rows/day",
            "-1GB/day",
            "5PB/day",
            "99999999999999999999TB/day",
            "18446744073709551615TB/day",
        ] {
            assert!(bad.parse::<Quota>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_most_generous_group_wins_each_part_on_its_own() {
        let default: Quota = "100rows/day,1MB/day".parse().unwrap();
        let groups = ["1000rows/day".parse().unwrap(), "10rows/day,5MB/day".parse().unwrap()];
        let got = Quota::effective(false, &groups, default);
        assert_eq!(got, Quota { rows: Some(1000), bytes: Some(5_000_000) });
        assert_eq!(Quota::effective(false, &[], default), default);
        assert!(Quota::effective(true, &groups, default).is_unlimited());
        assert!(until_tomorrow() <= Duration::from_secs(86_400));
    }
}
