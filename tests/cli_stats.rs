//! `stats` (the real binary) against the embedded endpoint: albatross keeps one
//! stats subscriber per name, so a second subscriber with the same path knocks it
//! off; `stats` then prints albatross' failure and exits non-zero.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use albatross_autoscale::albatross::tls::Connector;
use albatross_autoscale::name::Name;
use albatross_autoscale::sandbox::{Endpoint, EndpointConfig, SERVER_NAME, TestPki};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_exits_non_zero_when_another_subscriber_takes_the_stream() {
    let pki = TestPki::generate_with_policy("demo", &TestPki::default_policy()).unwrap();
    let files = pki.write_to_temp().unwrap();
    let dir = files.ca.parent().unwrap().to_path_buf();
    let mut cfg = EndpointConfig::from_pki(&pki).unwrap();
    cfg.stats_interval = Duration::from_millis(100);
    cfg.load = Arc::new(|_, _| 0.5);
    let endpoint = Endpoint::start(cfg).await.unwrap();
    endpoint.add(
        Name::parse("demo:web").unwrap(),
        albatross_autoscale::sandbox::small_unikernel(),
    );
    let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let config = dir.join("stats.toml");
    std::fs::write(
        &config,
        format!(
            "[albatross]\nendpoint = \"{}\"\nca = {}\ncert = {}\nkey = {}\n[[group]]\nprimary = \"demo:web\"\n",
            endpoint.addr(),
            q(&files.ca),
            q(&files.subca),
            q(&files.subca_key)
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["stats", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The first sample line: `stats` holds the path's subscription.
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("\"vm\":\"demo:web\""), "{first}");
    // Another subscriber with the same certificate path (a daemon, say).
    let other = Connector::from_parts(
        endpoint.addr().to_string(),
        pki.ca_der().unwrap(),
        pki.issuer().unwrap(),
        SERVER_NAME.to_string(),
    )
    .unwrap();
    let mut reader = other.subscribe_stats(None).await.unwrap();
    reader.next_message().await.unwrap().unwrap();
    let status = tokio::time::timeout(WAIT, async {
        while let Ok(Some(_)) = out.next_line().await {}
        child.wait().await.unwrap()
    })
    .await
    .expect("stats kept running after losing its stream");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(!status.success(), "exit status {status}; stderr: {err}");
    assert!(err.contains("exception while reading from fd"), "{err}");
    assert!(err.contains("one stats subscriber per name"), "{err}");
}
