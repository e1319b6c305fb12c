//! `layerlens`: the command-line client of layerlensd (CONTRACT.md). `main` parses
//! flags and maps errors to exit status 1 with one line on stderr; the commands live
//! in `commands`, `.npy` handling in `npy`,
//! `layerlens open` and printed figure paths in `open`.

use clap::Parser;
use std::process::ExitCode;

mod attribution;
mod commands;
mod generate;
mod inspect;
mod npy;
mod open;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("layerlens: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the chain of contexts, outermost first.
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("layerlens: {message}");
            ExitCode::FAILURE
        }
    }
}
