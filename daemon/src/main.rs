//! `layerlensd`: parse the configuration, set up logging, run the server, map the
//! outcome to an exit code. Everything else lives in the library modules.

use clap::Parser;
use std::process::ExitCode;

mod auth;
mod cache;
mod config;
mod convert;
mod error;
mod metrics;
mod model_roots;
mod registry;
mod request_context;
mod resolved;
mod runs;
mod server;
mod services;
mod store;
mod tokenizer;
mod web;

fn main() -> ExitCode {
    let flags = config::Flags::parse();
    if let Some(config::Command::HashToken) = flags.command {
        return hash_token();
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LAYERLENS_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal; logs piped to a file or journald
        // stay plain text that grep finds fields in.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = config::Config::from_flags(flags)
        .and_then(|config| tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(server::run(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("layerlensd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `layerlensd hash-token`: the line for a tokens file, from a token on stdin.
fn hash_token() -> ExitCode {
    let mut token = String::new();
    if let Err(error) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut token) {
        eprintln!("layerlensd: reading the token from stdin: {error}");
        return ExitCode::FAILURE;
    }
    // `echo TOKEN |` adds a newline that is not part of the token.
    let token = token.strip_suffix('\n').map(|rest| rest.strip_suffix('\r').unwrap_or(rest)).unwrap_or(&token);
    if token.is_empty() {
        eprintln!("layerlensd: no token on stdin; e.g. `printf %s \"$TOKEN\" | layerlensd hash-token`");
        return ExitCode::FAILURE;
    }
    println!("{}", auth::hash_token(token));
    ExitCode::SUCCESS
}
