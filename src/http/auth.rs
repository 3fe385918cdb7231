//! API keys: read from a file, kept only as SHA-256 digests, compared in constant
//! time (a fixed-length digest also hides the key's length).

use std::path::Path;

use aws_lc_rs::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

/// Shortest key accepted: a guessable key would make the rate limit the only guard.
pub const MIN_KEY_LEN: usize = 16;

/// The keys, by client name.
#[derive(Clone)]
pub struct Keys {
    entries: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for Keys {
    // Never print digests either: only how many keys and whose.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Keys").field("clients", &names).finish()
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, b).as_ref());
    out
}

impl Keys {
    /// Parse a keys file: one key per line, or `name key`; `#` comments and blank
    /// lines skipped. Errors name the line, never its content.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (name, key) = match (words.next(), words.next(), words.next()) {
                (Some(k), None, _) => (format!("key-{}", i + 1), k),
                (Some(n), Some(k), None) => (n.to_string(), k),
                _ => return Err(format!("line {}: expected `key` or `name key`", i + 1)),
            };
            if key.len() < MIN_KEY_LEN {
                return Err(format!(
                    "line {}: key shorter than {MIN_KEY_LEN} characters",
                    i + 1
                ));
            }
            entries.push((name, sha256(key.as_bytes())));
        }
        if entries.is_empty() {
            return Err("no keys (every request would be refused)".into());
        }
        Ok(Self { entries })
    }

    /// No keys: every token is refused.
    pub fn none() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The client name of `presented`, if it is a key. Every key is compared, so
    /// the time taken does not depend on which one (if any) matched.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let d = sha256(presented.as_bytes());
        let mut found = None;
        for (name, k) in &self.entries {
            if bool::from(k.ct_eq(&d)) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_comments_and_refuses_short_keys() {
        let k = Keys::parse("# ops\nprometheus 0123456789abcdef0123\n\nfedcba9876543210fedc\n")
            .unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.check("0123456789abcdef0123"), Some("prometheus"));
        assert_eq!(k.check("fedcba9876543210fedc"), Some("key-4"));
        assert_eq!(k.check("0123456789abcdef012"), None);
        let e = Keys::parse("tiny-k3y\n").unwrap_err();
        assert!(e.contains("line 1") && !e.contains("tiny-k3y"), "{e}");
        assert!(Keys::parse("# nothing\n").is_err());
        assert!(!format!("{k:?}").contains("0123"));
    }
}
