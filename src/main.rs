//! The binary only parses the command line; everything else is the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    lbasedb_proxy::cli::main()
}
