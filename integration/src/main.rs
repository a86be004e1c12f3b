//! `collector`, as the tests of this crate run it (see Cargo.toml).

#![deny(unsafe_code)]

fn main() {
    std::process::exit(runledger_collector::cli::main());
}
