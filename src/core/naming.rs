//! Clone names from the template (`{primary}-clone-{n}` by default, like mollymawk).

use crate::name::{self, Name};

/// Highest index the engine hands out; `validate` checks the template fits the
/// 63-character label limit with an index this long.
pub const MAX_INDEX: u32 = 999;

/// Render the clone label for index `n` (not validated).
pub fn render(template: &str, primary_label: &str, n: u32) -> String {
    template
        .replace("{primary}", primary_label)
        .replace("{n}", &n.to_string())
}

/// The index if `label` is a clone label of `primary_label` under `template`.
pub fn index_of(template: &str, primary_label: &str, label: &str) -> Option<u32> {
    let with_primary = template.replace("{primary}", primary_label);
    let (prefix, suffix) = with_primary.split_once("{n}")?;
    let digits = label.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The clone name with the lowest free index: not taken by any name in `taken`.
/// `None` if every index up to [`MAX_INDEX`] is taken or the label is invalid.
pub fn next_free<'a>(
    template: &str,
    primary: &Name,
    taken: impl Iterator<Item = &'a Name> + Clone,
) -> Option<Name> {
    let primary_label = primary.label.as_deref()?;
    (1..=MAX_INDEX).find_map(|n| {
        let label = name::label(&render(template, primary_label, n)).ok()?;
        let candidate = primary.with_label(label);
        (!taken.clone().any(|t| *t == candidate)).then_some(candidate)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_index_is_reused() {
        let p = Name::parse("alice:web").unwrap();
        let taken = [
            Name::parse("alice:web-clone-1").unwrap(),
            Name::parse("alice:web-clone-3").unwrap(),
        ];
        let t = "{primary}-clone-{n}";
        assert_eq!(
            next_free(t, &p, taken.iter()).unwrap().to_string(),
            "alice:web-clone-2"
        );
        assert_eq!(index_of(t, "web", "web-clone-12"), Some(12));
        assert_eq!(index_of(t, "web", "web-clone-01"), None);
        assert_eq!(index_of(t, "web", "web-clone-"), None);
        assert_eq!(index_of(t, "web", "www-clone-1"), None);
    }
}
