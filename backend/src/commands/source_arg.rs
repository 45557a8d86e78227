//! The `--source` of `normalize` and `simulate`: a name the source registry knows, written as
//! the edge routes it (`hotmart`, `stripe`) or, for a Standard Webhooks sender, as `std:NAME`
//! or `std-NAME` (the same sender).

use lms_bridge_shared::source::{self, std_webhooks};

/// The forms `--source` takes in this build, for error messages: only those the registry knows.
pub fn known_forms() -> String {
    let mut forms: Vec<&str> = source::NAMED.to_vec();
    if source::is_known(&format!("{}example", std_webhooks::PREFIX)) {
        forms.push("std:NAME (NAME: 1 to 32 lowercase letters, digits and -)");
    }
    forms.join(", ")
}

/// The registry's name for a `--source` value, or the one-line error listing the known forms.
pub fn resolve(arg: &str) -> Result<String, String> {
    let name = match arg.strip_prefix("std:") {
        Some(sender) => format!("{}{sender}", std_webhooks::PREFIX),
        None => arg.to_owned(),
    };
    if source::is_known(&name) {
        Ok(name)
    } else {
        let shown: String = arg.chars().take(64).collect();
        Err(format!("unknown source {shown:?} (known: {})", known_forms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_a_sender_are_the_same_source() {
        assert_eq!(resolve("hotmart").as_deref(), Ok("hotmart"));
        assert_eq!(resolve("std:acme").as_deref(), Ok("std-acme"));
        assert_eq!(resolve("std-acme").as_deref(), Ok("std-acme"));
    }

    #[test]
    fn an_unknown_source_lists_the_known_forms() {
        for arg in ["paypal", "std:", "std:ACME", "std-", ""] {
            let error = resolve(arg).expect_err(arg);
            assert!(error.starts_with(&format!("unknown source {arg:?} (known: hotmart")), "{error}");
            assert!(error.contains("std:NAME"), "{error}");
        }
    }
}
