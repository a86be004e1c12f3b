//! The runledger collector: the program that writes the ledger and answers questions from it.
//!
//! Three layers, each importing only those below it:
//! - the ledger ([`runledger_ledger`], its own crate): schema and migrations, storage, the merge
//!   of node records, rollups, the row types;
//! - the daemon ([`daemon`]): `collector serve`, which receives MUNGE-signed batches
//!   ([`runledger_record::Batch`]) over TCP, authenticates them, merges them into the ledger and
//!   acknowledges each only after its transaction committed, and the local socket users ask
//!   through;
//! - the questions ([`questions`]): `collector query`, `export`, `parse`, `audit`, charts.
//!
//! [`cli`] holds every command-line definition and runs the command; [`failure`] is how any of
//! them fails or prints; [`sys`] holds the few
//! system calls the daemon needs, through `nix` (the crate has no `unsafe` of its own). Flushing
//! a compute node's outbox is the node side's job (`runledger-epilog --flush`); the collector
//! does not depend on the epilog.

#![deny(unsafe_code)]

pub mod cli;
pub mod daemon;
pub mod failure;
pub mod mail;
pub mod questions;
pub mod seff;
pub mod sys;
