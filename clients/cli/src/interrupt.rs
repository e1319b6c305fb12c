//! Ctrl-C during the streaming commands (`attribute`, `generate`, `counterfactual`):
//! the call is dropped, which cancels the job on the daemon, the progress bar is
//! cleared by the caller, and the command ends with one line on stderr and status 1.
//!
//! The handler has to be in place before the request goes out. `tokio::signal::ctrl_c()`
//! installs its handler only when its future is first polled, so a SIGINT that came
//! after the request was sent but before that first poll met the default handler and
//! killed the CLI silently. Creating a `Signal` (a `CtrlC` on Windows) installs the
//! handler at once, so `cancel_on_ctrl_c` creates it before it polls the call, and the
//! call's first poll is what sends the request.

use std::future::Future;

/// The error a command ends with when Ctrl-C cancelled its call.
const INTERRUPTED: &str = "interrupted (Ctrl-C); the daemon was told to stop";

/// Runs `call` to its end, or until Ctrl-C, whichever comes first. Ctrl-C drops `call`
/// (which cancels the request on the daemon) and answers an error.
pub async fn cancel_on_ctrl_c<T, E>(call: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    anyhow::Error: From<E>,
{
    let Ok(mut interrupt) = listen_for_ctrl_c() else {
        // Without a handler the default one stays: Ctrl-C kills the process, which
        // closes the connection and so still cancels the job on the daemon.
        return call.await.map_err(anyhow::Error::from);
    };
    tokio::select! {
        answer = call => answer.map_err(anyhow::Error::from),
        _ = interrupt.recv() => Err(anyhow::anyhow!(INTERRUPTED)),
    }
}

/// A SIGINT listener, installed by the time this returns.
#[cfg(unix)]
fn listen_for_ctrl_c() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
}

/// A Ctrl-C listener, installed by the time this returns.
#[cfg(windows)]
fn listen_for_ctrl_c() -> std::io::Result<tokio::signal::windows::CtrlC> {
    tokio::signal::windows::ctrl_c()
}
