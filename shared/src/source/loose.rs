//! Tolerant field readers for platform payloads.
//!
//! Platforms are loose about types (an id is a number here, a string there; dates come as
//! epoch milliseconds, numeric strings or ISO-8601). Each reader accepts every form seen and
//! turns a value of the wrong shape into "missing" instead of failing the whole payload. They
//! are serde visitors, so a payload is read in one pass without building a `serde_json::Value`.

use crate::timestamp::Timestamp;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Text or a number written as text; anything else is missing.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Text(pub Option<String>);

impl Text {
    /// The trimmed text, if present and not blank.
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.is_finite().then(|| v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Text, D::Error> {
                Text::deserialize(d)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text, A::Error> {
                drain_map(map).map(|()| Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text, A::Error> {
                drain_seq(seq).map(|()| Text(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// An instant: epoch milliseconds (number or numeric text) or an ISO-8601 date-time.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Instant(pub Option<Timestamp>);

fn instant_from_text(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(millis) = text.parse::<i64>() {
        return Timestamp::from_unix_millis(millis).ok();
    }
    Timestamp::parse_rfc3339(text)
        .ok()
        // ISO-8601 without an offset: platforms mean UTC.
        .or_else(|| Timestamp::parse_rfc3339(&format!("{text}Z")).ok())
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(deserializer)?;
        Ok(Instant(text.as_deref().and_then(instant_from_text)))
    }
}

/// An instant written as whole seconds since the epoch (number or numeric text), as Stripe
/// writes every time; anything else is missing.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Seconds(pub Option<Timestamp>);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(deserializer)?;
        let seconds = text.as_deref().and_then(|t| t.trim().parse::<i64>().ok());
        Ok(Seconds(seconds.and_then(|s| s.checked_mul(1000)).and_then(|ms| Timestamp::from_unix_millis(ms).ok())))
    }
}

/// A boolean, or the text `true`/`false`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Flag(pub Option<bool>);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(Some(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                Ok(Flag(match v.trim() {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                }))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Flag, D::Error> {
                Flag::deserialize(d)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Flag, A::Error> {
                drain_map(map).map(|()| Flag(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Flag, A::Error> {
                drain_seq(seq).map(|()| Flag(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A nested object read as `T`; anything that is not an object is missing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<T> Obj<T> {
    /// The object, if present.
    pub(crate) fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|v| Obj(Some(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Obj<T>, A::Error> {
        drain_seq(seq).map(|()| Obj(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Obj<T>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjVisitor(PhantomData))
    }
}

/// A list of objects read as `T`; elements that are not objects are skipped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(Obj(item)) = seq.next_element::<Obj<T>>()? {
                    items.extend(item);
                }
                Ok(List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<List<T>, A::Error> {
                drain_map(map).map(|()| List(Vec::new()))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<List<T>, E> {
                Ok(List(Vec::new()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<List<T>, E> {
                Ok(List(Vec::new()))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<List<T>, E> {
                Ok(List(Vec::new()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<List<T>, E> {
                Ok(List(Vec::new()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<List<T>, E> {
                Ok(List(Vec::new()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<List<T>, E> {
                Ok(List(Vec::new()))
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Probe {
        id: Text,
        at: Instant,
        secs: Seconds,
        on: Flag,
        inner: Obj<Inner>,
        items: List<Inner>,
    }

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Inner {
        code: Text,
    }

    fn read(json: &str) -> Probe {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn numbers_and_strings_are_both_text() {
        assert_eq!(read(r#"{"id": 4774438}"#).id.get(), Some("4774438"));
        assert_eq!(read(r#"{"id": " 4774438 "}"#).id.get(), Some("4774438"));
        assert_eq!(read(r#"{"id": {"x": [1, 2]}}"#).id.get(), None);
        assert_eq!(read(r#"{"id": "  "}"#).id.get(), None);
    }

    #[test]
    fn instants_accept_millis_numeric_text_and_iso() {
        let want = Timestamp::from_unix_millis(1_766_586_190_000).unwrap();
        assert_eq!(read(r#"{"at": 1766586190000}"#).at.0, Some(want));
        assert_eq!(read(r#"{"at": "1766586190000"}"#).at.0, Some(want));
        assert_eq!(read(r#"{"at": "2025-12-24T14:23:10.000Z"}"#).at.0, Some(want));
        assert_eq!(read(r#"{"at": "2025-12-24T14:23:10"}"#).at.0, Some(want));
        assert_eq!(read(r#"{"at": "soon"}"#).at.0, None);
        assert_eq!(read(r#"{"at": true}"#).at.0, None);
    }

    #[test]
    fn seconds_are_whole_seconds_only() {
        let want = Timestamp::from_unix_millis(1_746_757_389_000).unwrap();
        assert_eq!(read(r#"{"secs": 1746757389}"#).secs.0, Some(want));
        assert_eq!(read(r#"{"secs": "1746757389"}"#).secs.0, Some(want));
        assert_eq!(read(r#"{"secs": null}"#).secs.0, None);
        assert_eq!(read(r#"{"secs": "2025-05-09T02:23:09Z"}"#).secs.0, None);
        assert_eq!(read(r#"{"secs": 9223372036854775807}"#).secs.0, None);
    }

    #[test]
    fn wrong_shapes_are_missing_not_fatal() {
        let p = read(r#"{"inner": "x", "items": [1, {"code": 7}, "y"], "on": "true"}"#);
        assert_eq!(p.inner.get(), None);
        assert_eq!(p.items.0.len(), 1);
        assert_eq!(p.items.0[0].code.get(), Some("7"));
        assert_eq!(p.on.0, Some(true));
        assert_eq!(read(r#"{"inner": {"code": "A"}}"#).inner.get().unwrap().code.get(), Some("A"));
    }
}
