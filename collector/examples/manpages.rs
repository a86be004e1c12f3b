//! Writes the man pages of `collector` and of every subcommand (`collector-query.1`,
//! `collector-query-jobs.1`, …) `runledger-seff.1` and `runledger-mail.1` from the clap definitions, so the pages never drift from
//! `--help`. `packaging/build-packages` runs it and ships the pages in the packages.
//!
//! ```text
//! cargo run --release -p runledger-collector --example manpages -- OUT_DIR
//! ```

use clap::CommandFactory;
use runledger_collector::cli::Cli;

fn main() {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: manpages OUT_DIR");
        std::process::exit(2);
    };
    let out = std::path::PathBuf::from(out);
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("manpages: cannot create {}: {e}", out.display());
        std::process::exit(1);
    }
    // generate_to walks the subcommands itself and names each page after its path
    // (collector-query-jobs.1); the built-in `help` subcommands get none.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    if let Err(e) = clap_mangen::generate_to(cmd, &out) {
        eprintln!("manpages: cannot write to {}: {e}", out.display());
        std::process::exit(1);
    }
    // runledger-seff(1) and runledger-mail(1): programs of their own.
    for cmd in [runledger_collector::seff::SeffCli::command(), runledger_collector::mail::MailCli::command()] {
        if let Err(e) = clap_mangen::generate_to(cmd, &out) {
            eprintln!("manpages: cannot write to {}: {e}", out.display());
            std::process::exit(1);
        }
    }
}
