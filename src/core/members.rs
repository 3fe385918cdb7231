//! The members of a group: join order kept (deterministic iteration), O(1) lookup
//! by name so the cost of a sample does not grow with the group.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::group::Member;
use crate::name::Name;

/// A small fast hasher for names (FxHash); the keys are not attacker-chosen in a
/// way that matters (albatross names under the operator's own path).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Members in join order with an index by name.
#[derive(Debug, Clone, Default)]
pub struct Members {
    list: Vec<Member>,
    index: FxMap<Arc<Name>, usize>,
}

impl PartialEq for Members {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Eq for Members {}

impl Members {
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn contains_key(&self, name: &Name) -> bool {
        self.index.contains_key(name)
    }
    pub fn get(&self, name: &Name) -> Option<&Member> {
        self.index.get(name).map(|&i| &self.list[i])
    }
    /// Where `name` sits in join order.
    pub fn position(&self, name: &Name) -> Option<usize> {
        self.index.get(name).copied()
    }
    /// The member at `i` (from [`Members::position`]).
    pub fn at_mut(&mut self, i: usize) -> Option<&mut Member> {
        self.list.get_mut(i)
    }
    pub fn get_mut(&mut self, name: &Name) -> Option<&mut Member> {
        self.index.get(name).map(|&i| &mut self.list[i])
    }
    /// Add a member (replacing one of the same name in place).
    pub fn insert(&mut self, m: Member) {
        match self.index.get(&m.name) {
            Some(&i) => self.list[i] = m,
            None => {
                // One slot for the first member (most groups are a lone primary;
                // a `Vec` would take four), doubling from there.
                self.list.reserve_exact(usize::from(self.list.is_empty()));
                self.index.insert(m.name.clone(), self.list.len());
                self.list.push(m);
            }
        }
    }
    /// Remove a member, keeping the others in join order.
    pub fn remove(&mut self, name: &Name) -> Option<Member> {
        let i = self.index.remove(name)?;
        let m = self.list.remove(i);
        for j in &mut self.index.values_mut() {
            if *j > i {
                *j -= 1;
            }
        }
        Some(m)
    }
    pub fn values(&self) -> std::slice::Iter<'_, Member> {
        self.list.iter()
    }
    pub fn keys(&self) -> impl Iterator<Item = &Arc<Name>> + Clone {
        self.list.iter().map(|m| &m.name)
    }
}
