//! One connection of the test endpoint: chain → (name, policies, command), then the
//! command's reply frames (protocol doc §1.4, §4.1, §5).

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::endpoint::{Handled, Outcome, Shared, SubEvent, Subscriber, World};
use crate::cert;
use crate::name::Name;
use crate::wire::{
    self, Command, DEFAULT_MAX_FRAME, Frame, FrameDecoder, Header, Message, Payload, Policy,
    Success, UnikernelConfig,
};

/// Largest image accepted (upload or in the certificate), uncompressed or not.
const MAX_IMAGE: usize = DEFAULT_MAX_FRAME;

/// What the endpoint derived from a verified chain.
struct Request {
    name: Name,
    /// `(path, policy)` of every intermediate, root-most first.
    policies: Vec<(Name, Policy)>,
    command: Command,
}

fn kind(cmd: &Command) -> &'static str {
    match cmd {
        Command::ConsoleAdd { .. } => "ConsoleAdd",
        Command::ConsoleSubscribe { .. } => "ConsoleSubscribe",
        Command::ConsoleListInactive => "ConsoleListInactive",
        Command::StatsAdd { .. } => "StatsAdd",
        Command::StatsRemove => "StatsRemove",
        Command::StatsSubscribe => "StatsSubscribe",
        Command::StatsInitial => "StatsInitial",
        Command::UnikernelDestroy => "UnikernelDestroy",
        Command::UnikernelGet { .. } => "UnikernelGet",
        Command::UnikernelRestart { .. } => "UnikernelRestart",
        Command::UnikernelInfo => "UnikernelInfo",
        Command::UnikernelCreate { .. } => "UnikernelCreate",
        Command::UnikernelForceCreate { .. } => "UnikernelForceCreate",
        Command::PolicyInfo => "PolicyInfo",
        Command::PolicyAdd { .. } => "PolicyAdd",
        Command::PolicyRemove => "PolicyRemove",
        Command::BlockInfo => "BlockInfo",
        Command::BlockAdd { .. } => "BlockAdd",
        Command::BlockRemove => "BlockRemove",
        Command::BlockDump { .. } => "BlockDump",
        Command::BlockSet { .. } => "BlockSet",
    }
}

/// albatross' `Vmm_tls.handle`: every failure here means "close without a frame".
fn parse_request(chain: &[CertificateDer<'_>]) -> Result<Request, (Name, String)> {
    let root = Name::default();
    let view = cert::name_from_chain(chain).map_err(|e| (root.clone(), e.to_string()))?;
    let decode = |ext: &[u8], what: &str| match wire::decode_cert_extension(ext) {
        Ok((5, cmd)) => Ok(cmd),
        Ok((v, _)) => Err(format!("{what}: unknown version {v}")),
        Err(e) => Err(format!("{what}: {e}")),
    };
    let mut policies = Vec::new();
    for p in &view.policies {
        match decode(&p.extension, "intermediate").map_err(|e| (root.clone(), e))? {
            Command::PolicyAdd { policy } => policies.push((p.path.clone(), policy)),
            _ => return Err((root, "unexpected wire".to_string())),
        }
    }
    let command = decode(&view.command, "leaf").map_err(|e| (view.name.clone(), e))?;
    // Daemon-internal commands and policy changes are refused in a leaf (§2.3.6).
    if matches!(
        command,
        Command::ConsoleAdd { .. }
            | Command::StatsAdd { .. }
            | Command::StatsRemove
            | Command::StatsInitial
            | Command::PolicyAdd { .. }
            | Command::PolicyRemove
    ) {
        return Err((view.name, format!("unexpected command {}", kind(&command))));
    }
    Ok(Request {
        name: view.name,
        policies,
        command,
    })
}

pub(super) async fn serve(shared: Arc<Shared>, acceptor: TlsAcceptor, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let mut tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            let outcome = Outcome::Refused(format!("handshake: {e}"));
            shared.record(Name::default(), "-".to_string(), outcome);
            return;
        }
    };
    let chain: Vec<CertificateDer<'static>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let req = match parse_request(&chain) {
        Ok(r) => r,
        Err((name, reason)) => {
            shared.record(name, "-".to_string(), Outcome::Refused(reason));
            let _ = tls.shutdown().await;
            return;
        }
    };
    let cmd = kind(&req.command).to_string();
    let payload = match &req.command {
        Command::StatsSubscribe => return subscribe(shared, tls, req.name).await,
        Command::UnikernelInfo => info(&shared.lock(), &req.name),
        Command::UnikernelGet { level } => get(&shared.lock(), &req.name, *level),
        Command::UnikernelDestroy => destroy(&shared, &req.name),
        Command::UnikernelCreate { config } | Command::UnikernelForceCreate { config } => {
            let force = matches!(req.command, Command::UnikernelForceCreate { .. });
            let mut config = (**config).clone();
            // An empty image is uploaded in frames after the handshake (§1.4).
            if config.image.is_empty() {
                match read_upload(&mut tls).await {
                    Ok(image) => config.image = image,
                    Err(reason) => {
                        shared.record(req.name, cmd, Outcome::Refused(reason));
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            }
            create(&shared, &req, config, force)
        }
        other => Payload::Failure(format!(
            "{}: not supported by the test endpoint",
            kind(other)
        )),
    };
    let outcome = match &payload {
        Payload::Failure(m) => Outcome::Failure(m.clone()),
        Payload::Success(Success::String(s)) => Outcome::Success(s.clone()),
        _ => Outcome::Success(String::new()),
    };
    let reply = Message {
        header: Header::new(0, req.name.clone()),
        payload,
    };
    let _ = write(&mut tls, &reply).await;
    let _ = tls.shutdown().await;
    shared.record(req.name, cmd, outcome);
}

async fn write<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message) -> std::io::Result<()> {
    w.write_all(&wire::frame(&wire::encode(msg))).await?;
    w.flush().await
}

/// Frames until the zero-length end marker; their bodies concatenated.
async fn read_upload<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, String> {
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut image = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(f) = dec.next_frame().map_err(|e| format!("upload: {e}"))? {
            match f {
                Frame::End { .. } => return Ok(image),
                Frame::Message { body, .. } => {
                    if image.len() + body.len() > MAX_IMAGE {
                        return Err(format!("upload: image larger than {MAX_IMAGE} bytes"));
                    }
                    image.extend_from_slice(&body);
                }
            }
        }
        let n = r.read(&mut buf).await.map_err(|e| format!("upload: {e}"))?;
        if n == 0 {
            dec.finish().map_err(|e| format!("upload: {e}"))?;
            return Err("upload: stream ended without the end marker".to_string());
        }
        dec.push(&buf[..n]);
    }
}

async fn subscribe(
    shared: Arc<Shared>,
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    name: Name,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, sequence) = {
        let mut w = shared.lock();
        let id = w.next_id;
        w.next_id += 1;
        let sequence = w.sequence;
        w.sequence += 1;
        // One subscriber per exact name: the previous one is closed (§4.1).
        if let Some(old) = w.subscribers.insert(name.clone(), Subscriber { id, tx }) {
            let _ = old.tx.send(SubEvent::Close);
        }
        w.history.push(Handled {
            name: name.clone(),
            command: "StatsSubscribe".to_string(),
            outcome: Outcome::Subscribed,
        });
        (id, sequence)
    };
    let (mut rd, mut wr) = tokio::io::split(tls);
    let hello = Message {
        header: Header::new(sequence, name.clone()),
        payload: Payload::Success(Success::String("subscribed".to_string())),
    };
    let mut ok = write(&mut wr, &hello).await.is_ok();
    let mut buf = [0u8; 256];
    while ok {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(SubEvent::Frame(f)) => {
                    ok = wr.write_all(&f).await.is_ok() && wr.flush().await.is_ok();
                }
                Some(SubEvent::Close) | None => {
                    let bye = Message {
                        header: Header::new(0, name.clone()),
                        payload: Payload::Failure("exception while reading from fd".to_string()),
                    };
                    let _ = write(&mut wr, &bye).await;
                    ok = false;
                }
            },
            // The client never sends after the handshake; EOF or error = it left.
            r = rd.read(&mut buf) => ok = matches!(r, Ok(n) if n > 0),
        }
    }
    {
        let mut w = shared.lock();
        if w.subscribers.get(&name).is_some_and(|s| s.id == id) {
            w.subscribers.remove(&name);
        }
    }
    let _ = wr.shutdown().await;
}

/// §5.2: a label gives 0 or 1 entries with the full name; a path lists everything
/// at or below it with names relative to the path.
fn info(w: &World, name: &Name) -> Payload {
    let list = if name.label.is_some() {
        w.fleet
            .unikernels
            .get(name)
            .map(|h| h.info(name.clone(), name))
            .into_iter()
            .collect()
    } else {
        w.fleet
            .unikernels
            .iter()
            .filter_map(|(full, h)| {
                let rest = full.path.strip_prefix(name.path.as_slice())?;
                Some(h.info(Name::new(rest.to_vec(), full.label.clone()), full))
            })
            .collect()
    };
    Payload::Success(Success::UnikernelInfo(list))
}

/// §5.3: level 0 returns the image uncompressed, level > 0 compressed.
fn get(w: &World, name: &Name, level: i64) -> Payload {
    let Some(h) = w.fleet.unikernels.get(name) else {
        return Payload::Failure("get: no unikernel found".to_string());
    };
    let c = &h.config;
    let (compressed, image) = match (c.compressed, level > 0) {
        (true, false) => match wire::decompress_image(&c.image, MAX_IMAGE) {
            Ok(img) => (false, img),
            Err(e) => return Payload::Failure(format!("get: {e}")),
        },
        (false, true) => (true, wire::compress_image(&c.image)),
        (compressed, _) => (compressed, c.image.clone()),
    };
    Payload::Success(Success::UnikernelImage { compressed, image })
}

fn destroy(shared: &Shared, name: &Name) -> Payload {
    let mut w = shared.lock();
    shared.advance(&mut w);
    match w.fleet.unikernels.remove(name) {
        Some(_) => Payload::Success(Success::String("destroyed unikernel".to_string())),
        None => Payload::Failure("destroy: not found".to_string()),
    }
}

fn create(shared: &Shared, req: &Request, config: UnikernelConfig, force: bool) -> Payload {
    if req.name.label.is_none() {
        return Payload::Failure("create: path used instead of name".to_string());
    }
    let hosted = shared.hosted(&req.name, config, shared.now() + shared.boot_delay);
    let mut w = shared.lock();
    shared.advance(&mut w);
    if !force && w.fleet.unikernels.contains_key(&req.name) {
        return Payload::Failure("Unikernel with same name is already running".to_string());
    }
    if let Some(message) = w.fail_creates.pop_front() {
        return Payload::Failure(message);
    }
    if let Err(message) = check_policy(&w, req, &hosted.config) {
        return Payload::Failure(message);
    }
    w.fleet.unikernels.insert(req.name.clone(), hosted);
    Payload::Success(Success::String("created unikernel".to_string()))
}

/// The policy of the unikernel's own path, as albatross' `check_policy` (count and
/// memory only; CPU ids and bridges are not simulated).
fn check_policy(w: &World, req: &Request, config: &UnikernelConfig) -> Result<(), String> {
    let Some((path, p)) = req
        .policies
        .iter()
        .rev()
        .find(|(p, _)| p.path == req.name.path)
    else {
        return Ok(());
    };
    let (mut running, mut used) = (0i64, 0i64);
    for (n, h) in &w.fleet.unikernels {
        if n.path.starts_with(&path.path) && *n != req.name {
            running += 1;
            used = used.saturating_add(h.config.memory);
        }
    }
    if running + 1 > p.unikernels {
        return Err(format!(
            "maximum amount of unikernels ({}) reached",
            p.unikernels
        ));
    }
    if config.memory > p.memory.saturating_sub(used) {
        return Err(format!(
            "maximum allowed memory ({}, used {used}) would be exceeded (requesting {})",
            p.memory, config.memory
        ));
    }
    Ok(())
}

/// SHA-256 of the uncompressed image, as `info` reports it.
pub(super) fn image_digest(config: &UnikernelConfig) -> Vec<u8> {
    let raw = if config.compressed {
        wire::decompress_image(&config.image, MAX_IMAGE).unwrap_or_else(|_| config.image.clone())
    } else {
        config.image.clone()
    };
    // rustls exposes SHA-256 through its TLS 1.3 suites: no extra crypto crate.
    match rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13() {
        Some(suite) => suite.common.hash_provider.hash(&raw).as_ref().to_vec(),
        None => Vec::new(),
    }
}
