//! `layerlensd`: parse the configuration, set up logging, run the server, map the
//! outcome to an exit code. Everything else lives in the library modules.

use clap::Parser;
use std::process::ExitCode;

mod config;
mod convert;
mod error;
mod registry;
mod server;
mod services;
mod store;

fn main() -> ExitCode {
    let flags = config::Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LAYERLENS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = config::Config::from_flags(flags).and_then(|config| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(server::run(config))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("layerlensd: {error:#}");
            ExitCode::FAILURE
        }
    }
}
