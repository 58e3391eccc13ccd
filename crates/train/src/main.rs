//! `triplet`: train and use embedding models from the command line.

use std::process::ExitCode;

use clap::Parser;
use clap::error::{Error, ErrorKind};
use triplet_train::cli::Cli;
use triplet_train::device::Backend;

fn main() -> ExitCode {
    // Before any other thread exists: freed buffers stay for the next training step.
    triplet_train::memory::keep_freed_memory();
    // A panic is a bug (user mistakes are errors): say so in one line, without a backtrace
    // hint, unless RUST_BACKTRACE asks for one.
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(|info| {
            if triplet_train::device::panics_are_quiet() {
                return; // an expected failure, reported as an error by its caller
            }
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    default_device(&cli);
    match triplet_train::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reports a command-line mistake as clap does (exit status 2), but a value clap's parser
/// refused (`--backend tpu`, `--metrics speed`) in one line, as every other mistake: clap's
/// first line already names the flag, the value and why.
fn usage_error(error: &Error) -> ExitCode {
    if matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        let rendered = error.render().to_string();
        eprintln!("{}", rendered.lines().next().unwrap_or("error: bad value"));
        ExitCode::from(2)
    } else {
        error.exit()
    }
}

/// Makes `--backend` Burn's default device too, unless `BURN_DEVICE` already names one.
///
/// Burn creates some tensors on `Device::default()`, which is the first backend compiled in
/// (wgpu in the default build), whatever `--backend` says: the optimiser state it reads back
/// from a checkpoint among them, which then lived on another device than the model, and every
/// resume touched the GPU stack even when training on the CPU. Burn reads `BURN_DEVICE` to
/// choose its default device; it has no other way to set it.
#[allow(unsafe_code)]
fn default_device(cli: &Cli) {
    let Some(backend) = cli.command.backend() else {
        return;
    };
    if backend == Backend::Cuda {
        let data_home = std::env::var_os("XDG_DATA_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/share"))
            });
        let exe = std::env::current_exe().ok();
        if let Some(root) = triplet_train::device::cuda_path_to_set(
            std::env::var_os("CUDA_PATH").as_deref(),
            data_home.as_deref(),
            exe.as_deref().and_then(std::path::Path::parent),
        ) {
            // SAFETY: as for BURN_DEVICE below: no other thread exists yet.
            unsafe { std::env::set_var("CUDA_PATH", root) };
        }
    }
    // Not `backend.device()`: for CUDA that starts the driver, before CUDA_PATH is set.
    if std::env::var_os("BURN_DEVICE").is_some() || !backend.is_compiled() {
        return;
    }
    // SAFETY: `set_var` races with any other thread reading or writing the environment. This
    // runs at the start of `main`, after parsing the command line and before anything else:
    // no other thread exists yet (no Burn backend, rayon pool or loader has been started).
    unsafe { std::env::set_var("BURN_DEVICE", backend.to_string()) };
}
