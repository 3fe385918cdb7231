//! Carries out a clone's lifecycle steps ([`Hook`]) for both shells: the TCP
//! health check, the hook's program (argv, never a shell; its environment
//! `AA_GROUP`, `AA_INSTANCE`, `AA_ADDRESS`, `AA_EVENT`; killed at its timeout)
//! and its notice. What ran and how it ended goes to the decision log.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::core::Input;
use crate::core::lifecycle::{Event, Hook, HookCommand, Hooks};
use crate::notify::notice::{Notice, Notices};

/// One lifecycle step to carry out.
#[derive(Debug, Clone)]
pub struct HookJob {
    pub hook: Hook,
    pub hooks: Arc<Hooks>,
    /// The clone's address, if known.
    pub address: Option<IpAddr>,
    pub notices: Notices,
}

/// How a step ended, with what ran.
#[derive(Debug, Clone)]
pub struct HookDone {
    pub hook: Hook,
    pub outcome: Result<(), String>,
    /// One entry per thing run: `health_check`, `exec`, `notify`.
    pub runs: Vec<Value>,
    pub address: Option<IpAddr>,
}

impl HookDone {
    /// The answer the machine waits for; `None` for `removed` (not answered).
    pub fn input(&self) -> Option<Input> {
        (self.hook.event != Event::Removed).then(|| Input::Lifecycle {
            group: (*self.hook.group).clone(),
            vm: (*self.hook.vm).clone(),
            event: self.hook.event,
            outcome: self.outcome.clone(),
        })
    }

    /// The decision log line (`event: "hook"`).
    pub fn log_line(&self, t_ms: u64) -> Value {
        json!({
            "event": "hook",
            "t_ms": t_ms,
            "group": self.hook.group,
            "instance": self.hook.vm,
            "lifecycle": self.hook.event,
            "attempt": self.hook.attempt,
            "address": self.address.map(|a| a.to_string()),
            "ok": self.outcome.is_ok(),
            "error": self.outcome.as_ref().err(),
            "runs": self.runs,
        })
    }
}

/// Carry out `job`: for `ready` the health check first, then `on_ready`.
pub async fn run(job: HookJob) -> HookDone {
    let HookJob {
        hook,
        hooks,
        address,
        notices,
    } = job;
    let mut runs = Vec::new();
    let mut outcome = Ok(());
    if hook.event == Event::Ready
        && let Some(port) = hooks.health_check
    {
        let started = Instant::now();
        let r = health_check(address, port, hooks.health_check_timeout).await;
        runs.push(json!({
            "run": "health_check",
            "target": address.map(|a| SocketAddr::new(a, port).to_string()),
            "ok": r.is_ok(),
            "error": r.as_ref().err(),
            "ms": started.elapsed().as_millis() as u64,
        }));
        outcome = r;
    }
    if outcome.is_ok()
        && let Some(cmd) = hooks.command(hook.event)
    {
        outcome = command(&hook, cmd, address, &notices, &mut runs).await;
    }
    HookDone {
        hook,
        outcome,
        runs,
        address,
    }
}

/// A TCP connect to the clone within `timeout`.
async fn health_check(address: Option<IpAddr>, port: u16, timeout: Duration) -> Result<(), String> {
    let Some(ip) = address else {
        return Err("health check: the clone's address is not known (clone_ipv4)".into());
    };
    let to = SocketAddr::new(ip, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(to)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("health check tcp {to}: {e}")),
        Err(_) => Err(format!(
            "health check tcp {to}: no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// The hook's program, then its notice.
async fn command(
    hook: &Hook,
    cmd: &HookCommand,
    address: Option<IpAddr>,
    notices: &Notices,
    runs: &mut Vec<Value>,
) -> Result<(), String> {
    let key = crate::config::hooks::key(hook.event);
    let mut outcome = Ok(());
    if let Some(argv) = &cmd.exec {
        let started = Instant::now();
        let r = exec(hook, argv, address, cmd.timeout).await;
        runs.push(json!({
            "run": "exec",
            "argv": argv,
            "ok": r.is_ok(),
            "error": r.as_ref().err(),
            "ms": started.elapsed().as_millis() as u64,
        }));
        outcome = r.map_err(|e| format!("{key}: {e}"));
    }
    // A failed program is not announced: the sink would keep what never joined.
    if let Some(sink) = cmd.notify.as_ref().filter(|_| outcome.is_ok()) {
        notices.publish(Notice::Lifecycle {
            lifecycle: format!("clone_{}", hook.event.as_str()),
            group: hook.group.to_string(),
            instance: hook.vm.to_string(),
            address: address.map(|a| a.to_string()),
            sink: sink.clone(),
        });
        runs.push(json!({ "run": "notify", "sink": sink, "ok": true }));
    }
    outcome
}

/// Run `argv` (no shell) with the hook's environment; killed after `timeout`.
async fn exec(
    hook: &Hook,
    argv: &[String],
    address: Option<IpAddr>,
    timeout: Duration,
) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("exec: empty")?;
    // Only PATH and the hook's own variables: the daemon's environment may hold
    // secrets (`token_secret_env`).
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
        .env("AA_GROUP", hook.group.to_string())
        .env("AA_INSTANCE", hook.vm.to_string())
        .env(
            "AA_ADDRESS",
            address.map(|a| a.to_string()).unwrap_or_default(),
        )
        .env("AA_EVENT", hook.event.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Read all of stderr (a closed pipe would kill a chatty hook), keep its
    // first 4 KiB (bounded memory).
    let stderr = child.stderr.take();
    let mut tail = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut kept, mut chunk) = (Vec::new(), [0u8; 1024]);
        if let Some(mut s) = stderr {
            while let Ok(n @ 1..) = s.read(&mut chunk).await {
                let room = 4096usize.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
        String::from_utf8_lossy(&kept).trim().to_string()
    });
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    // A background process may hold stderr open: a short grace, then without.
    let err = match tokio::time::timeout(Duration::from_millis(200), &mut tail).await {
        Ok(Ok(e)) => e,
        _ => {
            tail.abort();
            String::new()
        }
    };
    match waited {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => {
            let err = if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            };
            Err(format!("{program} exited with {s}{err}"))
        }
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(format!(
                "{program} did not finish within {}; killed",
                humantime::format_duration(timeout)
            ))
        }
    }
}
