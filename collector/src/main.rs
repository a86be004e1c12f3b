//! `collector`: see [`runledger_collector::cli`].

fn main() {
    std::process::exit(runledger_collector::cli::main());
}
