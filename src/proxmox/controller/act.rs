//! Carrying out jobs and feeding their results back to the machines.

use super::*;
use crate::actuate::Failed;

impl Controller {
    /// Feed a job's result back.
    pub fn settle(&mut self, now: Timestamp, job: Job, r: Result<(), Failed>) {
        // A refusal waiting cannot change holds the group's scale-ups (as on the
        // albatross side) instead of a retry every backoff.
        let refused = match (&job, &r) {
            (Job::Decision { d, .. }, Err(Failed::Permanent(why)))
                if d.action == Action::ScaleUp =>
            {
                Some(((*d.group).clone(), why.clone()))
            }
            _ => None,
        };
        let r = r.map_err(|f| f.message().to_string());
        match job {
            Job::Resize {
                c, vmid, r: resize, ..
            } => {
                if r.is_ok() {
                    let name = self.keys[c].to_string();
                    self.notices.publish(Notice::DecisionExecuted {
                        group: name.clone(),
                        instance: format!("vmid {vmid}"),
                        action: "resize".into(),
                        reason: resize.reason.clone(),
                        dry_run: self.settings.dry_run,
                    });
                    self.write(json!({"event": "action_done", "t_ms": now.as_millis(), "group": name, "vmid": vmid, "action": "resize", "id": resize.id}));
                }
                let input = lxc::Input::Resized {
                    vmid,
                    id: resize.id,
                    to: resize.to,
                    outcome: r,
                };
                for o in self.step(now, input) {
                    self.output(now, o, &mut Vec::new(), &mut Report::default());
                }
            }
            Job::Decision { d, act } => {
                self.notices
                    .publish(Notice::outcome(&d, &r, self.settings.dry_run));
                let gone = matches!(
                    (&r, d.action),
                    (Ok(()), Action::ScaleDown | Action::CloneLost)
                ) || matches!((&r, &act), (Err(_), Act::Refuse(_)) if d.action == Action::ScaleUp);
                if gone {
                    let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    if s.remove(&d.group.to_string(), &d.instance.to_string()) {
                        self.save(&s);
                    }
                }
                if r.is_ok() {
                    self.log.done(&d, now.as_millis());
                }
                if d.action.needs_result() {
                    let input = Input::ActionResult {
                        group: (*d.group).clone(),
                        id: d.id,
                        outcome: r,
                    };
                    // Results plan nothing: what they cause waits for the next poll.
                    for o in self.step(now, lxc::Input::Engine(input)) {
                        if let lxc::Output::Engine(o) = o {
                            self.engine_output(now, o, &mut Vec::new());
                        }
                    }
                }
                if let Some((group, why)) = refused {
                    tracing::warn!(%group, %why, "a refusal that waiting cannot change: scale-ups of the group are held until a member leaves or the configuration changes");
                    let hold = Input::Refusal {
                        group,
                        why: Some(why),
                    };
                    for o in self.step(now, lxc::Input::Engine(hold)) {
                        if let lxc::Output::Engine(o) = o {
                            self.engine_output(now, o, &mut Vec::new());
                        }
                    }
                }
            }
        }
    }
}

/// A job and how it ended.
pub type Done = (Job, Result<(), Failed>);

impl Shell for Controller {
    type Output = lxc::Output;
    type Job = Job;
    type Done = Done;

    /// A resize is its own job, on the node of the last poll; a clone or a removal
    /// is planned against the last poll's rows and the ownership record.
    fn plan(&self, out: &lxc::Output) -> Option<Job> {
        match out {
            lxc::Output::Vertical {
                vmid,
                out: vertical::Output::Resize(r),
            } => Some(Job::Resize {
                c: self.index(*vmid)?,
                node: self
                    .rows
                    .get(vmid)
                    .map(|r| r.node.clone())
                    .unwrap_or_default(),
                vmid: *vmid,
                r: r.clone(),
            }),
            lxc::Output::Engine(Output::Decision(d)) => Some(Job::Decision {
                d: d.clone(),
                act: self.act_for(d, &self.rows)?,
            }),
            _ => None,
        }
    }

    /// The future that carries out `job`.
    fn execute(&self, job: Job) -> impl std::future::Future<Output = Done> + Send + 'static {
        let client = self.client.clone();
        let state = self.state.clone();
        let path = self.settings.state_file.clone();
        let tasks = self.settings.tasks;
        async move {
            let r = match &job {
                Job::Resize { node, vmid, r, .. } => {
                    actuator::resize(&client, node, *vmid, r).await
                }
                Job::Decision { act, .. } => match act {
                    Act::Clone(cj) => {
                        let save = move |s: &CloneState| {
                            if let Some(p) = &path
                                && let Err(e) = s.save(p)
                            {
                                tracing::error!(error = %e, "cannot write the Proxmox ownership record");
                            }
                        };
                        actuator::scale_up(&client, cj, &state, &save, tasks)
                            .await
                            .map(|_| ())
                    }
                    Act::Destroy { node, vmid } => {
                        actuator::destroy(&client, node, *vmid, tasks).await
                    }
                    Act::Gone | Act::Nothing => Ok(()),
                    Act::Refuse(why) => return (job.clone(), Err(Failed::Transient(why.clone()))),
                },
            };
            let r = r.map_err(|e| match e {
                ProxmoxError::Refused(why) => Failed::Permanent(why),
                e => Failed::Transient(e.to_string()),
            });
            (job, r)
        }
    }
}
