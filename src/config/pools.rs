//! `clone_ipv4` pools across groups: two groups on one endpoint must not hand out
//! the same address (an error), and a pool smaller than the clones a group may
//! have leaves the rest waiting (a warning). Sorted, so O(n log n) in groups.

use super::Group;
use crate::core::policy::ClonePool;

/// Overlapping pools of groups on the same endpoint.
pub(super) fn check(groups: &[Group], problems: &mut Vec<String>) {
    let mut ranges: Vec<(&str, u32, u32, usize)> = groups
        .iter()
        .enumerate()
        .filter_map(|(i, g)| match g.policy.clone_ipv4 {
            Some(ClonePool::Range { first, last }) => Some((
                g.endpoint.as_deref().unwrap_or("default"),
                u32::from(first),
                u32::from(last),
                i,
            )),
            _ => None,
        })
        .collect();
    ranges.sort_unstable();
    // The widest range so far on this endpoint: any later one starting inside it overlaps.
    let mut reach: Option<(&str, u32, usize)> = None;
    for &(ep, first, last, i) in &ranges {
        match reach {
            Some((e, end, j)) if e == ep && first <= end => {
                problems.push(format!(
                    "group[{i}] ({}).clone_ipv4: overlaps the pool of group[{j}] ({}) on endpoint {ep:?}: two clones could get the same address",
                    groups[i].primary, groups[j].primary
                ));
                if last > end {
                    reach = Some((ep, last, i));
                }
            }
            _ => reach = Some((ep, last, i)),
        }
    }
}

/// Pools with fewer addresses than the group's clones, and groups whose clones
/// add no CPU (`clone_cpus = "same"`).
pub(super) fn warnings(groups: &[Group], w: &mut Vec<String>) {
    for g in groups {
        if g.policy.clone_cpus == crate::core::CloneCpus::Same && g.policy.max_instances > 1 {
            w.push(format!(
                "group {}: clone_cpus = \"same\": albatross pins every clone to the primary's CPUs, so scaling this group adds no CPU capacity",
                g.primary
            ));
        }
        let clones = u64::from(g.policy.max_instances.saturating_sub(1));
        if let Some(n) = g.policy.clone_ipv4.and_then(|p| p.size())
            && n < clones
        {
            w.push(format!(
                "group {}: clone_ipv4 has {n} address(es) for up to {clones} clone(s): once it is used up, scale-ups wait until a clone is removed",
                g.primary
            ));
        }
    }
}
