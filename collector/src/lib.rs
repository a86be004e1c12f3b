//! The runledger collector: the one program that writes the ledger.
//!
//! Epilogs send MUNGE-signed batches of node records ([`runledger_record::Batch`]) to
//! `collector serve` ([`serve`]), which authenticates them ([`auth`]), merges them into SQLite
//! ([`merge`], schema in [`db`]) and acknowledges each only after its transaction committed.
//! `collector query` ([`query`]) answers admins, sacct-style, from the same file.

pub mod db;
pub mod merge;
#[doc(hidden)]
pub mod sample;
