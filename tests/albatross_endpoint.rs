//! The TLS client against the in-process albatross endpoint over 127.0.0.1: real
//! certificates, real TLS 1.3, real frames. Timing runs on tokio's paused clock;
//! tests synchronise on frames, never on sleeps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use albatross_autoscale::albatross::tls::{Connector, FrameReader, TlsError};
use albatross_autoscale::name::Name;
use albatross_autoscale::sandbox::{Endpoint, EndpointConfig, Outcome, SERVER_NAME, TestPki};
use albatross_autoscale::wire::{
    BlockSpec, Command, Data, FailBehaviour, Message, Payload, Policy, Success, UnikernelConfig,
};

const TICK: Duration = Duration::from_millis(100);
const BOOT: Duration = Duration::from_millis(300);
const IMAGE: &[u8] = b"\x7fELF pretend solo5 hvt unikernel image";

fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// The sandbox's small unikernel with `image`, its bridge named by the
/// unikernel's device only.
fn config(image: &[u8]) -> UnikernelConfig {
    let mut c = albatross_autoscale::sandbox::small_unikernel();
    c.image = image.to_vec();
    c.bridges[0].host_device = None;
    c
}

struct Setup {
    pki: TestPki,
    endpoint: Endpoint,
    client: Connector,
}

/// Sub-CA `alice` with `policy`, primary `alice:web` running, group demand 1.5 vCPU.
async fn setup(policy: &Policy) -> Setup {
    setup_with(policy, |_| {}).await
}

async fn setup_with(policy: &Policy, tweak: impl FnOnce(&mut EndpointConfig)) -> Setup {
    let pki = TestPki::generate_with_policy("alice", policy).unwrap();
    let mut cfg = EndpointConfig::from_pki(&pki).unwrap();
    cfg.stats_interval = TICK;
    cfg.boot_delay = BOOT;
    cfg.load = Arc::new(|group, _t| if group == "alice:web" { 1.5 } else { 0.0 });
    tweak(&mut cfg);
    let endpoint = Endpoint::start(cfg).await.unwrap();
    endpoint.add(n("alice:web"), config(IMAGE));
    let client = Connector::from_parts(
        endpoint.addr().to_string(),
        pki.ca_der().unwrap(),
        pki.issuer().unwrap(),
        SERVER_NAME.to_string(),
    )
    .unwrap();
    Setup {
        pki,
        endpoint,
        client,
    }
}

fn success_string(m: &Message) -> &str {
    match &m.payload {
        Payload::Success(Success::String(s)) => s,
        other => panic!("expected a success string, got {other:?}"),
    }
}

fn failure(m: &Message) -> &str {
    match &m.payload {
        Payload::Failure(s) => s,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The next stats sample: (relative name, utime + stime in µs).
async fn sample(
    r: &mut FrameReader<albatross_autoscale::albatross::tls::Connection>,
) -> (Name, i64) {
    let m = r.next_message().await.unwrap().expect("stream open");
    assert_eq!(m.header.sequence, 0);
    match m.payload {
        Payload::Data(Data::Stats(s)) => {
            let us =
                s.rusage.utime.total_micros().unwrap() + s.rusage.stime.total_micros().unwrap();
            assert_eq!(s.ifdata.len(), 1);
            assert_eq!(s.ifdata[0].bridge, "service");
            (m.header.name, us)
        }
        other => panic!("expected stats data, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn stats_subscription_delivers_decoded_samples() {
    let s = setup(&TestPki::default_policy()).await;
    let mut r = s.client.subscribe_stats(Some("web")).await.unwrap();
    let hello = r.next_message().await.unwrap().unwrap();
    assert_eq!(success_string(&hello), "subscribed");
    assert_eq!(hello.header.name, n("alice:web"));

    // Names are relative to the subscriber's path; 1.5 vCPU of demand on a 1-vCPU
    // instance uses exactly one vCPU: 100 ms of CPU per 100 ms tick.
    let (name, first) = sample(&mut r).await;
    assert_eq!(name, n(":web"));
    let mut prev = first;
    for _ in 0..4 {
        let (name, us) = sample(&mut r).await;
        assert_eq!(name, n(":web"));
        assert_eq!(us - prev, 100_000);
        prev = us;
    }
    assert_eq!(s.endpoint.subscribers(), vec![n("alice:web")]);
}

#[tokio::test(start_paused = true)]
async fn clone_lifecycle_create_info_get_destroy() {
    let s = setup(&TestPki::default_policy()).await;
    let c = &s.client;

    // get returns the primary's image (level 0: uncompressed).
    let got = c
        .request(Some("web"), &Command::UnikernelGet { level: 0 }, None)
        .await
        .unwrap();
    match &got.payload {
        Payload::Success(Success::UnikernelImage { compressed, image }) => {
            assert!(!compressed);
            assert_eq!(image, IMAGE);
        }
        other => panic!("{other:?}"),
    }
    let got = c
        .request(Some("web"), &Command::UnikernelGet { level: 9 }, None)
        .await
        .unwrap();
    assert!(matches!(
        got.payload,
        Payload::Success(Success::UnikernelImage {
            compressed: true,
            ..
        })
    ));

    // create with an empty image in the certificate and the image uploaded.
    let create = Command::UnikernelCreate {
        config: Box::new(config(&[])),
    };
    let m = c
        .request(Some("web-clone-1"), &create, Some(IMAGE))
        .await
        .unwrap();
    assert_eq!(m.header.name, n("alice:web-clone-1"));
    assert_eq!(success_string(&m), "created unikernel");
    let again = c
        .request(Some("web-clone-1"), &create, Some(IMAGE))
        .await
        .unwrap();
    assert_eq!(
        failure(&again),
        "Unikernel with same name is already running"
    );
    let force = Command::UnikernelForceCreate {
        config: Box::new(config(IMAGE)),
    };
    let m = c.request(Some("web-clone-1"), &force, None).await.unwrap();
    assert_eq!(success_string(&m), "created unikernel");

    // info on the path lists both with relative names; on a label, the full name.
    let m = c
        .request(None, &Command::UnikernelInfo, None)
        .await
        .unwrap();
    assert_eq!(m.header.name, n("alice:"));
    let Payload::Success(Success::UnikernelInfo(list)) = &m.payload else {
        panic!("{m:?}")
    };
    let names: Vec<String> = list.iter().map(|u| u.name.to_string()).collect();
    assert_eq!(names, [":web", ":web-clone-1"]);
    assert_eq!(list[1].info.memory, 64);
    assert_eq!(list[1].info.digest.len(), 32);
    assert_ne!(list[0].info.bridges[0].mac, list[1].info.bridges[0].mac);
    let m = c
        .request(Some("web-clone-1"), &Command::UnikernelInfo, None)
        .await
        .unwrap();
    let Payload::Success(Success::UnikernelInfo(list)) = &m.payload else {
        panic!("{m:?}")
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, n("alice:web-clone-1"));

    let m = c
        .request(Some("web-clone-1"), &Command::UnikernelDestroy, None)
        .await
        .unwrap();
    assert_eq!(success_string(&m), "destroyed unikernel");
    let m = c
        .request(Some("web-clone-1"), &Command::UnikernelDestroy, None)
        .await
        .unwrap();
    assert_eq!(failure(&m), "destroy: not found");
    let m = c
        .request(Some("nope"), &Command::UnikernelGet { level: 0 }, None)
        .await
        .unwrap();
    assert_eq!(failure(&m), "get: no unikernel found");
    assert_eq!(s.endpoint.unikernels(), vec![n("alice:web")]);
}

#[tokio::test(start_paused = true)]
async fn load_spreads_over_instances_once_they_have_booted() {
    let s = setup(&TestPki::default_policy()).await;
    let mut r = s.client.subscribe_stats(None).await.unwrap();
    assert_eq!(
        success_string(&r.next_message().await.unwrap().unwrap()),
        "subscribed"
    );
    let (name, _) = sample(&mut r).await;
    assert_eq!(name, n(":web"));

    // On another CPU than the primary's (CPU 0).
    let mut clone = config(IMAGE);
    clone.cpuids = vec![1];
    let m = create(&s, "web-clone-1", clone).await;
    assert_eq!(success_string(&m), "created unikernel");

    let deltas = deltas_until(&mut r, ":web-clone-1", 8).await;
    // Booting: the clone takes nothing and the primary is capped at one vCPU;
    // booted: 1.5 vCPU split evenly, 75 ms per 100 ms tick each.
    let clone = &deltas[&n(":web-clone-1")];
    assert_eq!(clone[0], 0, "{clone:?}");
    assert_eq!(*clone.last().unwrap(), 75_000, "{clone:?}");
    assert_eq!(*deltas[&n(":web")].last().unwrap(), 75_000);
    assert!(deltas[&n(":web")].contains(&100_000));
}

async fn create(s: &Setup, label: &str, cfg: UnikernelConfig) -> Message {
    let cmd = Command::UnikernelCreate {
        config: Box::new(cfg),
    };
    s.client.request(Some(label), &cmd, None).await.unwrap()
}

async fn destroy(s: &Setup, label: &str) -> Message {
    let cmd = Command::UnikernelDestroy;
    s.client.request(Some(label), &cmd, None).await.unwrap()
}

/// Per-instance CPU deltas per tick until `name` has `count` of them.
async fn deltas_until(
    r: &mut FrameReader<albatross_autoscale::albatross::tls::Connection>,
    name: &str,
    count: usize,
) -> HashMap<Name, Vec<i64>> {
    let mut last: HashMap<Name, i64> = HashMap::new();
    let mut deltas: HashMap<Name, Vec<i64>> = HashMap::new();
    while deltas.get(&n(name)).map_or(0, Vec::len) < count {
        let (name, us) = sample(r).await;
        if let Some(prev) = last.insert(name.clone(), us) {
            deltas.entry(name).or_default().push(us - prev);
        }
    }
    deltas
}

#[tokio::test(start_paused = true)]
async fn a_clone_pinned_to_the_primarys_cpu_shares_it() {
    let s = setup(&TestPki::default_policy()).await;
    let mut r = s.client.subscribe_stats(None).await.unwrap();
    r.next_message().await.unwrap().unwrap();
    // Same cpuids as the primary (what copying `info` gives): 0.75 wanted each on
    // one host CPU, which gives 1.0 in total, in proportion: 50 ms per tick each.
    let m = create(&s, "web-clone-1", config(IMAGE)).await;
    assert_eq!(success_string(&m), "created unikernel");
    let deltas = deltas_until(&mut r, ":web-clone-1", 8).await;
    assert_eq!(*deltas[&n(":web-clone-1")].last().unwrap(), 50_000);
    assert_eq!(*deltas[&n(":web")].last().unwrap(), 50_000);
}

#[tokio::test(start_paused = true)]
async fn without_cpu_pinning_a_clone_on_the_same_cpu_adds_capacity() {
    let s = setup_with(&TestPki::default_policy(), |c| c.cpu_pinning = false).await;
    let mut r = s.client.subscribe_stats(None).await.unwrap();
    r.next_message().await.unwrap().unwrap();
    let m = create(&s, "web-clone-1", config(IMAGE)).await;
    assert_eq!(success_string(&m), "created unikernel");
    let deltas = deltas_until(&mut r, ":web-clone-1", 8).await;
    assert_eq!(*deltas[&n(":web-clone-1")].last().unwrap(), 75_000);
}

#[tokio::test(start_paused = true)]
async fn a_second_subscriber_for_the_same_name_closes_the_first() {
    let s = setup(&TestPki::default_policy()).await;
    let mut first = s.client.subscribe_stats(None).await.unwrap();
    first.next_message().await.unwrap().unwrap();
    sample(&mut first).await;
    let mut second = s.client.subscribe_stats(None).await.unwrap();
    assert_eq!(
        success_string(&second.next_message().await.unwrap().unwrap()),
        "subscribed"
    );

    // The old stream ends like albatross ends it: a final failure, then EOF.
    loop {
        let m = first
            .next_message()
            .await
            .unwrap()
            .expect("failure before EOF");
        if let Payload::Failure(text) = &m.payload {
            assert_eq!(text, "exception while reading from fd");
            assert_eq!(m.header.name, n("alice:"));
            break;
        }
    }
    assert!(first.next_message().await.unwrap().is_none());
    sample(&mut second).await;

    // A different name coexists.
    let mut web = s.client.subscribe_stats(Some("web")).await.unwrap();
    web.next_message().await.unwrap().unwrap();
    sample(&mut web).await;
    sample(&mut second).await;

    // The endpoint dropping every stream (reconnect tests use this).
    s.endpoint.drop_stats_streams();
    for r in [&mut second, &mut web] {
        loop {
            match r.next_message().await.unwrap() {
                Some(m) if matches!(m.payload, Payload::Failure(_)) => break,
                Some(_) => {}
                None => panic!("EOF before the failure frame"),
            }
        }
        assert!(r.next_message().await.unwrap().is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn refused_chains_and_commands_end_before_the_first_frame() {
    let s = setup(&TestPki::default_policy()).await;

    // A sub-CA from another CA: the handshake itself is refused by the server.
    let other = TestPki::generate_with_policy("alice", &TestPki::default_policy()).unwrap();
    let stranger = Connector::from_parts(
        s.endpoint.addr().to_string(),
        s.pki.ca_der().unwrap(),
        other.issuer().unwrap(),
        SERVER_NAME.to_string(),
    )
    .unwrap();
    let e = stranger
        .request(Some("web"), &Command::UnikernelInfo, None)
        .await
        .unwrap_err();
    assert!(matches!(e, TlsError::Rejected { .. }), "{e}");
    assert!(
        e.to_string().contains(&s.endpoint.addr().to_string()),
        "{e}"
    );

    // A command albatross refuses in a leaf: closed without a frame.
    let e = s
        .client
        .request(None, &Command::PolicyRemove, None)
        .await
        .unwrap_err();
    assert!(matches!(e, TlsError::Rejected { .. }), "{e}");
    let refused = s
        .endpoint
        .history()
        .into_iter()
        .filter(|h| matches!(h.outcome, Outcome::Refused(_)))
        .count();
    assert_eq!(refused, 2);
}

#[tokio::test(start_paused = true)]
async fn server_name_is_checked_against_the_certificate_cn() {
    let s = setup(&TestPki::default_policy()).await;
    let with_name = |name: &str| {
        Connector::from_parts(
            s.endpoint.addr().to_string(),
            s.pki.ca_der().unwrap(),
            s.pki.issuer().unwrap(),
            name.to_string(),
        )
        .unwrap()
    };
    let e = with_name("albatross")
        .request(Some("web"), &Command::UnikernelInfo, None)
        .await
        .unwrap_err();
    assert!(matches!(e, TlsError::Handshake { .. }), "{e}");
    assert!(e.to_string().contains("CN=albatross-server"), "{e}");
    // "" skips the name check; the chain is still verified.
    with_name("")
        .request(Some("web"), &Command::UnikernelInfo, None)
        .await
        .unwrap();
    // A server whose certificate comes from another CA is refused either way.
    let other = TestPki::generate_with_policy("alice", &TestPki::default_policy()).unwrap();
    let wrong_ca = Connector::from_parts(
        s.endpoint.addr().to_string(),
        other.ca_der().unwrap(),
        s.pki.issuer().unwrap(),
        String::new(),
    )
    .unwrap();
    let e = wrong_ca
        .request(Some("web"), &Command::UnikernelInfo, None)
        .await
        .unwrap_err();
    assert!(matches!(e, TlsError::Handshake { .. }), "{e}");
}

#[tokio::test(start_paused = true)]
async fn policy_and_injected_failures_are_answered_as_failures() {
    let policy = Policy {
        unikernels: 2,
        ..TestPki::default_policy()
    };
    let s = setup(&policy).await;
    let create = Command::UnikernelCreate {
        config: Box::new(config(IMAGE)),
    };
    s.endpoint.fail_next_creates(1, "no space left");
    let m = s
        .client
        .request(Some("web-clone-1"), &create, None)
        .await
        .unwrap();
    assert_eq!(failure(&m), "no space left");
    let m = s
        .client
        .request(Some("web-clone-1"), &create, None)
        .await
        .unwrap();
    assert_eq!(success_string(&m), "created unikernel");
    let m = s
        .client
        .request(Some("web-clone-2"), &create, None)
        .await
        .unwrap();
    assert_eq!(failure(&m), "maximum amount of unikernels (2) reached");
}

#[tokio::test]
async fn connector_loads_the_files_an_operator_configures() {
    let pki = TestPki::generate_with_policy("alice", &TestPki::default_policy()).unwrap();
    let endpoint = Endpoint::start(EndpointConfig::from_pki(&pki).unwrap())
        .await
        .unwrap();
    endpoint.add(n("alice:web"), config(IMAGE));
    let files = pki.write_to_temp().unwrap();
    let settings = TestPki::tls_settings(&files, endpoint.addr());
    let client = Connector::new(&settings).unwrap();
    let m = client
        .request(Some("web"), &Command::UnikernelInfo, None)
        .await
        .unwrap();
    assert_eq!(m.header.name, n("alice:web"));

    // The CA file must hold exactly one certificate; errors name the endpoint.
    let mut bad = settings.clone();
    bad.ca = files.subca.clone();
    std::fs::write(&files.subca, format!("{}{}", pki.subca_pem, pki.ca_pem)).unwrap();
    let e = Connector::new(&bad).unwrap_err();
    assert!(e.to_string().contains("exactly one"), "{e}");
    assert!(e.to_string().contains(&settings.endpoint), "{e}");

    // Nobody listening: a connect error naming the endpoint.
    drop(endpoint);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut gone = settings.clone();
    gone.endpoint = port.to_string();
    let e = Connector::new(&gone)
        .unwrap()
        .request(Some("web"), &Command::UnikernelInfo, None)
        .await
        .unwrap_err();
    assert!(matches!(e, TlsError::Connect { .. }), "{e}");
    let _ = std::fs::remove_dir_all(files.ca.parent().unwrap());
}

#[tokio::test]
async fn client_and_endpoint_can_be_shared_across_tasks() {
    fn shareable<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    shareable::<Connector>();
    shareable::<Endpoint>();
    let s = setup(&TestPki::default_policy()).await;
    {
        let fut = s.client.request(Some("web"), &Command::UnikernelInfo, None);
        send(&fut);
    }
    let client = Arc::new(s.client);
    let c = client.clone();
    let m =
        tokio::spawn(async move { c.request(Some("web"), &Command::UnikernelInfo, None).await })
            .await
            .unwrap()
            .unwrap();
    assert!(matches!(m.payload, Payload::Success(Success::UnikernelInfo(ref l)) if l.len() == 1));
}

fn infos(m: &Message) -> Vec<String> {
    match &m.payload {
        Payload::Success(Success::UnikernelInfo(list)) => {
            list.iter().map(|u| u.name.to_string()).collect()
        }
        other => panic!("expected info, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn albatrossd_restart_silences_stats_and_restores_every_unikernel() {
    let s = setup(&TestPki::default_policy()).await;
    let mut clone = config(IMAGE);
    clone.cpuids = vec![1];
    assert_eq!(
        success_string(&create(&s, "web-clone-1", clone).await),
        "created unikernel"
    );
    let mut old = s.client.subscribe_stats(None).await.unwrap();
    old.next_message().await.unwrap().unwrap();
    let before = deltas_until(&mut old, ":web-clone-1", 6).await;
    assert_eq!(*before[&n(":web")].last().unwrap(), 75_000);
    let web_cpu = s.endpoint.cpu_seconds(&n("alice:web")).unwrap();
    assert!(web_cpu > 0.5, "{web_cpu}");

    s.endpoint.restart_albatrossd();
    assert!(s.endpoint.subscribers().is_empty());
    // Restored under the same names with fresh counters.
    assert_eq!(
        s.endpoint.unikernels(),
        vec![n("alice:web"), n("alice:web-clone-1")]
    );
    assert_eq!(s.endpoint.cpu_seconds(&n("alice:web")), Some(0.0));
    let m = s
        .client
        .request(None, &Command::UnikernelInfo, None)
        .await
        .unwrap();
    assert_eq!(infos(&m), [":web", ":web-clone-1"]);

    // A new subscription works; its samples start from zero again.
    let mut new = s.client.subscribe_stats(None).await.unwrap();
    assert_eq!(
        success_string(&new.next_message().await.unwrap().unwrap()),
        "subscribed"
    );
    let (_, us) = sample(&mut new).await;
    assert!(us < (web_cpu * 1e6) as i64, "{us}");
    let after = deltas_until(&mut new, ":web-clone-1", 6).await;
    assert_eq!(*after[&n(":web")].last().unwrap(), 75_000);
    assert_eq!(s.endpoint.subscribers(), vec![n("alice:")]);

    // The old stream is open and silent: no frame, no failure, no EOF, while the
    // new one got ticks of frames.
    let quiet = tokio::time::timeout(TICK * 5, old.next_message()).await;
    assert!(quiet.is_err(), "{quiet:?}");

    // Re-creating the restored primary is refused like albatross refuses it.
    let m = create(&s, "web", config(IMAGE)).await;
    assert_eq!(failure(&m), "Unikernel with same name is already running");
}

#[tokio::test(start_paused = true)]
async fn silenced_streams_stay_open_and_restart_endpoint_drops_connections() {
    let s = setup(&TestPki::default_policy()).await;
    let mut silent = s.client.subscribe_stats(Some("web")).await.unwrap();
    silent.next_message().await.unwrap().unwrap();
    sample(&mut silent).await;
    s.endpoint.silence_stats_streams();
    let mut fresh = s.client.subscribe_stats(None).await.unwrap();
    fresh.next_message().await.unwrap().unwrap();
    for _ in 0..3 {
        sample(&mut fresh).await;
    }
    assert!(
        tokio::time::timeout(TICK * 3, silent.next_message())
            .await
            .is_err()
    );

    // The TLS endpoint restarting: connections end without a Failure frame.
    s.endpoint.restart_endpoint();
    for r in [&mut silent, &mut fresh] {
        while let Ok(Some(m)) = r.next_message().await {
            assert!(matches!(m.payload, Payload::Data(_)), "{m:?}");
        }
    }
    // Same port, new connections served.
    let m = s
        .client
        .request(Some("web"), &Command::UnikernelInfo, None)
        .await
        .unwrap();
    assert_eq!(infos(&m), ["alice:web"]);
}

#[tokio::test(start_paused = true)]
async fn policy_info_lists_the_stored_policies_at_and_below_the_path() {
    let s = setup(&TestPki::default_policy()).await;
    let team = Policy {
        cpuids: vec![1],
        unikernels: 2,
        memory: 256,
        block: Some(10),
        bridges: vec!["service".to_string()],
    };
    s.endpoint.set_policy(n("alice:team:"), team.clone());
    s.endpoint.set_policy(n(":"), TestPki::default_policy());
    let m = s
        .client
        .request(None, &Command::PolicyInfo, None)
        .await
        .unwrap();
    assert_eq!(m.header.name, n("alice:"));
    let Payload::Success(Success::Policies(list)) = &m.payload else {
        panic!("{m:?}")
    };
    let got: Vec<(String, Policy)> = list
        .iter()
        .map(|p| (p.name.to_string(), p.policy.clone()))
        .collect();
    // The chain's own policy was learnt before the command (as `policy add`).
    assert_eq!(
        got,
        [
            (":".to_string(), TestPki::default_policy()),
            ("team:".to_string(), team)
        ]
    );
    assert_eq!(
        s.endpoint.policy(&n("alice:")),
        Some(TestPki::default_policy())
    );
}

#[tokio::test(start_paused = true)]
async fn creates_are_checked_against_the_policy_of_their_path() {
    let policy = Policy {
        cpuids: vec![0, 1],
        unikernels: 4,
        memory: 200,
        block: Some(100),
        bridges: vec!["service".to_string()],
    };
    let s = setup(&policy).await;
    // The policy is learnt from the chain by the first albatrossd command.
    s.client
        .request(None, &Command::UnikernelInfo, None)
        .await
        .unwrap();

    let mut c = config(IMAGE);
    c.memory = 1000;
    let m = create(&s, "big", c).await;
    assert_eq!(
        failure(&m),
        "maximum allowed memory (200, used 64) would be exceeded (requesting 1000)"
    );
    let mut c = config(IMAGE);
    c.cpuids = vec![3, 2, 1];
    assert_eq!(
        failure(&create(&s, "c", c).await),
        "CPUids 2, 3 are not allowed by policy"
    );
    let mut c = config(IMAGE);
    c.bridges[0].host_device = Some("public".to_string());
    assert_eq!(
        failure(&create(&s, "c", c).await),
        "bridges public not allowed by policy"
    );

    // Block devices: must exist in the unikernel's path and be unused.
    let mut c = config(IMAGE);
    c.block_devices = vec![BlockSpec {
        name: "storage".to_string(),
        device: Some("disk".to_string()),
        sector_size: None,
    }];
    assert_eq!(
        failure(&create(&s, "db", c.clone()).await),
        "block device alice:disk not found"
    );
    assert_eq!(
        s.endpoint.add_block(&n("alice:huge"), 200),
        Err(
            "block device policy limit of 100 MB (used 0 MB) would be exceeded by the request (200 MB)"
                .to_string()
        )
    );
    s.endpoint.add_block(&n("alice:disk"), 50).unwrap();
    s.endpoint.set_policy(
        n("alice:team:"),
        Policy {
            block: None,
            ..policy.clone()
        },
    );
    assert_eq!(
        s.endpoint.add_block(&n("alice:team:disk"), 1),
        Err("no block devices are allowed by policy".to_string())
    );
    assert_eq!(
        success_string(&create(&s, "db", c.clone()).await),
        "created unikernel"
    );
    assert_eq!(
        failure(&create(&s, "db-clone-1", c.clone()).await),
        "block device alice:disk already in use"
    );
    assert_eq!(
        success_string(&destroy(&s, "db").await),
        "destroyed unikernel"
    );
    assert_eq!(
        success_string(&create(&s, "db-clone-1", c).await),
        "created unikernel"
    );
}

fn restarting_config(exit_codes: Vec<i64>) -> UnikernelConfig {
    UnikernelConfig {
        fail_behaviour: FailBehaviour::Restart { exit_codes },
        ..config(IMAGE)
    }
}

#[tokio::test(start_paused = true)]
async fn exits_restart_or_remove_as_albatross_decides() {
    let s = setup_with(&TestPki::default_policy(), |c| {
        c.load = Arc::new(|_, _| 0.5);
    })
    .await;
    let app = n("alice:app");
    s.endpoint.add(app.clone(), restarting_config(Vec::new()));
    let mut r = s.client.subscribe_stats(Some("app")).await.unwrap();
    r.next_message().await.unwrap().unwrap();
    let (_, us) = sample(&mut r).await;
    assert!(us > 0);

    // Restarted at once (restart_delay zero), with fresh counters.
    assert!(s.endpoint.kill(&app, 2));
    assert_eq!(s.endpoint.cpu_seconds(&app), Some(0.0));
    assert!(s.endpoint.unikernels().contains(&app));
    for code in [1, 60, 63] {
        s.endpoint.add(app.clone(), restarting_config(Vec::new()));
        assert!(s.endpoint.kill(&app, code));
        assert!(!s.endpoint.unikernels().contains(&app), "{code}");
    }
    // 64 with an injected `--name=`: once more without it, then never.
    s.endpoint.add(app.clone(), restarting_config(Vec::new()));
    assert!(s.endpoint.kill(&app, 64));
    assert!(s.endpoint.unikernels().contains(&app));
    assert!(s.endpoint.kill(&app, 64));
    assert!(!s.endpoint.unikernels().contains(&app));
    s.endpoint.add(app.clone(), restarting_config(vec![3]));
    assert!(s.endpoint.kill(&app, 2));
    assert!(!s.endpoint.unikernels().contains(&app));
    s.endpoint.add(app.clone(), restarting_config(Vec::new()));
    assert!(s.endpoint.kill_by_signal(&app, 9));
    assert!(!s.endpoint.unikernels().contains(&app));
    assert!(!s.endpoint.kill(&app, 0));
    // Quit: gone; info no longer lists it.
    assert!(s.endpoint.kill(&n("alice:web"), 0));
    let m = s
        .client
        .request(None, &Command::UnikernelInfo, None)
        .await
        .unwrap();
    assert!(infos(&m).is_empty());
    assert_eq!(failure(&destroy(&s, "web").await), "destroy: not found");
}

#[tokio::test(start_paused = true)]
async fn destroying_a_unikernel_waiting_for_its_restart_succeeds() {
    // A long restart window, so the destroy surely falls into it.
    let s = setup_with(&TestPki::default_policy(), |c| {
        c.restart_delay = Duration::from_secs(3600)
    })
    .await;
    let app = n("alice:app");
    s.endpoint.add(app.clone(), restarting_config(Vec::new()));
    assert!(s.endpoint.kill(&app, 0));
    assert_eq!(s.endpoint.restarting(), vec![app.clone()]);
    assert!(!s.endpoint.unikernels().contains(&app));
    assert_eq!(
        success_string(&destroy(&s, "app").await),
        "destroyed: removed from restarting"
    );
    assert!(s.endpoint.restarting().is_empty());
    assert_eq!(failure(&destroy(&s, "app").await), "destroy: not found");

    // A pending restart is restored by an albatrossd restart (it is in its state).
    let db = n("alice:db");
    s.endpoint.add(db.clone(), restarting_config(Vec::new()));
    assert!(s.endpoint.kill(&db, 0));
    s.endpoint.restart_albatrossd();
    assert!(s.endpoint.restarting().is_empty());
    assert!(s.endpoint.unikernels().contains(&db));
}

#[tokio::test(start_paused = true)]
async fn hung_creates_read_the_upload_and_never_answer() {
    let s = setup(&TestPki::default_policy()).await;
    s.endpoint.hang_next_creates(1);
    let cmd = Command::UnikernelCreate {
        config: Box::new(config(&[])),
    };
    let hung = tokio::time::timeout(
        Duration::from_secs(30),
        s.client.request(Some("web-clone-1"), &cmd, Some(IMAGE)),
    )
    .await;
    assert!(hung.is_err(), "{hung:?}");
    assert_eq!(s.endpoint.unikernels(), vec![n("alice:web")]);
    let last = s.endpoint.history().pop().unwrap();
    assert_eq!(last.outcome, Outcome::Hung);
    assert_eq!(last.name, n("alice:web-clone-1"));
    // The next create is served.
    let m = s
        .client
        .request(Some("web-clone-1"), &cmd, Some(IMAGE))
        .await
        .unwrap();
    assert_eq!(success_string(&m), "created unikernel");

    // A hung create ends when the endpoint shuts down.
    s.endpoint.hang_next_creates(1);
    let client = Connector::from_parts(
        s.endpoint.addr().to_string(),
        s.pki.ca_der().unwrap(),
        s.pki.issuer().unwrap(),
        SERVER_NAME.to_string(),
    )
    .unwrap();
    let pending = tokio::spawn(async move {
        let cmd = Command::UnikernelCreate {
            config: Box::new(config(IMAGE)),
        };
        client.request(Some("web-clone-2"), &cmd, None).await
    });
    while s.endpoint.history().last().map(|h| &h.outcome) != Some(&Outcome::Hung) {
        tokio::task::yield_now().await;
    }
    s.endpoint.shutdown();
    assert!(pending.await.unwrap().is_err());
    assert!(!s.endpoint.unikernels().contains(&n("alice:web-clone-2")));
}
