//! Made-up node records for tests, benches and examples: never part of an installed program.
//!
//! - [`sample::Sample`]: one job as the plugin and epilog would describe it, with its fields
//!   chosen by the test (the tests, the load generator, the query bench).
//! - [`synth::Synth`]: a year of realistic made-up jobs, deterministic for a seed and an end time
//!   (the ledger generator `collector/examples/gen.rs`, bench/analytics, bench/layers-identical),
//!   and [`synth::fixture_batches`], the schema-migration tests' ledger.
//!
//! - [`timeline`]: made-up usage series, as the plugin's sampler sends them (`Sample::timeline`,
//!   `Synth::timelines`).
//!
//! It depends on the record model only, so every layer's tests can use it.

#![deny(unsafe_code)]

pub mod sample;
pub mod synth;
pub mod timeline;

pub use sample::Sample;
pub use synth::{Rng, Synth};
