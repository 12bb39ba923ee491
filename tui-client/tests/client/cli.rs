//! The `shop` binary's command line. Also makes `cargo test` build the binary, which the tmux
//! end-to-end test can then use.

use std::process::Command;

#[test]
fn help_names_the_server_and_demo_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_shop"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for option in ["--server", "--tls-ca", "--demo", "--data-dir"] {
        assert!(text.contains(option), "{option} missing from:\n{text}");
    }
}

#[test]
fn a_missing_tls_ca_file_is_a_clear_error_before_the_terminal_is_touched() {
    let out = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["--tls-ca", "/nonexistent/ca.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("/nonexistent/ca.pem"), "{text}");
}
