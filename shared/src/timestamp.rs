//! UTC instants with millisecond precision, written as RFC 3339 (`2026-11-24T18:03:11.047Z`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Duration, OffsetDateTime, UtcOffset};

/// An instant in UTC, millisecond precision. The clock is never read here: callers pass `now`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// Why a value is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not an RFC 3339 date-time.
    #[error("not an RFC 3339 date-time: {0}")]
    NotRfc3339(String),
    /// Outside the representable range.
    #[error("timestamp out of range")]
    OutOfRange,
}

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub fn from_unix_millis(millis: i64) -> Result<Self, TimestampError> {
        let nanos = i128::from(millis) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).map(Self).map_err(|_| TimestampError::OutOfRange)
    }

    /// 1970-01-01T00:00:00Z.
    pub fn epoch() -> Self {
        Self(OffsetDateTime::UNIX_EPOCH)
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        // Range is bounded by `time` (±9999 years), which fits in i64 milliseconds.
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// Parses an RFC 3339 date-time with any offset; keeps millisecond precision.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let parsed = OffsetDateTime::parse(text.trim(), &Rfc3339)
            .map_err(|_| TimestampError::NotRfc3339(text.chars().take(40).collect()))?;
        Ok(Self::from_offset(parsed))
    }

    /// From a `time` instant (any offset), truncated to milliseconds.
    pub fn from_offset(value: OffsetDateTime) -> Self {
        let value = value.to_offset(UtcOffset::UTC);
        let millis = value.millisecond();
        Self(value.replace_nanosecond(u32::from(millis) * 1_000_000).unwrap_or(value))
    }

    /// This instant plus a number of whole days (saturating at the end of the range).
    pub fn plus_days(self, days: u32) -> Self {
        self.0.checked_add(Duration::days(i64::from(days))).map_or(self, Self)
    }
}

impl Timestamp {
    /// The UTC day, as people write it: `3 Dec 2026`.
    pub fn day(self) -> String {
        let format = format_description!("[day padding:none] [month repr:short] [year]");
        self.0.format(&format).unwrap_or_else(|_| self.to_string())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        match self.0.format(&format) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Serializers that honour this newtype name (the `firestore` crate) store a native timestamp,
/// which range queries and TTL policies need; every other format sees the plain RFC 3339 text.
const NATIVE_TIMESTAMP_TAG: &str = "FirestoreTimestamp";

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(NATIVE_TIMESTAMP_TAG, &self.to_string())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_through_rfc3339() {
        let t = Timestamp::from_unix_millis(1_763_994_191_047).unwrap();
        assert_eq!(t.to_string(), "2025-11-24T14:23:11.047Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()).unwrap(), t);
        assert_eq!(t.unix_millis(), 1_763_994_191_047);
    }

    #[test]
    fn offsets_are_converted_to_utc_and_whole_seconds_get_millis() {
        let t = Timestamp::parse_rfc3339("2027-01-03T09:00:00-03:00").unwrap();
        assert_eq!(t.to_string(), "2027-01-03T12:00:00.000Z");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
        assert!(Timestamp::from_unix_millis(i64::MAX).is_err());
    }

    #[test]
    fn plus_days_adds_calendar_days() {
        let t = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(t.plus_days(365).to_string(), "2027-01-01T00:00:00.000Z");
    }
}
