//! One connection of the test endpoint: chain → (name, policies, command), then the
//! command's reply frames (protocol doc §1.4, §4.1, §5).

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::endpoint::{Handled, Outcome, Shared, SubEvent, Subscriber, World};
use super::vmmd;
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
    if let Command::StatsSubscribe = req.command {
        return subscribe(shared, tls, req.name).await;
    }
    let mut create_config = None;
    if let Command::UnikernelCreate { config } | Command::UnikernelForceCreate { config } =
        &req.command
    {
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
        if take_hang(&shared) {
            shared.record(req.name, cmd, Outcome::Hung);
            // Silent until the client leaves (or the endpoint drops us).
            let mut buf = [0u8; 256];
            while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
            return;
        }
        create_config = Some(config);
    }
    // The TLS endpoint re-asserts the chain's policies before albatrossd commands.
    learn_policies(&shared, &req);
    let payload = match (&req.command, create_config) {
        (_, Some(config)) => {
            let force = matches!(req.command, Command::UnikernelForceCreate { .. });
            create(&shared, &req.name, config, force)
        }
        (Command::UnikernelInfo, _) => info(&shared.lock(), &req.name),
        (Command::UnikernelGet { level }, _) => get(&shared.lock(), &req.name, *level),
        (Command::UnikernelDestroy, _) => destroy(&shared, &req.name),
        (Command::PolicyInfo, _) => vmmd::policy_info(&shared.lock(), &req.name),
        (Command::BlockAdd { size }, _) => {
            match vmmd::add_block(&mut shared.lock(), &req.name, *size) {
                Ok(()) => Payload::Success(Success::String("added block device".to_string())),
                Err(e) => Payload::Failure(e),
            }
        }
        (other, None) => Payload::Failure(format!(
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

fn take_hang(shared: &Shared) -> bool {
    let mut w = shared.lock();
    let hang = w.hang_creates > 0;
    w.hang_creates = w.hang_creates.saturating_sub(1);
    hang
}

/// `policy add` for each intermediate, for commands that go to albatrossd.
fn learn_policies(shared: &Shared, req: &Request) {
    let to_vmmd = !matches!(
        req.command,
        Command::StatsSubscribe | Command::ConsoleSubscribe { .. } | Command::ConsoleListInactive
    );
    if to_vmmd {
        vmmd::learn_policies(&mut shared.lock(), &req.policies);
    }
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
    let mut silent = false;
    while ok {
        tokio::select! {
            ev = rx.recv(), if !silent => match ev {
                Some(SubEvent::Frame(f)) => {
                    ok = wr.write_all(&f).await.is_ok() && wr.flush().await.is_ok();
                }
                Some(SubEvent::Silence) => silent = true,
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
    vmmd::destroy(&mut w, name)
}

fn create(shared: &Shared, name: &Name, config: UnikernelConfig, force: bool) -> Payload {
    if name.label.is_none() {
        return Payload::Failure("create: path used instead of name".to_string());
    }
    let hosted = shared.hosted(name, config, shared.now() + shared.boot_delay);
    let mut w = shared.lock();
    shared.advance(&mut w);
    vmmd::create(&mut w, name, hosted, force)
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
