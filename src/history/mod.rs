//! The metrics history (`[history] path = "..."`): every sample, group evaluation
//! and decision in an embedded SQLite database, written off the hot path, kept raw
//! for `raw_retention` and as 5-minute min/mean/max aggregates for `retention`.
//!
//! * [`writer`]: engine outputs → rows ([`writer::Feed`]), a bounded queue, and the
//!   one writer thread (batches, maintenance).
//! * [`store`]: the file: lock, integrity check, schema version, roll-up, retention.
//! * [`query`]: reading a group's series and decisions back (API, `history export`).
//! * [`forecast`]: the engine's forecaster over a stored series, with an interval.
//!
//! A group's demand is what `simulate --trace` replays: the group average CPU share
//! × the instances that had a fresh sample × their vCPUs, in vCPUs.

pub mod forecast;
pub mod query;
pub mod store;
pub mod writer;

pub use store::{Row, Store};
pub use writer::{Feed, Recorder, Writer};
