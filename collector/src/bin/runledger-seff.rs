//! `runledger-seff`: see [`runledger_collector::seff`].

fn main() {
    std::process::exit(runledger_collector::seff::main());
}
