use std::path::Path;
use std::time::Duration;

use crate::config::{Config, problems};
use crate::core::RequireApproval;

#[test]
fn require_approval_merges_per_group_and_names_a_bad_action() {
    let c = Config::parse(
        "[policy]\nrequire_approval = [\"scale_up\", \"replace_primary\"]\napproval_timeout = \"5m\"\n\
         [[group]]\nprimary = \"a:web\"\n\
         [[group]]\nprimary = \"a:db\"\nrequire_approval = \"all\"\n\
         [[group]]\nprimary = \"a:job\"\nrequire_approval = []\napproval_timeout = \"1h\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let p = |i: usize| &c.groups[i].policy;
    assert_eq!(
        p(0).require_approval.names(),
        ["scale_up", "replace_primary"]
    );
    assert_eq!(p(0).approval_timeout, Duration::from_secs(300));
    assert_eq!(p(1).require_approval, RequireApproval::ALL);
    assert_eq!(p(2).require_approval, RequireApproval::default());
    assert_eq!(p(2).approval_timeout, Duration::from_secs(3600));
    let d = Config::parse("", Path::new("t.toml")).unwrap().policy;
    assert_eq!(d.require_approval, RequireApproval::default());
    assert_eq!(d.approval_timeout, Duration::from_secs(900));
    for (text, want) in [
        (
            "[policy]\nrequire_approval = [\"scale_up\", \"scale_sideways\"]\n",
            "policy.require_approval: unknown action \"scale_sideways\"",
        ),
        (
            "[[group]]\nprimary = \"a:b\"\nrequire_approval = \"everything\"\n",
            "group[0] (a:b).require_approval: unknown action \"everything\"",
        ),
        (
            "[policy]\napproval_timeout = \"0s\"\n",
            "policy.approval_timeout: must be at least 1s",
        ),
        (
            "[policy]\nrequire_approval = 3\n",
            "policy.require_approval: expected \"all\" or a list of actions (scale_up, scale_down, emergency, replace_primary), got an integer",
        ),
        (
            "[policy]\nrequire_approval = [\"all\", \"scale_up\"]\n",
            "policy.require_approval: \"all\" stands alone: write require_approval = \"all\", or list only actions",
        ),
        (
            "[policy]\nrequire_approval = [\"scale_up\", 2]\n",
            "policy.require_approval[1]: expected an action (scale_up, scale_down, emergency, replace_primary), got an integer",
        ),
        (
            "[policy]\nrequire_approval = { scale_up = true }\n",
            "policy.require_approval: expected \"all\" or a list of actions (scale_up, scale_down, emergency, replace_primary), got a table",
        ),
        (
            "[policy]\nrequire_approval = \"resize\"\n",
            "policy.require_approval: unknown action \"resize\" (expected \"all\" or a list of actions (scale_up, scale_down, emergency, replace_primary))",
        ),
        (
            "[proxmox]\nurl = \"http://127.0.0.1:8006\"\ntoken_id = \"a@pve!s\"\ntoken_secret_env = \"X\"\n\
             [[lxc]]\nvmid = 101\nrequire_approval = [\"resize\"]\n",
            "lxc[0] (101).require_approval: unknown action \"resize\"",
        ),
    ] {
        let got = problems(text);
        assert!(
            got.iter().any(|p| p.contains(want)),
            "{text:?}: {got:?} lacks {want:?}"
        );
    }
}

#[test]
fn require_approval_takes_all_in_a_list_one_action_and_duplicates() {
    let approval = |v: &str| {
        Config::parse(
            &format!("[policy]\nrequire_approval = {v}\n"),
            Path::new("t.toml"),
        )
        .map(|c| c.policy.require_approval)
        .map_err(|e| e.to_string())
    };
    assert_eq!(approval("[\"all\"]"), Ok(RequireApproval::ALL));
    assert_eq!(approval("[\"all\", \"all\"]"), Ok(RequireApproval::ALL));
    let up = approval("\"scale_up\"").unwrap();
    assert_eq!(up.names(), ["scale_up"]);
    assert_eq!(
        approval("[\"scale_down\", \"scale_down\"]")
            .unwrap()
            .names(),
        ["scale_down"]
    );
}

#[test]
fn an_emergency_threshold_out_of_range_is_reported_as_written() {
    for (text, want) in [
        (
            "[policy]\nemergency_threshold = -5\n",
            "policy.emergency_threshold: -5 must be above scale_up_threshold (90) and at most 100 (91..=100)",
        ),
        (
            "[policy]\nemergency_threshold = 5000000000\n",
            "policy.emergency_threshold: 5000000000 must be above",
        ),
        (
            "[policy]\nscale_up_threshold = 100\nemergency_threshold = 100\n",
            "policy.emergency_threshold: 100 must be above scale_up_threshold (100) and at most 100; lower scale_up_threshold first",
        ),
        (
            "[policy]\nemergency_threshold = 95\n[[group]]\nprimary = \"a:b\"\nscale_up_threshold = 96\n",
            "group[0] (a:b).emergency_threshold: 95 must be above scale_up_threshold (96)",
        ),
    ] {
        let got = problems(text);
        assert!(
            got.iter().any(|p| p.contains(want)),
            "{text:?}: {got:?} lacks {want:?}"
        );
    }
}

#[test]
fn an_emergency_scale_up_waits_if_emergency_or_scale_up_is_listed() {
    use crate::core::Action::*;
    let mut only_emergency = RequireApproval::default();
    assert!(only_emergency.set("emergency"));
    assert!(only_emergency.covers(ScaleUp, true));
    assert!(!only_emergency.covers(ScaleUp, false));
    let mut up = RequireApproval::default();
    up.set("scale_up");
    assert!(up.covers(ScaleUp, true) && up.covers(ScaleUp, false));
    assert!(!up.covers(ScaleDown, false));
    let all = RequireApproval::ALL;
    assert!(all.covers(ReplacePrimary, false));
    assert!(!all.covers(CloneLost, false) && !all.covers(Promote, false));
}
