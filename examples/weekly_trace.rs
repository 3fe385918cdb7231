//! Print a shipped weekly trace: 5-minute rows, weekdays against the weekend (see
//! `albatross_autoscale::sim::trace::weekly` for its shape), over 14 days or the
//! days given. Deterministic:
//!
//! ```text
//! cargo run --example weekly_trace > fixtures/traces/weekly.csv
//! cargo run --example weekly_trace -- 28 > fixtures/traces/month.csv
//! ```

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let days = match std::env::args().nth(1).map(|a| a.parse::<u64>()) {
        None => 14,
        Some(Ok(d)) if (1..=366).contains(&d) => d,
        Some(_) => {
            eprintln!("weekly_trace: the argument is a number of days, 1 to 366");
            return ExitCode::from(2);
        }
    };
    let csv = albatross_autoscale::sim::trace::weekly_days(7, days).to_csv();
    match std::io::stdout().lock().write_all(csv.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weekly_trace: {e}");
            ExitCode::FAILURE
        }
    }
}
