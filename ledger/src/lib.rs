//! The runledger ledger: one SQLite file, what is in it and how node records get there.
//!
//! This crate is the bottom layer of the collector. It knows the schema ([`migrations`]: one
//! entry per version, appended, never edited) and how the file is opened ([`db`]); how repeated
//! values are stored once and blobs encoded ([`store`]); how a node's batch lands in the tables,
//! idempotently and in any order ([`merge`]: the items applied, then each touched job's row
//! recomputed and its verdict taken, [`merge::recompute`]); the per-group sums the manager
//! questions read ([`rollup`]); the refusal counters of the daemon ([`rejections`]); the batches
//! it stored during a burst, to merge later ([`inbox`]); and the shapes rows are read back in
//! ([`rows`]). Two leaves sit below the rest: the varints of the
//! blobs (`varint`) and how node names sort ([`names`]).
//!
//! It imports nothing from the daemon, the questions or the command line: those are the
//! `runledger-collector` crate, on top of this one.

#![deny(unsafe_code)]

pub mod db;
pub mod inbox;
pub mod merge;
pub mod migrations;
pub mod names;
pub mod python;
pub mod rejections;
pub mod retention;
pub mod rollup;
pub mod rows;
pub mod store;
pub mod timeline;
mod varint;
pub mod walls;
