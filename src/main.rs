//! memtap's command line: parse, hand to `app`, map errors to exit codes.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = memtap::app::cli::Cli::parse();
    match memtap::app::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("memtap: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
