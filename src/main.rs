//! The `seqwatch` binary: parse the command line, hand over to `app`, map errors to exit codes.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = seqwatch::cli::Cli::parse();
    match seqwatch::app::main(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
