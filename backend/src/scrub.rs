//! What outside services say, made safe for error texts and logs: their messages can quote
//! emails, URLs (which hold emails) and the credential that was sent.

/// `text` with every word holding an `@` as `[email]`, a URL as `[url]` and `key` as `[key]`,
/// cut after `max_chars` characters (marked with `…`).
pub(crate) fn words(text: &str, key: &str, max_chars: usize) -> String {
    words_hiding(text, max_chars, |word| (!key.is_empty() && word.contains(key)).then_some("[key]"))
}

/// As [`words`], with what else to hide said by `hide` (the mark that stands for a word).
pub(crate) fn words_hiding(text: &str, max_chars: usize, hide: impl Fn(&str) -> Option<&'static str>) -> String {
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|word| {
            if word.contains('@') {
                "[email]"
            } else if word.contains("://") || word.to_ascii_lowercase().starts_with("www.") {
                "[url]"
            } else {
                hide(word).unwrap_or(word)
            }
        })
        .collect();
    let text = words.join(" ");
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Why a request to `peer` failed in transport, as a fixed text: reqwest's own text names the
/// URL. With the I/O error kind when there is one (itself a fixed text, "connection refused").
pub(crate) fn transport_failure(peer: &str, error: &reqwest::Error) -> String {
    let cause = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        format!("cannot connect to {peer}")
    } else if error.is_body() || error.is_decode() {
        "the answer broke off".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if !error.is_timeout() {
                return format!("{cause} ({})", io.kind());
            }
            break;
        }
        source = e.source();
    }
    cause
}
