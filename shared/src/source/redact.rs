//! Removing credentials from a raw body before it is kept (`unparsed` events carry it).
//!
//! By value first: every occurrence of a configured secret is cut out of the bytes, however
//! the body spells it — plain UTF-8, JSON escapes (`\uXXXX` for any character, surrogate pairs,
//! `\/`, `\"`, …) or percent-encoding, mixed freely within one occurrence. That holds for
//! bodies that are not JSON, have a BOM, are arrays, or carry the token under another key or
//! inside another string. Then by name: when the body parses, keys named like secrets
//! (`hottok`, in any case, at any depth) are removed.

use std::fmt;

/// Keys whose value is a credential, compared after lowercasing.
pub const SECRET_KEYS: &[&str] = &["hottok"];

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Configured secrets in the one form redaction needs. It cannot be printed, serialized or
/// read back: `Debug` shows only how many it holds, and nothing else exposes them.
#[derive(Clone, Default)]
pub struct Scrubber {
    secrets: Vec<Vec<char>>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber(<{} redacted>)", self.secrets.len())
    }
}

impl Scrubber {
    /// A scrubber for these secrets; blank ones are ignored.
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let secrets = secrets
            .into_iter()
            .filter(|s| !s.as_ref().trim().is_empty())
            .map(|s| s.as_ref().chars().collect())
            .collect();
        Self { secrets }
    }

    /// `bytes` with every occurrence of every secret removed, in any of the spellings above.
    /// Repeated until none is left (a removal can join two halves into a new occurrence).
    pub fn scrub(&self, bytes: &[u8]) -> Vec<u8> {
        let mut current = bytes.to_vec();
        if self.secrets.is_empty() {
            return current;
        }
        loop {
            let next = self.pass(&current);
            if next.len() == current.len() {
                return next;
            }
            current = next;
        }
    }

    fn pass(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        let mut at = 0;
        while at < input.len() {
            let end = self.secrets.iter().filter_map(|secret| match_at(input, at, secret)).max();
            match end {
                Some(end) if end > at => at = end,
                _ => {
                    out.push(input[at]);
                    at += 1;
                }
            }
        }
        out
    }
}

fn hex_value(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// `\uXXXX` at `at` with this code unit.
fn unit_escape(input: &[u8], at: usize, unit: u32) -> Option<usize> {
    let escape = input.get(at..at + 6)?;
    (escape[0] == b'\\' && escape[1] == b'u' && hex_value(&escape[2..]) == Some(unit)).then_some(at + 6)
}

/// Every position right after one spelling of `c` starting at `at`.
fn char_ends(input: &[u8], at: usize, c: char, ends: &mut Vec<usize>) {
    // Plain UTF-8, each byte possibly percent-encoded.
    let mut buffer = [0u8; 4];
    let mut positions = vec![at];
    for &byte in c.encode_utf8(&mut buffer).as_bytes() {
        let mut next = Vec::new();
        for &p in &positions {
            if input.get(p) == Some(&byte) {
                next.push(p + 1);
            }
            if input.get(p) == Some(&b'%') && input.get(p + 1..p + 3).and_then(hex_value) == Some(u32::from(byte)) {
                next.push(p + 3);
            }
        }
        positions = next;
    }
    ends.extend(positions);
    // JSON escapes.
    if input.get(at) != Some(&b'\\') {
        return;
    }
    let short = match c {
        '"' => Some(b'"'),
        '\\' => Some(b'\\'),
        '/' => Some(b'/'),
        '\u{8}' => Some(b'b'),
        '\u{c}' => Some(b'f'),
        '\n' => Some(b'n'),
        '\r' => Some(b'r'),
        '\t' => Some(b't'),
        _ => None,
    };
    if short.is_some() && input.get(at + 1) == short.as_ref() {
        ends.push(at + 2);
    }
    let mut units = [0u16; 2];
    match *c.encode_utf16(&mut units) {
        [unit] => ends.extend(unit_escape(input, at, u32::from(unit))),
        [high, low] => {
            ends.extend(unit_escape(input, at, u32::from(high)).and_then(|p| unit_escape(input, p, u32::from(low))));
        }
        _ => {}
    }
}

/// The furthest end of an occurrence of `secret` starting exactly at `at`, if there is one.
fn match_at(input: &[u8], at: usize, secret: &[char]) -> Option<usize> {
    // Cheap refusal first: every spelling starts with the first character's first byte, `%`
    // or `\`.
    let first = secret.first()?;
    let mut buffer = [0u8; 4];
    let lead = first.encode_utf8(&mut buffer).as_bytes()[0];
    if !matches!(input.get(at), Some(&b) if b == lead || b == b'%' || b == b'\\') {
        return None;
    }
    // Every position reachable after the first k characters; spellings can overlap (a
    // backslash is itself or the start of an escape), so all are followed, without blowing up.
    let mut positions = vec![at];
    for &c in secret {
        let mut next = Vec::new();
        for &p in &positions {
            char_ends(input, p, c, &mut next);
        }
        next.sort_unstable();
        next.dedup();
        if next.is_empty() {
            return None;
        }
        positions = next;
    }
    positions.last().copied()
}

/// The body without keys named like secrets, at any depth, when it is JSON (a UTF-8 BOM is
/// allowed, and dropped) and has such a key; `None` otherwise (keep the bytes as they are).
pub fn remove_secret_keys(body: &[u8]) -> Option<Vec<u8>> {
    let json = body.strip_prefix(BOM).unwrap_or(body);
    let mut value: serde_json::Value = serde_json::from_slice(json).ok()?;
    remove_keys(&mut value).then(|| serde_json::to_vec(&value).unwrap_or_default())
}

fn is_secret_key(key: &str) -> bool {
    let key = key.trim().to_lowercase();
    SECRET_KEYS.contains(&key.as_str())
}

fn remove_keys(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let before = map.len();
            map.retain(|key, _| !is_secret_key(key));
            let mut removed = map.len() != before;
            for child in map.values_mut() {
                removed |= remove_keys(child);
            }
            removed
        }
        serde_json::Value::Array(items) => items.iter_mut().fold(false, |removed, item| remove_keys(item) | removed),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(secret: &str, body: &str) -> String {
        String::from_utf8(Scrubber::new([secret]).scrub(body.as_bytes())).unwrap()
    }

    #[test]
    fn every_spelling_of_the_secret_is_removed() {
        let s = "tok/en-9é😀";
        assert_eq!(scrub(s, "a tok/en-9é😀 b"), "a  b");
        assert_eq!(scrub(s, r#"{"x":"tok\/en-9\u00e9\ud83d\ude00"}"#), r#"{"x":""}"#);
        assert_eq!(scrub(s, r#"{"x":"\u0074\u006F\u006b\/en-9é\uD83D\uDE00!"}"#), r#"{"x":"!"}"#);
        assert_eq!(scrub(s, "q=tok%2Fen-9%C3%A9%F0%9F%98%80&r=1"), "q=&r=1");
        assert_eq!(scrub(s, "tok/en-9é😀tok/en-9é😀x"), "x");
        // A removal that joins two halves into a new occurrence is caught too.
        assert_eq!(scrub("ab", "aabb"), "");
        // Near misses stay.
        assert_eq!(scrub(s, "tok/en-9e😀"), "tok/en-9e😀");
        assert_eq!(scrub(s, r#"\u0074ok\/en"#), r#"\u0074ok\/en"#);
    }

    #[test]
    fn escapes_of_quote_and_backslash_are_followed_both_ways() {
        assert_eq!(scrub(r#"a"b\c"#, r#"["a\"b\\c"]"#), r#"[""]"#);
        assert_eq!(scrub(r#"a"b\c"#, r#"a"b\c"#), "");
        assert_eq!(scrub("\\\\", r"\\\\"), "");
    }

    #[test]
    fn blank_secrets_scrub_nothing_and_debug_shows_none() {
        let scrubber = Scrubber::new(["", "  ", "visible-secret"]);
        assert_eq!(scrubber.scrub(b"  x  "), b"  x  ");
        assert_eq!(format!("{scrubber:?}"), "Scrubber(<1 redacted>)");
    }

    #[test]
    fn secret_keys_go_at_any_depth_in_any_case() {
        let body = br#"[{"a":{"Hottok":"1","HOTTOK":{"x":2},"keep":[{"hottok":3}]}}]"#;
        let kept: serde_json::Value = serde_json::from_slice(&remove_secret_keys(body).unwrap()).unwrap();
        assert_eq!(kept, serde_json::json!([{"a":{"keep":[{}]}}]));
        let bom = [BOM, br#"{"hottok":"x","id":1}"#].concat();
        assert_eq!(remove_secret_keys(&bom).unwrap(), br#"{"id":1}"#);
        assert_eq!(remove_secret_keys(br#"{"id":1}"#), None, "bodies without such keys keep their bytes");
        assert_eq!(remove_secret_keys(b"not json hottok"), None);
    }
}
