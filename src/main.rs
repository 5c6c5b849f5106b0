//! The `seqwatch` binary: parse the command line, hand over to `app`, map errors to exit codes.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = seqwatch::cli::Cli::parse();
    match seqwatch::app::main(cli) {
        Ok(code) => code,
        // A closed pipe (`seqwatch explain | head`) is the reader's choice, not a failure.
        Err(err) if err.chain().any(is_broken_pipe) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    e.downcast_ref::<std::io::Error>().map(|e| e.kind()) == pipe
        || e.downcast_ref::<serde_json::Error>()
            .and_then(|e| e.io_error_kind())
            == pipe
}
