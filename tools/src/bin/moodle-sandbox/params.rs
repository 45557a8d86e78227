//! Request parameters as PHP sees them (`users[0][username]=…` becomes nested arrays) and
//! Moodle's `validate_parameters`: required keys, unexpected keys, and each value checked by
//! cleaning it and refusing it when the cleaned form differs from what was sent.

use serde_json::{json, Value};

/// A PHP request value: a string, or an ordered array (PHP arrays keep insertion order).
#[derive(Clone, Debug)]
pub enum Param {
    Text(String),
    Array(Vec<(String, Param)>),
}

impl Param {
    /// The value under `key` of an array.
    pub fn get(&self, key: &str) -> Option<&Param> {
        match self {
            Param::Array(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            Param::Text(_) => None,
        }
    }

    /// As JSON (for the call log), with every `password` value redacted.
    pub fn redacted(&self) -> Value {
        match self {
            Param::Text(text) => Value::String(text.clone()),
            Param::Array(items) => Value::Object(
                items
                    .iter()
                    .map(|(k, v)| {
                        let v = if k == "password" { json!("[redacted]") } else { v.redacted() };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` text (a query string or a body).
pub fn decode_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `users[0][username]` into `users`, `0`, `username` (`[]` is an empty segment:
/// append). A key with an unclosed bracket is a plain name, as far as this fake cares.
fn segments(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else { return vec![key.to_owned()] };
    let mut out = vec![key[..open].to_owned()];
    let mut rest = &key[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else { break };
        out.push(inner[..close].to_owned());
        rest = &inner[close + 1..];
    }
    out
}

fn insert(items: &mut Vec<(String, Param)>, path: &[String], value: String) {
    let Some((first, rest)) = path.split_first() else { return };
    let key = if first.is_empty() {
        // `a[]`: the next integer key, as PHP does.
        let next = items.iter().filter_map(|(k, _)| k.parse::<i64>().ok()).max().map_or(0, |m| m + 1);
        next.to_string()
    } else {
        first.clone()
    };
    let position = items.iter().position(|(k, _)| *k == key);
    if rest.is_empty() {
        match position {
            Some(i) => items[i].1 = Param::Text(value),
            None => items.push((key, Param::Text(value))),
        }
        return;
    }
    let index = match position {
        Some(i) => {
            if matches!(items[i].1, Param::Text(_)) {
                items[i].1 = Param::Array(Vec::new());
            }
            i
        }
        None => {
            items.push((key, Param::Array(Vec::new())));
            items.len() - 1
        }
    };
    if let Param::Array(inner) = &mut items[index].1 {
        insert(inner, rest, value);
    }
}

/// The request's arguments as PHP would build them from decoded pairs.
pub fn parse(pairs: &[(String, String)]) -> Param {
    let mut root = Vec::new();
    for (k, v) in pairs {
        insert(&mut root, &segments(k), v.clone());
    }
    Param::Array(root)
}

/// A Moodle `PARAM_*` type (named as Moodle names it in its messages).
#[derive(Clone, Copy)]
pub enum Ty {
    Int,
    Bool,
    Username,
    Raw,
    RawTrimmed,
    NoTags,
    Alpha,
    AlphaNumExt,
    Plugin,
    SafeDir,
    Text,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Int => "int",
            Ty::Bool => "bool",
            Ty::Username => "username",
            Ty::Raw => "raw",
            Ty::RawTrimmed => "raw_trimmed",
            Ty::NoTags => "notags",
            Ty::Alpha => "alpha",
            Ty::AlphaNumExt => "alphanumext",
            Ty::Plugin => "plugin",
            Ty::SafeDir => "safedir",
            Ty::Text => "text",
        }
    }

    /// `clean_param`, reduced to what decides acceptance.
    fn clean(self, value: &str) -> String {
        match self {
            Ty::Int => value.trim().parse::<i64>().map_or_else(|_| "0".to_owned(), |n| n.to_string()),
            Ty::Bool => match value.to_ascii_lowercase().as_str() {
                "1" | "yes" | "true" | "on" => "1".to_owned(),
                _ => "0".to_owned(),
            },
            Ty::Username => username_clean(value),
            Ty::Raw | Ty::Text => value.to_owned(),
            Ty::RawTrimmed => value.trim().to_owned(),
            Ty::NoTags => strip_tags(value),
            Ty::Alpha => value.chars().filter(char::is_ascii_alphabetic).collect(),
            Ty::AlphaNumExt | Ty::SafeDir => {
                value.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
            }
            Ty::Plugin => {
                let ok = value.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if ok {
                    value.to_owned()
                } else {
                    String::new()
                }
            }
        }
    }
}

/// `PARAM_USERNAME` without `extendedusernamechars`: trimmed, lower-cased, only
/// `a-z 0-9 - . @ _` kept.
pub fn username_clean(value: &str) -> String {
    value
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.@_".contains(*c))
        .collect()
}

fn strip_tags(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut in_tag = false;
    for c in value.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Whether a key must be sent.
pub enum Need {
    Required,
    Optional,
    Default(Value),
}

/// An external function's parameter description.
pub enum Desc {
    Value(Ty),
    Single(Vec<(&'static str, Desc, Need)>),
    Multiple(Box<Desc>),
}

/// A refusal of `validate_parameters`: the debuginfo of its `invalidparameter`.
pub struct Invalid(pub String);

const INVALID: &str = "Invalid parameter value detected";

fn bad_value(param: &Param) -> String {
    match param {
        Param::Text(t) => t.clone(),
        Param::Array(_) => "Array".to_owned(),
    }
}

/// Moodle's `external_api::validate_parameters`, giving the cleaned values as JSON
/// (ints as numbers, bools as booleans).
pub fn validate(desc: &Desc, param: &Param) -> Result<Value, Invalid> {
    match desc {
        Desc::Value(ty) => {
            let Param::Text(text) = param else {
                return Err(Invalid("Scalar type expected, array or object received.".to_owned()));
            };
            let refused = || {
                Invalid(format!(
                    "Invalid external api parameter: the value is \"{text}\", the server was expecting \"{}\" type",
                    ty.name()
                ))
            };
            match ty {
                Ty::Bool if text == "0" || text == "1" => Ok(Value::Bool(text == "1")),
                Ty::Bool => Err(refused()),
                Ty::Int if ty.clean(text) == *text => Ok(json!(text.parse::<i64>().unwrap_or(0))),
                _ if ty.clean(text) == *text => Ok(Value::String(text.clone())),
                _ => Err(refused()),
            }
        }
        Desc::Multiple(content) => match param {
            Param::Array(items) => items.iter().map(|(_, item)| validate(content, item)).collect(),
            Param::Text(_) => Err(Invalid(format!("Only arrays accepted. The bad value is: '{}'", bad_value(param)))),
        },
        Desc::Single(keys) => {
            let Param::Array(items) = param else {
                return Err(Invalid(format!("Only arrays accepted. The bad value is: '{}'", bad_value(param))));
            };
            let mut out = serde_json::Map::new();
            for (key, sub, need) in keys {
                match (param.get(key), need) {
                    (Some(value), _) => {
                        let cleaned = validate(sub, value)
                            .map_err(|Invalid(inner)| Invalid(format!("{key} => {INVALID}: {inner}")))?;
                        out.insert((*key).to_owned(), cleaned);
                    }
                    (None, Need::Required) => {
                        return Err(Invalid(format!("Missing required key in single structure: {key}")));
                    }
                    (None, Need::Default(value)) => {
                        out.insert((*key).to_owned(), value.clone());
                    }
                    (None, Need::Optional) => {}
                }
            }
            let unexpected: Vec<&str> =
                items.iter().map(|(k, _)| k.as_str()).filter(|k| !keys.iter().any(|(known, ..)| known == k)).collect();
            if !unexpected.is_empty() {
                return Err(Invalid(format!(
                    "Unexpected keys ({}) detected in parameter array.",
                    unexpected.join(", ")
                )));
            }
            Ok(Value::Object(out))
        }
    }
}
