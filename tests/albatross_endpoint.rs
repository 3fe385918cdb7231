//! The TLS client against the in-process albatross endpoint over 127.0.0.1: real
//! certificates, real TLS 1.3, real frames. Timing runs on tokio's paused clock;
//! tests synchronise on frames, never on sleeps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use albatross_autoscale::albatross::tls::{Connector, FrameReader, TlsError};
use albatross_autoscale::name::Name;
use albatross_autoscale::testing::{Endpoint, EndpointConfig, Outcome, SERVER_NAME, TestPki};
use albatross_autoscale::wire::{
    Command, Data, FailBehaviour, Message, NetSpec, Payload, Policy, Success, Typ, UnikernelConfig,
};

const TICK: Duration = Duration::from_millis(100);
const BOOT: Duration = Duration::from_millis(300);
const IMAGE: &[u8] = b"\x7fELF pretend solo5 hvt unikernel image";

fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn config(image: &[u8]) -> UnikernelConfig {
    UnikernelConfig {
        typ: Typ::Solo5,
        compressed: false,
        image: image.to_vec(),
        startup: None,
        add_name: true,
        fail_behaviour: FailBehaviour::Quit,
        cpuids: vec![0],
        memory: 64,
        block_devices: Vec::new(),
        bridges: vec![NetSpec {
            name: "service".to_string(),
            host_device: None,
            mac: None,
        }],
        argv: vec!["--ipv4=10.0.42.2/24".to_string()],
        numcpus: Some(1),
        linux_boot_partition: None,
    }
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
