//! Elasticity metrics after SPEC-RG ("Ready for Rain?", SPEC-RG-2016-01), computed
//! on the simulator's time grid.
//!
//! * supply = instances that exist (booting ones included: they are paid for)
//!   × vCPUs; capacity = instances that have booted × vCPUs.
//! * served = min(demand, capacity); unmet = demand − served.
//! * under-provisioned timeshare = time with unmet > 0 / total time.
//! * under-provisioning accuracy = Σ unmet / Σ demand (time-weighted means).
//! * slack = Σ (supply − served) / Σ supply.
//! * actions = instances created or destroyed; instability = changes of direction
//!   between consecutive actions, both per hour.
//! * time to capacity = length of an under-provisioned episode (from demand first
//!   exceeding capacity until capacity covers it): the longest and the mean.

use serde::Serialize;

/// Demand above capacity by less than this is rounding, not under-provisioning.
const EPS: f64 = 1e-9;

/// The metrics of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub under_provisioned_timeshare: f64,
    pub under_provisioning_accuracy: f64,
    pub slack: f64,
    pub instability_per_hour: f64,
    pub actions_per_hour: f64,
    pub actions: u64,
    pub time_to_capacity_s: f64,
    pub mean_time_to_capacity_s: f64,
    pub mean_instances: f64,
    pub hours: f64,
    /// Instance-hours × `instance_cost_per_hour`, for the whole run.
    pub cost: f64,
    /// `cost` per hour of trace.
    pub cost_per_hour: f64,
    /// Mean absolute forecast error (percentage points of the group average);
    /// `None` unless the policy forecasts.
    pub forecast_error_points: Option<f64>,
    /// Ticks counted high on the forecast alone.
    pub predicted_ticks: Option<u64>,
    /// Lone outliers the anomaly guard replaced.
    pub outliers_filtered: Option<u64>,
    /// Mean over the seasonal refits of their measured error (MAPE over the last
    /// day, percent); `None` without seasonal forecasts or before two days.
    pub forecast_mape_percent: Option<f64>,
    /// Ticks counted high on the seasonal forecast alone (shadow: breaches noted).
    pub seasonal_ticks: Option<u64>,
}

/// Accumulates one run.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    total_ms: u64,
    under_ms: u64,
    demand: f64,
    unmet: f64,
    supply: f64,
    idle: f64,
    instance_ms: f64,
    actions: u64,
    reversals: u64,
    last_dir: i8,
    episode_ms: Option<u64>,
    episodes: Vec<u64>,
}

impl Meter {
    /// One grid step of `dt_ms` with `demand` vCPUs, `supply` vCPUs allocated over
    /// `instances` instances, and `capacity` vCPUs serving.
    pub fn step(&mut self, dt_ms: u64, demand: f64, supply: f64, capacity: f64, instances: u32) {
        let dt = dt_ms as f64;
        let served = demand.min(capacity);
        let unmet = demand - served;
        self.total_ms += dt_ms;
        self.demand += demand * dt;
        self.unmet += unmet * dt;
        self.supply += supply * dt;
        self.idle += (supply - served).max(0.0) * dt;
        self.instance_ms += f64::from(instances) * dt;
        if unmet > EPS {
            self.under_ms += dt_ms;
            *self.episode_ms.get_or_insert(0) += dt_ms;
        } else if let Some(e) = self.episode_ms.take() {
            self.episodes.push(e);
        }
    }

    /// `n` instances created (`up`) or destroyed at once.
    pub fn action(&mut self, up: bool, n: u32) {
        if n == 0 {
            return;
        }
        let dir = if up { 1 } else { -1 };
        if self.last_dir != 0 && self.last_dir != dir {
            self.reversals += 1;
        }
        self.last_dir = dir;
        self.actions += u64::from(n);
    }

    /// The metrics so far, every instance-hour priced at `instance_cost_micros`
    /// (every policy with the group's price, so the column compares them).
    pub fn finish_priced(&self, instance_cost_micros: u64) -> Metrics {
        let mut m = self.finish();
        m.cost_per_hour = m.mean_instances * instance_cost_micros as f64 / 1e6;
        m.cost = m.cost_per_hour * m.hours;
        m
    }

    /// The metrics so far.
    pub fn finish(&self) -> Metrics {
        let hours = self.total_ms as f64 / 3_600_000.0;
        let per_hour = |n: u64| if hours > 0.0 { n as f64 / hours } else { 0.0 };
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let mut episodes = self.episodes.clone();
        episodes.extend(self.episode_ms);
        let max = episodes.iter().copied().max().unwrap_or(0);
        let mean = ratio(episodes.iter().sum::<u64>() as f64, episodes.len() as f64);
        Metrics {
            under_provisioned_timeshare: ratio(self.under_ms as f64, self.total_ms as f64),
            under_provisioning_accuracy: ratio(self.unmet, self.demand),
            slack: ratio(self.idle, self.supply),
            instability_per_hour: per_hour(self.reversals),
            actions_per_hour: per_hour(self.actions),
            actions: self.actions,
            time_to_capacity_s: max as f64 / 1000.0,
            mean_time_to_capacity_s: mean / 1000.0,
            mean_instances: ratio(self.instance_ms, self.total_ms as f64),
            hours,
            cost: 0.0,
            cost_per_hour: 0.0,
            forecast_error_points: None,
            predicted_ticks: None,
            outliers_filtered: None,
            forecast_mape_percent: None,
            seasonal_ticks: None,
        }
    }
}

/// A fixed-width text table, one row per policy.
pub fn table(runs: &[(String, Metrics)]) -> String {
    let mut s = format!(
        "{:<14} {:>8} {:>8} {:>7} {:>9} {:>9} {:>8} {:>9} {:>7} {:>9} {:>9} {:>8}\n",
        "policy",
        "under%",
        "unmet%",
        "slack%",
        "instab/h",
        "actions/h",
        "ttc_max",
        "ttc_mean",
        "inst",
        "cost/h",
        "fc_err",
        "fc_mape"
    );
    for (name, m) in runs {
        let fc = m
            .forecast_error_points
            .map_or("-".to_string(), |e| format!("{e:.2}pt"));
        s.push_str(&format!(
            "{:<14} {:>8.2} {:>8.2} {:>7.1} {:>9.2} {:>9.2} {:>7.0}s {:>8.0}s {:>7.2} {:>9.2} {:>9} {:>8}\n",
            name,
            m.under_provisioned_timeshare * 100.0,
            m.under_provisioning_accuracy * 100.0,
            m.slack * 100.0,
            m.instability_per_hour,
            m.actions_per_hour,
            m.time_to_capacity_s,
            m.mean_time_to_capacity_s,
            m.mean_instances,
            m.cost_per_hour,
            fc,
            m.forecast_mape_percent
                .map_or("-".to_string(), |e| format!("{e:.1}%"))
        ));
    }
    s
}
