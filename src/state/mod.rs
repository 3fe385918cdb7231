//! State on disk shared by the albatross loop, the Proxmox loop and history: small
//! JSON files written atomically, and the lock that keeps one daemon per state
//! directory.

pub mod file;
pub mod lock;

pub use file::StateError;
pub use lock::StateLock;
