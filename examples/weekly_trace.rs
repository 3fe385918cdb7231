//! Print the shipped weekly trace (`fixtures/traces/weekly.csv`): 14 days at
//! 5-minute rows, weekdays against the weekend (see
//! `albatross_autoscale::sim::trace::weekly` for its shape). Deterministic:
//!
//! ```text
//! cargo run --example weekly_trace > fixtures/traces/weekly.csv
//! ```

use std::io::Write;

fn main() -> std::io::Result<()> {
    let csv = albatross_autoscale::sim::trace::weekly(7).to_csv();
    std::io::stdout().lock().write_all(csv.as_bytes())
}
