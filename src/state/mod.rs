//! State on disk shared by the albatross loop, the Proxmox loop and history: small
//! JSON files written atomically, the lock that keeps one daemon per state
//! directory, and the primaries' images.

pub mod file;
pub mod images;
pub mod lock;

pub use file::StateError;
pub use images::ImageStore;
pub use lock::StateLock;
