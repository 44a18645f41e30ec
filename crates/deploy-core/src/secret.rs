//! Secrets by type: a [`Secret`] never prints its value, and the [`Redactor`] removes every
//! secret value the process knows from text before it reaches a result, log, file or ticket.

use std::fmt;
use std::sync::{Arc, RwLock};

/// A secret value. `Debug` and `Display` print a mask; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: call only where it is handed to a program or an HTTP header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// The mask written in place of a secret value.
pub const MASK: &str = "[REDACTED]";

/// Values shorter than this are not redacted: masking "1" or "ab" everywhere would destroy
/// output without protecting anything.
const MIN_SECRET_LEN: usize = 6;

/// Environment variable names whose values are treated as secrets when present.
const SECRET_NAME_MARKERS: &[&str] =
    &["TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "PRIVATE_KEY", "WEBHOOK", "CREDENTIAL", "AUTH"];

/// Knows every secret value of the process and masks them in text. Cheap to clone.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<Vec<String>>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.values.read().map(|v| v.len()).unwrap_or(0);
        write!(f, "Redactor({n} values)")
    }
}

impl Redactor {
    /// A redactor that knows the secret-looking variables of this process's environment.
    pub fn from_process_env() -> Self {
        let r = Self::default();
        for (name, value) in std::env::vars() {
            if is_secret_name(&name) {
                r.add(&value);
            }
        }
        r
    }

    /// Learns a secret value.
    pub fn add(&self, value: &str) {
        let value = value.trim();
        if value.len() < MIN_SECRET_LEN {
            return;
        }
        if let Ok(mut v) = self.values.write()
            && !v.iter().any(|known| known == value)
        {
            v.push(value.to_owned());
            // Longest first, so a secret containing another is masked whole.
            v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn add_secret(&self, secret: &Secret) {
        self.add(secret.expose());
    }

    /// The text with every known secret value replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let Ok(values) = self.values.read() else {
            return text.to_owned();
        };
        let mut out = text.to_owned();
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }
}

/// Whether an environment variable of this name holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_MARKERS.iter().any(|m| upper.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }

    #[test]
    fn redactor_masks_longest_first() {
        let r = Redactor::default();
        r.add("abcdef");
        r.add("abcdef-ghijkl");
        assert_eq!(r.redact("x abcdef-ghijkl y abcdef"), format!("x {MASK} y {MASK}"));
        r.add("abc"); // too short to be a meaningful secret
        assert_eq!(r.redact("abc"), "abc");
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("GITHUB_TOKEN"));
        assert!(is_secret_name("slack_webhook_url"));
        assert!(!is_secret_name("PATH"));
    }
}
