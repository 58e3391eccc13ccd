//! `triplet`: train and use embedding models from the command line.

use std::process::ExitCode;

use clap::Parser;
use triplet_train::cli::Cli;

fn main() -> ExitCode {
    // A panic is a bug (user mistakes are errors): say so in one line, without a backtrace
    // hint, unless RUST_BACKTRACE asks for one.
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!("error: internal error{place}: {message}");
        }));
    }
    match triplet_train::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
