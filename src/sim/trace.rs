//! Load traces for the simulator: CSV `time_s,demand` (demand in vCPUs, held until
//! the next row), the project's JSONL recording (demand = CPU time used per second
//! by all instances together), and seeded synthetic generators.

use std::path::{Path, PathBuf};

use super::recording::{self, Record};

/// Demand over time: piecewise constant, row `i` holds from `t_ms[i]` to the next
/// row; the last row lasts one more step.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Row times in milliseconds from the first row (which is 0), increasing.
    pub t_ms: Vec<u64>,
    /// vCPUs of work the service needs.
    pub demand: Vec<f64>,
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Csv {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Recording(#[from] recording::LoadError),
    #[error("{path}: {message}")]
    Empty { path: PathBuf, message: String },
}

impl Trace {
    /// Time from the first row to the end of the last.
    pub fn duration_ms(&self) -> u64 {
        match self.t_ms.len() {
            0 => 0,
            1 => 1_000,
            n => self.t_ms[n - 1] + (self.t_ms[n - 1] - self.t_ms[n - 2]),
        }
    }

    /// The demand at `t` (`cursor` is a row hint that only moves forward).
    pub fn at(&self, t: u64, cursor: &mut usize) -> f64 {
        while *cursor + 1 < self.t_ms.len() && self.t_ms[*cursor + 1] <= t {
            *cursor += 1;
        }
        self.demand.get(*cursor).copied().unwrap_or(0.0)
    }

    /// Greatest common divisor of the row spacings, in ms (1000 for a single row).
    pub fn step_ms(&self) -> u64 {
        self.t_ms
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(0, gcd)
            .max(if self.t_ms.len() < 2 { 1_000 } else { 1 })
    }

    /// How many rows come before `t_ms`.
    pub fn rows_before(&self, t_ms: u64) -> usize {
        self.t_ms.partition_point(|t| *t < t_ms)
    }

    /// The rows before `t_ms` (the training part of `tune`).
    pub fn head(&self, t_ms: u64) -> Trace {
        let n = self.rows_before(t_ms);
        Trace {
            t_ms: self.t_ms[..n].to_vec(),
            demand: self.demand[..n].to_vec(),
        }
    }

    /// The CSV form, as `load` reads it.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("time_s,demand\n");
        for (t, d) in self.t_ms.iter().zip(&self.demand) {
            s.push_str(&format!("{},{d:.4}\n", *t as f64 / 1000.0));
        }
        s
    }
}

/// Greatest common divisor.
pub fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Read a CSV trace (first line `time_s,demand`) or a recording (JSONL or framed).
pub fn load(path: &Path, interval: std::time::Duration) -> Result<Trace, TraceError> {
    let bytes = std::fs::read(path).map_err(|source| TraceError::Read {
        path: path.to_owned(),
        source,
    })?;
    // CSV: a `.csv` name or text whose first line is not JSON; recordings are JSONL
    // (`{` first) or framed binary (not UTF-8 text, as a rule).
    let csv_name = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'));
        let csv_text = first.is_some_and(|l| l.contains(',') && !l.starts_with('{'));
        if csv_name || csv_text {
            return parse_csv(text, path);
        }
    } else if csv_name {
        return Err(TraceError::Csv {
            path: path.to_owned(),
            line: 1,
            message: "not UTF-8 text; a CSV trace starts with the header time_s,demand".into(),
        });
    }
    let framed = recording::FramedOptions {
        interval,
        subscription: None,
    };
    let records = recording::load(path, &framed)?;
    from_records(&records).ok_or_else(|| TraceError::Empty {
        path: path.to_owned(),
        message: "the recording has fewer than two samples of any instance".into(),
    })
}

/// The longest span a CSV trace may cover, in seconds (as `--generate --hours`).
const MAX_SPAN_S: f64 = 366.0 * 86_400.0;

/// Parse CSV text with the header `time_s,demand`.
pub fn parse_csv(text: &str, path: &Path) -> Result<Trace, TraceError> {
    let err = |line: usize, message: String| TraceError::Csv {
        path: path.to_owned(),
        line,
        message,
    };
    let mut rows: Vec<(f64, f64)> = Vec::new();
    let mut header = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        if !header {
            if raw.replace(' ', "") != "time_s,demand" {
                return Err(err(
                    line,
                    format!("expected the header time_s,demand, got {raw:?}"),
                ));
            }
            header = true;
            continue;
        }
        let mut cols = raw.split(',').map(str::trim);
        let (Some(t), Some(d), None) = (cols.next(), cols.next(), cols.next()) else {
            return Err(err(line, format!("expected two columns, got {raw:?}")));
        };
        let t: f64 = t
            .parse()
            .map_err(|_| err(line, format!("time_s {t:?} is not a number")))?;
        let d: f64 = d
            .parse()
            .map_err(|_| err(line, format!("demand {d:?} is not a number")))?;
        if !(t.is_finite() && t >= 0.0) {
            return Err(err(
                line,
                format!("time_s {t} must be a finite number >= 0"),
            ));
        }
        if !(d.is_finite() && d >= 0.0) {
            return Err(err(
                line,
                format!("demand {d} must be a finite number of vCPUs >= 0"),
            ));
        }
        if rows.last().is_some_and(|(p, _)| t <= *p) {
            return Err(err(
                line,
                format!("time_s {t} is not after the previous row"),
            ));
        }
        // The simulator steps through every sample interval of the span.
        if rows.first().is_some_and(|(t0, _)| t - t0 > MAX_SPAN_S) {
            return Err(err(
                line,
                format!(
                    "time_s {t} is more than a year (366 days) after the first row; split the trace"
                ),
            ));
        }
        rows.push((t, d));
    }
    let Some(&(t0, _)) = rows.first() else {
        return Err(TraceError::Empty {
            path: path.to_owned(),
            message: "no rows after the header".into(),
        });
    };
    Ok(Trace {
        t_ms: rows
            .iter()
            .map(|(t, _)| ((t - t0) * 1000.0).round() as u64)
            .collect(),
        demand: rows.iter().map(|(_, d)| *d).collect(),
    })
}

/// Demand from a recording: each instance's CPU time between two of its samples,
/// spread evenly over that interval, summed over instances on the grid of the
/// smallest sample spacing.
pub fn from_records(records: &[Record]) -> Option<Trace> {
    let mut by_vm: std::collections::BTreeMap<String, Vec<&Record>> = Default::default();
    for r in records {
        by_vm.entry(r.vm.to_string()).or_default().push(r);
    }
    // (start, end, vCPUs per ms) segments.
    let mut segs = Vec::new();
    for rs in by_vm.values_mut() {
        rs.sort_by_key(|r| r.t);
        for w in rs.windows(2) {
            let (a, b) = (w[0].t.as_millis(), w[1].t.as_millis());
            if b > a && w[1].cpu_us >= w[0].cpu_us {
                let vcpus = (w[1].cpu_us - w[0].cpu_us) as f64 / 1000.0 / (b - a) as f64;
                segs.push((a, b, vcpus));
            }
        }
    }
    let start = segs.iter().map(|s| s.0).min()?;
    let end = segs.iter().map(|s| s.1).max()?;
    let step = segs.iter().map(|s| s.1 - s.0).fold(0, gcd).max(1);
    let n = usize::try_from((end - start) / step).ok()?;
    let mut demand = vec![0.0; n];
    for (a, b, v) in segs {
        let (i, j) = ((a - start) / step, (b - start) / step);
        for d in &mut demand[i as usize..(j as usize).min(n)] {
            *d += v;
        }
    }
    Some(Trace {
        t_ms: (0..n as u64).map(|i| i * step).collect(),
        demand,
    })
}

/// A synthetic trace shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// A working day: 2 vCPUs at night, a 30-minute rise to 8-9 at 07:00, a
    /// 2-hour fall from 19:00, 5 % noise.
    Diurnal,
    /// 1.5 vCPUs with lone outlier rows (×3) and one real 30-minute surge to 4.
    Spike,
    /// Load alternating between 0.5 and 2.5 vCPUs every 3 minutes.
    Flap,
    /// 0.6 vCPU, a step to 2.6 at 10 minutes, back to 0.6 at 40 minutes (hourly).
    Step,
}

/// SplitMix64: tiny, seedable, identical everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// 0 below 0, 1 above 1, smooth in between.
fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// Generate `hours` of a shape, one row per 10 s.
pub fn generate(shape: Shape, hours: f64, seed: u64) -> Trace {
    const STEP_MS: u64 = 10_000;
    let n = ((hours * 3_600_000.0) / STEP_MS as f64).round().max(1.0) as u64;
    let mut rng = Rng::new(seed);
    // Outlier rows of the spike trace: one every ~20 minutes, at seeded places.
    let mut next_outlier = 60 + rng.next_u64() % 120;
    let mut demand = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t_s = (i * STEP_MS) as f64 / 1000.0;
        let d = match shape {
            Shape::Diurnal => {
                // Office hours: a 30-minute morning rise at 07:00, a midday bump,
                // a 2-hour evening fall from 19:00.
                let h = t_s / 3600.0 % 24.0;
                let day = smoothstep((h - 7.0) / 0.5) * (1.0 - smoothstep((h - 19.0) / 2.0));
                let bump = (std::f64::consts::TAU * (h - 7.0) / 24.0).sin();
                let base = 2.0 + day * (6.0 + bump);
                base * (1.0 + 0.05 * rng.normal())
            }
            Shape::Spike => {
                let surge = (t_s / 3600.0 % 6.0 - 3.0).abs() < 0.25;
                let mut d = if surge { 4.0 } else { 1.5 } * (1.0 + 0.03 * rng.normal());
                if i == next_outlier {
                    d *= 3.0;
                    next_outlier = i + 60 + rng.next_u64() % 120;
                }
                d
            }
            Shape::Flap => {
                let high = (t_s / 180.0) as u64 % 2 == 1;
                if high { 2.5 } else { 0.5 }
            }
            Shape::Step => {
                let m = t_s / 60.0 % 60.0;
                if (10.0..40.0).contains(&m) { 2.6 } else { 0.6 }
            }
        };
        demand.push(d.max(0.0));
    }
    Trace {
        t_ms: (0..n).map(|i| i * STEP_MS).collect(),
        demand,
    }
}

/// The shipped weekly trace (`fixtures/traces/weekly.csv`, printed by
/// `cargo run --example weekly_trace`): 14 days of 5-minute rows from a Monday
/// 00:00. Weekdays: 1.5 vCPUs at night, a 1-hour rise from 08:00 to ~7 (a lunch
/// dip, an afternoon peak), a 3-hour fall from 18:00, Fridays at 85 %. Saturday
/// and Sunday: 1.2 at night, a midday hump to ~3. The second week is 10 % busier
/// (growth); 5 % Gaussian noise per row.
pub fn weekly(seed: u64) -> Trace {
    weekly_days(seed, 14)
}

/// [`weekly`] over `days` days (the weeks after the first at its second week's
/// level); its first 14 days are [`weekly`]'s. `fixtures/traces/month.csv` is 28
/// (`cargo run --example weekly_trace -- 28`).
pub fn weekly_days(seed: u64, days: u64) -> Trace {
    const STEP_S: u64 = 300;
    let level = |t_s: u64| {
        let day = t_s / 86_400;
        let h = (t_s % 86_400) as f64 / 3600.0;
        let growth = if day >= 7 { 1.1 } else { 1.0 };
        let d = if day % 7 < 5 {
            let open = smoothstep(h - 8.0) * (1.0 - smoothstep((h - 18.0) / 3.0));
            let lunch = 0.8 * (-((h - 12.5) / 0.6).powi(2)).exp();
            let afternoon = (std::f64::consts::TAU * (h - 8.0) / 20.0).sin().max(0.0);
            let friday = if day % 7 == 4 { 0.85 } else { 1.0 };
            1.5 + open * (5.0 - lunch + afternoon) * friday
        } else {
            1.2 + 1.8 * (-((h - 14.0) / 3.0).powi(2)).exp()
        };
        d * growth
    };
    let mut rng = Rng::new(seed);
    let n = days * 86_400 / STEP_S;
    Trace {
        t_ms: (0..n).map(|i| i * STEP_S * 1000).collect(),
        demand: (0..n)
            .map(|i| (level(i * STEP_S) * (1.0 + 0.05 * rng.normal())).max(0.0))
            .collect(),
    }
}
