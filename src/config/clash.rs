//! Groups that clash: two with one primary, or a primary named like another
//! group's clones. Hashed look-ups instead of comparing all pairs, so a config of
//! n groups is checked in O(n · label length) plus one line per problem found.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Group;
use crate::core::naming;

/// Groups (indices) by their clone name template.
type ByTemplate<'a> = BTreeMap<&'a str, Vec<usize>>;

/// Clone name templates by the part of the rendered name they pin down.
#[derive(Default)]
struct Affixes<'a> {
    /// Path → rendered affix → groups by template.
    map: HashMap<&'a [String], HashMap<String, ByTemplate<'a>>>,
    /// Lengths of the affixes present: the only ones worth looking up.
    lens: BTreeSet<usize>,
}

impl<'a> Affixes<'a> {
    fn add(&mut self, path: &'a [String], affix: &str, template: &'a str, i: usize) {
        self.lens.insert(affix.len());
        self.map
            .entry(path)
            .or_default()
            .entry(affix.to_string())
            .or_default()
            .entry(template)
            .or_default()
            .push(i);
    }

    /// The templates and groups filed under `affix(len)` in `path`, for each
    /// length present.
    fn lookup<'s>(
        &'s self,
        path: &[String],
        affix: impl Fn(usize) -> Option<&'s str> + 's,
    ) -> impl Iterator<Item = (&'a str, &'s [usize])> + 's {
        let by_affix = self.map.get(path);
        self.lens
            .iter()
            .filter_map(move |&n| by_affix?.get(affix(n)?))
            .flat_map(|t| t.iter().map(|(t, g)| (*t, g.as_slice())))
    }
}

/// Report every clash, in the order a pairwise scan would: by group, duplicates
/// before clone-name matches, then by the other group.
pub(super) fn check_groups(groups: &[Group], problems: &mut Vec<String>) {
    // (i, 0, j): j repeats i's primary; (i, 1, j): j's primary is a clone name of i.
    let mut found: Vec<(usize, u8, usize)> = Vec::new();
    let mut by_name: HashMap<_, Vec<usize>> = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        by_name.entry(&g.primary).or_default().push(i);
    }
    for same in by_name.values() {
        for (k, &i) in same.iter().enumerate() {
            found.extend(same[k + 1..].iter().map(|&j| (i, 0, j)));
        }
    }
    // A clone name is the rendered prefix, digits, and the rendered suffix. File
    // each group under the side that holds its primary's label, so groups share a
    // key only when they share a template without `{primary}` on that side.
    let (mut prefixes, mut suffixes) = (Affixes::default(), Affixes::default());
    for (i, g) in groups.iter().enumerate() {
        let (Some(p), t) = (g.primary.label.as_deref(), g.policy.clone_name.as_str()) else {
            continue;
        };
        let rendered = t.replace("{primary}", p);
        let Some((pre, suf)) = rendered.split_once("{n}") else {
            continue; // no clone name matches (the template's own check says why)
        };
        let raw_pre = t.split_once("{n}").map_or(t, |(a, _)| a);
        let path = g.primary.path.as_slice();
        if raw_pre.contains("{primary}") || !t.contains("{primary}") {
            prefixes.add(path, pre, t, i);
        } else {
            suffixes.add(path, suf, t, i);
        }
    }
    for (j, b) in groups.iter().enumerate() {
        let Some(lb) = b.primary.label.as_deref() else {
            continue;
        };
        let path = b.primary.path.as_slice();
        let heads = prefixes.lookup(path, |n| lb.get(..n));
        let tails = suffixes.lookup(path, |n| lb.len().checked_sub(n).and_then(|k| lb.get(k..)));
        for (template, owners) in heads.chain(tails) {
            let matches = |i: usize| {
                let pa = groups[i].primary.label.as_deref().unwrap_or_default();
                naming::index_of(template, pa, lb).is_some()
            };
            if !template.contains("{primary}") {
                // The same answer for every owner: ask once.
                if owners.first().is_some_and(|&i| matches(i)) {
                    found.extend(owners.iter().filter(|&&i| i != j).map(|&i| (i, 1, j)));
                }
                continue;
            }
            found.extend(
                owners
                    .iter()
                    .filter(|&&i| i != j && matches(i))
                    .map(|&i| (i, 1, j)),
            );
        }
    }
    found.sort_unstable();
    for (i, kind, j) in found {
        let (a, b) = (&groups[i].primary, &groups[j].primary);
        problems.push(if kind == 0 {
            format!("group[{j}].primary: {b} is already the primary of group[{i}]")
        } else {
            format!(
                "group[{j}].primary: {b} matches the clone names of group[{i}] ({a}); the groups would fight over it"
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, problems};
    use crate::core::Policy;
    use crate::name::Name;

    /// The pairwise scan this module replaced: the oracle.
    fn pairwise(groups: &[Group]) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate().skip(i + 1) {
                if a.primary == b.primary {
                    problems.push(format!(
                        "group[{j}].primary: {} is already the primary of group[{i}]",
                        b.primary
                    ));
                }
            }
            for (j, b) in groups.iter().enumerate() {
                let (Some(pa), Some(lb)) = (a.primary.label.as_deref(), b.primary.label.as_deref())
                else {
                    continue;
                };
                if i != j
                    && a.primary.path == b.primary.path
                    && naming::index_of(&a.policy.clone_name, pa, lb).is_some()
                {
                    problems.push(format!(
                        "group[{j}].primary: {} matches the clone names of group[{i}] ({}); the groups would fight over it",
                        b.primary, a.primary
                    ));
                }
            }
        }
        problems
    }

    fn group(primary: &str, template: &str) -> Group {
        Group {
            primary: Name::parse(primary).unwrap(),
            policy: std::sync::Arc::new(Policy {
                clone_name: template.to_string(),
                ..Policy::default()
            }),
            endpoint: None,
        }
    }

    #[test]
    fn same_problems_in_the_same_order_as_the_pairwise_scan() {
        let t = "{primary}-clone-{n}";
        let cases: Vec<Vec<Group>> = vec![
            vec![
                group("a:web", t),
                group("a:web-clone-2", t),
                group("a:web", t),
            ],
            // Other path, leading zero, no digits: no clash.
            vec![
                group("a:web", t),
                group("b:web-clone-2", t),
                group("a:web-clone-02", t),
            ],
            // Templates with the index first, without {primary}, {primary} twice.
            vec![
                group("a:x", "{n}-{primary}"),
                group("a:12-x", t),
                group("a:c3", "c{n}"),
                group("a:c4", "c{n}"),
                group("a:cat", "c{n}"),
                group("a:r", "{primary}{n}{primary}"),
                group("a:r7r", t),
                group("a:w", "{primary}{n}"),
                group("a:w1", "{primary}{n}"),
                group("a:w12", t),
                group("a:w1", t),
            ],
            // One chain: every group is the first clone of the one before.
            (0..6)
                .map(|k| group(&format!("a:v{}", "-clone-1".repeat(k)), t))
                .collect(),
        ];
        for (k, groups) in cases.iter().enumerate() {
            let mut fast = Vec::new();
            check_groups(groups, &mut fast);
            assert_eq!(fast, pairwise(groups), "case {k}");
            // Only the second case is clean.
            assert_eq!(fast.is_empty(), k == 1, "case {k}: {fast:?}");
        }
    }

    #[test]
    fn twenty_thousand_groups_are_checked_without_comparing_pairs() {
        // ~2·10⁸ index_of calls pairwise (minutes in a debug build); here, one
        // look-up per label length and group.
        let mut text = String::new();
        for k in 0..20_000 {
            text.push_str(&format!("[[group]]\nprimary = \"fleet:vm{k}\"\n"));
        }
        let c = Config::parse(&text, Path::new("t.toml")).unwrap();
        assert_eq!(c.groups.len(), 20_000);
        text.push_str(
            "[[group]]\nprimary = \"fleet:vm7\"\n[[group]]\nprimary = \"fleet:vm19999-clone-3\"\n",
        );
        assert_eq!(
            problems(&text),
            [
                "group[20000].primary: fleet:vm7 is already the primary of group[7]",
                "group[20001].primary: fleet:vm19999-clone-3 matches the clone names of group[19999] (fleet:vm19999); the groups would fight over it",
            ]
        );
    }
}
