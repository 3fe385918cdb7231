//! The sans-IO heart: pure state machines, no tokio, no clock, no I/O.
//!
//! * [`Group`] is one group (primary + clones); [`Engine`] routes samples to groups.
//! * Both are values (`Clone + Debug + PartialEq`): `handle(self, now, input)` returns
//!   the next state and the outputs; `next_deadline()` says when to tick.
//! * Outputs ([`Output`]) are data: computed samples, decisions with the inputs that
//!   justified them, and evaluations with their "why not".

pub mod backoff;
mod budget;
pub mod cpu;
mod due;
pub mod engine;
pub mod gate;
pub mod group;
pub mod lifecycle;
pub mod lxc;
pub mod machine;
mod members;
pub mod naming;
pub mod output;
pub mod policy;
pub mod predict;
pub mod reason;
pub mod schedule;
pub mod seasonal;
pub mod status;
pub mod time;
pub mod vertical;
pub mod why;

pub use engine::{Engine, Input, Options};
pub use group::{Group, Member, MemberState, Role};
pub use lxc::Lxc;
pub use machine::Machine;
pub use output::{Action, ActionId, Decision, Evaluation, Output, SampleReport, Verdict};
pub use policy::{CloneCpus, Policy, PrimaryDeath, RequireApproval, Rule};
pub use reason::Reason;
pub use time::Timestamp;
pub use why::{Ceiling, WhyNot};
