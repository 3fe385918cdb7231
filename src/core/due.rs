//! When each group must tick next, ordered: the engine's earliest deadline is the
//! first entry, and an input re-files only the groups it stepped (O(log n)), so
//! the cost of an event does not grow with the number of groups.

use std::collections::BTreeSet;
use std::time::Duration;

use super::time::Timestamp;
use crate::name::Name;

/// Deadlines of groups `0..n`, by group index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queue {
    order: BTreeSet<(Timestamp, usize)>,
    at: Vec<Timestamp>,
}

impl Queue {
    /// A queue holding `deadlines[i]` for group `i`.
    pub fn of(deadlines: impl Iterator<Item = Timestamp>) -> Self {
        let at: Vec<Timestamp> = deadlines.collect();
        let order = at.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        Self { order, at }
    }

    /// Group `i` must tick at `t` (a new group if `i` is the next index).
    pub fn set(&mut self, i: usize, t: Timestamp) {
        match self.at.get_mut(i) {
            Some(old) if *old == t => {}
            Some(old) => {
                self.order.remove(&(*old, i));
                *old = t;
                self.order.insert((t, i));
            }
            None => {
                debug_assert_eq!(i, self.at.len(), "groups are added at the end");
                self.at.push(t);
                self.order.insert((t, i));
            }
        }
    }

    /// The earliest deadline of any group.
    pub fn first(&self) -> Option<Timestamp> {
        self.order.first().map(|&(t, _)| t)
    }

    /// Groups due at `now`, in index order (the order a scan over all groups
    /// would step them in, so outputs do not depend on the queue).
    pub fn due(&self, now: Timestamp) -> Vec<usize> {
        let mut due: Vec<usize> = self
            .order
            .iter()
            .take_while(|&&(t, _)| t <= now)
            .map(|&(_, i)| i)
            .collect();
        due.sort_unstable();
        due
    }
}

/// A stable offset in `0..interval` for the first timer evaluation of `group`, so
/// groups created together (daemon start, a reload) do not all come due in the
/// same instant. Derived from the name (FNV-1a), never random: replays agree.
pub fn phase(group: &Name, interval: Duration) -> Duration {
    let ms = super::time::duration_ms(interval);
    if ms == 0 {
        return Duration::ZERO;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for p in &group.path {
        eat(p.as_bytes());
        eat(b":");
    }
    eat(group.label.as_deref().unwrap_or("").as_bytes());
    Duration::from_millis(h % ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_the_minimum_and_due_is_in_index_order() {
        let mut q = Queue::of([30, 10, 20].map(Timestamp).into_iter());
        assert_eq!(q.first(), Some(Timestamp(10)));
        q.set(1, Timestamp(40));
        assert_eq!(q.first(), Some(Timestamp(20)));
        q.set(3, Timestamp(5));
        assert_eq!(q.first(), Some(Timestamp(5)));
        assert_eq!(q.due(Timestamp(30)), vec![0, 2, 3]);
        assert_eq!(q.due(Timestamp(4)), Vec::<usize>::new());
    }

    #[test]
    fn phases_are_stable_and_spread() {
        let interval = Duration::from_secs(10);
        let a = Name::parse("alice:web").unwrap();
        assert_eq!(phase(&a, interval), phase(&a, interval));
        assert!(phase(&a, interval) < interval);
        assert_eq!(phase(&a, Duration::ZERO), Duration::ZERO);
        // 1 000 groups over 10 buckets of 1 s: none empty, none holding a quarter.
        let mut buckets = [0u32; 10];
        for n in 0..1000 {
            let g = Name::parse(&format!("alice:vm{n}")).unwrap();
            buckets[(phase(&g, interval).as_millis() / 1000) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| b > 0 && b < 250), "{buckets:?}");
    }
}
