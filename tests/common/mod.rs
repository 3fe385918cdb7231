//! Shared test harnesses: the engine one for tests/engine*.rs (one `Group` driven
//! with explicit time; each VM's cumulative CPU counter advances by the given
//! percentage of the interval since its previous sample) and [`api`] for the HTTP API.
#![allow(dead_code)] // each test binary uses a different part

pub mod api;

use std::collections::HashMap;
use std::sync::Arc;

use albatross_autoscale::core::group::Input;
use albatross_autoscale::core::{Decision, Group, Output, Policy, Timestamp, Verdict};
use albatross_autoscale::name::Name;

pub const IV: u64 = 10_000;

pub fn name(s: &str) -> Arc<Name> {
    Arc::new(Name::parse(s).unwrap())
}

/// Drives one cluster: each VM's cumulative CPU counter advances by the given
/// percentage of the interval since its previous sample.
pub struct H {
    pub c: Option<Group>,
    pub now: u64,
    pub cpu: HashMap<Arc<Name>, (u64, u64)>,
    pub log: Vec<Output>,
}

impl H {
    pub fn new(policy: Policy) -> Self {
        Self {
            c: Some(Group::new(
                Name::parse("alice:web").unwrap(),
                policy,
                Timestamp(0),
            )),
            now: 0,
            cpu: HashMap::new(),
            log: Vec::new(),
        }
    }
    pub fn c(&self) -> &Group {
        self.c.as_ref().unwrap()
    }
    pub fn input(&mut self, input: Input) -> Vec<Output> {
        let (c, out) = self.c.take().unwrap().handle(Timestamp(self.now), input);
        self.c = Some(c);
        self.log.extend(out.iter().cloned());
        out
    }
    pub fn at(&mut self, ms: u64) {
        assert!(ms >= self.now);
        // Fire timers in between, as a shell would.
        while self.c().next_deadline().0 < ms {
            self.now = self.c().next_deadline().0;
            self.input(Input::Tick);
        }
        self.now = ms;
    }
    pub fn sample(&mut self, vm: &str, pct: u64) -> Vec<Output> {
        let vm = name(vm);
        let (last_t, total) = self.cpu.get(&vm).copied().unwrap_or((self.now, 1_000_000));
        let total = total + (self.now - last_t) * 10 * pct; // ms * 1000 us * pct/100
        self.cpu.insert(vm.clone(), (self.now, total));
        self.input(Input::Sample {
            vm,
            cpu_us: total,
            vcpus: None,
        })
    }
    /// One interval: every listed VM reports at `pct`, clones first, primary last.
    pub fn round(&mut self, vms: &[&str], pct: u64) -> Vec<Output> {
        let t = self.now + IV;
        self.at(t);
        let mut out = Vec::new();
        for vm in vms.iter().rev() {
            out.extend(self.sample(vm, pct));
        }
        out
    }
    /// One interval in which only the primary reports.
    pub fn primary_round(&mut self, pct: u64) -> Vec<Output> {
        self.round(&["alice:web"], pct)
    }
    /// Acknowledge the action in flight, if any, as succeeded.
    pub fn ack_pending(&mut self) {
        if let Some((id, _, _)) = self.c().pending() {
            self.input(Input::ActionResult {
                id,
                outcome: Ok(()),
            });
        }
    }
    pub fn ack_all(&mut self, ok: bool) {
        let pending: Vec<u64> = decisions(&self.log)
            .iter()
            .filter(|d| d.action.needs_result())
            .map(|d| d.id)
            .collect();
        for id in pending {
            let outcome = if ok { Ok(()) } else { Err("boom".to_string()) };
            self.input(Input::ActionResult { id, outcome });
        }
    }
}

pub fn decisions(out: &[Output]) -> Vec<Decision> {
    out.iter()
        .filter_map(|o| match o {
            Output::Decision(d) => Some((**d).clone()),
            _ => None,
        })
        .collect()
}

pub fn why_not(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Evaluation(e) => match &e.verdict {
                Verdict::Blocked { why_not, .. } => Some(why_not.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
