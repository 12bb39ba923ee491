//! `manufacturer-sim`: run simulated manufacturers, or print their books. The command line lives
//! in the library (`manufacturer_sim::cli`) so that tests can host it in a child process.

/// See the workspace's Cargo.toml for why this allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    manufacturer_sim::cli::main()
}
