//! `runledger-mail`: see [`runledger_collector::mail`].

fn main() {
    std::process::exit(runledger_collector::mail::main());
}
