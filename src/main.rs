//! The `certsync` binary: the Functions custom handler (`certsync serve`, what `host.json` starts) and the
//! administrator's CLI. All logic lives in the library; this only hands the process over to it.

fn main() -> std::process::ExitCode {
    certsync::cli::main()
}
