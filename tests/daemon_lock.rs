//! One daemon per state directory: the `flock` on `<state_file>.lock`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use albatross_autoscale::state::lock::{LockError, StateLock};

fn state_file(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("daemon_lock_{test}"));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let _ = std::fs::remove_file(StateLock::path_for(&state));
    state
}

#[test]
fn a_second_lock_on_one_state_file_fails_naming_the_holder_pid() {
    let state = state_file("second");
    let first = StateLock::acquire(&state).unwrap();
    assert_eq!(first.path(), StateLock::path_for(&state));
    assert!(first.path().to_str().unwrap().ends_with("state.json.lock"));
    let pid = std::process::id().to_string();
    assert_eq!(std::fs::read_to_string(first.path()).unwrap().trim(), pid);
    // flock belongs to the open file description: a second open conflicts even in
    // the same process.
    let err = StateLock::acquire(&state).unwrap_err();
    assert!(
        matches!(&err, LockError::Held { pid: p, .. } if *p == pid),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("pid {pid}")), "{msg}");
    assert!(msg.contains("state.json.lock"), "{msg}");
    // Released on drop: the next daemon starts.
    drop(first);
    StateLock::acquire(&state).unwrap();
}

#[test]
fn a_lock_file_left_behind_without_a_holder_does_not_block() {
    let state = state_file("stale");
    std::fs::write(StateLock::path_for(&state), "4194303\n").unwrap();
    let lock = StateLock::acquire(&state).unwrap();
    let text = std::fs::read_to_string(lock.path()).unwrap();
    assert_eq!(
        text,
        format!("{}\n", std::process::id()),
        "stale pid replaced"
    );
}

/// Not a test on its own: the lock holder of `a_killed_holder_releases_the_lock`,
/// run in a child process (this test binary, re-executed).
#[test]
#[ignore = "child process of a_killed_holder_releases_the_lock"]
fn holder_child() {
    let Some(state) = std::env::var_os("DAEMON_LOCK_CHILD_STATE") else {
        return;
    };
    let _lock = StateLock::acquire(Path::new(&state)).unwrap();
    println!("locked");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn a_killed_holder_releases_the_lock() {
    let state = state_file("killed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["holder_child", "--exact", "--ignored", "--nocapture"])
        .env("DAEMON_LOCK_CHILD_STATE", &state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("locked") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
    }
    let err = StateLock::acquire(&state).unwrap_err();
    assert!(
        err.to_string().contains(&format!("pid {}", child.id())),
        "{err}"
    );
    // A crash: SIGKILL, no destructor runs; the kernel drops the lock.
    child.kill().unwrap();
    child.wait().unwrap();
    let lock = StateLock::acquire(&state).unwrap();
    assert_eq!(
        std::fs::read_to_string(lock.path()).unwrap().trim(),
        std::process::id().to_string()
    );
}
