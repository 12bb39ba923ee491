//! `distributor`: the central distributor server. See `server::cli` for the command line.

fn main() -> std::process::ExitCode {
    server::cli::main()
}
