//! Manual approval (`require_approval`): the book of decisions that wait for an
//! operator. The loop that owns a decision (the albatross engine task, or the Proxmox
//! loop) holds it instead of executing it, adds it here, and keeps the engine's
//! action in flight so the group issues no duplicate. The API lists the book and
//! sends approve / reject [`Command`]s to the owning loop, which decides the entry
//! here, re-checks the engine's rules and executes, or answers the engine with a
//! failure. Expiry runs on the owning loop's own deadline ([`Book::next_expiry`]).
//!
//! The book is plain data driven by an explicit [`At`] (monotonic + wall time).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::core::Decision;
use crate::notify::notice::Notice;

/// Decided entries kept for the API and for `409` answers.
const KEEP_DECIDED: usize = 100;

/// A moment: monotonic time for expiry, wall time for people.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl At {
    pub fn now() -> Self {
        Self {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// Which loop holds the decision (and must be told the verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    Albatross,
    Proxmox,
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Expired => "expired",
        }
    }
}

/// What waits: the decision's inputs, as the loop knows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    pub group: String,
    pub instance: String,
    /// `scale_up`, `scale_down`, `replace_primary` (a resize: by its direction).
    pub action: String,
    pub emergency: bool,
    pub reason: String,
    /// The engine's action id (answered with `ActionResult`).
    pub action_id: u64,
    /// The evaluation numbers (group average, counters) or the resize (from, to).
    pub inputs: Value,
}

impl Request {
    /// The request for an engine decision, with the evaluation that justified it.
    pub fn of(d: &Decision) -> Self {
        Self {
            group: d.group.to_string(),
            instance: d.instance.to_string(),
            action: d.action.as_str().to_string(),
            emergency: d.emergency,
            reason: d.reason_text(),
            action_id: d.id,
            inputs: json!({
                "avg_cpu_percent": d.avg_bp.map(crate::core::cpu::percent),
                "instances": d.instances,
                "high_ticks": d.high_ticks,
                "low_ticks": d.low_ticks,
            }),
        }
    }
}

/// One entry of the book.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub id: String,
    pub owner: Owner,
    pub state: State,
    #[serde(flatten)]
    pub request: Request,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: SystemTime,
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: SystemTime,
    /// The API key's id that approved or rejected it.
    pub decided_by: Option<String>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub decided_at: Option<SystemTime>,
    /// After approval: `executing`, or why the re-check refused it.
    pub outcome: Option<String>,
    #[serde(skip)]
    expires: Instant,
}

/// Why a verdict was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such id (never existed, or forgotten long ago).
    Unknown,
    /// Already approved, rejected or expired.
    Decided(State),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unknown => write!(f, "no pending approval with that id"),
            Refusal::Decided(s) => write!(f, "already {}", s.as_str()),
        }
    }
}

/// The book: pending entries and the most recently decided ones.
#[derive(Debug)]
pub struct Book {
    entries: Vec<Entry>,
    /// Random per process: an id from before a restart never matches a new entry.
    prefix: String,
    next: u64,
}

impl Default for Book {
    fn default() -> Self {
        let mut b = [0u8; 3];
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            // Not secret, only distinct across restarts: the clock will do.
            let n = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            b = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        }
        Self::with_prefix(&format!("{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
    }
}

impl Book {
    /// A book whose ids start with `prefix` (tests pick a fixed one).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            entries: Vec::new(),
            prefix: prefix.to_string(),
            next: 1,
        }
    }

    /// Add a pending entry that expires `timeout` after `at`; returns it.
    pub fn add(&mut self, owner: Owner, request: Request, timeout: Duration, at: At) -> Entry {
        let id = format!("{}-{}", self.prefix, self.next);
        self.next += 1;
        let e = Entry {
            id,
            owner,
            state: State::Pending,
            request,
            created_at: at.wall,
            expires_at: at.wall + timeout,
            decided_by: None,
            decided_at: None,
            outcome: None,
            expires: at.mono + timeout,
        };
        self.entries.push(e.clone());
        e
    }

    /// Approve (`approve`) or reject entry `id` on behalf of API key `key`. An entry
    /// past its expiry is not pending any more: run [`Book::expire`] first.
    pub fn decide(&mut self, id: &str, approve: bool, key: &str, at: At) -> Result<Entry, Refusal> {
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or(Refusal::Unknown)?;
        if e.state != State::Pending {
            return Err(Refusal::Decided(e.state));
        }
        if at.mono >= e.expires {
            return Err(Refusal::Decided(State::Expired));
        }
        e.state = if approve {
            State::Approved
        } else {
            State::Rejected
        };
        e.decided_by = Some(key.to_string());
        e.decided_at = Some(at.wall);
        let e = e.clone();
        self.trim();
        Ok(e)
    }

    /// Mark every pending entry of `owner` whose time is up as expired; returns them.
    pub fn expire(&mut self, owner: Owner, at: At) -> Vec<Entry> {
        let mut out = Vec::new();
        for e in &mut self.entries {
            if e.owner == owner && e.state == State::Pending && at.mono >= e.expires {
                e.state = State::Expired;
                e.decided_at = Some(at.wall);
                out.push(e.clone());
            }
        }
        if !out.is_empty() {
            self.trim();
        }
        out
    }

    /// Mark pending entry `id` expired (its machine said its time is up).
    pub fn expire_id(&mut self, id: &str, at: At) -> Option<Entry> {
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.id == id && e.state == State::Pending)?;
        e.state = State::Expired;
        e.decided_at = Some(at.wall);
        let e = e.clone();
        self.trim();
        Some(e)
    }

    /// Record what became of an approved entry (executing, or why not).
    pub fn set_outcome(&mut self, id: &str, outcome: String) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.outcome = Some(outcome);
        }
    }

    /// Drop the pending entries of `owner` (its loop stopped): they can no longer
    /// be executed.
    pub fn abandon(&mut self, owner: Owner, at: At) -> Vec<Entry> {
        let mut out = Vec::new();
        for e in &mut self.entries {
            if e.owner == owner && e.state == State::Pending {
                e.state = State::Expired;
                e.decided_at = Some(at.wall);
                e.outcome = Some("the daemon stopped".into());
                out.push(e.clone());
            }
        }
        self.trim();
        out
    }

    /// When the next pending entry of `owner` expires.
    pub fn next_expiry(&self, owner: Owner) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|e| e.owner == owner && e.state == State::Pending)
            .map(|e| e.expires)
            .min()
    }

    /// One entry.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Pending entries, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.state == State::Pending)
    }

    /// Decided entries, oldest first (at most [`KEEP_DECIDED`]).
    pub fn decided(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.state != State::Pending)
    }

    fn trim(&mut self) {
        let decided = self.decided().count();
        let mut drop = decided.saturating_sub(KEEP_DECIDED);
        self.entries.retain(|e| {
            let old = drop > 0 && e.state != State::Pending;
            if old {
                drop -= 1;
            }
            !old
        });
    }
}

/// The book shared by the loops and the API.
#[derive(Debug, Clone, Default)]
pub struct SharedBook(Arc<Mutex<Book>>);

impl SharedBook {
    pub fn new(book: Book) -> Self {
        Self(Arc::new(Mutex::new(book)))
    }

    pub fn lock(&self) -> MutexGuard<'_, Book> {
        // A poisoned lock only means a holder panicked mid-update of plain data.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An operator's verdict, sent by the API to the loop that owns entry `id`.
#[derive(Debug)]
pub struct Command {
    pub id: String,
    pub approve: bool,
    /// The API key's id (the name in the keys file).
    pub key: String,
    /// The entry as decided, or why not.
    pub reply: oneshot::Sender<Result<Entry, Refusal>>,
}

/// Decide `cmd` in `book` and take its held item out of `held` (each loop keeps
/// its own held decisions or jobs). On a refusal the API is answered here and
/// `None` returned; otherwise the caller answers through the returned command.
pub fn take_held<T>(
    book: &SharedBook,
    held: &mut Vec<(String, T)>,
    cmd: Command,
) -> Option<(Entry, T, Command)> {
    let decided = book
        .lock()
        .decide(&cmd.id, cmd.approve, &cmd.key, At::now());
    let e = match decided {
        Ok(e) => e,
        Err(r) => {
            let _ = cmd.reply.send(Err(r));
            return None;
        }
    };
    let Some(i) = held.iter().position(|(id, _)| *id == e.id) else {
        let _ = cmd.reply.send(Err(Refusal::Unknown));
        return None;
    };
    let (_, item) = held.swap_remove(i);
    Some((e, item, cmd))
}

/// The receiving end of a loop's commands ([`Command`]s by default; the Proxmox
/// loop's operator controls too). Cloneable so it can sit in options that are
/// cloned; the loop takes the receiver once.
#[derive(Debug)]
pub struct Inbox<T = Command>(Arc<Mutex<Option<mpsc::Receiver<T>>>>);

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<T> Inbox<T> {
    /// A sender for the API and the inbox for the loop.
    pub fn channel() -> (mpsc::Sender<T>, Self) {
        let (tx, rx) = mpsc::channel(16);
        (tx, Self(Arc::new(Mutex::new(Some(rx)))))
    }

    /// The receiver, the first time (`None` for a default inbox or later calls).
    pub fn take(&self) -> Option<mpsc::Receiver<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Give the receiver back (a loop that ends before its successor starts).
    pub fn restore(&self, rx: Option<mpsc::Receiver<T>>) {
        if let Some(rx) = rx {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
        }
    }
}

/// The next command from `inbox`; never ready without one.
pub async fn recv<T>(inbox: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match inbox {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The decision log line for `event` (`approval_pending`, `approved`, `rejected`,
/// `approval_expired`) of entry `e`, at engine time `t_ms`.
pub fn log_line(event: &str, e: &Entry, t_ms: u64) -> Value {
    let mut v = json!({
        "event": event,
        "t_ms": t_ms,
        "at": fmt_time(e.decided_at.unwrap_or(e.created_at)),
        "approval": e.id,
        "group": e.request.group,
        "action": e.request.action,
        "instance": e.request.instance,
        "id": e.request.action_id,
    });
    match event {
        "approval_pending" => {
            v["reason"] = json!(e.request.reason);
            v["expires_at"] = json!(fmt_time(e.expires_at));
        }
        "approved" | "rejected" => v["key"] = json!(e.decided_by),
        _ => {}
    }
    if let Some(o) = &e.outcome {
        v["outcome"] = json!(o);
    }
    v
}

/// The notice for a new pending entry.
pub fn pending_notice(e: &Entry) -> Notice {
    Notice::ApprovalPending {
        id: e.id.clone(),
        group: e.request.group.clone(),
        instance: e.request.instance.clone(),
        action: e.request.action.clone(),
        reason: e.request.reason.clone(),
        expires_at: fmt_time(e.expires_at),
    }
}

/// RFC 3339, UTC.
pub fn fmt_time(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_time(*t))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&fmt_time(*t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(n: u64) -> Request {
        Request {
            group: "alice:web".into(),
            instance: format!("alice:web-clone-{n}"),
            action: "scale_up".into(),
            emergency: false,
            reason: "hot".into(),
            action_id: n,
            inputs: json!({"instances": 1}),
        }
    }

    fn at(base: At, secs: u64) -> At {
        At {
            mono: base.mono + Duration::from_secs(secs),
            wall: base.wall + Duration::from_secs(secs),
        }
    }

    #[test]
    fn approve_once_then_409_and_unknown_ids_are_404() {
        let t0 = At::now();
        let mut b = Book::with_prefix("t");
        let e = b.add(Owner::Albatross, req(1), Duration::from_secs(60), t0);
        assert_eq!(e.id, "t-1");
        let random = Book::default().prefix;
        assert!(random.len() == 6 && random.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(b.pending().count(), 1);
        let ok = b.decide("t-1", true, "ops", at(t0, 5)).unwrap();
        assert_eq!(ok.state, State::Approved);
        assert_eq!(ok.decided_by.as_deref(), Some("ops"));
        assert_eq!(
            b.decide("t-1", true, "ops", at(t0, 6)),
            Err(Refusal::Decided(State::Approved))
        );
        assert_eq!(
            b.decide("t-1", false, "other", at(t0, 6)),
            Err(Refusal::Decided(State::Approved))
        );
        assert_eq!(b.decide("t-9", true, "ops", t0), Err(Refusal::Unknown));
        assert_eq!(b.pending().count(), 0);
        assert_eq!(b.decided().count(), 1);
        let line = log_line("approved", &ok, 1234);
        assert_eq!(line["key"], "ops");
        assert_eq!(line["approval"], "t-1");
        assert_eq!(line["t_ms"], 1234);
        assert!(line["at"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn expiry_is_per_owner_exact_and_blocks_late_verdicts() {
        let t0 = At::now();
        let mut b = Book::with_prefix("t");
        b.add(Owner::Albatross, req(1), Duration::from_secs(60), t0);
        b.add(Owner::Proxmox, req(2), Duration::from_secs(30), t0);
        b.add(
            Owner::Albatross,
            req(3),
            Duration::from_secs(90),
            at(t0, 10),
        );
        assert_eq!(
            b.next_expiry(Owner::Albatross),
            Some(t0.mono + Duration::from_secs(60))
        );
        assert_eq!(
            b.next_expiry(Owner::Proxmox),
            Some(t0.mono + Duration::from_secs(30))
        );
        assert!(b.expire(Owner::Albatross, at(t0, 59)).is_empty());
        // Past its time but not swept yet: no verdict any more.
        assert_eq!(
            b.decide("t-1", true, "ops", at(t0, 60)),
            Err(Refusal::Decided(State::Expired))
        );
        let gone = b.expire(Owner::Albatross, at(t0, 60));
        assert_eq!(gone.len(), 1);
        assert_eq!(
            (gone[0].id.as_str(), gone[0].state),
            ("t-1", State::Expired)
        );
        // The Proxmox entry is its loop's business.
        assert_eq!(b.get("t-2").unwrap().state, State::Pending);
        assert_eq!(
            b.next_expiry(Owner::Albatross),
            Some(t0.mono + Duration::from_secs(100))
        );
        assert_eq!(b.expire(Owner::Proxmox, at(t0, 100)).len(), 1);
        assert_eq!(
            b.pending().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["t-3"]
        );
        let abandoned = b.abandon(Owner::Albatross, at(t0, 101));
        assert_eq!(abandoned.len(), 1);
        assert_eq!(b.next_expiry(Owner::Albatross), None);
    }

    #[test]
    fn decided_entries_are_bounded_pending_ones_never_dropped() {
        let t0 = At::now();
        let mut b = Book::with_prefix("t");
        let keep = b.add(Owner::Proxmox, req(0), Duration::from_secs(3600), t0);
        for n in 1..=KEEP_DECIDED as u64 + 20 {
            let e = b.add(Owner::Albatross, req(n), Duration::from_secs(60), t0);
            b.decide(&e.id, false, "ops", t0).unwrap();
        }
        assert_eq!(b.decided().count(), KEEP_DECIDED);
        assert_eq!(b.pending().next().map(|e| &e.id), Some(&keep.id));
        // The oldest decided ones went first.
        assert_eq!(b.decide("t-2", true, "ops", t0), Err(Refusal::Unknown));
        let v = serde_json::to_value(b.get(&keep.id).unwrap()).unwrap();
        assert_eq!(v["state"], "pending");
        assert_eq!(v["owner"], "proxmox");
        assert_eq!(v["group"], "alice:web");
        assert_eq!(v["inputs"]["instances"], 1);
        assert!(v.get("expires").is_none());
    }
}
