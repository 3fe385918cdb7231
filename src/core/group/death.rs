//! Deaths: members that stopped reporting for `death_timeout`. A lost clone is
//! cleaned up; a dead primary is marked, and with `primary_death = promote` its
//! oldest live clone takes its place.

use super::*;

impl Group {
    /// Drop dead clones, mark a dead primary, and remember when to look again.
    pub(super) fn check_deaths(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let timeout = self.policy.death_timeout;
        let mut next_check = now.plus(timeout);
        let mut dead = Vec::new();
        for m in self.members.values() {
            // A booting clone reports like any other (albatross lists it).
            if !m.state.is_live() {
                continue;
            }
            let deadline = m.last_seen.unwrap_or(m.since).plus(timeout);
            if deadline <= now {
                dead.push(m.name.clone());
            } else {
                next_check = next_check.min(deadline);
            }
        }
        self.death_check_at = next_check;
        for name in dead {
            let Some(m) = self.members.get(&name) else {
                continue;
            };
            let silent = now.since(m.last_seen.unwrap_or(m.since));
            if m.role == Role::Primary {
                self.primary_died(now, silent, out);
                continue;
            }
            if !m.owned {
                self.members.remove(&name);
                self.membership += 1;
                continue;
            }
            let reason = Reason::CloneLost { silent, timeout };
            if self.control.paused {
                // Recommend-only: the lost clone leaves the group but its remains are
                // not touched; it stays in the ownership record, and a reconcile
                // adopts it if it runs again. The evaluation says what would be done.
                self.members.remove(&name);
                self.membership += 1;
                let verdict = Verdict::Blocked {
                    wanted: Action::CloneLost,
                    why_not: WhyNot::Paused {
                        would: Action::CloneLost,
                        reason: Box::new(reason),
                    },
                };
                out.push(self.evaluation(now, None, None, verdict));
                continue;
            }
            // Leaving until the cleanup is answered: its remains may still run, so
            // the name stays taken and counted against max_instances meanwhile.
            let id = self.push_decision(now, Action::CloneLost, name.clone(), reason, None, out);
            if let Some(m) = self.members.get_mut(&name) {
                m.state = MemberState::Leaving(id);
                m.bp = None;
            }
        }
    }

    fn primary_died(&mut self, now: Timestamp, silent: Duration, out: &mut Vec<Output>) {
        let primary = self.primary.clone();
        if let Some(m) = self.members.get_mut(&primary) {
            m.state = MemberState::Dead;
            m.bp = None;
        }
        if self.policy.primary_death != PrimaryDeath::Promote {
            return;
        }
        let heir = self
            .members
            .values()
            .filter(|m| m.role == Role::Clone && m.state == MemberState::Running)
            .min_by_key(|m| m.seq)
            .map(|m| m.name.clone());
        let Some(heir) = heir else {
            return; // nobody to promote: decide() recreates the primary instead
        };
        self.members.remove(&primary);
        if let Some(m) = self.members.get_mut(&heir) {
            m.role = Role::Primary;
            m.owned = false; // a primary is never a scale-down victim
        }
        self.primary = heir.clone();
        self.membership += 1;
        let reason = Reason::Promoted { primary, silent };
        self.push_decision(now, Action::Promote, heir, reason, None, out);
    }
}
