//! Prometheus metrics (prometheus-client, one explicit registry, no globals).
//!
//! Counters follow engine outputs as they happen ([`Metrics::observe`]); gauges are
//! refreshed from a status snapshot at scrape time ([`Metrics::refresh`]), so a
//! scrape always shows one consistent engine state. Every name starts with
//! `albatross_autoscale_`, carries its unit, and counters end in `_total`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::albatross::stats::StreamHealth;
use crate::core::status::Status;
use crate::core::{Action, Output, Verdict};

/// The content type of [`Metrics::encode`] (OpenMetrics text, which Prometheus
/// negotiates and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupL {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionL {
    group: String,
    action: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionL {
    group: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointL {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrameL {
    endpoint: String,
    tag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceL {
    group: String,
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeL {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeL {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FollowerL {
    follower: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildL {
    version: String,
    revision: String,
}

type FGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 5 ms .. ~20 s: Proxmox calls range from a status read to a slow task poll.
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// The documented series (without the prefix), for the README and the tests.
pub const SERIES: &[&str] = &[
    "group_instances",
    "group_desired_instances",
    "group_cpu_percent",
    "group_paused",
    "group_budget_left_actions",
    "forecast_mape_percent",
    "forecast_trusted",
    "decisions_total",
    "actuation_failures_total",
    "stats_stream_up",
    "stats_stream_reconnects_total",
    "stats_stream_stalls_total",
    "stats_frames_unreadable_total",
    "stats_samples_total",
    "sample_age_seconds",
    "proxmox_request_duration_seconds",
    "proxmox_breaker_state",
    "http_requests_total",
    "approvals_pending",
    "notify_sent_total",
    "notify_failed_total",
    "notify_dropped_total",
    "history_rows_written_total",
    "history_rows_dropped_total",
    "history_rows_failed_total",
    "history_outputs_missed_total",
    "outputs_missed_total",
    "build_info",
];

/// The history writer's counters, copied into Prometheus counters at scrape time.
#[derive(Default)]
struct HistoryCounters {
    source: std::sync::OnceLock<Arc<crate::history::writer::Counters>>,
    written: Counter,
    dropped: Counter,
    failed: Counter,
    missed: Counter,
}

/// The registry and its metric families.
pub struct Metrics {
    registry: Registry,
    /// Per-group and per-member gauges: only during a scrape.
    groups: Arc<GroupGauges>,
    /// One scrape at a time builds, encodes and drops them.
    scraping: Mutex<()>,
    decisions: Family<DecisionL, Counter>,
    failures: Family<ActionL, Counter>,
    stream_up: Family<EndpointL, Gauge>,
    reconnects: Family<EndpointL, Counter>,
    samples: Family<EndpointL, Counter>,
    stalls: Family<EndpointL, Counter>,
    unreadable: Family<FrameL, Counter>,
    pve_latency: Family<NodeL, Histogram, fn() -> Histogram>,
    pve_breaker: Family<NodeL, Gauge>,
    http: Family<CodeL, Counter>,
    approvals: Gauge,
    notify: crate::notify::Counters,
    history: HistoryCounters,
    /// Engine outputs a follower of the broadcast missed, by follower.
    missed: Family<FollowerL, Counter>,
    /// Last wanted direction per group (+1 up, -1 down, 0 none), for the desired count.
    wanted: Mutex<HashMap<String, i64>>,
    /// When a cluster-wide Proxmox poll last succeeded (for `/ready`).
    pve_polled: Mutex<Option<std::time::Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("albatross_autoscale");
        let m = Self {
            registry: Registry::default(),
            groups: Arc::default(),
            scraping: Mutex::default(),
            decisions: Family::default(),
            failures: Family::default(),
            stream_up: Family::default(),
            reconnects: Family::default(),
            samples: Family::default(),
            stalls: Family::default(),
            unreadable: Family::default(),
            pve_latency: Family::new_with_constructor(latency_histogram),
            pve_breaker: Family::default(),
            http: Family::default(),
            approvals: Gauge::default(),
            notify: crate::notify::Counters::default(),
            history: HistoryCounters::default(),
            missed: Family::default(),
            wanted: Mutex::default(),
            pve_polled: Mutex::default(),
        };
        r.register(
            "decisions",
            "Decisions taken, by group, action and reason kind",
            m.decisions.clone(),
        );
        r.register(
            "actuation_failures",
            "Actions the actuator reported as failed",
            m.failures.clone(),
        );
        r.register(
            "stats_stream_up",
            "1 while the albatross statistics stream of the endpoint is subscribed",
            m.stream_up.clone(),
        );
        r.register(
            "stats_stream_reconnects",
            "Reconnects of the albatross statistics stream",
            m.reconnects.clone(),
        );
        r.register(
            "stats_stream_stalls",
            "Stats streams closed by the idle watchdog (open but silent for stats_idle_timeout)",
            m.stalls.clone(),
        );
        r.register(
            "stats_frames_unreadable",
            "Data frames on the stats stream that yielded no sample, by data tag",
            m.unreadable.clone(),
        );
        r.register(
            "stats_samples",
            "Statistics samples received from the endpoint",
            m.samples.clone(),
        );
        r.register_with_unit(
            "proxmox_request_duration",
            "Latency of Proxmox API requests, by node",
            Unit::Seconds,
            m.pve_latency.clone(),
        );
        r.register(
            "proxmox_breaker_state",
            "Circuit breaker of a Proxmox node: 0 closed, 1 half-open, 2 open",
            m.pve_breaker.clone(),
        );
        r.register(
            "http_requests",
            "Requests to the API, by status code",
            m.http.clone(),
        );
        r.register(
            "approvals_pending",
            "Decisions waiting for an operator's approval (require_approval)",
            m.approvals.clone(),
        );
        r.register(
            "notify_sent",
            "Notifications delivered, by sink",
            m.notify.sent.clone(),
        );
        r.register(
            "notify_failed",
            "Notifications given up after every retry, by sink",
            m.notify.failed.clone(),
        );
        r.register(
            "notify_dropped",
            "Notifications dropped unsent (queue full: oldest first), by sink",
            m.notify.dropped.clone(),
        );
        let h = &m.history;
        for (name, help, c) in [
            (
                "history_rows_written",
                "Rows written to the history database ([history])",
                &h.written,
            ),
            (
                "history_rows_dropped",
                "History rows dropped unwritten because the writer's queue was full",
                &h.dropped,
            ),
            (
                "history_rows_failed",
                "History rows lost to a failed write (disk full, I/O error)",
                &h.failed,
            ),
            (
                "history_outputs_missed",
                "Engine outputs the history missed because it fell behind the engine",
                &h.missed,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        r.register(
            "outputs_missed",
            "Engine outputs a follower (api: metrics and /v1/decisions; history) missed because it fell behind the engine",
            m.missed.clone(),
        );
        // Both series exist from the start (at 0), so alerts have one to watch.
        for f in [API, HISTORY] {
            let _ = m.missed.get_or_create(&follower(f));
        }
        let build = Info::new(BuildL {
            version: env!("CARGO_PKG_VERSION").into(),
            revision: crate::http::GIT_REVISION.into(),
        });
        r.register("build", "Version and git revision", build);
        r.register_collector(Box::new(m.groups.clone()));
        Self { registry: r, ..m }
    }

    /// Count an engine output (decisions, failures) and remember what a group wants.
    pub fn observe(&self, o: &Output) {
        match o {
            Output::Decision(d) => {
                self.decisions
                    .get_or_create(&DecisionL {
                        group: d.group.to_string(),
                        action: d.action.as_str().into(),
                        reason: d.reason.kind().into(),
                    })
                    .inc();
            }
            Output::ActionFailed { group, action, .. } => {
                self.failures
                    .get_or_create(&ActionL {
                        group: group.to_string(),
                        action: action.as_str().into(),
                    })
                    .inc();
            }
            Output::Evaluation(e) => {
                let dir = match &e.verdict {
                    Verdict::Blocked { wanted, .. } => match wanted {
                        Action::ScaleUp => 1,
                        Action::ScaleDown => -1,
                        _ => 0,
                    },
                    _ => 0,
                };
                if let Ok(mut w) = self.wanted.lock() {
                    w.insert(e.group.to_string(), dir);
                }
            }
            _ => {}
        }
    }

    /// Set the gauges from a snapshot and the stream health (at scrape time).
    pub fn refresh(&self, status: Option<&Status>, health: &[(String, Arc<StreamHealth>)]) {
        // Groups and members come and go: start from empty so none lingers.
        let sc = Scrape::default();
        let wanted = lock(&self.wanted);
        for g in status.map_or(&[][..], |s| &s.groups) {
            let l = GroupL {
                group: g.name.clone(),
            };
            sc.instances.get_or_create(&l).set(i64::from(g.instances));
            let leaving = g.members.iter().filter(|m| m.state == "leaving").count() as i64;
            let staying = i64::from(g.instances) - leaving;
            let desired = match g.manual_target {
                Some(t) => i64::from(t),
                None => (staying + wanted.get(&g.name).copied().unwrap_or(0))
                    .clamp(i64::from(g.min_instances), i64::from(g.max_instances)),
            };
            sc.desired.get_or_create(&l).set(desired);
            sc.paused.get_or_create(&l).set(i64::from(g.paused));
            sc.budget.get_or_create(&l).set(i64::from(g.budget_left));
            if let Some(c) = g.cpu_percent {
                sc.cpu.get_or_create(&l).set(c);
            }
            if let Some(f) = &g.forecast {
                if let Some(m) = f.mape_percent {
                    sc.mape.get_or_create(&l).set(m);
                }
                sc.trusted
                    .get_or_create(&l)
                    .set(i64::from(f.status == "trusted"));
            }
            for m in &g.members {
                if let Some(age) = m.sample_age_ms {
                    sc.sample_age
                        .get_or_create(&InstanceL {
                            group: g.name.clone(),
                            instance: m.name.clone(),
                        })
                        .set(age as f64 / 1000.0);
                }
            }
        }
        *lock(&self.groups.0) = sc;
        for (endpoint, h) in health {
            let l = EndpointL {
                endpoint: endpoint.clone(),
            };
            self.stream_up
                .get_or_create(&l)
                .set(i64::from(h.up.load(Ordering::Relaxed)));
            catch_up(
                &self.reconnects.get_or_create(&l),
                h.reconnects.load(Ordering::Relaxed),
            );
            catch_up(
                &self.samples.get_or_create(&l),
                h.samples.load(Ordering::Relaxed),
            );
            catch_up(
                &self.stalls.get_or_create(&l),
                h.stalls.load(Ordering::Relaxed),
            );
            // The 2.7 statistics tag is always there (at 0), so alerts have a series.
            let _ = self.unreadable.get_or_create(&FrameL {
                endpoint: endpoint.clone(),
                tag: "1".into(),
            });
            for (tag, n) in h.unreadable_counts() {
                let l = FrameL {
                    endpoint: endpoint.clone(),
                    tag: tag.to_string(),
                };
                catch_up(&self.unreadable.get_or_create(&l), n);
            }
        }
        if let Some(h) = self.history.source.get() {
            let c = &self.history;
            catch_up(&c.written, h.written.load(Ordering::Relaxed));
            catch_up(&c.dropped, h.dropped.load(Ordering::Relaxed));
            catch_up(&c.failed, h.failed.load(Ordering::Relaxed));
            let lagged = h.lagged.load(Ordering::Relaxed);
            catch_up(&c.missed, lagged);
            catch_up(&self.missed.get_or_create(&follower(HISTORY)), lagged);
        }
    }

    /// The API's follower missed `n` engine outputs (a broadcast lag).
    pub fn outputs_missed(&self, n: u64) {
        self.missed.get_or_create(&follower(API)).inc_by(n);
    }

    /// Record one Proxmox request (for the Proxmox client to call).
    pub fn observe_proxmox_request(&self, node: &str, seconds: f64) {
        self.pve_latency
            .get_or_create(&NodeL { node: node.into() })
            .observe(seconds);
    }

    /// Record a Proxmox node's breaker state (0 closed, 1 half-open, 2 open).
    pub fn set_proxmox_breaker(&self, node: &str, state: i64) {
        self.pve_breaker
            .get_or_create(&NodeL { node: node.into() })
            .set(state);
    }

    /// The notification counters (shared with the dispatcher that updates them).
    pub fn notify(&self) -> &crate::notify::Counters {
        &self.notify
    }

    /// Read the history writer's counters at every scrape from now on.
    pub fn set_history(&self, counters: Arc<crate::history::writer::Counters>) {
        let _ = self.history.source.set(counters);
    }

    /// Count an API response.
    /// Set the count of decisions waiting for approval (at scrape time).
    pub fn set_approvals_pending(&self, n: usize) {
        self.approvals.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn http_response(&self, code: u16) {
        self.http
            .get_or_create(&CodeL {
                code: code.to_string(),
            })
            .inc();
    }

    /// One scrape: the gauges set from `status` and `health`, encoded, and the
    /// per-group ones dropped again (a 10 000-group scrape's peak is not kept).
    pub fn render(
        &self,
        status: Option<&Status>,
        health: &[(String, Arc<StreamHealth>)],
    ) -> String {
        let _one = lock(&self.scraping);
        self.refresh(status, health);
        let text = self.encode();
        *lock(&self.groups.0) = Scrape::default();
        text
    }

    /// The exposition text ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug, and a
        // partial scrape is still better than none.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

/// The `follower` label of the status API's follower (metrics, `/v1/decisions`).
const API: &str = "api";
/// ... and of the history's ([`crate::history::writer::Feed::follow`]).
const HISTORY: &str = "history";

fn follower(name: &str) -> FollowerL {
    FollowerL {
        follower: name.into(),
    }
}

/// Counters mirror monotonic atomics owned elsewhere: add what they gained.
fn catch_up(c: &Counter, total: u64) {
    let seen = c.get();
    if total > seen {
        c.inc_by(total - seen);
    }
}

impl Metrics {
    /// Whether a cluster-wide Proxmox poll succeeded within `d`.
    pub fn proxmox_polled_within(&self, d: std::time::Duration) -> bool {
        let last = *self.pve_polled.lock().unwrap_or_else(|e| e.into_inner());
        last.is_some_and(|t| t.elapsed() <= d)
    }
}

impl crate::proxmox::client::Observer for Metrics {
    fn request(&self, node: &str, seconds: f64, ok: bool) {
        self.observe_proxmox_request(node, seconds);
        if ok && node == "cluster" {
            *self.pve_polled.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(std::time::Instant::now());
        }
    }
    fn breaker(&self, node: &str, state: i64) {
        self.set_proxmox_breaker(node, state);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The per-group and per-member gauges of one scrape.
#[derive(Debug, Default)]
struct Scrape {
    instances: Family<GroupL, Gauge>,
    desired: Family<GroupL, Gauge>,
    cpu: Family<GroupL, FGauge>,
    paused: Family<GroupL, Gauge>,
    budget: Family<GroupL, Gauge>,
    sample_age: Family<InstanceL, FGauge>,
    mape: Family<GroupL, FGauge>,
    trusted: Family<GroupL, Gauge>,
}

/// Encodes the current [`Scrape`] under the registry's prefix.
#[derive(Debug, Default)]
struct GroupGauges(Mutex<Scrape>);

impl Collector for GroupGauges {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        fn one(
            e: &mut DescriptorEncoder,
            name: &str,
            help: &str,
            unit: Option<&Unit>,
            m: &impl EncodeMetric,
        ) -> std::fmt::Result {
            m.encode(e.encode_descriptor(name, help, unit, m.metric_type())?)
        }
        let s = lock(&self.0);
        one(
            &mut e,
            "group_instances",
            "Instances of the group counted against max_instances (pending creates included)",
            None,
            &s.instances,
        )?;
        one(
            &mut e,
            "group_desired_instances",
            "Instances the group wants: the manual target, else the current count moved by the standing recommendation",
            None,
            &s.desired,
        )?;
        one(
            &mut e,
            "group_cpu_percent",
            "vCPU-weighted average CPU share of the group's members over their last interval, in percent",
            None,
            &s.cpu,
        )?;
        one(
            &mut e,
            "group_paused",
            "1 when the group is paused (recommend-only)",
            None,
            &s.paused,
        )?;
        one(
            &mut e,
            "group_budget_left_actions",
            "Actions left in the sliding hour (max_actions_per_hour)",
            None,
            &s.budget,
        )?;
        one(
            &mut e,
            "forecast_mape_percent",
            "Measured error of the group's seasonal forecast: MAPE of its forecast of the last day of history (fitted without it), in percent",
            None,
            &s.mape,
        )?;
        one(
            &mut e,
            "forecast_trusted",
            "1 while the seasonal forecast is acted on (predictive = true) or would be (shadow): a day of history and its error at most forecast_max_error",
            None,
            &s.trusted,
        )?;
        one(
            &mut e,
            "sample_age",
            "Time since the member's last statistics sample",
            Some(&Unit::Seconds),
            &s.sample_age,
        )?;
        Ok(())
    }
}
