//! The daemon, `collector serve`: the one writer of the ledger.
//!
//! Epilogs send MUNGE-signed batches over TCP ([`serve`]: one reader thread per connection, one
//! writer thread that merges them into the ledger in group commits and acknowledges each only
//! after its transaction committed). [`auth`] decides whom to believe (MUNGE credential, uid,
//! the node a request may speak for: [`binding`]); refusals are counted in the ledger
//! ([`runledger_ledger::rejections`]). Users who may not read the ledger file ask through the
//! local socket ([`local`]) and see only their own jobs; the answers are the questions'
//! ([`crate::questions`]). Prometheus scrapes [`metrics`] (`[collector] metrics`).

pub mod auth;
pub mod binding;
pub mod local;
pub mod metrics;
pub mod query_socket;
pub mod serve;
pub mod slots;
pub mod stats;
