//! What the vertical machines and the horizontal engine said, turned into jobs for
//! the actuator, decision-log lines, notices and history rows.

use super::*;

impl Controller {
    pub(super) fn vertical_output(
        &mut self,
        i: usize,
        node: &str,
        o: vertical::Output,
        jobs: &mut Vec<Job>,
        report: &mut Report,
    ) {
        let vmid = self.containers[i].lxc.vmid;
        let name = self.containers[i].lxc.name.to_string();
        match o {
            vertical::Output::Resize(r) => {
                if let Some(h) = &mut self.history {
                    h.resize(&self.containers[i].key, &r);
                }
                tracing::info!(vmid, from = ?r.from, to = ?r.to, reason = %r.reason, dry_run = self.settings.dry_run, "resize");
                self.write(json!({"event": "decision", "t_ms": r.t.as_millis(), "group": name, "vmid": vmid,
                    "action": "resize", "direction": r.direction, "from": r.from, "to": r.to, "reason": r.reason,
                    "id": r.id, "dry_run": self.settings.dry_run}));
                jobs.push(Job::Resize {
                    c: i,
                    node: node.to_string(),
                    vmid,
                    r,
                });
            }
            vertical::Output::Evaluation {
                verdict: vertical::Verdict::Blocked { wanted, why_not },
                t,
                ..
            } => {
                tracing::info!(vmid, ?wanted, %why_not, "resize not made");
                self.containers[i].why_not = Some(why_not.clone());
                if let Some(n) = self.ceilings[1].observe(t, &name, Some(&why_not)) {
                    self.notices.publish(n);
                }
                self.write(
                    json!({"event": "why_not", "t_ms": t.as_millis(), "group": name, "vmid": vmid,
                    "wanted": wanted, "why_not": why_not}),
                );
                report.blocked.push((vmid, why_not));
            }
            vertical::Output::Evaluation { t, .. } => {
                self.containers[i].why_not = None;
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
                self.write(json!({"event": "action_failed", "t_ms": t.as_millis(), "group": name, "vmid": vmid,
                    "action": "resize", "id": id, "error": error, "retry_in_ms": retry_in.as_millis() as u64}));
            }
        }
    }

    pub(super) fn engine_output(
        &mut self,
        now: Timestamp,
        o: Output,
        by_vmid: &HashMap<u64, &Resource>,
        jobs: &mut Vec<Job>,
    ) {
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
        let Output::Decision(d) = o else { return };
        let Some(act) = self.plan(&d, by_vmid) else {
            return;
        };
        jobs.push(Job::Decision { d, act });
    }

    /// What decision `d` means for the API, given the latest poll.
    pub(super) fn plan(&self, d: &Decision, by_vmid: &HashMap<u64, &Resource>) -> Option<Act> {
        let c = self.containers.iter().find(|c| c.lxc.name == *d.group)?;
        let group = d.group.to_string();
        let instance = d.instance.to_string();
        let primary = by_vmid.get(&u64::from(c.lxc.vmid));
        let act = match d.action {
            Action::ScaleUp => match primary {
                Some(p) => Act::Clone(CloneJob {
                    group,
                    name: instance,
                    hostname: d.instance.label.clone().unwrap_or_default(),
                    node: p.node.clone(),
                    source: c.lxc.clone.source.unwrap_or(c.lxc.vmid),
                    spec: c.lxc.clone.clone(),
                    tag: self.settings.tag.clone(),
                }),
                None => Act::Refuse(format!("primary {} not in /cluster/resources", c.lxc.vmid)),
            },
            Action::ScaleDown | Action::CloneLost => {
                let vmid = self
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .vmid(&group, &instance);
                match vmid.and_then(|v| by_vmid.get(&u64::from(v)).map(|r| (v, r))) {
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
                "primary container {} is not running; the autoscaler does not start or recreate primaries",
                c.lxc.vmid
            )),
            Action::Promote => Act::Nothing,
        };
        Some(act)
    }
}
