//! JSON Lines rendering of engine outputs. `replay` prints these lines and the
//! daemon's decision log writes the same ones, so scripts read both alike.

use serde_json::{Value, json};

use crate::core::gate::Answer;
use crate::core::seasonal::Trigger;
use crate::core::vertical::{Direction, Resize};
use crate::core::{Output, Timestamp, Verdict, cpu, lxc};

/// The JSON object for one output; `None` for evaluations unless `explain`.
pub fn line(out: &Output, explain: bool) -> Option<Value> {
    Some(match out {
        Output::Sample(s) => json!({
            "event": "sample",
            "t_ms": s.t.as_millis(),
            "vm": s.vm,
            "group": s.group,
            "cpu_percent": s.cpu_percent(),
            "cpu_us": s.cpu_us,
            "elapsed_ms": s.elapsed_ms,
            "vcpus": s.vcpus,
        }),
        Output::CounterReset { vm, t } => json!({
            "event": "counter_reset",
            "t_ms": t.as_millis(),
            "vm": vm,
            "reason": "cpu time went backwards (instance restarted); new baseline",
        }),
        Output::Decision(d) => {
            let mut v = json!({
                "event": "decision",
                "t_ms": d.t.as_millis(),
                "group": d.group,
                "action": d.action,
                "instance": d.instance,
                "reason": d.reason_text(),
                "id": d.id,
                "avg_cpu_percent": d.avg_bp.map(cpu::percent),
                "instances": d.instances,
                "high_ticks": d.high_ticks,
                "low_ticks": d.low_ticks,
            });
            // `"emergency": true` on emergency scale-ups only; absent otherwise, so
            // the other decision lines stay as they were.
            if d.emergency {
                v["emergency"] = Value::Bool(true);
            }
            v
        }
        Output::Lifecycle(h) => json!({
            "event": "lifecycle",
            "t_ms": h.t.as_millis(),
            "group": h.group,
            "instance": h.vm,
            "lifecycle": h.event,
            "attempt": h.attempt,
        }),
        Output::Drained { t, decision: d } => json!({
            "event": "drained",
            "t_ms": t.as_millis(),
            "group": d.group,
            "action": d.action,
            "instance": d.instance,
            "id": d.id,
        }),
        Output::ActionFailed {
            id,
            t,
            group,
            action,
            instance,
            error,
            retry_in,
        } => json!({
            "event": "action_failed",
            "t_ms": t.as_millis(),
            "group": group,
            "action": action,
            "instance": instance,
            "id": id,
            "error": error,
            "retry_in_ms": u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
        }),
        Output::Answered {
            t,
            decision,
            answer,
        } => {
            let (verdict, by, why) = match answer {
                Answer::Approved { by } => ("approved", Some(by), None),
                Answer::Refused { by, why } => ("refused", Some(by), Some(why)),
                Answer::Rejected { by } => ("rejected", Some(by), None),
                Answer::Expired => ("expired", None, None),
            };
            json!({
                "event": "approval",
                "t_ms": t.as_millis(),
                "group": decision.group,
                "action": decision.action,
                "instance": decision.instance,
                "id": decision.id,
                "answer": verdict,
                "by": by,
                "why": why,
            })
        }
        Output::Shadow(n) => json!({
            "event": "forecast_shadow",
            "t_ms": n.t.as_millis(),
            "group": n.group,
            "would": n.would,
            "peak_demand_vcpus": n.peak as f64 / 10_000.0,
            "planned_vcpus": n.planned_vcpus,
            "lead_ms": u64::try_from(n.lead.as_millis()).unwrap_or(u64::MAX),
            "mape_percent": f64::from(n.mape_hundredths) / 100.0,
            "rule": match n.trigger {
                Trigger::Threshold(_) => "thresholds",
                Trigger::Target { .. } => "target",
            },
            "needs_instances": match n.trigger {
                Trigger::Target { needs, .. } => Some(needs),
                Trigger::Threshold(_) => None,
            },
            "reason": n.to_string(),
        }),
        Output::Evaluation(e) if explain => {
            let (verdict, wanted, why_not) = match &e.verdict {
                Verdict::Hold => ("hold", None, None),
                Verdict::Acted(a) => ("acted", Some(*a), None),
                Verdict::Blocked { wanted, why_not } => ("blocked", Some(*wanted), Some(why_not)),
            };
            json!({
                "event": "evaluation",
                "t_ms": e.t.as_millis(),
                "group": e.group,
                "avg_cpu_percent": e.avg_bp.map(cpu::percent),
                "fresh": e.fresh,
                "instances": e.instances,
                "high_ticks": e.high_ticks,
                "low_ticks": e.low_ticks,
                "budget_left": e.budget_left,
                "verdict": verdict,
                "wanted": wanted,
                "why_not": why_not,
            })
        }
        Output::Evaluation(_) => return None,
    })
}

/// The decision log's line for `out`, if it keeps one: decisions, failed
/// actions and shadow forecasts (`dry_run` marks them). `run` writes these; `replay --inputs` prints them.
pub fn decision_line(out: &Output, dry_run: bool) -> Option<Value> {
    if !matches!(
        out,
        Output::Decision(_) | Output::ActionFailed { .. } | Output::Shadow(_)
    ) {
        return None;
    }
    let mut v = line(out, false)?;
    if dry_run {
        v["dry_run"] = Value::Bool(true);
    }
    Some(v)
}

/// The decision log's line for an LXC machine output: a horizontal group's as
/// [`decision_line`], a resize and a failed resize of container `group`.
pub fn lxc_decision_line(group: &str, out: &lxc::Output, dry_run: bool) -> Option<Value> {
    use crate::core::vertical::Output as V;
    match out {
        lxc::Output::Engine(o) => decision_line(o, dry_run),
        lxc::Output::Vertical {
            vmid,
            out: V::Resize(r),
        } => Some(resize_line(group, *vmid, r, dry_run)),
        lxc::Output::Vertical {
            vmid,
            out:
                V::Failed {
                    id,
                    t,
                    error,
                    retry_in,
                },
        } => Some(resize_failed_line(group, *vmid, *id, *t, error, *retry_in)),
        _ => None,
    }
}

/// The decision-log line of a resize (also what `replay --inputs` prints).
pub fn resize_line(group: &str, vmid: u32, r: &Resize, dry_run: bool) -> Value {
    json!({"event": "decision", "t_ms": r.t.as_millis(), "group": group, "vmid": vmid,
        "action": "resize", "direction": r.direction, "from": r.from, "to": r.to, "reason": r.reason,
        "id": r.id, "dry_run": dry_run})
}

pub fn why_not_line(
    group: &str,
    vmid: u32,
    t: Timestamp,
    wanted: Direction,
    why_not: &crate::core::WhyNot,
) -> Value {
    json!({"event": "why_not", "t_ms": t.as_millis(), "group": group, "vmid": vmid,
        "wanted": wanted, "why_not": why_not})
}

/// The decision-log line of a failed resize (also what `replay --inputs` prints).
pub fn resize_failed_line(
    group: &str,
    vmid: u32,
    id: crate::core::ActionId,
    t: Timestamp,
    error: &str,
    retry_in: std::time::Duration,
) -> Value {
    json!({"event": "action_failed", "t_ms": t.as_millis(), "group": group, "vmid": vmid,
        "action": "resize", "id": id, "error": error, "retry_in_ms": retry_in.as_millis() as u64})
}
