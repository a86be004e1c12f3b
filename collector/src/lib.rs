//! The runledger collector: the one program that writes the ledger.
//!
//! Epilogs send MUNGE-signed batches of node records ([`runledger_record::Batch`]) to
//! `collector serve` ([`serve`]), which authenticates them ([`auth`]), merges them into SQLite
//! ([`merge`], schema in [`db`]) and acknowledges each only after its transaction committed.
//! `collector query` ([`query`]) answers admins, sacct-style, from the same file; [`cli`] is the
//! command line and [`timefmt`] the time formats it reads and prints. Refused requests are counted
//! by reason in the ledger ([`rejections`]). Users who may not read the ledger file ask the daemon
//! through its local socket and see only their own jobs ([`local`]); `collector audit` ([`audit`])
//! looks for lost records; `collector flush` ([`flush`]) drains a compute node's epilog outbox.

pub mod analytics;
pub mod audit;
pub mod auth;
pub mod binding;
pub mod cli;
pub mod db;
pub mod export;
pub mod flush;
pub mod html_report;
pub mod local;
pub mod merge;
pub mod parse;
pub mod plot;
pub mod plot_usage;
pub mod query;
pub mod rejections;
pub mod rollup;
#[doc(hidden)]
pub mod sample;
pub mod serve;
pub mod store;
#[doc(hidden)]
pub mod synth;
pub mod sys;
pub mod timefmt;
