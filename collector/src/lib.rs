//! The runledger collector: the one program that writes the ledger.
//!
//! Epilogs send MUNGE-signed batches of node records ([`runledger_record::Batch`]) to
//! `collector serve` ([`serve`]), which authenticates them ([`auth`]), merges them into SQLite
//! ([`merge`], schema in [`db`]) and acknowledges each only after its transaction committed.
//! `collector query` ([`query`]) answers admins, sacct-style, from the same file; [`cli`] is the
//! command line and [`timefmt`] the time formats it reads and prints.

pub mod analytics;
pub mod auth;
pub mod cli;
pub mod db;
pub mod export;
pub mod merge;
pub mod parse;
pub mod plot;
pub mod plot_usage;
pub mod query;
pub mod rollup;
#[doc(hidden)]
pub mod sample;
pub mod serve;
pub mod store;
#[doc(hidden)]
pub mod synth;
pub mod timefmt;
