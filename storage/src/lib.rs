//! Sift's storage: the write-ahead log every signal passes through (columnar parts, full-text
//! indexes and retention arrive with the storage engine).
#![warn(missing_docs)]

mod entry;
pub mod wal;

pub use entry::{EntryError, WalEntry};
