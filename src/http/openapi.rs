//! `GET /openapi.json`: an OpenAPI 3.1 description of every endpoint, written by
//! hand (small, and the tests check it lists every route).

use serde_json::{Value, json};

fn op(summary: &str, auth: bool, responses: &[(&str, &str)]) -> Value {
    let mut r = serde_json::Map::new();
    for (code, what) in responses {
        r.insert((*code).into(), json!({"description": what}));
    }
    if auth {
        r.insert("401".into(), json!({"description": "missing or invalid API key", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
    }
    r.insert(
        "429".into(),
        json!({"description": "rate limited (Retry-After says when to retry)"}),
    );
    let mut o = json!({"summary": summary, "responses": r});
    if !auth {
        o["security"] = json!([]);
    }
    o
}

fn name_param() -> Value {
    json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}, "description": "group name (its original primary, e.g. alice:web)"}])
}

/// The document.
pub fn document() -> Value {
    let mut scale = op(
        "Hold the group at a target count (within min..=max_instances); audited in the decision log",
        true,
        &[
            ("200", "accepted; outputs say what the engine did"),
            ("400", "bad body"),
            ("404", "unknown group"),
            ("413", "body too large"),
            ("422", "target out of range"),
        ],
    );
    scale["parameters"] = name_param();
    scale["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["target"], "properties": {"target": {"type": "integer", "minimum": 0}}, "additionalProperties": false}}}});
    let mut pause = op(
        "Recommend-only: decisions are computed and explained, not carried out",
        true,
        &[("200", "paused"), ("404", "unknown group")],
    );
    pause["parameters"] = name_param();
    let mut resume = op(
        "Back to automatic scaling (clears pause and manual target)",
        true,
        &[("200", "resumed"), ("404", "unknown group")],
    );
    resume["parameters"] = name_param();
    let mut group = op(
        "One group: members with CPU % and sample age, counters, cooldowns, budget, owned clones, pending action",
        true,
        &[("200", "the group"), ("404", "unknown group")],
    );
    group["parameters"] = name_param();
    let mut decisions = op(
        "Recent decisions, failures and the why-not of recent evaluations (in-memory ring, optionally the JSONL log's tail)",
        true,
        &[("200", "items, oldest first"), ("400", "bad query")],
    );
    decisions["parameters"] = json!([
        {"name": "group", "in": "query", "schema": {"type": "string"}},
        {"name": "since", "in": "query", "schema": {"type": "integer"}, "description": "engine time in ms (t_ms) since the daemon started"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 100, "maximum": 1000}},
        {"name": "log", "in": "query", "schema": {"type": "boolean"}, "description": "also read the tail of the decision log file"}
    ]);
    let id_param = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "approval id, as listed by GET /v1/approvals"}]);
    let verdict = |what: &str| {
        let mut o = op(
            what,
            true,
            &[
                (
                    "200",
                    "decided; `approval` is the entry (state, decided_by, outcome)",
                ),
                ("404", "unknown approval id"),
                ("409", "already approved, rejected or expired"),
                ("503", "the loop holding the decision is not running"),
            ],
        );
        o["parameters"] = id_param.clone();
        o
    };
    let approve = verdict(
        "Approve a pending decision: the engine's rules are checked again now (group not paused, instance still there, current bounds), then the normal actuator executes it (outcome `executing`) or it is answered as failed (outcome says why). Logged as `approved` with the key's id",
    );
    let reject = verdict(
        "Reject a pending decision: not executed; the engine treats it as a failed action (backoff). Logged as `rejected` with the key's id",
    );
    let mut container = op(
        "One [[lxc]] container by name (e.g. `lxc:ct101`) or vmid, as of the last poll",
        true,
        &[
            ("200", "t_ms, polled_at, container"),
            (
                "404",
                "unknown container, or no [[lxc]] configured (proxmox_off)",
            ),
            ("503", "not polled successfully yet"),
        ],
    );
    container["parameters"] = json!([{"name": "key", "in": "path", "required": true, "schema": {"type": "string"}, "description": "the container's name or vmid"}]);
    let container_op = |summary: &str| {
        let mut o = op(
            summary,
            true,
            &[
                ("200", "container, outputs"),
                ("400", "bad body (scale)"),
                ("404", "unknown container, or no [[lxc]] configured"),
                (
                    "409",
                    "a resize-only container has no clone group (resize_only)",
                ),
                (
                    "422",
                    "target outside min_instances..=max_instances (scale)",
                ),
                ("503", "not polled yet, or the Proxmox loop stopped"),
            ],
        );
        o["parameters"] = container["parameters"].clone();
        o
    };
    let container_pause =
        container_op("Pause a container's clone group: recommend-only, as for groups");
    let container_resume =
        container_op("Resume a container's clone group (clears pause and manual target)");
    let mut container_scale =
        container_op("Hold a container's clone group at {\"target\": N} instances");
    container_scale["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["target"], "properties": {"target": {"type": "integer", "minimum": 0}}}}}});
    let (history, forecast) = history_ops();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "albatross-autoscale", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "required": ["status", "code", "message"], "properties": {"status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}}}}}}
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/health": {"get": op("Liveness", false, &[("200", "the process serves requests")])},
            "/ready": {"get": op("Readiness: config loaded, engine running, a stats stream up (with albatross endpoints)", false, &[("200", "ready"), ("503", "not ready; the body says why")])},
            "/version": {"get": op("Version and git revision", false, &[("200", "version")])},
            "/openapi.json": {"get": op("This document", false, &[("200", "OpenAPI 3.1")])},
            "/metrics": {"get": op("Prometheus metrics (OpenMetrics text)", true, &[("200", "exposition")])},
            "/v1/config": {"get": op("The effective configuration, secrets redacted", true, &[("200", "config")])},
            "/v1/groups": {"get": op("Every group's status", true, &[("200", "status")])},
            "/v1/groups/{name}": {"get": group},
            "/v1/groups/{name}/pause": {"post": pause},
            "/v1/groups/{name}/resume": {"post": resume},
            "/v1/groups/{name}/scale": {"post": scale},
            "/v1/containers": {"get": op("Every [[lxc]] container as of the last Proxmox poll: vmid, name, mode, state, node, size (cores, cpulimit, memory_mib), cpu_percent, memory_used_mib, cost_per_hour; `vertical` (bounds in force, active schedule windows, budget left, why_not) and `horizontal` (the clone group, shaped as in /v1/groups)", true, &[("200", "t_ms, polled_at, containers"), ("404", "no [[lxc]] configured (proxmox_off)"), ("503", "not polled successfully yet")])},
            "/v1/containers/{key}": {"get": container},
            "/v1/containers/{key}/pause": {"post": container_pause},
            "/v1/containers/{key}/resume": {"post": container_resume},
            "/v1/containers/{key}/scale": {"post": container_scale},
            "/v1/decisions": {"get": decisions},
            "/v1/approvals": {"get": op("Decisions waiting for approval (require_approval): `items` pending (id, group, instance, action, emergency, reason, inputs, created_at, expires_at), `recent` the last decided ones (state approved, rejected or expired; decided_by, decided_at, outcome)", true, &[("200", "count, items, recent")])},
            "/v1/approvals/{id}/approve": {"post": approve},
            "/v1/approvals/{id}/reject": {"post": reject},
            "/v1/groups/{name}/history": {"get": history},
            "/v1/groups/{name}/forecast": {"get": forecast},
        }
    })
}

/// The `[history]` views: stored demand and its forecast.
fn history_ops() -> (Value, Value) {
    let time = "RFC 3339 (2026-11-23T10:00:00Z), now, or a duration before now (-1h, 2d)";
    let mut history = op(
        "A group's recorded demand (vCPUs: average CPU share x fresh instances x vCPUs) with min/mean/max, CPU % and instances per step, and its decisions in the range",
        true,
        &[
            ("200", "points, oldest first"),
            ("400", "bad query"),
            (
                "404",
                "history off ([history] path unset) or nothing recorded for the group",
            ),
            ("422", "more than 10000 points: use a larger step"),
            ("503", "the history file cannot be read"),
        ],
    );
    let mut params = name_param();
    if let Some(p) = params.as_array_mut() {
        p.push(json!({"name": "since", "in": "query", "schema": {"type": "string", "default": "-24h"}, "description": time}));
        p.push(json!({"name": "until", "in": "query", "schema": {"type": "string", "default": "now"}, "description": time}));
        p.push(json!({"name": "step", "in": "query", "schema": {"type": "string"}, "description": "raw (every evaluation), or a duration: below 5m reads raw rows (kept for raw_retention), 5m and above the 5-minute aggregates (kept for retention). Default: raw for at most 6 hours within raw_retention, else 5m"}));
    }
    history["parameters"] = params;
    let mut forecast = op(
        "The engine's Holt forecaster over the stored demand: points up to the horizon with a prediction interval (+/- the 95th percentile of recent absolute errors at each lead) and the measured recent error",
        true,
        &[
            ("200", "forecast points"),
            ("400", "bad query"),
            (
                "404",
                "history off, or nothing recorded for the group in the window",
            ),
            ("503", "the history file cannot be read"),
        ],
    );
    let mut params = name_param();
    if let Some(p) = params.as_array_mut() {
        p.push(json!({"name": "horizon", "in": "query", "schema": {"type": "string", "default": "1h"}, "description": "how far ahead (at most 1000 steps)"}));
        p.push(json!({"name": "step", "in": "query", "schema": {"type": "string", "default": "5m"}, "description": "spacing of the history and of the forecast points"}));
        p.push(json!({"name": "since", "in": "query", "schema": {"type": "string", "default": "-7d"}, "description": format!("history the forecaster learns from: {time}")}));
    }
    forecast["parameters"] = params;
    (history, forecast)
}
