//! Thin: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    i2v_mcp::cli::main()
}
