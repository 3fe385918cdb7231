//! Replay: feed recorded samples through the engine in time order, firing its
//! timers in between, and acknowledge every decision as executed (the recording
//! is the record of what ran; nothing is actuated).

use crate::core::lifecycle::Event;
use crate::core::{Engine, Input, Output, Timestamp};

use super::recording::Record;

/// Drive `engine` with `records` (sorted by time here, stably) and hand every
/// output to `emit`. Returns the final engine.
pub fn run(mut engine: Engine, records: &[Record], mut emit: impl FnMut(&Output)) -> Engine {
    let mut order: Vec<&Record> = records.iter().collect();
    order.sort_by_key(|r| r.t);
    let mut out = Vec::new();
    for r in order {
        fire_timers(&mut engine, r.t, &mut out, &mut emit);
        let input = Input::Sample {
            vm: r.vm.clone(),
            cpu_us: r.cpu_us,
            vcpus: r.vcpus,
        };
        step_acked(&mut engine, r.t, input, &mut out, &mut emit);
    }
    engine
}

/// Handle every deadline strictly before `until`.
fn fire_timers(
    engine: &mut Engine,
    until: Timestamp,
    out: &mut Vec<Output>,
    emit: &mut impl FnMut(&Output),
) {
    let mut last = None;
    while let Some(d) = engine.next_deadline().filter(|d| *d < until) {
        if last == Some(d) {
            break; // a deadline that does not move would loop forever
        }
        last = Some(d);
        step_acked(engine, d, Input::Tick, out, &mut *emit);
    }
}

/// Feed `input`, hand every output to `each`, and acknowledge every decision that
/// needs a result as executed at once (a draining one when drained) and every
/// lifecycle step as passed; acknowledgements may produce outputs of their own,
/// which are handled the same way.
pub(crate) fn step_acked(
    engine: &mut Engine,
    now: Timestamp,
    input: Input,
    out: &mut Vec<Output>,
    mut each: impl FnMut(&Output),
) {
    step_answered(engine, now, input, out, false, &mut each);
}

/// [`step_acked`]; with `checks_itself` readiness checks are left to the caller
/// (the simulator answers them from its boot model).
pub(crate) fn step_answered(
    engine: &mut Engine,
    now: Timestamp,
    input: Input,
    out: &mut Vec<Output>,
    checks_itself: bool,
    each: &mut impl FnMut(&Output),
) {
    out.clear();
    engine.step(now, input, out);
    let mut i = 0;
    while i < out.len() {
        each(&out[i]);
        let answer = match &out[i] {
            // A draining scale-down is carried out when drained.
            Output::Decision(d) if d.action.needs_result() && !d.drain => {
                Some(Input::ActionResult {
                    group: (*d.group).clone(),
                    id: d.id,
                    outcome: Ok(()),
                })
            }
            Output::Drained { decision: d, .. } => Some(Input::ActionResult {
                group: (*d.group).clone(),
                id: d.id,
                outcome: Ok(()),
            }),
            // Hooks ran and passed (the simulator answers readiness itself).
            Output::Lifecycle(h)
                if h.event == Event::Draining || (h.event == Event::Ready && !checks_itself) =>
            {
                Some(Input::Lifecycle {
                    group: (*h.group).clone(),
                    vm: (*h.vm).clone(),
                    event: h.event,
                    outcome: Ok(()),
                })
            }
            _ => None,
        };
        if let Some(answer) = answer {
            let mut more = Vec::new();
            engine.step(now, answer, &mut more);
            out.extend(more);
        }
        i += 1;
    }
}
