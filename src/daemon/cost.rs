//! The global cost ceiling spans two loops (the albatross engine task and the
//! Proxmox loop), each with its own pure engine. Each publishes its hourly cost here
//! and reads the other's as an input before it decides.

use std::sync::atomic::{AtomicU64, Ordering};

/// Hourly costs in millionths, one slot per loop.
#[derive(Debug, Default)]
pub struct CostLedger {
    albatross: AtomicU64,
    proxmox: AtomicU64,
}

impl CostLedger {
    pub fn set_albatross(&self, micros: u64) {
        self.albatross.store(micros, Ordering::Relaxed);
    }

    pub fn set_proxmox(&self, micros: u64) {
        self.proxmox.store(micros, Ordering::Relaxed);
    }

    pub fn albatross(&self) -> u64 {
        self.albatross.load(Ordering::Relaxed)
    }

    pub fn proxmox(&self) -> u64 {
        self.proxmox.load(Ordering::Relaxed)
    }
}
