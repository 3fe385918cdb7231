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
