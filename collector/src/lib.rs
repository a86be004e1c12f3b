//! The runledger collector: the program that writes the ledger and answers questions from it.
//!
//! Its layers, each file importing only files below it (no import circles):
//! - the ledger ([`runledger_ledger`], its own crate): schema and migrations, storage, the merge
//!   of node records, rollups, the row types;
//! - [`failure`]: how any command fails or prints;
//! - the questions ([`questions`]): `collector query`, `export`, `report`, `parse`, `audit`,
//!   charts; each takes plain options (no clap);
//! - [`cli`]'s definitions ([`cli::args`], [`cli::questions`]: every clap definition, one
//!   job-filter group, one set of output flags) and [`cli::dispatch`], which hands each question
//!   its options;
//! - the daemon ([`daemon`]): `collector serve`, which receives MUNGE-signed batches
//!   ([`runledger_record::Batch`]) over TCP, authenticates them, merges them into the ledger and
//!   acknowledges each only after its transaction committed, and the local socket users ask
//!   through (it parses their command lines with [`cli::args`]);
//! - `cli/mod.rs`: `main` and `run`, on top.
//!
//! [`sys`] holds the few system calls the daemon needs, through `nix` (the crate has no `unsafe`
//! of its own). Flushing a compute node's outbox is the node side's job (`runledger-epilog
//! --flush`); the collector does not depend on the epilog, not even for its tests (those that
//! need both are in `integration/`).

#![deny(unsafe_code)]

pub mod cli;
pub mod daemon;
pub mod failure;
pub mod mail;
pub mod questions;
pub mod seff;
pub mod sys;
pub mod upkeep;
