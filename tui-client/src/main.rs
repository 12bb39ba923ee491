//! `shop`: the customer terminal app. Everything lives in the `tui_client` library; see its crate
//! docs for the module map, and [`tui_client::cli`] for the command line.

fn main() -> std::process::ExitCode {
    tui_client::cli::main_from(std::env::args_os())
}
