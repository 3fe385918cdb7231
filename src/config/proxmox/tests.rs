use super::*;
use crate::config::{Config, problems};

const PVE: &str = "[proxmox]\nurl = \"http://127.0.0.1:8006\"\ntoken_id = \"a@pve!s\"\ntoken_secret_env = \"PVE_SECRET\"\n";

#[test]
fn parses_the_issue_sketch() {
    let text = format!(
        "{PVE}[[lxc]]\nvmid = 101\nmode = \"vertical\"\ncores = [1, 8]\nmemory_mib = [512, 8192]\nmemory_step_mib = 512\nscale_up_ticks = 2\n"
    );
    let c = Config::parse(&text, Path::new("t.toml")).unwrap();
    let l = &c.lxc[0];
    assert_eq!((l.vmid, l.mode), (101, Mode::Vertical));
    assert_eq!((l.vertical.cpu_min, l.vertical.cpu_max), (1, 8));
    assert_eq!(l.vertical.up_ticks, 2);
    assert_eq!(l.name.to_string(), "lxc:ct101");
    assert_eq!(c.proxmox.unwrap().tls, Tls::Plain);
}

#[test]
fn each_problem_names_its_key() {
    let cases = [
        (
            "[proxmox]\nurl = \"https://h:8006\"\ntoken_id = \"nope\"\ntoken_secret_env = \"X\"\nfingerprint = \"AB\"\n",
            "proxmox.token_id:",
        ),
        (
            "[proxmox]\nurl = \"https://h:8006\"\ntoken_id = \"a@b!c\"\ntoken_secret_env = \"X\"\nfingerprint = \"AB\"\n",
            "proxmox.fingerprint:",
        ),
        (
            "[proxmox]\nurl = \"https://h:8006\"\ntoken_id = \"a@b!c\"\ntoken_secret_env = \"X\"\n",
            "set ca or fingerprint",
        ),
        (
            "[proxmox]\nurl = \"h:8006\"\ntoken_id = \"a@b!c\"\n",
            "token_secret_file, token_secret_env",
        ),
        (
            "[[lxc]]\nvmid = 101\n",
            "lxc: [[lxc]] needs a [proxmox] section",
        ),
    ];
    for (text, want) in cases {
        let got = problems(text);
        assert!(
            got.iter().any(|p| p.contains(want)),
            "{text:?}: {got:?} lacks {want:?}"
        );
    }
    let lxc_cases = [
        ("vmid = 5\n", "lxc[0].vmid: 5 is out of range"),
        ("vmid = 101\ncores = [4, 2]\n", "lxc[0] (101).cores: [4, 2]"),
        (
            "vmid = 101\nmode = \"sideways\"\n",
            "unknown variant `sideways`",
        ),
        (
            "vmid = 101\nscale_up_thresold = 5\n",
            "unknown field `scale_up_thresold`",
        ),
        (
            "vmid = 101\nmemory_up_threshold = 30\n",
            "lxc[0] (101).memory_down_threshold: 40 must be below",
        ),
        ("vmid = 101\nname = \"Web_1\"\n", "lxc[0] (101).name:"),
        (
            "vmid = 101\ncpulimit = [2.0, 1.0]\n",
            "lxc[0] (101).cpulimit:",
        ),
    ];
    for (body, want) in lxc_cases {
        let got = problems(&format!("{PVE}[[lxc]]\n{body}"));
        assert!(
            got.iter().any(|p| p.contains(want)),
            "{body:?}: {got:?} lacks {want:?}"
        );
    }
    let twice = problems(&format!("{PVE}[[lxc]]\nvmid = 101\n[[lxc]]\nvmid = 101\n"));
    assert!(
        twice
            .iter()
            .any(|p| p.contains("lxc[1] (101).vmid: 101 is listed twice")),
        "{twice:?}"
    );
}

#[test]
fn fingerprints_parse_with_or_without_colons() {
    let hex = "AB".repeat(32);
    assert_eq!(parse_fingerprint(&hex), Some([0xAB; 32]));
    let colons = vec!["ab"; 32].join(":");
    assert_eq!(parse_fingerprint(&colons), Some([0xAB; 32]));
    assert_eq!(parse_fingerprint("AB:CD"), None);
}
