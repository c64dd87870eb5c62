//! Event ids: 128-bit, time-ordered and unique across restarts and nodes, written as 26
//! Crockford base32 characters (the ULID layout: 48 bits of Unix milliseconds, then 80 random
//! bits). Sorting ids as strings sorts them by time; within one millisecond of one generator
//! they still increase.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(u128);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("\"{0}\" is not an event id: expected 26 characters of Crockford base32")]
pub struct BadEventId(String);

/// Makes ids that increase strictly, even within one millisecond.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: Mutex<u128>,
}

impl IdGenerator {
    pub fn new() -> Self {
        Self::default()
    }

    /// An id for an event at wall time `at` (use the capture time, so ids sort like events).
    pub fn at(&self, at: SystemTime) -> EventId {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            & ((1 << 48) - 1);
        let random: u128 = rand::rng().random::<u128>() & ((1 << 80) - 1);
        let candidate = (ms << 80) | random;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // Same millisecond (or a clock step back): continue after the last id.
        let id = if candidate <= *last && (*last >> 80) >= ms {
            *last + 1
        } else {
            candidate
        };
        *last = id;
        EventId(id)
    }

    pub fn now(&self) -> EventId {
        self.at(SystemTime::now())
    }
}

impl EventId {
    pub fn as_u128(self) -> u128 {
        self.0
    }

    pub fn from_u128(v: u128) -> Self {
        Self(v)
    }

    /// Milliseconds since the Unix epoch encoded in the id.
    pub fn millis(self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 26];
        let mut v = self.0;
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(v & 31) as usize];
            v >>= 5;
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for EventId {
    type Err = BadEventId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadEventId(s.to_string());
        if s.len() != 26 || s.as_bytes()[0] > b'7' {
            return Err(bad());
        }
        let mut v: u128 = 0;
        for c in s.bytes() {
            let c = c.to_ascii_uppercase();
            let digit = ALPHABET.iter().position(|a| *a == c).ok_or_else(bad)?;
            v = (v << 5) | digit as u128;
        }
        Ok(Self(v))
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn ids_increase_within_one_millisecond() {
        let g = IdGenerator::new();
        let t = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let ids: Vec<EventId> = (0..1000).map(|_| g.at(t)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|i| i.millis() == 1_800_000_000_123));
        let strings: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let mut sorted = strings.clone();
        sorted.sort();
        assert_eq!(strings, sorted, "string order is time order");
    }

    #[test]
    fn later_events_sort_later() {
        let g = IdGenerator::new();
        let a = g.at(UNIX_EPOCH + Duration::from_millis(1000));
        let b = IdGenerator::new().at(UNIX_EPOCH + Duration::from_millis(1001));
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn rejects_bad_text() {
        assert!("not-an-id".parse::<EventId>().is_err());
        assert!(
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<EventId>().is_err(),
            "overflows 128 bits"
        );
        assert!(
            "01ARZ3NDEKTSV4RRFFQ69G5FAU".parse::<EventId>().is_err(),
            "U is not base32"
        );
    }

    proptest! {
        #[test]
        fn text_round_trips(v in any::<u128>()) {
            let id = EventId::from_u128(v);
            let s = id.to_string();
            prop_assert_eq!(s.len(), 26);
            prop_assert_eq!(s.parse::<EventId>(), Ok(id));
        }
    }
}
