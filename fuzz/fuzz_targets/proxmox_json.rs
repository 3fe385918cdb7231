//! Proxmox API answers through the client's decoder, `client::decode_response`
//! (what every call runs on the status and body it got back): the body as each
//! response type the client asks for (`/cluster/resources`, an LXC config, a task
//! status, a UPID, `/cluster/nextid`, and the untyped answer of a config update),
//! with a success status and with the first byte picking an error status (the
//! error message is built from `message`/`errors`). What decodes is then used the
//! way the controller does.
#![no_main]

use albatross_autoscale::proxmox::client::{ProxmoxError, decode_response, next_id_of};
use albatross_autoscale::proxmox::types::{LxcConfig, Resource, TaskStatus, upid_node};
use http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_error(e: &ProxmoxError) {
    let _ = e.to_string();
    let _ = e.status();
    let _ = e.is_node_failure();
    let _ = e.is_digest_conflict();
}

fn decode<T: serde::de::DeserializeOwned>(status: StatusCode, body: &[u8]) -> Option<T> {
    match decode_response::<T>(Method::GET, "/fuzz", status, body) {
        Ok(v) => Some(v),
        Err(e) => {
            check_error(&e);
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    // An error status: 400..=599 (and the odd 1xx/3xx), chosen by the first byte.
    let codes = [
        400, 401, 403, 404, 500, 501, 502, 503, 595, 596, 599, 100, 304,
    ];
    let err = StatusCode::from_u16(codes[usize::from(pick) % codes.len()]).expect("valid");
    let _ = decode::<Value>(err, body);

    let ok = StatusCode::OK;
    if let Some(rs) = decode::<Vec<Resource>>(ok, body) {
        for r in &rs {
            let _ = (r.running(), r.has_tag("albatross-autoscale"));
        }
    }
    let _ = decode::<LxcConfig>(ok, body);
    if let Some(t) = decode::<TaskStatus>(ok, body) {
        let _ = t.outcome();
    }
    if let Some(upid) = decode::<String>(ok, body) {
        let _ = upid_node(&upid);
    }
    if let Some(v) = decode::<Value>(ok, body) {
        match next_id_of(&v) {
            Ok(_) => {}
            Err(e) => check_error(&e),
        }
    }
});
