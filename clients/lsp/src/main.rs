//! `layerlens-lsp`: the language server binary. It speaks LSP over stdin/stdout, so
//! everything it logs goes to stderr; all the work happens in `layerlens_lsp::run`.

fn main() -> std::process::ExitCode {
    match layerlens_lsp::run_stdio() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("layerlens-lsp: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
