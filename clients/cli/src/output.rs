//! Everything the CLI prints on stdout goes through `outln!` (or `write_stdout`), so
//! that a reader that goes away early, as in `layerlens --json summary m | head -c 100`,
//! ends the command quietly with exit status 0 instead of `println!`'s panic ("failed
//! printing to stdout: Broken pipe"). That is ripgrep's behaviour: stop writing, exit 0.
//!
//! A closed pipe comes back as the `StdoutClosed` error, which the commands pass up
//! with `?` like any other, and `main` maps to success. The alternative, resetting
//! SIGPIPE to its default at the start of `main`, was not taken: the process would die
//! of the signal (status 141 in a shell, not 0), it needs `unsafe` and libc, and it
//! would apply to every pipe and socket in the process, the connection to the daemon
//! included, not only to stdout.

use std::io::Write;

/// Prints one line on stdout like `println!`, but answers an error instead of
/// panicking when stdout cannot be written; a closed pipe is `StdoutClosed`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}
pub(crate) use outln;

/// Whoever read stdout has closed it (`| head`). Not a failure: `main` exits with
/// status 0 and prints nothing.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `bytes` to stdout and flushes them, so that a closed pipe is noticed here and
/// not silently at exit.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(error) => Err(anyhow::Error::new(error).context("cannot write to stdout")),
    }
}

/// Whether `error` is, or was caused by, stdout being closed.
pub fn is_stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<StdoutClosed>())
}
