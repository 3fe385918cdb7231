//! When each group must tick next, ordered: the engine's earliest deadline is the
//! top of a heap, and an input re-files only the groups it stepped (O(log n)), so
//! the cost of an event does not grow with the number of groups.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::time::Timestamp;
use crate::name::Name;

/// Deadlines of groups `0..n`, by group index: a min-heap with lazy deletion (an
/// entry is current only while it matches `at`), cheaper per change than a
/// balanced tree, which matters when every sample moves its group's deadline.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    heap: BinaryHeap<Reverse<(Timestamp, usize)>>,
    /// Each group's deadline; `None` while it is being stepped (taken by `due`).
    at: Vec<Option<Timestamp>>,
}

/// Two queues are equal when they hold the same deadlines (stale heap entries
/// are bookkeeping).
impl PartialEq for Queue {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Queue {}

impl Queue {
    /// A queue holding `deadlines[i]` for group `i`.
    pub fn of(deadlines: impl Iterator<Item = Timestamp>) -> Self {
        let at: Vec<Option<Timestamp>> = deadlines.map(Some).collect();
        let heap = at
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| Reverse((t, i))))
            .collect();
        Self { heap, at }
    }

    /// Entries in the heap, stale ones included (for the tests).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.heap.len()
    }

    /// Group `i` must tick at `t` (a new group if `i` is the next index).
    #[inline]
    pub fn set(&mut self, i: usize, t: Timestamp) {
        // Most steps leave the deadline where it was (a clone's sample).
        if self.at.get(i) != Some(&Some(t)) {
            self.refile(i, t);
        }
    }

    fn refile(&mut self, i: usize, t: Timestamp) {
        let old = match self.at.get_mut(i) {
            Some(old) if *old == Some(t) => return,
            Some(old) => old.replace(t),
            None => {
                debug_assert_eq!(i, self.at.len(), "groups are added at the end");
                self.at.push(Some(t));
                None
            }
        };
        // The group whose deadline was the earliest (one group, or the one that
        // just ticked): move its entry in place instead of leaving a stale one.
        if let Some(mut top) = self.heap.peek_mut()
            && old.is_some_and(|o| top.0 == (o, i))
        {
            *top = Reverse((t, i));
        } else {
            self.heap.push(Reverse((t, i)));
        }
        self.settle();
    }

    /// The earliest deadline of any group.
    pub fn first(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Take the groups due at `now`, in index order (the order a scan over all
    /// groups would step them in, so outputs do not depend on the queue). Each
    /// must be [`Queue::set`] again once stepped.
    pub fn due(&mut self, now: Timestamp) -> Vec<usize> {
        let mut due = Vec::new();
        while let Some(&Reverse((t, i))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self.at[i] == Some(t) {
                self.at[i] = None;
                due.push(i);
            }
        }
        self.settle();
        due.sort_unstable();
        due
    }

    /// Drop stale entries from the top (so `first` is current), and rebuild when
    /// stale ones make up most of the heap (so it stays O(groups) in size).
    fn settle(&mut self) {
        while let Some(&Reverse((t, i))) = self.heap.peek() {
            if self.at[i] == Some(t) {
                break;
            }
            self.heap.pop();
        }
        if self.heap.len() > 2 * self.at.len() + 64 {
            let at = self.at.iter().enumerate();
            self.heap = at.filter_map(|(i, t)| t.map(|t| Reverse((t, i)))).collect();
        }
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
        assert_eq!(q.due(Timestamp(4)), Vec::<usize>::new());
        assert_eq!(q.due(Timestamp(30)), vec![0, 2, 3]);
        // Taken until filed again.
        assert_eq!(q.first(), Some(Timestamp(40)));
        assert_eq!(q.due(Timestamp(30)), Vec::<usize>::new());
        q.set(2, Timestamp(25));
        assert_eq!(q.first(), Some(Timestamp(25)));
    }

    #[test]
    fn stale_entries_do_not_pile_up() {
        let mut q = Queue::of([100, 200].map(Timestamp).into_iter());
        // Deadlines that keep moving earlier leave later entries behind.
        for t in (0..10_000).rev() {
            q.set(1, Timestamp(1000 + t));
            assert_eq!(q.first(), Some(Timestamp(100)));
        }
        assert!(q.entries() <= 2 * 2 + 64 + 1, "{}", q.entries());
        assert_eq!(q.due(Timestamp(1000)), vec![0, 1]);
        assert_eq!(q.first(), None);
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
