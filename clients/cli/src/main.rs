//! `layerlens`: the command-line client of layerlensd (CONTRACT.md). `main` parses
//! flags and maps errors to exit status 1 with one line on stderr (a closed stdout is
//! not an error: status 0, nothing printed); the commands live in `commands`, `.npy`
//! handling in `layerlens_client::npy`, `layerlens open` and printed figure paths in
//! `open`, figure formats in `figure`, stdout in `output` and Ctrl-C in `interrupt`.

use clap::Parser;
use std::process::ExitCode;

mod attribution;
mod bench;
mod commands;
mod figure;
mod generate;
mod inspect;
mod interrupt;
mod open;
mod output;
mod shape;
mod text;
mod training;

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
        // `| head` has read all it wanted; like grep and ripgrep, that is success.
        Err(error) if output::is_stdout_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the chain of contexts, outermost first.
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("layerlens: {message}");
            ExitCode::FAILURE
        }
    }
}
