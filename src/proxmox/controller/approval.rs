//! Manual approval on the Proxmox side. The LXC machine holds what
//! `require_approval` covers (its gate: the rules and the expiry live in the core);
//! here the held jobs wait in the shared book (see [`crate::daemon::approvals`]) for
//! the API. An answer goes to the machine; an approved job is planned again
//! against a fresh poll and run.

use std::collections::HashMap;

use serde_json::json;

use super::{Act, Controller, Job, Report, lxc};
use crate::core::gate::Answer;
use crate::core::{Input, Output, Timestamp};
use crate::daemon::approvals::{self, At, Command, Owner, Request};
use crate::proxmox::types::Resource;

impl Controller {
    pub(super) fn needs_approval(&self, job: &Job) -> bool {
        match job {
            Job::Decision { d, .. } => self.machine.engine().is_held(&d.group, d.id),
            Job::Resize { vmid, r, .. } => self.machine.is_held_resize(*vmid, r.id),
        }
    }

    pub(super) fn hold(&mut self, now: Timestamp, job: Job) {
        let (request, timeout) = match &job {
            Job::Decision { d, .. } => {
                let timeout = self
                    .machine
                    .by_name(&d.group)
                    .map(|c| c.spec().policy.approval_timeout);
                (Request::of(d), timeout)
            }
            Job::Resize { c, vmid, r, .. } => {
                let lxc = self.machine.containers()[*c].spec();
                let action = match r.direction {
                    crate::core::vertical::Direction::Up => "scale_up",
                    crate::core::vertical::Direction::Down => "scale_down",
                };
                let request = Request {
                    group: lxc.name.to_string(),
                    instance: lxc.name.to_string(),
                    action: action.into(),
                    emergency: false,
                    reason: r.reason.clone(),
                    action_id: r.id,
                    inputs: json!({"resize": {"vmid": vmid, "from": r.from, "to": r.to}}),
                };
                (request, Some(lxc.policy.approval_timeout))
            }
        };
        let timeout = timeout.unwrap_or(std::time::Duration::from_secs(900));
        let e = self
            .approvals
            .lock()
            .add(Owner::Proxmox, request, timeout, At::now());
        tracing::info!(approval = %e.id, group = %e.request.group, action = %e.request.action, instance = %e.request.instance, expires_at = %approvals::fmt_time(e.expires_at), "decision waits for approval");
        self.write(approvals::log_line("approval_pending", &e, now.as_millis()));
        self.notices.publish(approvals::pending_notice(&e));
        self.held.push((e.id, job));
    }

    /// The machine dropped a held job whose `approval_timeout` ran out (`pick`
    /// finds it among the held ones).
    pub(super) fn expired(&mut self, now: Timestamp, pick: impl Fn(&Job) -> bool) {
        let Some(i) = self.held.iter().position(|(_, j)| pick(j)) else {
            return;
        };
        let (id, _) = self.held.swap_remove(i);
        let Some(e) = self.approvals.lock().expire_id(&id, At::now()) else {
            return;
        };
        tracing::warn!(approval = %e.id, group = %e.request.group, action = %e.request.action, "approval expired; the decision is dropped");
        self.write(approvals::log_line("approval_expired", &e, now.as_millis()));
    }

    /// Drop every held job (the loop stops): logged as expired, never executed.
    pub fn abandon(&mut self, now: Timestamp) {
        let gone = self.approvals.lock().abandon(Owner::Proxmox, At::now());
        for e in gone {
            self.write(approvals::log_line("approval_expired", &e, now.as_millis()));
        }
        self.held.clear();
    }

    /// An operator's verdict on a held job, for the machine to weigh (it re-checks
    /// its rules). Approved and allowed: the job is planned again against a fresh
    /// poll and returned to run. Otherwise the machine has failed it.
    pub async fn answer(&mut self, now: Timestamp, cmd: Command) -> Option<Job> {
        let (mut e, job, cmd) = approvals::take_held(&self.approvals, &mut self.held, cmd)?;
        // The container (or the clone's source or victim) must still be there.
        let fresh = if cmd.approve {
            Some(self.client.resources().await.map(|res| {
                res.into_iter()
                    .filter(|r| r.kind == "lxc")
                    .filter_map(|r| Some((u32::try_from(r.vmid?).ok()?, r)))
                    .collect::<HashMap<u32, Resource>>()
            }))
        } else {
            None
        };
        let by = cmd.key.clone();
        let input = match &job {
            Job::Decision { d, .. } => {
                let (group, id) = ((*d.group).clone(), d.id);
                lxc::Input::Engine(if cmd.approve {
                    Input::Approve { group, id, by }
                } else {
                    Input::Reject { group, id, by }
                })
            }
            Job::Resize { vmid, r, .. } => lxc::Input::AnswerResize {
                vmid: *vmid,
                id: r.id,
                approve: cmd.approve,
                by,
            },
        };
        let out = self.step(now, input);
        let answer = out.iter().find_map(|o| match o {
            lxc::Output::Engine(Output::Answered { answer, .. })
            | lxc::Output::ResizeAnswered { answer, .. } => Some(answer.clone()),
            _ => None,
        });
        for o in out {
            self.output(now, o, &mut Vec::new(), &mut Report::default());
        }
        let run = match (answer, fresh) {
            (Some(Answer::Approved { .. }), Some(Ok(rows))) => self.replan(job, &rows),
            (Some(Answer::Approved { .. }), Some(Err(e))) => Run::Refused(
                Box::new(job),
                format!(
                    "approved by {} but not executed: cannot read /cluster/resources: {e}",
                    cmd.key
                ),
            ),
            (Some(a), _) => Run::Answered(a.failure().unwrap_or_default()),
            (None, _) => Run::Answered("no longer waiting (expired meanwhile)".into()),
        };
        let outcome = match &run {
            Run::Go(_) => "executing".to_string(),
            Run::Answered(why) | Run::Refused(_, why) => why.clone(),
        };
        self.approvals.lock().set_outcome(&e.id, outcome.clone());
        e.outcome = Some(outcome);
        let event = if cmd.approve { "approved" } else { "rejected" };
        self.write(approvals::log_line(event, &e, now.as_millis()));
        tracing::info!(approval = %e.id, key = %cmd.key, group = %e.request.group, action = %e.request.action, outcome = e.outcome.as_deref().unwrap_or(""), "{event}");
        let _ = cmd.reply.send(Ok(e));
        match run {
            Run::Go(job) => {
                self.start(&job);
                Some(job)
            }
            Run::Answered(_) => None,
            Run::Refused(job, why) => {
                self.settle(now, *job, Err(crate::actuate::Failed::Transient(why)));
                None
            }
        }
    }

    /// The job again, against `rows` (a fresh poll), or why the cluster no longer
    /// allows it.
    fn replan(&self, job: Job, rows: &HashMap<u32, Resource>) -> Run {
        match job {
            Job::Decision { d, act } => match self.act_for(&d, rows) {
                Some(Act::Refuse(why)) => Run::Refused(Box::new(Job::Decision { d, act }), why),
                Some(act) => Run::Go(Job::Decision { d, act }),
                None => {
                    let why = format!("{} is no longer configured", d.group);
                    Run::Refused(Box::new(Job::Decision { d, act }), why)
                }
            },
            Job::Resize { c, vmid, r, node } => match rows.get(&vmid) {
                Some(row) if row.running() => Run::Go(Job::Resize {
                    c,
                    node: row.node.clone(),
                    vmid,
                    r,
                }),
                _ => Run::Refused(
                    Box::new(Job::Resize { c, vmid, r, node }),
                    format!("container {vmid} is not running"),
                ),
            },
        }
    }
}

/// What an answer leads to.
enum Run {
    /// Approved and planned: run it.
    Go(Job),
    /// The machine did not approve it (and has failed it itself): why.
    Answered(String),
    /// Approved, but the cluster refuses it now: a failed action.
    Refused(Box<Job>, String),
}
