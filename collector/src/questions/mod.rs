//! The questions: everything that reads the ledger to answer an admin or a user.
//!
//! [`jobs`] (`query jobs`, `query job`), [`query`] (the ledger reads behind them, plus summary, usage, events, errors and
//! efficiency), [`analytics`] (running the manager questions: summary, modules, who-used,
//! co-usage, throughput, utilization), [`audit`] (lost records), [`export`] (Parquet, CSV,
//! JSON Lines), [`parse`] (log rules), charts ([`plot`], [`plot_usage`]) and the time formats
//! they read and print ([`timefmt`]); [`scope`] says who may see what. Each takes plain options;
//! their command-line definitions are all in [`crate::cli`] (clap is not used here).

pub mod analytics;
pub mod audit;
pub mod export;
pub mod html_page;
pub mod html_report;
pub mod jobs;
pub mod parse;
pub mod plot;
pub mod plot_usage;
pub mod query;
pub mod scope;
pub mod timefmt;
