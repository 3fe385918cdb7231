//! Manual approval on the Proxmox side: jobs whose action is listed in
//! `require_approval` wait in the shared book (see [`crate::daemon::approvals`]);
//! the engine or the vertical machine keeps them in flight meanwhile. An approval
//! re-checks the rules against a fresh poll and runs the job; a rejection or expiry
//! answers the machine with a failure.

use std::collections::HashMap;

use serde_json::json;
use tokio::time::Instant;

use super::{Act, Controller, Job};
use crate::core::Action;
use crate::core::Timestamp;
use crate::core::vertical::Direction;
use crate::daemon::approvals::{self, At, Command, Owner, Request};

impl Controller {
    pub(super) fn needs_approval(&self, job: &Job) -> bool {
        match job {
            // A refusal fails at once; holding it would only delay the failure.
            Job::Decision {
                act: Act::Refuse(_) | Act::Gone | Act::Nothing,
                ..
            } => false,
            Job::Decision { d, .. } => self.machine.engine().needs_approval(d),
            Job::Resize { c, r, .. } => {
                let action = match r.direction {
                    Direction::Up => Action::ScaleUp,
                    Direction::Down => Action::ScaleDown,
                };
                self.machine.containers()[*c]
                    .spec()
                    .policy
                    .require_approval
                    .covers(action, false)
            }
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
                    Direction::Up => "scale_up",
                    Direction::Down => "scale_down",
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

    /// When the next held job expires (the loop's deadline).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.approvals.lock().next_expiry(Owner::Proxmox)
    }

    /// Drop held jobs whose `approval_timeout` ran out, answering their machines.
    pub fn expire(&mut self, now: Timestamp) {
        let gone = self.approvals.lock().expire(Owner::Proxmox, At::now());
        for e in gone {
            tracing::warn!(approval = %e.id, group = %e.request.group, action = %e.request.action, "approval expired; the decision is dropped");
            self.write(approvals::log_line("approval_expired", &e, now.as_millis()));
            if let Some(i) = self.held.iter().position(|(id, _)| *id == e.id) {
                let (_, job) = self.held.swap_remove(i);
                self.settle(now, job, Err("approval expired".into()));
            }
        }
    }

    /// Drop every held job (the loop stops): logged as expired, never executed.
    pub fn abandon(&mut self, now: Timestamp) {
        let gone = self.approvals.lock().abandon(Owner::Proxmox, At::now());
        for e in gone {
            self.write(approvals::log_line("approval_expired", &e, now.as_millis()));
        }
        self.held.clear();
    }

    /// An operator's verdict on a held job. Approved: the rules are checked again
    /// against a fresh poll and the job to run is returned. Rejected, or refused by
    /// the re-check: the machine is answered with a failure.
    pub async fn answer(&mut self, now: Timestamp, cmd: Command) -> Option<Job> {
        self.expire(now);
        let (mut e, job, cmd) = approvals::take_held(&self.approvals, &mut self.held, cmd)?;
        let verdict = if cmd.approve {
            self.recheck(job.clone())
                .await
                .map_err(|why| format!("approved by {} but not executed: {why}", cmd.key))
        } else {
            Err(format!("rejected by {}", cmd.key))
        };
        let outcome = match &verdict {
            Ok(_) => "executing".to_string(),
            Err(why) => why.clone(),
        };
        self.approvals.lock().set_outcome(&e.id, outcome.clone());
        e.outcome = Some(outcome);
        let event = if cmd.approve { "approved" } else { "rejected" };
        self.write(approvals::log_line(event, &e, now.as_millis()));
        tracing::info!(approval = %e.id, key = %cmd.key, group = %e.request.group, action = %e.request.action, outcome = e.outcome.as_deref().unwrap_or(""), "{event}");
        let _ = cmd.reply.send(Ok(e));
        match verdict {
            Ok(job) => {
                self.start(&job);
                Some(job)
            }
            Err(why) => {
                self.settle(now, job, Err(why));
                None
            }
        }
    }

    /// The rules at the moment of approval: the machine still has the job in flight
    /// within its current bounds, and the container (or the clone's source or victim)
    /// is still there and running. The job is rebuilt from the fresh poll.
    async fn recheck(&mut self, job: Job) -> Result<Job, String> {
        let res = self
            .client
            .resources()
            .await
            .map_err(|e| format!("cannot read /cluster/resources: {e}"))?;
        let rows: HashMap<u32, crate::proxmox::types::Resource> = res
            .into_iter()
            .filter(|r| r.kind == "lxc")
            .filter_map(|r| Some((u32::try_from(r.vmid?).ok()?, r)))
            .collect();
        match job {
            Job::Decision { d, .. } => {
                self.machine.engine().recheck(&d)?;
                match self.plan(&d, &rows) {
                    Some(Act::Refuse(why)) => Err(why),
                    Some(act) => Ok(Job::Decision { d, act }),
                    None => Err(format!("{} is no longer configured", d.group)),
                }
            }
            Job::Resize { c, vmid, r, .. } => {
                if let Some(v) = self.machine.containers()[c].vertical() {
                    v.recheck(&r)?;
                }
                match rows.get(&vmid) {
                    Some(row) if row.running() => Ok(Job::Resize {
                        c,
                        node: row.node.clone(),
                        vmid,
                        r,
                    }),
                    _ => Err(format!("container {vmid} is not running")),
                }
            }
        }
    }
}
