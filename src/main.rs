//! The `containd` binary: parses the command line and hands over to the library.

/// Deciding allocates and frees many small, short-lived values per signal (strings, maps,
/// records) across threads; mimalloc's thread-local free lists do that with less CPU than
/// the system allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    containd::cli::main()
}
