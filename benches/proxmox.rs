//! One full Proxmox cycle for 1 000 containers against the fake API with 5 ms per
//! request, next to the naive way (one status request per container, then the
//! resizes, one after the other) in the same run. 10 % of the containers are hot and
//! are resized every cycle (GET config + PUT config each).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use albatross_autoscale::config::Config;
use albatross_autoscale::core::Timestamp;
use albatross_autoscale::proxmox::actuator::Tasks;
use albatross_autoscale::proxmox::client::{Client, Options};
use albatross_autoscale::proxmox::state::CloneState;
use albatross_autoscale::proxmox::{Controller, ControllerSettings};
use albatross_autoscale::sandbox::proxmox::{Ct, Fake, FakeServer};
use criterion::{Criterion, criterion_group, criterion_main};
use reqwest::Method;

const N: u32 = 1_000;
const SECRET: &str = "bench-secret";
const TOKEN: &str = "bench@pve!t";

fn setup(rt: &tokio::runtime::Runtime) -> (FakeServer, Arc<Client>, Controller) {
    rt.block_on(async {
        let mut f = Fake::new(&format!("PVEAPIToken={TOKEN}={SECRET}"));
        f.node("pve", 1 << 22, 1 << 10);
        for i in 0..N {
            let mut c = Ct::new("pve", &format!("ct{i}"), 2, 2048);
            c.cpu = if i % 10 == 0 { 0.95 } else { 0.5 };
            c.mem_used_mib = 1024;
            f.cts.insert(1000 + i, c);
        }
        let s = FakeServer::start(f).await.unwrap();
        let mut text = format!(
            "[policy]\nscale_up_ticks = 1\nscale_up_cooldown = \"0s\"\nmax_actions_per_hour = 1000000\n\
             [proxmox]\nurl = \"{}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_env = \"UNUSED\"\n",
            s.url()
        );
        for i in 0..N {
            text.push_str(&format!("[[lxc]]\nvmid = {}\ncores = [1, 8192]\n", 1000 + i));
        }
        let config = Config::parse(&text, Path::new("bench.toml")).unwrap();
        let opts = Options {
            url: s.url(),
            token_id: TOKEN.into(),
            max_concurrency: 16,
            request_timeout: Duration::from_secs(10),
            retries: 0,
            retry_base: Duration::from_millis(10),
            breaker_failures: 3,
            breaker_open: Duration::from_secs(30),
        };
        let client = Arc::new(Client::new(opts, SECRET, None).unwrap());
        let settings = ControllerSettings {
            tag: "albatross-autoscale".into(),
            tasks: Tasks {
                timeout: Duration::from_secs(60),
                every: Duration::from_millis(10),
            },
            dry_run: false,
            poll_interval: Duration::from_secs(10),
            state_file: None,
            decision_log: None,
        };
        let mut c = Controller::new(
            client.clone(),
            config.lxc,
            CloneState::default(),
            settings,
            Timestamp::ZERO,
        )
        .unwrap();
        // Warm: the first cycle reads every container's config once.
        c.cycle(Timestamp(10_000)).await.unwrap();
        s.with(|f| f.latency = Duration::from_millis(5));
        (s, client, c)
    })
}

fn bench(cr: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_server, client, mut ctl) = setup(&rt);
    let mut g = cr.benchmark_group("proxmox_cycle_1000_ct_5ms");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    let mut t = 20_000;
    g.bench_function("controller_cycle", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                t += 10_000;
                let r = rt.block_on(ctl.cycle(Timestamp(t))).unwrap();
                assert_eq!(
                    r.actions.len(),
                    100,
                    "{:?}",
                    &r.actions[..3.min(r.actions.len())]
                );
            }
            start.elapsed()
        })
    });
    g.measurement_time(Duration::from_secs(1));
    g.bench_function("sequential_per_container", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(async {
                    for i in 0..N {
                        let vmid = 1000 + i;
                        let st: serde_json::Value = client
                            .call(
                                Method::GET,
                                &format!("/nodes/pve/lxc/{vmid}/status/current"),
                                &[],
                            )
                            .await
                            .unwrap();
                        if i % 10 == 0 && st.get("status").is_some() {
                            let conf = client.lxc_config("pve", vmid).await.unwrap();
                            let cores = conf.cores.unwrap_or(1) + 1;
                            client
                                .update_config(
                                    "pve",
                                    vmid,
                                    vec![("cores", cores.to_string())],
                                    &conf.digest,
                                )
                                .await
                                .unwrap();
                        }
                    }
                })
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
