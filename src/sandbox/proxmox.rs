//! An in-process fake Proxmox VE API (axum, 127.0.0.1) shaped like the real one:
//! `{"data": ...}` envelopes, numbers sometimes sent as strings, config digests
//! ("detected modified configuration" 500), locks, 401 on a bad token, injected
//! 500/595/596 answers, UPID tasks that finish after some status polls or fail or
//! never finish, per-request latency, and nodes that stop answering.
//!
//! The digest is a per-container version counter rendered as 40 hex digits; the real
//! one is the SHA-1 of the config file, and only its change on every write matters.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// A container.
#[derive(Debug, Clone)]
pub struct Ct {
    pub node: String,
    pub name: String,
    pub running: bool,
    pub template: bool,
    pub cores: Option<u32>,
    pub cpulimit: Option<f64>,
    pub memory: u32,
    pub tags: String,
    pub description: String,
    pub lock: Option<String>,
    /// `net0` as Proxmox stores it (empty: none).
    pub net0: String,
    pub version: u64,
    /// Reported `cpu`: fraction of `maxcpu`.
    pub cpu: f64,
    /// Reported `mem` in MiB.
    pub mem_used_mib: u64,
}

impl Ct {
    /// A running container with `cores` cores and `memory` MiB, idle.
    pub fn new(node: &str, name: &str, cores: u32, memory: u32) -> Self {
        Self {
            node: node.into(),
            name: name.into(),
            running: true,
            template: false,
            cores: Some(cores),
            cpulimit: None,
            memory,
            tags: String::new(),
            description: String::new(),
            lock: None,
            net0: String::new(),
            version: 1,
            cpu: 0.0,
            mem_used_mib: 0,
        }
    }

    fn maxcpu(&self, host: u32) -> f64 {
        self.cores
            .map(f64::from)
            .or(self.cpulimit.filter(|l| *l > 0.0))
            .unwrap_or(f64::from(host))
    }

    fn digest(&self) -> String {
        format!("{:040x}", self.version)
    }
}

/// A node.
#[derive(Debug, Clone)]
pub struct Node {
    pub maxmem_mib: u64,
    pub mem_mib: u64,
    /// Requests to `/nodes/<this>/...` never get an answer.
    pub dead: bool,
}

#[derive(Debug, Clone)]
enum Effect {
    Clone { source: u32, newid: u32 },
    Start(u32),
    Stop(u32),
    Destroy(u32),
}

#[derive(Debug, Clone)]
struct Task {
    polls: u32,
    done_after: u32,
    fail: Option<String>,
    hang: bool,
    effect: Option<Effect>,
    finished: Option<Result<(), String>>,
}

/// Everything the fake knows; tests change it through [`FakeServer::with`].
#[derive(Debug)]
pub struct Fake {
    pub cts: BTreeMap<u32, Ct>,
    pub nodes: BTreeMap<String, Node>,
    pub host_cpus: u32,
    /// Expected `Authorization` header value.
    pub auth: String,
    pub latency: Duration,
    /// Status polls before a task stops.
    pub task_polls: u32,
    /// Task types (`vzclone`, `vzstart`, ...) that fail, and that never finish.
    pub fail_tasks: HashSet<String>,
    pub hang_tasks: HashSet<String>,
    /// Next PUTs to config find the container changed by someone else first.
    pub concurrent_writes: u32,
    /// Next requests whose path contains the string get this status.
    pub inject: VecDeque<(String, u16)>,
    /// Every request: (method, path).
    pub requests: Vec<(String, String)>,
    /// What `GET /access/permissions` answers (path → privilege → propagate);
    /// by default every privilege on `/`, propagated.
    pub permissions: Value,
    tasks: HashMap<String, Task>,
    seq: u32,
}

impl Fake {
    pub fn new(secret_header: &str) -> Self {
        Self {
            cts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            host_cpus: 16,
            auth: secret_header.into(),
            latency: Duration::ZERO,
            task_polls: 2,
            fail_tasks: HashSet::new(),
            hang_tasks: HashSet::new(),
            concurrent_writes: 0,
            inject: VecDeque::new(),
            requests: Vec::new(),
            permissions: json!({"/": {
                "VM.Audit": 1, "VM.Config.CPU": 1, "VM.Config.Memory": 1, "VM.Config.Options": 1,
                "VM.Config.Network": 1, "VM.Clone": 1, "VM.Allocate": 1, "VM.PowerMgmt": 1,
                "VM.Snapshot": 1, "Datastore.AllocateSpace": 1, "Sys.Audit": 1,
            }}),
            tasks: HashMap::new(),
            seq: 0,
        }
    }

    pub fn node(&mut self, name: &str, maxmem_mib: u64, mem_mib: u64) {
        self.nodes.insert(
            name.into(),
            Node {
                maxmem_mib,
                mem_mib,
                dead: false,
            },
        );
    }

    /// How many requests matched `method` and a path containing `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.requests
            .iter()
            .filter(|(m, p)| m == method && p.contains(part))
            .count()
    }

    fn upid(&mut self, node: &str, kind: &str, id: u32, effect: Option<Effect>) -> String {
        self.seq += 1;
        let upid = format!(
            "UPID:{node}:{:08X}:00C0FFEE:65000000:{kind}:{id}:autoscale@pve!t:",
            self.seq
        );
        self.tasks.insert(
            upid.clone(),
            Task {
                polls: 0,
                done_after: self.task_polls,
                fail: self
                    .fail_tasks
                    .contains(kind)
                    .then(|| format!("{kind} failed (injected)")),
                hang: self.hang_tasks.contains(kind),
                effect,
                finished: None,
            },
        );
        upid
    }

    fn finish(&mut self, e: Effect, ok: bool) {
        match e {
            Effect::Clone { source, newid } => {
                if let Some(s) = self.cts.get_mut(&source) {
                    s.lock = None;
                }
                if ok {
                    if let Some(n) = self.cts.get_mut(&newid) {
                        n.lock = None;
                        n.version += 1;
                    }
                } else {
                    self.cts.remove(&newid);
                }
            }
            Effect::Start(v) if ok => self
                .cts
                .get_mut(&v)
                .into_iter()
                .for_each(|c| c.running = true),
            Effect::Stop(v) if ok => self
                .cts
                .get_mut(&v)
                .into_iter()
                .for_each(|c| c.running = false),
            Effect::Destroy(v) if ok => {
                self.cts.remove(&v);
            }
            _ => {}
        }
    }
}

type Shared = Arc<Mutex<Fake>>;

/// The running fake. Dropping it stops the server.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub state: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// The token id [`FakeServer::one_hot_container`] accepts.
pub const TOKEN_ID: &str = "autoscale@pve!scaler";

impl FakeServer {
    /// One node `pve` and container 101 `web` (2 cores, 2 GiB) busy at `cpu` (a
    /// fraction of its cores), for token [`TOKEN_ID`] with `secret`: what the
    /// `run --once` tests drive.
    pub async fn one_hot_container(secret: &str, cpu: f64) -> std::io::Result<Self> {
        let mut f = Fake::new(&format!("PVEAPIToken={TOKEN_ID}={secret}"));
        f.node("pve", 65_536, 8_192);
        let mut hot = Ct::new("pve", "web", 2, 2048);
        hot.cpu = cpu;
        f.cts.insert(101, hot);
        Self::start(f).await
    }

    /// Serve `fake` on 127.0.0.1 (a free port).
    pub async fn start(fake: Fake) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(fake));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let t = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            state,
            tasks: vec![t],
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Inspect or change the fake.
    pub fn with<R>(&self, f: impl FnOnce(&mut Fake) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A TLS front (rustls) forwarding to the fake; returns its `https://` URL.
    pub async fn tls_front(&mut self, config: rustls::ServerConfig) -> std::io::Result<String> {
        let (url, task) = crate::sandbox::tls_front(self.addr, config).await?;
        self.tasks.push(task);
        Ok(url)
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(h.unwrap_or(b'%'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn params(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn reply(status: u16, data: Value, message: Option<String>, errors: Option<Value>) -> Response {
    let mut body = json!({ "data": data });
    if let Some(m) = message {
        body["message"] = Value::String(format!("{m}\n"));
    }
    if let Some(e) = errors {
        body["errors"] = e;
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

fn ok(data: Value) -> Response {
    reply(200, data, None, None)
}

fn fail(status: u16, msg: impl Into<String>) -> Response {
    reply(status, Value::Null, Some(msg.into()), None)
}

async fn handle(
    State(st): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/api2/json")
        .unwrap_or(uri.path())
        .to_string();
    let mut p = params(uri.query().unwrap_or(""));
    p.extend(params(&String::from_utf8_lossy(&body)));
    let (latency, dead) = {
        let mut f = st.lock().unwrap_or_else(|e| e.into_inner());
        f.requests.push((method.to_string(), path.clone()));
        let node = path
            .strip_prefix("/nodes/")
            .and_then(|r| r.split('/').next());
        let dead = node.is_some_and(|n| f.nodes.get(n).is_some_and(|n| n.dead));
        (f.latency, dead)
    };
    if dead {
        std::future::pending::<()>().await;
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut f = st.lock().unwrap_or_else(|e| e.into_inner());
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(f.auth.as_str()) {
        // The real server answers 401 after 3 s; no delay here.
        return fail(401, "authentication failure");
    }
    if let Some(i) = f
        .inject
        .iter()
        .position(|(part, _)| path.contains(part.as_str()))
    {
        let (_, code) = f.inject.remove(i).expect("position is valid");
        let msg = match code {
            595 => "Connection refused".to_string(),
            596 => "Connection timed out".to_string(),
            _ => "internal error (injected)".to_string(),
        };
        return fail(code, msg);
    }
    route(&mut f, &method, &path, &p)
}

fn route(f: &mut Fake, method: &Method, path: &str, p: &HashMap<String, String>) -> Response {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["cluster", "resources"]) => resources(f, p.get("type").map(String::as_str)),
        ("GET", ["access", "permissions"]) => ok(f.permissions.clone()),
        ("GET", ["cluster", "nextid"]) => {
            let id = (100u32..).find(|i| !f.cts.contains_key(i)).unwrap_or(100);
            // Perl sometimes sends it as a string.
            ok(Value::String(id.to_string()))
        }
        ("GET", ["nodes", _, "lxc", id, "config"]) => with_ct(f, id, |c| ok(config_json(c))),
        ("PUT", ["nodes", _, "lxc", id, "config"]) => put_config(f, id, p),
        ("GET", ["nodes", _, "lxc", id, "status", "current"]) => with_ct(f, id, |c| {
            ok(
                json!({"status": if c.running {"running"} else {"stopped"}, "mem": c.mem_used_mib * MIB, "maxmem": u64::from(c.memory) * MIB}),
            )
        }),
        ("POST", ["nodes", node, "lxc", id, "status", action]) => {
            let Some(vmid) = id.parse::<u32>().ok().filter(|v| f.cts.contains_key(v)) else {
                return fail(
                    500,
                    format!("Configuration file 'nodes/{node}/lxc/{id}.conf' does not exist"),
                );
            };
            let c = &f.cts[&vmid];
            if let Some(l) = &c.lock {
                return fail(500, format!("CT is locked ({l})"));
            }
            let (kind, effect) = match *action {
                "start" if c.running => return fail(500, format!("CT {vmid} already running")),
                "start" => ("vzstart", Effect::Start(vmid)),
                "shutdown" | "stop" if !c.running => {
                    return fail(500, format!("CT {vmid} not running"));
                }
                "shutdown" => ("vzshutdown", Effect::Stop(vmid)),
                "stop" => ("vzstop", Effect::Stop(vmid)),
                _ => {
                    return fail(
                        501,
                        format!(
                            "Method 'POST /nodes/{node}/lxc/{id}/status/{action}' not implemented"
                        ),
                    );
                }
            };
            let node = node.to_string();
            ok(Value::String(f.upid(&node, kind, vmid, Some(effect))))
        }
        ("POST", ["nodes", node, "lxc", id, "clone"]) => clone(f, node, id, p),
        ("DELETE", ["nodes", node, "lxc", id]) => {
            let Some(vmid) = id.parse::<u32>().ok().filter(|v| f.cts.contains_key(v)) else {
                return fail(
                    500,
                    format!("Configuration file 'nodes/{node}/lxc/{id}.conf' does not exist"),
                );
            };
            let c = &f.cts[&vmid];
            if c.running {
                return fail(500, format!("CT {vmid} is running - destroy failed"));
            }
            if let Some(l) = &c.lock {
                return fail(500, format!("CT is locked ({l})"));
            }
            let node = node.to_string();
            ok(Value::String(f.upid(
                &node,
                "vzdestroy",
                vmid,
                Some(Effect::Destroy(vmid)),
            )))
        }
        ("GET", ["nodes", _, "tasks", upid, "status"]) => task_status(f, &decode(upid)),
        _ => fail(501, format!("Method '{method} {path}' not implemented")),
    }
}

fn resources(f: &Fake, kind: Option<&str>) -> Response {
    let mut rows = Vec::new();
    if kind.is_none_or(|k| k == "vm") {
        for (vmid, c) in &f.cts {
            let maxcpu = c.maxcpu(f.host_cpus);
            let (cpu, mem) = if c.running {
                (c.cpu, c.mem_used_mib * MIB)
            } else {
                (0.0, 0)
            };
            let mut row = json!({"id": format!("lxc/{vmid}"), "type": "lxc", "vmid": vmid, "node": c.node,
                "name": c.name, "status": if c.running {"running"} else {"stopped"}, "template": u8::from(c.template),
                "cpu": cpu, "maxcpu": maxcpu, "mem": mem, "maxmem": u64::from(c.memory) * MIB,
                "disk": 0, "maxdisk": 4 * 1024 * MIB, "uptime": 100});
            // Perl's encoder: numbers that were last used as strings arrive as strings.
            if vmid % 2 == 0 {
                row["cpu"] = Value::String(cpu.to_string());
                row["maxmem"] = Value::String((u64::from(c.memory) * MIB).to_string());
            }
            if !c.tags.is_empty() {
                row["tags"] = Value::String(c.tags.clone());
            }
            if let Some(l) = &c.lock {
                row["lock"] = Value::String(l.clone());
            }
            rows.push(row);
        }
    }
    if kind.is_none_or(|k| k == "node") {
        for (name, n) in &f.nodes {
            rows.push(json!({"id": format!("node/{name}"), "type": "node", "node": name,
                "status": if n.dead {"offline"} else {"online"}, "mem": n.mem_mib * MIB, "maxmem": n.maxmem_mib * MIB,
                "cpu": 0.1, "maxcpu": f.host_cpus}));
        }
    }
    if kind.is_none() {
        rows.push(json!({"id": "storage/pve/local", "type": "storage", "node": "pve", "storage": "local"}));
    }
    ok(Value::Array(rows))
}

fn with_ct(f: &Fake, id: &str, k: impl FnOnce(&Ct) -> Response) -> Response {
    match id.parse::<u32>().ok().and_then(|v| f.cts.get(&v)) {
        Some(c) => k(c),
        None => fail(
            500,
            format!("Configuration file 'nodes/?/lxc/{id}.conf' does not exist"),
        ),
    }
}

fn config_json(c: &Ct) -> Value {
    let mut v = json!({"hostname": c.name, "memory": c.memory, "swap": 512, "digest": c.digest(), "ostype": "debian"});
    if let Some(n) = c.cores {
        v["cores"] = json!(n);
    }
    if let Some(l) = c.cpulimit {
        v["cpulimit"] = Value::String(l.to_string());
    }
    for (k, val) in [
        ("tags", &c.tags),
        ("description", &c.description),
        ("net0", &c.net0),
    ] {
        if !val.is_empty() {
            v[k] = Value::String(val.clone());
        }
    }
    if let Some(l) = &c.lock {
        v["lock"] = Value::String(l.clone());
    }
    v
}

fn put_config(f: &mut Fake, id: &str, p: &HashMap<String, String>) -> Response {
    let Some(vmid) = id.parse::<u32>().ok().filter(|v| f.cts.contains_key(v)) else {
        return fail(
            500,
            format!("Configuration file 'nodes/?/lxc/{id}.conf' does not exist"),
        );
    };
    if f.concurrent_writes > 0 {
        f.concurrent_writes -= 1;
        if let Some(c) = f.cts.get_mut(&vmid) {
            c.version += 1;
        }
    }
    let c = f.cts.get_mut(&vmid).expect("checked");
    let mut errors = serde_json::Map::new();
    let num = |k: &str, lo: f64, hi: f64, errors: &mut serde_json::Map<String, Value>| {
        let v = p.get(k)?;
        match v.parse::<f64>() {
            Ok(x) if x >= lo && x <= hi => Some(x),
            _ => {
                errors.insert(
                    k.into(),
                    Value::String(format!("value must be in {lo}..{hi}")),
                );
                None
            }
        }
    };
    let cores = num("cores", 1.0, 8192.0, &mut errors);
    let cpulimit = num("cpulimit", 0.0, 8192.0, &mut errors);
    let memory = num("memory", 16.0, 1e9, &mut errors);
    if !errors.is_empty() {
        return reply(
            400,
            Value::Null,
            Some("Parameter verification failed.".into()),
            Some(Value::Object(errors)),
        );
    }
    if let Some(l) = &c.lock {
        return fail(500, format!("CT is locked ({l})"));
    }
    if let Some(d) = p.get("digest")
        && *d != c.digest()
    {
        return fail(
            500,
            "detected modified configuration - file changed by other user? Try again.",
        );
    }
    if let Some(x) = cores {
        c.cores = Some(x as u32);
    }
    if let Some(x) = cpulimit {
        c.cpulimit = (x > 0.0).then_some(x);
    }
    if let Some(x) = memory {
        c.memory = x as u32;
    }
    if let Some(t) = p.get("tags") {
        c.tags = t.clone();
    }
    if let Some(n) = p.get("net0") {
        c.net0 = n.clone();
    }
    c.version += 1;
    ok(Value::Null)
}

fn clone(f: &mut Fake, node: &str, id: &str, p: &HashMap<String, String>) -> Response {
    let Some(source) = id.parse::<u32>().ok().filter(|v| f.cts.contains_key(v)) else {
        return fail(
            500,
            format!("Configuration file 'nodes/{node}/lxc/{id}.conf' does not exist"),
        );
    };
    let Some(newid) = p.get("newid").and_then(|v| v.parse::<u32>().ok()) else {
        return reply(
            400,
            Value::Null,
            Some("Parameter verification failed.".into()),
            Some(json!({"newid": "property is missing and it is not optional"})),
        );
    };
    if let Some(other) = f.cts.get(&newid) {
        return fail(
            500,
            format!("CT {newid} already exists on node '{}'", other.node),
        );
    }
    let src = f.cts.get_mut(&source).expect("checked");
    if let Some(l) = &src.lock {
        return fail(500, format!("CT is locked ({l})"));
    }
    if src.running && p.get("full").is_some_and(|v| v == "1") && !p.contains_key("snapname") {
        return fail(
            500,
            "Full clone of a running container is only possible from a snapshot",
        );
    }
    src.lock = Some("disk".into());
    let mut new = src.clone();
    new.name = p
        .get("hostname")
        .cloned()
        .unwrap_or_else(|| format!("copy-of-{}", src.name));
    new.description = p.get("description").cloned().unwrap_or_default();
    new.running = false;
    new.lock = Some("create".into());
    new.cpu = 0.0;
    new.mem_used_mib = 0;
    new.version = 1;
    f.cts.insert(newid, new);
    let node = node.to_string();
    ok(Value::String(f.upid(
        &node,
        "vzclone",
        source,
        Some(Effect::Clone { source, newid }),
    )))
}

fn task_status(f: &mut Fake, upid: &str) -> Response {
    let Some(t) = f.tasks.get_mut(upid) else {
        return reply(
            400,
            Value::Null,
            Some("Parameter verification failed.".into()),
            Some(json!({"upid": "no such task"})),
        );
    };
    t.polls += 1;
    if t.finished.is_none() && !t.hang && t.polls > t.done_after {
        let outcome = match &t.fail {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        };
        t.finished = Some(outcome.clone());
        if let Some(e) = t.effect.take() {
            f.finish(e, outcome.is_ok());
        }
    }
    let t = &f.tasks[upid];
    match &t.finished {
        None => ok(json!({"status": "running", "upid": upid})),
        Some(Ok(())) => ok(json!({"status": "stopped", "exitstatus": "OK", "upid": upid})),
        Some(Err(e)) => ok(json!({"status": "stopped", "exitstatus": e, "upid": upid})),
    }
}
