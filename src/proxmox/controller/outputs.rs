//! What the LXC machine said, turned into jobs for the actuator, decision-log
//! lines, notices and history rows.

use super::*;

impl Controller {
    pub(super) fn output(
        &mut self,
        now: Timestamp,
        o: lxc::Output,
        jobs: &mut Vec<Job>,
        report: &mut Report,
    ) {
        match o {
            lxc::Output::Engine(Output::Answered {
                decision, answer, ..
            }) => {
                // Approved ones are planned by `answer` against a fresh poll; the
                // others failed for their group, as a failed action would.
                if let Some(why) = answer.failure() {
                    let n = Notice::outcome(&decision, &Err(why), self.settings.dry_run);
                    self.notices.publish(n);
                }
                if answer == crate::core::gate::Answer::Expired {
                    self.expired(now, |j| {
                        matches!(j, Job::Decision { d, .. } if d.id == decision.id && d.group == decision.group)
                    });
                }
            }
            lxc::Output::ResizeAnswered {
                vmid,
                resize,
                answer,
            } => {
                if answer == crate::core::gate::Answer::Expired {
                    self.expired(now, |j| {
                        matches!(j, Job::Resize { vmid: v, r, .. } if *v == vmid && r.id == resize.id)
                    });
                }
            }
            lxc::Output::Engine(o) => self.engine_output(now, o, jobs),
            lxc::Output::Vertical { vmid, out } => self.vertical_output(vmid, out, jobs, report),
            lxc::Output::Forget { group, clone } => {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if s.remove(&group.to_string(), &clone.to_string()) {
                    self.save(&s);
                }
            }
            lxc::Output::Observed {
                vmid,
                cpu_bp,
                cores,
                busy_milli,
            } => {
                let key = self.index(vmid).map(|i| self.keys[i].clone());
                if let (Some(h), Some(key)) = (&mut self.history, key) {
                    h.container(now, &key, cpu_bp, cores, busy_milli);
                }
            }
        }
    }

    /// The machine index of container `vmid`.
    pub(super) fn index(&self, vmid: u32) -> Option<usize> {
        self.machine.index_of(vmid)
    }

    fn vertical_output(
        &mut self,
        vmid: u32,
        o: vertical::Output,
        jobs: &mut Vec<Job>,
        report: &mut Report,
    ) {
        let Some(i) = self.index(vmid) else { return };
        let name = self.keys[i].to_string();
        match o {
            vertical::Output::Resize(r) => {
                if let Some(h) = &mut self.history {
                    h.resize(&self.keys[i], &r);
                }
                tracing::info!(vmid, from = ?r.from, to = ?r.to, reason = %r.reason, dry_run = self.settings.dry_run, "resize");
                self.write(jsonl::resize_line(&name, vmid, &r, self.settings.dry_run));
                let planned = self.plan(&lxc::Output::Vertical {
                    vmid,
                    out: vertical::Output::Resize(r),
                });
                jobs.extend(planned);
            }
            vertical::Output::Evaluation {
                verdict: vertical::Verdict::Blocked { wanted, why_not },
                t,
                ..
            } => {
                tracing::info!(vmid, ?wanted, %why_not, "resize not made");
                if let Some(n) = self.ceilings[1].observe(t, &name, Some(&why_not)) {
                    self.notices.publish(n);
                }
                self.write(jsonl::why_not_line(&name, vmid, t, wanted, &why_not));
                report.blocked.push((vmid, why_not));
            }
            vertical::Output::Evaluation { t, .. } => {
                self.ceilings[1].observe(t, &name, None);
            }
            vertical::Output::Failed {
                id,
                t,
                error,
                retry_in,
            } => {
                tracing::warn!(vmid, %error, "resize failed");
                self.notices.publish(Notice::ActionFailed {
                    group: name.clone(),
                    instance: format!("vmid {vmid}"),
                    action: "resize".into(),
                    reason: error.clone(),
                });
                self.write(jsonl::resize_failed_line(
                    &name, vmid, id, t, &error, retry_in,
                ));
            }
        }
    }

    pub(super) fn engine_output(&mut self, now: Timestamp, o: Output, jobs: &mut Vec<Job>) {
        if let Some(h) = &mut self.history {
            h.output(&o);
        }
        // The API and metrics follow these as they follow the albatross engine's.
        if let Some(tx) = &self.outputs {
            let _ = tx.send(o.clone());
        }
        if let Some(v) = jsonl::decision_line(&o, self.settings.dry_run) {
            self.write(v);
        }
        if let Output::Evaluation(e) = &o {
            let why_not = match &e.verdict {
                Verdict::Blocked { why_not, .. } => Some(why_not),
                _ => None,
            };
            if let Some(n) = self.ceilings[0].observe(now, &e.group.to_string(), why_not) {
                self.notices.publish(n);
            }
        }
        if matches!(o, Output::Decision(_)) {
            jobs.extend(self.plan(&lxc::Output::Engine(o)));
        }
    }

    /// What decision `d` means for the API, given the rows of a poll.
    pub(super) fn act_for(&self, d: &Decision, rows: &HashMap<u32, Resource>) -> Option<Act> {
        let i = self
            .machine
            .containers()
            .iter()
            .position(|c| c.spec().name == *d.group)?;
        let vmid = self.machine.containers()[i].spec().vmid;
        let group = d.group.to_string();
        let instance = d.instance.to_string();
        let act = match d.action {
            Action::ScaleUp => match rows.get(&vmid) {
                Some(p) => Act::Clone(CloneJob {
                    group,
                    name: instance,
                    hostname: d.instance.label.clone().unwrap_or_default(),
                    node: p.node.clone(),
                    source: self.clones[i].source.unwrap_or(vmid),
                    spec: self.clones[i].clone(),
                    tag: self.settings.tag.clone(),
                    ipv4: self.machine.containers()[i].spec().policy.clone_ipv4,
                }),
                None => Act::Refuse(format!("primary {vmid} not in /cluster/resources")),
            },
            Action::ScaleDown | Action::CloneLost => {
                let recorded = self
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .vmid(&group, &instance);
                match recorded.and_then(|v| rows.get(&v).map(|r| (v, r))) {
                    None => Act::Gone,
                    // Never destroy what does not carry our tag and the recorded name.
                    Some((v, r))
                        if !r.has_tag(&self.settings.tag)
                            || r.name.as_deref() != d.instance.label.as_deref() =>
                    {
                        Act::Refuse(format!(
                            "vmid {v} is not tagged {:?} with name {:?}; not destroyed",
                            self.settings.tag, d.instance.label
                        ))
                    }
                    Some((v, r)) => Act::Destroy {
                        node: r.node.clone(),
                        vmid: v,
                    },
                }
            }
            Action::ReplacePrimary => Act::Refuse(format!(
                "primary container {vmid} is not running; the autoscaler does not start or recreate primaries"
            )),
            Action::Promote => Act::Nothing,
        };
        Some(act)
    }
}
