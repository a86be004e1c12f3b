//! `collector`: see [`runledger_collector::cli`].

/// `collector serve` allocates and frees every record's strings and maps on several threads at
/// once; mimalloc's thread-local heaps cost less per record there than glibc's arenas
/// (`bench/collector-ingest -b`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(runledger_collector::cli::main());
}
