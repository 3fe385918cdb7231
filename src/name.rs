//! Albatross names: a path of labels plus an optional label (`alice:web`, `:web`,
//! `alice:`, `:`). Shared by the config, the codec and the engine.
//!
//! Rules follow albatross' `Vmm_core.Name`: labels are 1..=63 characters of
//! `[A-Za-z0-9.-]`, not starting with `-`, and are lower-cased when parsed.

use std::fmt;

/// Longest label albatross accepts (a DNS label).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a label or name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("label {label:?} is empty")]
    EmptyLabel { label: String },
    #[error("label {label:?} is {len} characters long; albatross allows at most 63")]
    TooLong { label: String, len: usize },
    #[error("label {label:?} contains {ch:?}; albatross allows only a-z, 0-9, '-' and '.'")]
    BadChar { label: String, ch: char },
    #[error("label {label:?} starts with '-'")]
    LeadingDash { label: String },
}

/// Check one label and return it lower-cased, as albatross stores it.
pub fn label(s: &str) -> Result<String, NameError> {
    if s.is_empty() {
        return Err(NameError::EmptyLabel {
            label: s.to_string(),
        });
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(NameError::BadChar {
            label: s.to_string(),
            ch,
        });
    }
    if s.len() > MAX_LABEL_LEN {
        return Err(NameError::TooLong {
            label: s.to_string(),
            len: s.len(),
        });
    }
    if s.starts_with('-') {
        return Err(NameError::LeadingDash {
            label: s.to_string(),
        });
    }
    Ok(s.to_ascii_lowercase())
}

/// A full or relative albatross name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Name {
    /// Administrative domains, outermost first (one per intermediate CA).
    pub path: Vec<String>,
    /// The unikernel label; `None` for a path such as `alice:` or the root `:`.
    pub label: Option<String>,
}

impl Name {
    /// Parse the textual form. `web` (no colon) is read as `:web`, like albatross.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s == ":" {
            return Ok(Self::default());
        }
        let parts: Vec<&str> = s.split(':').collect();
        let (last, init) = parts.split_last().expect("split yields at least one part");
        let label_part = if last.is_empty() {
            None
        } else {
            Some(label(last)?)
        };
        let mut path = Vec::new();
        for (i, p) in init.iter().enumerate() {
            // A leading empty part is the root marker of `:web`.
            if i == 0 && p.is_empty() {
                continue;
            }
            path.push(label(p)?);
        }
        Ok(Self {
            path,
            label: label_part,
        })
    }

    /// A name made of a path and a label.
    pub fn new(path: Vec<String>, label: Option<String>) -> Self {
        Self { path, label }
    }

    /// Resolve a name that is relative to `base`'s path (stats frames carry names
    /// relative to the subscriber's path: subscriber `alice:web` sees `:web`).
    pub fn resolve_under(&self, base: &Name) -> Name {
        let mut path = base.path.clone();
        path.extend(self.path.iter().cloned());
        Name {
            path,
            label: self.label.clone(),
        }
    }

    /// The same name with another label (clone names live beside the primary).
    pub fn with_label(&self, label: String) -> Name {
        Name {
            path: self.path.clone(),
            label: Some(label),
        }
    }
}

// Hash the label and the path depth only: names that are equal hash equal, and the
// members of one group differ in their label. Looked up once per sample.
impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.path.len());
        if let Some(l) = &self.label {
            state.write(l.as_bytes());
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(":")?;
        } else {
            f.write_str(&self.path.join(":"))?;
            f.write_str(":")?;
        }
        if let Some(l) = &self.label {
            f.write_str(l)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textual_forms_round_trip() {
        for s in [":", ":web", "alice:", "alice:web", "a:b:vm2"] {
            assert_eq!(Name::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Name::parse("web").unwrap().to_string(), ":web");
        assert_eq!(Name::parse("Alice:WEB").unwrap().to_string(), "alice:web");
    }

    #[test]
    fn relative_names_resolve_under_the_subscriber_path() {
        let sub = Name::parse("alice:web").unwrap();
        let rel = Name::parse(":web").unwrap();
        assert_eq!(rel.resolve_under(&sub).to_string(), "alice:web");
        let sub = Name::parse("a:").unwrap();
        assert_eq!(
            Name::parse("b:vm2")
                .unwrap()
                .resolve_under(&sub)
                .to_string(),
            "a:b:vm2"
        );
    }

    #[test]
    fn bad_labels_are_rejected_with_the_reason() {
        assert!(matches!(Name::parse(""), Err(NameError::Empty)));
        assert!(matches!(label("-x"), Err(NameError::LeadingDash { .. })));
        assert!(matches!(
            label("a_b"),
            Err(NameError::BadChar { ch: '_', .. })
        ));
        assert!(matches!(
            label(&"a".repeat(64)),
            Err(NameError::TooLong { len: 64, .. })
        ));
        assert!(label(&"a".repeat(63)).is_ok());
        assert!(matches!(
            Name::parse("al ice:web"),
            Err(NameError::BadChar { ch: ' ', .. })
        ));
    }
}
