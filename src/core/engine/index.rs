//! The indexes that keep an event's work independent of the number of groups:
//! group by name, groups by deadline, members by name, and the cost total, each
//! brought up to date for the group a step touched.

use super::*;

impl Engine {
    /// Rebuild every index over `clusters` (creation, reload): O(n).
    pub(super) fn reindex(&mut self) {
        self.index.clear();
        for (i, c) in self.clusters.iter().enumerate() {
            self.index.entry(c.group().clone()).or_insert(i);
        }
        self.queue = Queue::of(self.clusters.iter().map(Group::next_deadline));
        self.total_cost = self
            .clusters
            .iter()
            .map(|c| u128::from(c.hourly_cost()))
            .sum();
        self.reroute();
    }

    /// The index of `group`.
    pub(super) fn find(&self, group: &Name) -> Option<usize> {
        self.index.get(group).copied()
    }

    pub(super) fn cluster(&self, group: &Name) -> Option<&Group> {
        self.find(group).map(|i| &self.clusters[i])
    }

    /// What [`Engine::after`] needs to know of group `i` before a step.
    #[inline]
    pub(super) fn before(&mut self, i: usize) -> (u64, u64) {
        if self.cost_ceiling.is_some() {
            self.share_cost_room(i);
        }
        let c = &self.clusters[i];
        (c.membership(), c.hourly_cost())
    }

    /// Bring the indexes up to date with group `i` after a step: O(log n), plus
    /// the group's members if its membership changed.
    #[inline]
    pub(super) fn after(&mut self, i: usize, (membership, cost): (u64, u64)) {
        let c = &self.clusters[i];
        let now = c.hourly_cost();
        if now != cost {
            self.total_cost = self.total_cost.saturating_sub(u128::from(cost)) + u128::from(now);
        }
        self.queue.set(i, c.next_deadline());
        if c.membership() != membership {
            self.reroute_group(i);
        }
    }

    /// Re-file the members of group `i` in `routes`.
    pub(super) fn reroute_group(&mut self, i: usize) {
        if self.shared {
            return self.reroute();
        }
        for name in std::mem::take(&mut self.routed[i]) {
            if self.routes.get(&name).is_some_and(|&(k, _)| k == i) {
                self.routes.remove(&name);
            }
        }
        self.routed[i] = self.file_members(i);
        if self.shared {
            self.reroute();
        }
    }

    /// All routes from scratch.
    pub(super) fn reroute(&mut self) {
        self.routes.clear();
        self.routed.clear();
        self.shared = false;
        for i in 0..self.clusters.len() {
            let names = self.file_members(i);
            self.routed.push(names);
        }
    }

    /// File the members of group `i` in `routes` (noting a name two groups claim);
    /// their names.
    fn file_members(&mut self, i: usize) -> Vec<Arc<Name>> {
        let mut names = Vec::with_capacity(self.clusters[i].members().count());
        for (j, m) in self.clusters[i].members().enumerate() {
            let prev = self.routes.insert(m.name.clone(), (i, j));
            self.shared |= prev.is_some_and(|(k, _)| k != i);
            names.push(m.name.clone());
        }
        names
    }
}
