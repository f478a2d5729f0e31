//! Per-user limits on the proxy, as Django REST framework's
//! `UserRateThrottle`: a request rate (`USER_RATE_LIMIT`, e.g. `600/min`,
//! overridden per group, the most generous of a user's groups winning,
//! superusers exempt), and a cap on one user's requests in flight
//! (`USER_MAX_IN_FLIGHT`), so that one script with 256 connections cannot
//! fill the upstream's pool. In memory, per process.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::budget::{Place, Places};

/// A number of requests per period, written as DRF writes it: `600/min`,
/// `10/s`, `1000/hour`, `50000/day` (the period's first letter counts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub requests: u32,
    pub per: Duration,
}

impl Rate {
    pub fn per_second(self) -> f64 {
        f64::from(self.requests) / self.per.as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?}: expected a rate such as 600/min, 10/s, 1000/hour");
        let (requests, period) = text.trim().split_once('/').ok_or_else(invalid)?;
        let requests: u32 = requests.trim().parse().map_err(|_| invalid())?;
        let per = match period.trim().chars().next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            _ => return Err(invalid()),
        };
        if requests == 0 {
            return Err(invalid());
        }
        Ok(Self { requests, per: Duration::from_secs(per) })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "hour",
            _ => "day",
        };
        write!(f, "{}/{period}", self.requests)
    }
}

/// The rate a user gets: none for a superuser, else the most generous of
/// its groups' rates, else the default.
pub fn effective_rate(
    superuser: bool,
    group_rates: &[Rate],
    default: Option<Rate>,
) -> Option<Rate> {
    if superuser {
        return None;
    }
    group_rates.iter().copied().max_by(|a, b| a.per_second().total_cmp(&b.per_second())).or(default)
}

/// Why a request was refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limited {
    Rate(Duration),
    InFlight,
}

/// A token bucket per user (its tokens, when last counted), and the
/// requests each user has in flight.
#[derive(Clone)]
pub struct UserLimits {
    buckets: Cache<i32, (f64, Instant)>,
    in_flight: Places<i32>,
    max_in_flight: Option<usize>,
}

impl UserLimits {
    pub fn new(max_in_flight: Option<usize>) -> Self {
        Self {
            buckets: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(86_400))
                .build(),
            in_flight: Places::default(),
            max_in_flight,
        }
    }

    /// Admits one request of `user` at `rate` (none: unlimited), or says
    /// why not. The returned guard holds its place in flight until dropped.
    pub fn admit(&self, user: i32, rate: Option<Rate>, exempt: bool) -> Result<Slot, Limited> {
        if let Some(rate) = rate {
            self.take_token(user, rate)?;
        }
        if exempt {
            return Ok(Slot(None));
        }
        let Some(max) = self.max_in_flight else {
            return Ok(Slot(None));
        };
        let place = self.in_flight.take_below(user, max).ok_or(Limited::InFlight)?;
        Ok(Slot(Some(place)))
    }

    /// Takes a token from the user's bucket (as many as the rate's count,
    /// refilled at the rate), atomically per user.
    fn take_token(&self, user: i32, rate: Rate) -> Result<(), Limited> {
        let (capacity, per_second) = (f64::from(rate.requests), rate.per_second());
        let mut refused = None;
        self.buckets.entry(user).and_upsert_with(|entry| {
            let now = Instant::now();
            let (tokens, last) = entry.map_or((capacity, now), |e| e.into_value());
            let tokens =
                (tokens + now.duration_since(last).as_secs_f64() * per_second).min(capacity);
            if tokens >= 1.0 {
                (tokens - 1.0, now)
            } else {
                refused = Some(Duration::from_secs_f64((1.0 - tokens) / per_second));
                (tokens, now)
            }
        });
        match refused {
            Some(wait) => Err(Limited::Rate(wait.max(Duration::from_secs(1)))),
            None => Ok(()),
        }
    }
}

/// A request's place in its user's flight (none for the exempt), given
/// back when dropped.
pub struct Slot(#[allow(dead_code)] Option<Place<i32>>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_drf_writes_them() {
        let rate: Rate = "600/min".parse().unwrap();
        assert_eq!((rate.requests, rate.per), (600, Duration::from_secs(60)));
        assert_eq!("10/sec".parse::<Rate>().unwrap().per, Duration::from_secs(1));
        assert_eq!("5/hour".parse::<Rate>().unwrap().to_string(), "5/hour");
        for bad in ["", "600", "x/min", "10/fortnight", "0/min", "-1/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_most_generous_group_wins_and_superusers_are_exempt() {
        let (slow, fast): (Rate, Rate) = ("10/min".parse().unwrap(), "1/s".parse().unwrap());
        assert_eq!(effective_rate(false, &[slow, fast], None), Some(fast));
        assert_eq!(effective_rate(false, &[], Some(slow)), Some(slow));
        assert_eq!(effective_rate(true, &[slow], Some(slow)), None);
    }

    #[test]
    fn a_bucket_empties_and_in_flight_is_capped() {
        let limits = UserLimits::new(Some(1));
        let rate: Rate = "2/hour".parse().unwrap();
        let first = limits.admit(1, Some(rate), false).unwrap();
        assert_eq!(limits.admit(1, Some(rate), false).err(), Some(Limited::InFlight));
        drop(first);
        assert!(matches!(limits.admit(1, Some(rate), false), Err(Limited::Rate(_))));
        assert!(limits.admit(2, Some(rate), false).is_ok(), "another user");
    }
}
