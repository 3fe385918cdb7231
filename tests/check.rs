//! `check`: the preflight against the embedded albatross endpoint and the fake
//! Proxmox API, on bad setups as well as good ones (real time: the stats check
//! waits for samples; the endpoint ticks every 100 ms).

use std::path::Path;
use std::time::Duration;

use albatross_autoscale::cli::check::{self, Finding, Level};
use albatross_autoscale::config::Config;
use albatross_autoscale::sandbox::StatsBody;
use albatross_autoscale::sandbox::proxmox::{Ct, Fake, FakeServer};
use albatross_autoscale::wire::{BlockSpec, Policy};
use serde_json::json;

mod world;

use world::name;

const POLICY: &str = "sample_interval = \"1s\"\nmax_instances = 4\n";

fn about<'a>(f: &'a [Finding], what: &str) -> Vec<&'a Finding> {
    f.iter().filter(|x| x.about == what).collect()
}

fn has(f: &[Finding], level: Level, what: &str, text: &str) -> bool {
    about(f, what)
        .iter()
        .any(|x| x.level == level && x.message.contains(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn albatross_limits_cpus_addresses_block_devices_and_missing_primaries() {
    // Room for two unikernels, one CPU: the primary's.
    let policy = Policy {
        cpuids: vec![0],
        unikernels: 3,
        ..albatross_autoscale::sandbox::TestPki::default_policy()
    };
    let w = world::world(
        &policy,
        StatsBody::V27,
        Duration::from_millis(100),
        Duration::ZERO,
    )
    .await;
    let mut db = world::primary();
    db.block_devices = vec![BlockSpec {
        name: "storage".into(),
        device: Some("data".into()),
        sector_size: None,
    }];
    w.endpoint.add(name("demo:db"), db);
    // demo:web as the world writes it, and two more groups.
    w.config(POLICY, "");
    let path = w.dir.join("test.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + "[[group]]\nprimary = \"demo:db\"\n[[group]]\nprimary = \"demo:gone\"\n";
    std::fs::write(&path, &text).unwrap();
    let f = check::check(&Config::load(&path).unwrap(), Duration::from_secs(5)).await;
    eprintln!("{f:#?}");
    assert!(has(&f, Level::Ok, "albatross default", "maps to path demo"));
    assert!(has(&f, Level::Ok, "group demo:web", "primary found"));
    assert!(has(
        &f,
        Level::Ok,
        "group demo:web",
        "clones take addresses of 10.0.42.10-10.0.42.50"
    ));
    assert!(has(&f, Level::Fail, "group demo:db", "and no clone_ipv4"));
    assert!(has(
        &f,
        Level::Warn,
        "group demo:web",
        "adds no CPU capacity"
    ));
    assert!(has(
        &f,
        Level::Warn,
        "group demo:web",
        "room for 1 clone(s)"
    ));
    assert!(has(&f, Level::Ok, "group demo:web", "readable sample"));
    assert!(has(
        &f,
        Level::Fail,
        "group demo:db",
        "block devices (storage)"
    ));
    assert!(has(&f, Level::Fail, "group demo:gone", "not running"));
    assert_eq!(check::findings_exit_code(&f), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_albatross_setup_is_all_ok_and_an_unreachable_one_fails() {
    let w = world::world(
        &albatross_autoscale::sandbox::TestPki::default_policy(),
        StatsBody::V27,
        Duration::from_millis(100),
        Duration::ZERO,
    )
    .await;
    let mut clean = world::primary();
    clean.argv.clear();
    w.endpoint.add(name("demo:api"), clean);
    w.config(POLICY, "");
    let path = w.dir.join("test.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("primary = \"demo:web\"", "primary = \"demo:api\"");
    std::fs::write(&path, &text).unwrap();
    let f = check::check(&Config::load(&path).unwrap(), Duration::from_secs(5)).await;
    assert_eq!(check::findings_exit_code(&f), 0, "{f:#?}");
    assert!(has(
        &f,
        Level::Ok,
        "group demo:api",
        "each on a CPU of its own"
    ));
    // The same config against a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let text = text.replace(&w.endpoint.addr().to_string(), &addr.to_string());
    std::fs::write(&path, &text).unwrap();
    let f = check::check(&Config::load(&path).unwrap(), Duration::from_secs(5)).await;
    assert!(
        has(&f, Level::Fail, "albatross default", "cannot connect"),
        "{f:#?}"
    );
}

const TOKEN: &str = "autoscale@pve!scaler";
const SECRET: &str = "3f0c5a52-0000-4000-8000-000000000001";

async fn pve(perms: Option<serde_json::Value>, net0: &str) -> FakeServer {
    let mut f = Fake::new(&format!("PVEAPIToken={TOKEN}={SECRET}"));
    f.node("pve", 65_536, 8_192);
    f.cts.insert(101, Ct::new("pve", "web", 2, 1024));
    let mut tpl = Ct::new("pve", "tpl", 1, 512);
    (tpl.running, tpl.template) = (false, true);
    tpl.net0 = net0.into();
    f.cts.insert(9000, tpl);
    if let Some(p) = perms {
        f.permissions = p;
    }
    FakeServer::start(f).await.unwrap()
}

fn pve_config(dir: &Path, url: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    let text = format!(
        "[proxmox]\nurl = \"{url}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_file = \"secret\"\n\
         [[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"vertical-then-horizontal\"\nclone_source = 9000\n\
         [[lxc]]\nvmid = 404\nname = \"ghost\"\n"
    );
    let path = dir.join("pve.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn proxmox_privileges_containers_and_nextid() {
    let dir = std::env::temp_dir().join(format!("aa-check-pve-{}", std::process::id()));
    // Audit and resize on /vms, nothing else: no clone, no allocation. The
    // template has a static address and web no clone_ipv4.
    let s = pve(
        Some(json!({"/vms": {"VM.Audit": 1, "VM.Config.CPU": 1, "VM.Config.Memory": 1}})),
        "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1",
    )
    .await;
    let path = pve_config(&dir, &s.url());
    let f = check::check(&Config::load(&path).unwrap(), Duration::from_secs(5)).await;
    eprintln!("{f:#?}");
    assert!(has(&f, Level::Ok, "proxmox", "connected to"));
    assert!(has(&f, Level::Ok, "lxc 101 (lxc:web)", "running on pve"));
    assert!(has(
        &f,
        Level::Fail,
        "lxc 101 (lxc:web)",
        "VM.Clone on /vms/9000, VM.Allocate on /vms, VM.PowerMgmt on /vms"
    ));
    assert!(has(
        &f,
        Level::Fail,
        "lxc 404 (lxc:ghost)",
        "not in /cluster/resources"
    ));
    // ghost is vertical: what it needs is held.
    assert!(has(
        &f,
        Level::Ok,
        "lxc 404 (lxc:ghost)",
        "every privilege vertical"
    ));
    assert!(has(&f, Level::Ok, "proxmox", "/cluster/nextid answers"));
    assert!(has(
        &f,
        Level::Fail,
        "lxc 101 (lxc:web)",
        "static address net0 ip=10.0.0.5/24 and no clone_ipv4"
    ));

    // Full rights: only the missing container fails; through the binary, --json.
    let s = pve(None, "name=eth0,bridge=vmbr0,ip=dhcp").await;
    let path = pve_config(&dir, &s.url());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["check", "--json", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert_eq!(v["exit"], 2);
    let fails: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "fail")
        .collect();
    assert_eq!(fails.len(), 1, "{v}");
    assert_eq!(fails[0]["about"], "lxc 404 (lxc:ghost)");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_config_is_a_failure_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("aa-check-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[policy]\nscale_up_threshold = 500\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.starts_with("fail config:") && text.contains("scale_up_threshold"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
