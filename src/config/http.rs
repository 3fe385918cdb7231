//! `[http]`: the status API and metrics endpoint. Off unless `listen` is set; with
//! `listen`, `api_keys_file` is required (the API can pause and scale groups).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    /// Where the API listens; `None` (the default) disables it.
    pub listen: Option<SocketAddr>,
    /// One API key per line (`# comments`; optional `name key` to name the client
    /// in the audit log). Re-read on SIGHUP.
    pub api_keys_file: Option<PathBuf>,
    /// Requests per minute per client address (token bucket; bursts up to this).
    pub rate_limit_per_minute: u32,
    /// Loopback clients skip the rate limit (not authentication).
    pub localhost_bypass: bool,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Recent decisions and evaluations kept in memory for `/v1/decisions`.
    pub decisions_kept: usize,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            listen: None,
            api_keys_file: None,
            rate_limit_per_minute: 120,
            localhost_bypass: false,
            max_body_bytes: 16 * 1024,
            decisions_kept: 1000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    listen: Option<String>,
    api_keys_file: Option<PathBuf>,
    rate_limit_per_minute: Option<u32>,
    localhost_bypass: Option<bool>,
    max_body_bytes: Option<usize>,
    decisions_kept: Option<usize>,
}

/// Parse `[http]`; every problem names its key.
pub(super) fn http(v: Option<toml::Value>, base: &Path, problems: &mut Vec<String>) -> Http {
    let d = Http::default();
    let Some(v) = v else { return d };
    let f = match HttpFile::deserialize(v) {
        Ok(f) => f,
        Err(e) => {
            problems.push(super::de_error("http", &e));
            return d;
        }
    };
    let listen = f.listen.and_then(|s| match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!(
                "http.listen: {s:?} is not ip:port (for example \"127.0.0.1:9464\")"
            ));
            None
        }
    });
    let api_keys_file = f
        .api_keys_file
        .map(|p| if p.is_absolute() { p } else { base.join(p) });
    match (&listen, &api_keys_file) {
        (Some(_), None) => problems.push(
            "http.api_keys_file: required when http.listen is set (the API can pause and scale groups)"
                .into(),
        ),
        (_, Some(p)) => {
            if let Err(e) = std::fs::metadata(p) {
                problems.push(format!("http.api_keys_file: {}: {e}", p.display()));
            }
        }
        (None, None) => {}
    }
    let rate = f.rate_limit_per_minute.unwrap_or(d.rate_limit_per_minute);
    if !(1..=1_000_000).contains(&rate) {
        problems.push(format!(
            "http.rate_limit_per_minute: {rate} is out of range (1..=1000000)"
        ));
    }
    let body = f.max_body_bytes.unwrap_or(d.max_body_bytes);
    if !(64..=1 << 20).contains(&body) {
        problems.push(format!(
            "http.max_body_bytes: {body} is out of range (64..=1048576)"
        ));
    }
    let kept = f.decisions_kept.unwrap_or(d.decisions_kept);
    if !(1..=100_000).contains(&kept) {
        problems.push(format!(
            "http.decisions_kept: {kept} is out of range (1..=100000)"
        ));
    }
    Http {
        listen,
        api_keys_file,
        rate_limit_per_minute: rate,
        localhost_bypass: f.localhost_bypass.unwrap_or(false),
        max_body_bytes: body,
        decisions_kept: kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Http, Vec<String>) {
        let mut problems = Vec::new();
        let v: toml::Table = text.parse().unwrap();
        let h = http(
            v.get("http").cloned(),
            Path::new("/nonexistent"),
            &mut problems,
        );
        (h, problems)
    }

    #[test]
    fn off_by_default_and_problems_name_their_key() {
        assert_eq!(parse("").0, Http::default());
        let (_, p) = parse("[http]\nlisten = \"localhost\"\n");
        assert!(p.iter().any(|p| p.starts_with("http.listen:")), "{p:?}");
        let (_, p) = parse("[http]\nlisten = \"127.0.0.1:9464\"\n");
        assert!(
            p.iter()
                .any(|p| p.starts_with("http.api_keys_file: required")),
            "{p:?}"
        );
        let (_, p) = parse("[http]\nrate_limit_per_minute = 0\nmax_body_bytes = 1\n");
        assert!(
            p.iter()
                .any(|p| p.starts_with("http.rate_limit_per_minute"))
        );
        assert!(p.iter().any(|p| p.starts_with("http.max_body_bytes")));
        let (_, p) = parse("[http]\nlistne = \"x\"\n");
        assert!(
            p.iter().any(|p| p.contains("unknown field `listne`")),
            "{p:?}"
        );
    }
}
