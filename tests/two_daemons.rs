//! Two daemons on one state directory (a Proxmox-only deployment, the real binary
//! against the fake Proxmox API): the second exits at once naming the first's pid;
//! once the first stopped, a new one starts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use albatross_autoscale::sandbox::proxmox::{Ct, Fake, FakeServer};

const SECRET: &str = "3f0c5a52-0000-4000-8000-0000000000dd";
const TOKEN: &str = "autoscale@pve!scaler";

fn config(dir: &Path, url: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("pve.toml");
    let text = format!(
        "[proxmox]\nurl = \"{url}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_env = \"PVE_TEST_SECRET\"\n\
         poll_interval = \"1h\"\nstate_file = \"pve-state.json\"\n\
         [[lxc]]\nvmid = 101\ncores = [1, 8]\n"
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn daemon(cfg: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"));
    c.args(["run", "--config"])
        .arg(cfg)
        .env("PVE_TEST_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Start a daemon and return once it logged that it runs (the lock is taken before).
fn start(cfg: &Path) -> Child {
    let mut child = daemon(cfg).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("running") => break,
            Some(Ok(_)) => {}
            other => panic!("the daemon ended before running: {other:?}"),
        }
    }
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    child.wait().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_directory_exits_naming_the_first() {
    let mut f = Fake::new(&format!("PVEAPIToken={TOKEN}={SECRET}"));
    f.node("pve", 65_536, 8_192);
    f.cts.insert(101, Ct::new("pve", "web", 2, 2048));
    let server = FakeServer::start(f).await.unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("two-daemons");
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = config(&dir, &server.url());

    let (first, second) = tokio::task::spawn_blocking(move || {
        let first = start(&cfg);
        let second = daemon(&cfg).output().unwrap();
        let first_pid = first.id();
        let status = stop(first);
        // The lock went with the first daemon: a third one starts.
        let third = start(&cfg);
        assert!(stop(third).success());
        ((first_pid, status), second)
    })
    .await
    .unwrap();

    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{err}");
    assert!(err.contains(&format!("pid {}", first.0)), "{err}");
    assert!(err.contains("pve-state.json.lock"), "{err}");
    assert!(first.1.success(), "SIGTERM stops the first cleanly");
}
