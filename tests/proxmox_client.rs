//! The Proxmox client against the fake API: auth, error envelopes, retries, tasks,
//! TLS pinning.

use std::time::Duration;

use albatross_autoscale::proxmox::client::{Client, Options, ProxmoxError};
use albatross_autoscale::proxmox::tls;
use albatross_autoscale::sandbox::proxmox::{Ct, Fake, FakeServer};
use reqwest::Method;

const SECRET: &str = "0b8e4d4a-1111-4000-8000-000000000002";
const TOKEN: &str = "autoscale@pve!scaler";

fn opts(url: &str, retries: u32) -> Options {
    Options {
        url: url.into(),
        token_id: TOKEN.into(),
        max_concurrency: 4,
        request_timeout: Duration::from_secs(5),
        retries,
        retry_base: Duration::from_millis(1),
        breaker_failures: 3,
        breaker_open: Duration::from_secs(30),
    }
}

async fn server() -> FakeServer {
    let mut f = Fake::new(&format!("PVEAPIToken={TOKEN}={SECRET}"));
    f.node("pve", 32_768, 1_024);
    f.cts.insert(101, Ct::new("pve", "web", 2, 1024));
    f.cts.insert(102, Ct::new("pve", "db", 1, 512));
    FakeServer::start(f).await.unwrap()
}

#[tokio::test]
async fn resources_parse_with_numbers_as_strings() {
    let s = server().await;
    let c = Client::new(opts(&s.url(), 0), SECRET, None).unwrap();
    let rows = c.resources().await.unwrap();
    let ct = rows.iter().find(|r| r.vmid == Some(102)).unwrap();
    assert_eq!((ct.maxmem, ct.maxcpu), (Some(512 << 20), Some(1.0)));
    assert!(
        rows.iter()
            .any(|r| r.kind == "node" && r.maxmem == Some(32_768 << 20))
    );
    assert!(
        rows.iter().any(|r| r.kind == "storage"),
        "unknown rows are tolerated"
    );
    let conf = c.lxc_config("pve", 101).await.unwrap();
    assert_eq!((conf.cores, conf.memory), (Some(2), Some(1024)));
}

#[tokio::test]
async fn a_bad_token_is_a_401_and_the_secret_is_never_in_messages() {
    let s = server().await;
    let c = Client::new(opts(&s.url(), 2), "wrong-secret", None).unwrap();
    let e = c.resources().await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    let msg = e.to_string();
    assert!(msg.contains("HTTP 401: authentication failure"), "{msg}");
    assert!(!msg.contains("wrong-secret") && !format!("{c:?}").contains("wrong-secret"));
    assert_eq!(s.with(|f| f.requests.len()), 1, "401 is not retried");
}

#[tokio::test]
async fn errors_carry_status_and_message_and_gets_are_retried() {
    let s = server().await;
    let c = Client::new(opts(&s.url(), 2), SECRET, None).unwrap();
    s.with(|f| {
        f.inject.push_back(("/cluster/resources".into(), 595));
        f.inject.push_back(("/cluster/resources".into(), 596));
    });
    assert!(
        c.resources().await.is_ok(),
        "595 and 596 are node failures: retried"
    );
    assert_eq!(s.with(|f| f.count("GET", "/cluster/resources")), 3);

    let c0 = Client::new(opts(&s.url(), 0), SECRET, None).unwrap();
    s.with(|f| f.inject.push_back(("/cluster/resources".into(), 596)));
    let e = c0.resources().await.unwrap_err();
    assert!(
        e.to_string().contains("HTTP 596: Connection timed out"),
        "{e}"
    );

    // A 500 is the request's failure, not the node's; a PUT is never retried.
    s.with(|f| f.inject.push_back(("/lxc/101/config".into(), 500)));
    let e = c
        .update_config("pve", 101, vec![("cores", "3".into())], "x")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert_eq!(s.with(|f| f.count("PUT", "/lxc/101/config")), 1);
    let conf = c.lxc_config("pve", 101).await.unwrap();
    let e = c
        .update_config("pve", 101, vec![("memory", "8".into())], &conf.digest)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("HTTP 400: Parameter verification failed. (memory:"),
        "{e}"
    );
    let e = c
        .update_config("pve", 101, vec![("cores", "3".into())], "stale")
        .await
        .unwrap_err();
    assert!(e.is_digest_conflict(), "{e}");
}

#[tokio::test]
async fn tasks_finish_after_a_delay_fail_or_time_out() {
    let s = server().await;
    let c = Client::new(opts(&s.url(), 0), SECRET, None).unwrap();
    s.with(|f| f.task_polls = 3);
    let upid = c
        .task(Method::POST, "/nodes/pve/lxc/101/status/shutdown", &[])
        .await
        .unwrap();
    c.wait_task(&upid, Duration::from_secs(5), Duration::from_millis(1))
        .await
        .unwrap();
    assert!(!s.with(|f| f.cts[&101].running));
    assert_eq!(
        s.with(|f| f.count("GET", "/tasks/")),
        4,
        "running three times, then stopped"
    );

    s.with(|f| f.fail_tasks.insert("vzstart".into()));
    let upid = c
        .task(Method::POST, "/nodes/pve/lxc/101/status/start", &[])
        .await
        .unwrap();
    let e = c
        .wait_task(&upid, Duration::from_secs(5), Duration::from_millis(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProxmoxError::Task { message, .. } if message.contains("vzstart failed")),
        "{e}"
    );

    s.with(|f| f.hang_tasks.insert("vzshutdown".into()));
    let upid = c
        .task(Method::POST, "/nodes/pve/lxc/102/status/shutdown", &[])
        .await
        .unwrap();
    let e = c
        .wait_task(&upid, Duration::from_millis(20), Duration::from_millis(2))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("still running after"), "{e}");
}

#[tokio::test]
async fn a_silent_node_times_out_and_opens_its_breaker() {
    let s = server().await;
    s.with(|f| f.nodes.get_mut("pve").unwrap().dead = true);
    let o = Options {
        request_timeout: Duration::from_millis(100),
        breaker_failures: 2,
        ..opts(&s.url(), 0)
    };
    let metrics = std::sync::Arc::new(albatross_autoscale::http::metrics::Metrics::new());
    let c = Client::new(o, SECRET, None)
        .unwrap()
        .with_observer(metrics.clone());
    for _ in 0..2 {
        let e = c.lxc_config("pve", 101).await.unwrap_err();
        assert!(matches!(e, ProxmoxError::Timeout { .. }), "{e}");
    }
    let minute = Duration::from_secs(60);
    assert!(
        !metrics.proxmox_polled_within(minute),
        "failed node calls are not a poll"
    );
    let e = c.lxc_config("pve", 101).await.unwrap_err();
    assert!(matches!(e, ProxmoxError::BreakerOpen { .. }), "{e}");
    assert!(
        c.resources().await.is_ok(),
        "cluster-wide calls are unaffected"
    );
    assert!(
        metrics.proxmox_polled_within(minute),
        "/ready sees the cluster poll"
    );
    // The daemon's metrics saw both timed-out requests and the open breaker.
    let text = metrics.encode();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_string()
    };
    assert!(
        line("albatross_autoscale_proxmox_request_duration_seconds_count{node=\"pve\"}")
            .ends_with(" 2"),
        "{text}"
    );
    assert!(
        line("albatross_autoscale_proxmox_breaker_state{node=\"pve\"}").ends_with(" 2"),
        "{text}"
    );
    assert!(
        line("albatross_autoscale_proxmox_request_duration_seconds_count{node=\"cluster\"}")
            .ends_with(" 1"),
        "{text}"
    );
}

fn tls_server_config() -> (rustls::ServerConfig, [u8; 32]) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().clone();
    let fp = tls::fingerprint(&der);
    let config = albatross_autoscale::sandbox::server_config(der, key.serialize_der()).unwrap();
    (config, fp)
}

#[tokio::test]
async fn tls_is_pinned_to_the_certificate_fingerprint() {
    let mut s = server().await;
    let (config, fp) = tls_server_config();
    let url = s.tls_front(config).await.unwrap();
    let pinned = Client::new(opts(&url, 0), SECRET, Some(tls::pinned(vec![fp]).unwrap())).unwrap();
    assert!(pinned.resources().await.is_ok());
    let wrong = Client::new(
        opts(&url, 0),
        SECRET,
        Some(tls::pinned(vec![[7; 32]]).unwrap()),
    )
    .unwrap();
    let e = wrong.resources().await.unwrap_err();
    assert!(matches!(e, ProxmoxError::Transport { .. }), "{e}");
}
