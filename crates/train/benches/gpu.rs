//! One binary for `scripts/gpu_check.sh`, whose bundle must travel in 64 MiB: each CUDA build
//! links LLVM (about 30 MB compressed), so the three benches and the CLI share one.
//!
//! `gpu train_step ARGS…`, `gpu loss ARGS…`, `gpu knn ARGS…` run those benches with their own
//! flags (`benches/train_step.rs`, `../loss/benches/loss.rs`, `benches/knn.rs`); `gpu triplet
//! ARGS…` runs the `triplet` command line.

#[path = "knn.rs"]
mod knn;
#[path = "../../loss/benches/loss.rs"]
mod loss;
#[path = "train_step.rs"]
mod train_step;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "train_step" => train_step::main(),
        "loss" => loss::main(),
        "knn" => knn::main(),
        "triplet" => {
            let cli = triplet_train::cli::Cli::parse_from(std::env::args().skip(1));
            if let Err(error) = triplet_train::run(cli) {
                eprintln!("error: {error:#}");
                return std::process::ExitCode::FAILURE;
            }
        }
        other => {
            eprintln!("gpu: unknown mode `{other}`; expected train_step, loss, knn or triplet");
            return std::process::ExitCode::from(2);
        }
    }
    std::process::ExitCode::SUCCESS
}
