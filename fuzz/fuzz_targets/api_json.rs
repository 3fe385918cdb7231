//! The HTTP API's request inputs. The only JSON body is `POST
//! /v1/groups/{name}/scale` (`{"target": <count>}`; pause, resume, approve and
//! reject take none): any bytes go through `routes::scale_target`, the handler's
//! decoding, then `routes::check_target`, its range check. The same bytes, as text,
//! also go through the query parsers of `/v1/groups/{name}/history` and `/forecast`
//! (`since`/`until` times, `step`).
#![no_main]

use albatross_autoscale::history::query::{Step, parse_time};
use albatross_autoscale::http::routes::{check_target, scale_target};
use libfuzzer_sys::fuzz_target;

/// 2026-12-05T00:00:00Z.
const NOW_MS: i64 = 1_796_428_800_000;

fuzz_target!(|data: &[u8]| {
    // Bounds from the first two bytes, as a group's min/max_instances would be.
    let (min, max) = match data {
        [a, b, ..] => (u32::from(*a % 8), u32::from(*b % 16)),
        _ => (1, 4),
    };
    if let Ok(target) = scale_target(data) {
        let in_range = min <= target && target <= max;
        assert_eq!(check_target(target, min, max).is_ok(), in_range);
        assert!(check_target(target, 0, u32::MAX).is_ok());
        // What decoded re-encodes to a body that decodes to the same target.
        let again = scale_target(format!("{{\"target\":{target}}}").as_bytes());
        assert_eq!(again.ok(), Some(target));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_time(text, NOW_MS);
        if let Ok(step) = Step::parse(text) {
            if let Step::Every(ms) = step {
                assert!(ms >= 10, "step {ms} ms accepted");
            }
            let _ = step.label();
        }
    }
});
