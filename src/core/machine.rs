//! The contract every machine keeps with the daemon's driver: a value changed only
//! by timestamped inputs, saying when it next wants a tick. quinn-proto's
//! `handle`/`poll_timeout` in one trait, so one driver can run the albatross engine
//! and the LXC machine alike, and a recording replays through either.

use super::Timestamp;

/// A sans-IO state machine.
pub trait Machine {
    type Input;
    type Output;

    /// Advance to `now` with `input`, appending what it says to `out`.
    fn step(&mut self, now: Timestamp, input: Self::Input, out: &mut Vec<Self::Output>);

    /// When the machine wants its tick input, if ever.
    fn next_deadline(&self) -> Option<Timestamp>;

    /// The input that asks the machine to act on due deadlines.
    fn tick() -> Self::Input;
}

impl Machine for super::Engine {
    type Input = super::Input;
    type Output = super::Output;

    fn step(&mut self, now: Timestamp, input: super::Input, out: &mut Vec<super::Output>) {
        super::Engine::step(self, now, input, out);
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        super::Engine::next_deadline(self)
    }

    fn tick() -> super::Input {
        super::Input::Tick
    }
}
