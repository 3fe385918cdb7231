//! `run --once` and `--dry-run` of the built binary against the fake Proxmox API.

use std::process::Command;

use albatross_autoscale::sandbox::proxmox::{FakeServer, TOKEN_ID as TOKEN};

const SECRET: &str = "3f0c5a52-0000-4000-8000-0000000000cc";

async fn server() -> FakeServer {
    FakeServer::one_hot_container(SECRET, 0.97).await.unwrap()
}

fn run_once(url: &str, extra: &[&str], name: &str) -> std::process::Output {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pve-cli-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("pve.toml");
    let text = format!(
        "[policy]\nscale_up_ticks = 1\nscale_up_cooldown = \"0s\"\n\
         [proxmox]\nurl = \"{url}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_env = \"PVE_TEST_SECRET\"\n\
         [daemon]\nstate_file = \"state.json\"\n\
         [[lxc]]\nvmid = 101\ncores = [1, 8]\n"
    );
    std::fs::write(&cfg, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["run", "--once", "--config", cfg.to_str().unwrap()])
        .args(extra)
        .env("PVE_TEST_SECRET", SECRET)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_resizes_a_hot_container_and_dry_run_does_not() {
    let s = server().await;
    let url = s.url();
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_once(&url, &["--dry-run"], "dry")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.with(|f| f.cts[&101].cores),
        Some(2),
        "--dry-run changes nothing"
    );

    let out = tokio::task::spawn_blocking(move || run_once(&url, &[], "real"))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(s.with(|f| f.cts[&101].cores), Some(3), "{err}");
    assert!(!err.contains(SECRET), "the token secret is never logged");
}

/// SIGHUP applies `[[lxc]]` changes (issue 17): at `cores = [1, 2]` the hot
/// container is held at its maximum; after the file allows 8 cores and the daemon
/// is sent SIGHUP, the restarted Proxmox loop resizes it. Synchronised on the
/// daemon's own log lines, not on sleeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_lxc_changes() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let s = server().await;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pve-cli-reload");
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::remove_file(dir.join("state.json"));
    let cfg = dir.join("pve.toml");
    let text = |max: u32| {
        format!(
            "[policy]\nscale_up_ticks = 1\nscale_up_cooldown = \"0s\"\n\
             [proxmox]\nurl = \"{}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_env = \"PVE_TEST_SECRET\"\npoll_interval = \"1s\"\n\
             [daemon]\nstate_file = \"state.json\"\n\
             [[lxc]]\nvmid = 101\ncores = [1, {max}]\n",
            s.url()
        )
    };
    std::fs::write(&cfg, text(2)).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("PVE_TEST_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut until = async |what: &str| {
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(l) = log.next_line().await.unwrap() {
                if l.contains(what) {
                    return l;
                }
            }
            panic!("the daemon ended before logging {what:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("no {what:?} in the log"))
    };
    // Held at its maximum: a why-not, no resize.
    until("resize not made").await;
    assert_eq!(s.with(|f| f.cts[&101].cores), Some(2));
    std::fs::write(&cfg, text(8)).unwrap();
    let pid = i32::try_from(child.id().unwrap()).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    until("[proxmox] / [[lxc]] reloaded").await;
    until("resize vmid=101").await;
    // Still hot at 3 cores: the next poll resizes again, from the size just set.
    until("resize vmid=101").await;
    let cores = s.with(|f| f.cts[&101].cores).unwrap();
    assert!((3..=8).contains(&cores), "{cores} cores");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
