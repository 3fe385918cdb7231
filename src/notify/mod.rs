//! Notifications: `[[notify]]` sinks fed from the notice bus ([`crate::notify::Notices`]).
//!
//! One fan-out task copies each notice into a bounded queue per sink; one worker per
//! sink delivers with retries and backoff. Publishing is a broadcast send and the
//! fan-out never waits on a sink, so a slow or dead sink delays neither the engine
//! nor the actuators nor the other sinks: its queue drops the oldest notice instead
//! (counted in `notify_dropped_total`).
//!
//! * [`webhook`]: JSON, Slack, Gotify and ntfy bodies; HMAC-SHA256 signature.
//! * [`email`]: SMTP with STARTTLS (lettre).

pub mod email;
pub mod notice;
pub mod webhook;

pub use notice::{Notice, Notices};

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::notify::{Kind, Notify};

pub use crate::config::notify::{ATTEMPTS, QUEUE};
/// Wait before the first retry; doubles per retry.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SinkL {
    pub(crate) sink: String,
}

/// Delivery counters per sink. Clones share the values, so the metrics registry
/// and the dispatcher see the same numbers.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub(crate) sent: Family<SinkL, Counter>,
    pub(crate) failed: Family<SinkL, Counter>,
    pub(crate) dropped: Family<SinkL, Counter>,
}

impl Counters {
    fn get(f: &Family<SinkL, Counter>, sink: &str) -> Counter {
        f.get_or_create(&SinkL { sink: sink.into() }).clone()
    }
    /// Show `sink`'s counters at zero (a family without children is not exposed).
    pub fn add_sink(&self, sink: &str) {
        for f in [&self.sent, &self.failed, &self.dropped] {
            Self::get(f, sink);
        }
    }

    /// Notices delivered by `sink`.
    pub fn sent(&self, sink: &str) -> u64 {
        Self::get(&self.sent, sink).get()
    }
    /// Notices `sink` gave up on after its `attempts`.
    pub fn failed(&self, sink: &str) -> u64 {
        Self::get(&self.failed, sink).get()
    }
    /// Notices dropped before `sink` could try them (full queue, or the bus lagged).
    pub fn dropped(&self, sink: &str) -> u64 {
        Self::get(&self.dropped, sink).get()
    }
}

/// A notice as delivered: the notice, the wall-clock time it was heard, and the
/// human-readable text every format shares.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub notice: Notice,
    /// RFC 3339, UTC.
    pub time: String,
}

impl Envelope {
    /// `notice`, stamped now.
    pub fn now(notice: Notice) -> Self {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self { notice, time }
    }

    /// One line: what happened, to what, and why.
    pub fn message(&self) -> String {
        match &self.notice {
            Notice::DecisionExecuted {
                group,
                instance,
                action,
                reason,
                dry_run,
            } => {
                let dry = if *dry_run { " (dry run)" } else { "" };
                format!("{group}: {action} {instance}{dry}: {reason}")
            }
            Notice::ActionFailed {
                group,
                instance,
                action,
                reason,
            } => format!("{group}: {action} {instance} failed: {reason}"),
            Notice::ApprovalPending {
                id,
                group,
                instance,
                action,
                reason,
                expires_at,
            } => format!(
                "{group}: {action} {instance} waits for approval (id {id}, expires {expires_at}): {reason}"
            ),
            Notice::Unreachable { target, reason } => format!("{target} unreachable: {reason}"),
            Notice::Reachable { target, reason } => format!("{target} reachable: {reason}"),
            Notice::CeilingReached {
                group,
                ceiling,
                reason,
            } => format!("{group}: {ceiling} ceiling reached: {reason}"),
            Notice::Test { reason } => format!("test notification: {reason}"),
            Notice::Lifecycle {
                lifecycle,
                group,
                instance,
                address,
                ..
            } => {
                let at = address
                    .as_deref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default();
                format!("{group}: {lifecycle} {instance}{at}")
            }
        }
    }

    /// A short title (email subject, Gotify and ntfy titles).
    pub fn title(&self) -> String {
        let about = match &self.notice {
            Notice::DecisionExecuted { group, action, .. } => format!("{action} in {group}"),
            Notice::ActionFailed { group, action, .. } => format!("{action} failed in {group}"),
            Notice::ApprovalPending { group, action, .. } => {
                format!("{action} in {group} waits for approval")
            }
            Notice::Unreachable { target, .. } => format!("{target} unreachable"),
            Notice::Reachable { target, .. } => format!("{target} reachable again"),
            Notice::CeilingReached { group, ceiling, .. } => {
                format!("{ceiling} ceiling reached in {group}")
            }
            Notice::Test { .. } => "test notification".into(),
            Notice::Lifecycle {
                lifecycle, group, ..
            } => format!("{lifecycle} in {group}"),
        };
        format!("albatross-autoscale: {about}")
    }

    /// Whether operators should look soon (failures, outages, ceilings, approvals).
    pub fn urgent(&self) -> bool {
        !matches!(
            self.notice,
            Notice::DecisionExecuted { .. }
                | Notice::Reachable { .. }
                | Notice::Test { .. }
                | Notice::Lifecycle { .. }
        )
    }

    /// The plain JSON body: the notice's fields, `message` and `time`.
    pub fn json(&self) -> Value {
        let mut v = serde_json::to_value(&self.notice).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("message".into(), Value::String(self.message()));
            m.insert("time".into(), Value::String(self.time.clone()));
        }
        v
    }
}

/// A sink ready to deliver: its secrets read, its client built.
pub struct Sink {
    pub config: Notify,
    target: Target,
}

enum Target {
    Webhook(Box<webhook::Webhook>),
    Email(Box<email::Email>),
}

impl Sink {
    /// Read the sink's secret files and build its client. Errors name the key and
    /// the file, never the contents.
    pub fn open(config: &Notify) -> Result<Self, String> {
        let target = match &config.kind {
            Kind::Webhook(w) => {
                Target::Webhook(Box::new(webhook::Webhook::open(w, config.timeout)?))
            }
            Kind::Email(e) => Target::Email(Box::new(email::Email::open(e, config.timeout)?)),
        };
        Ok(Self {
            config: config.clone(),
            target,
        })
    }

    /// Every sink of `configs`, or the first problem (`notify[i]...`).
    pub fn open_all(configs: &[Notify]) -> Result<Vec<Self>, String> {
        configs
            .iter()
            .map(|c| Self::open(c).map_err(|e| format!("{}: {e}", c.name)))
            .collect()
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// One delivery attempt, bounded by the sink's `timeout`.
    pub async fn deliver(&self, e: &Envelope) -> Result<(), String> {
        self.attempt(e).await.map_err(|f| f.message)
    }

    async fn attempt(&self, e: &Envelope) -> Result<(), Failure> {
        let attempt = async {
            match &self.target {
                Target::Webhook(w) => w.send(e).await,
                Target::Email(m) => m.send(e).await.map_err(Failure::transient),
            }
        };
        match tokio::time::timeout(self.config.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Failure::transient(format!(
                "no answer within {}",
                humantime::format_duration(self.config.timeout)
            ))),
        }
    }

    /// Deliver with up to `attempts` attempts, doubling the wait between them; a
    /// refusal that cannot change (HTTP 4xx but 408 and 429) is not retried.
    pub async fn deliver_retrying(&self, e: &Envelope) -> Result<(), String> {
        let mut wait = FIRST_RETRY;
        let mut attempt = 1;
        loop {
            match self.attempt(e).await {
                Ok(()) => return Ok(()),
                Err(f) if attempt >= self.config.attempts || !f.retry => return Err(f.message),
                Err(f) => {
                    tracing::debug!(sink = self.name(), event = e.notice.kind(), attempt, error = %f.message, "notification failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

/// Why one attempt failed, and whether another could succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    retry: bool,
}

impl Failure {
    pub(crate) fn transient(message: String) -> Self {
        Self {
            message,
            retry: true,
        }
    }

    pub(crate) fn permanent(message: String) -> Self {
        Self {
            message,
            retry: false,
        }
    }
}

/// `notify-test`: one test notice to every sink (no retries, filters ignored), each
/// sink's outcome in order.
pub async fn test_all(sinks: &[Sink], reason: &str) -> Vec<(String, Result<(), String>)> {
    let e = Envelope::now(Notice::Test {
        reason: reason.into(),
    });
    // Concurrently, so one dead sink does not make the others wait for its timeout.
    join_all(sinks.iter().map(|s| async {
        let r = s.deliver(&e).await;
        (s.name().to_string(), r)
    }))
    .await
}

/// Await every future concurrently (a tiny `join_all`).
async fn join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// A bounded queue that drops its oldest item when full. One consumer.
struct Queue {
    items: std::sync::Mutex<VecDeque<Envelope>>,
    ready: tokio::sync::Notify,
    closed: AtomicBool,
    cap: usize,
}

impl Queue {
    fn new(cap: usize) -> Self {
        Self {
            items: std::sync::Mutex::new(VecDeque::new()),
            ready: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Envelope>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add `e`; returns the notice dropped to make room, if any. Never waits.
    fn push(&self, e: Envelope) -> Option<Envelope> {
        let dropped = {
            let mut q = self.lock();
            let d = if q.len() >= self.cap {
                q.pop_front()
            } else {
                None
            };
            q.push_back(e);
            d
        };
        self.ready.notify_one();
        dropped
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// The next item; `None` once closed and empty.
    async fn pop(&self) -> Option<Envelope> {
        loop {
            if let Some(e) = self.lock().pop_front() {
                return Some(e);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            // notify_one stores a permit, so a push between the check and here wakes us.
            self.ready.notified().await;
        }
    }
}

/// The running delivery: a fan-out task and one worker per sink.
pub struct Dispatcher {
    names: Vec<String>,
    queues: Vec<Arc<Queue>>,
    counters: Counters,
    stop: CancellationToken,
    fanout: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
}

impl Dispatcher {
    /// Deliver every notice `rx` receives to the sinks that want it, through one
    /// queue per sink of its `queue` size.
    pub fn start(sinks: Vec<Sink>, rx: broadcast::Receiver<Notice>, counters: Counters) -> Self {
        let names: Vec<String> = sinks.iter().map(|s| s.name().to_string()).collect();
        for n in &names {
            counters.add_sink(n);
        }
        let queues: Vec<Arc<Queue>> = sinks
            .iter()
            .map(|s| Arc::new(Queue::new(s.config.queue)))
            .collect();
        let stop = CancellationToken::new();
        let filters: Vec<Notify> = sinks.iter().map(|s| s.config.clone()).collect();
        let fanout = tokio::spawn(fan_out(
            rx,
            filters,
            queues.clone(),
            counters.clone(),
            stop.clone(),
        ));
        let workers = sinks
            .into_iter()
            .zip(&queues)
            .map(|(s, q)| tokio::spawn(work(s, q.clone(), counters.clone())))
            .collect();
        Self {
            names,
            queues,
            counters,
            stop,
            fanout,
            workers,
        }
    }

    /// The delivery counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Notices waiting in `sink`'s queue (not counting one being delivered).
    pub fn queued(&self, sink: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == sink)
            .map_or(0, |i| self.queues[i].len())
    }

    /// Stop taking notices, then give the queued ones up to `grace` to go out.
    pub async fn finish(self, grace: Duration) {
        self.stop.cancel();
        let _ = self.fanout.await;
        let aborts: Vec<_> = self.workers.iter().map(JoinHandle::abort_handle).collect();
        let all = async {
            for w in self.workers {
                let _ = w.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            let left: usize = self.queues.iter().map(|q| q.len()).sum();
            tracing::warn!(left, "notifications still queued at shutdown are dropped");
            for a in aborts {
                a.abort();
            }
        }
    }
}

async fn fan_out(
    mut rx: broadcast::Receiver<Notice>,
    sinks: Vec<Notify>,
    queues: Vec<Arc<Queue>>,
    counters: Counters,
    stop: CancellationToken,
) {
    loop {
        let got = tokio::select! {
            biased;
            r = rx.recv() => r,
            () = stop.cancelled() => {
                // Whatever was published before the stop still goes out.
                match rx.try_recv() {
                    Ok(n) => Ok(n),
                    Err(broadcast::error::TryRecvError::Lagged(k)) => Err(broadcast::error::RecvError::Lagged(k)),
                    Err(_) => Err(broadcast::error::RecvError::Closed),
                }
            }
        };
        match got {
            Ok(n) => {
                let e = Envelope::now(n);
                for (s, q) in sinks.iter().zip(&queues) {
                    let wanted = match e.notice.sink() {
                        Some(to) => to == s.name,
                        None => s.wants(e.notice.kind()),
                    };
                    if !wanted {
                        continue;
                    }
                    if let Some(old) = q.push(e.clone()) {
                        Counters::get(&counters.dropped, &s.name).inc();
                        tracing::warn!(sink = %s.name, dropped = old.notice.kind(), "notification queue full: dropped the oldest");
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(k)) => {
                tracing::warn!(
                    missed = k,
                    "notifications fell behind the notice bus; dropped"
                );
                for s in &sinks {
                    Counters::get(&counters.dropped, &s.name).inc_by(k);
                }
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    for q in &queues {
        q.close();
    }
}

async fn work(sink: Sink, q: Arc<Queue>, counters: Counters) {
    while let Some(e) = q.pop().await {
        match sink.deliver_retrying(&e).await {
            Ok(()) => {
                Counters::get(&counters.sent, sink.name()).inc();
                tracing::debug!(
                    sink = sink.name(),
                    event = e.notice.kind(),
                    "notification sent"
                );
            }
            Err(err) => {
                Counters::get(&counters.failed, sink.name()).inc();
                tracing::warn!(sink = sink.name(), event = e.notice.kind(), attempts = sink.config.attempts, error = %err, "notification given up");
            }
        }
    }
}

impl Sink {
    /// What and where, for logs (no secrets).
    pub fn kind(&self) -> String {
        self.config.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(i: u32) -> Envelope {
        Envelope::now(Notice::Test {
            reason: i.to_string(),
        })
    }

    #[tokio::test]
    async fn the_queue_drops_the_oldest_when_full_and_ends_when_closed() {
        let q = Queue::new(2);
        assert!(q.push(env(1)).is_none());
        assert!(q.push(env(2)).is_none());
        let old = q.push(env(3)).expect("full: drops one");
        assert_eq!(old.notice, env(1).notice);
        q.close();
        assert_eq!(q.pop().await.unwrap().notice, env(2).notice);
        assert_eq!(q.pop().await.unwrap().notice, env(3).notice);
        assert!(q.pop().await.is_none());
    }

    #[test]
    fn messages_name_group_instance_action_and_reason() {
        let e = Envelope::now(Notice::DecisionExecuted {
            group: "alice:web".into(),
            instance: "alice:web-clone-1".into(),
            action: "scale_up".into(),
            reason: "group average 91.00% > 80% for 3 consecutive ticks".into(),
            dry_run: false,
        });
        assert_eq!(
            e.message(),
            "alice:web: scale_up alice:web-clone-1: group average 91.00% > 80% for 3 consecutive ticks"
        );
        assert_eq!(e.title(), "albatross-autoscale: scale_up in alice:web");
        let v = e.json();
        assert_eq!(v["event"], "decision_executed");
        assert_eq!(v["instance"], "alice:web-clone-1");
        assert_eq!(v["message"], e.message());
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(!e.urgent());
    }
}
