//! Named kill points for the resume tests: a build made for the tests (cargo feature
//! `kill-points`, which the crate's own dev-dependency on itself turns on, so `cargo test`
//! builds the binary with it and `cargo build`, `cargo run` and `cargo install` without)
//! started with `TRIPLET_KILL_AT=NAME` (or `NAME:N`) kills itself with SIGKILL the first (or
//! N-th) time it reaches [`point`]`(NAME)`, so a test can interrupt a run in every phase
//! (mid-step, while a checkpoint is written, during validation, the final save, evaluation,
//! plots) as a real `kill -9` would, at an exact place instead of a random moment. Other builds
//! ignore the variable: the points compile to nothing ([`ENABLED`] is a constant).
//!
//! The points, in the order a run meets them: `step` (after the backward pass, before the
//! optimiser step), `checkpoint-files` (a checkpoint's model written into its temporary
//! folder), `write:NAME` (any atomic write of a file named NAME, its bytes written but not yet
//! renamed into place: `write:latest`, `write:best`, `write:model.bpk`, …), `checkpoint-saved`
//! (a checkpoint complete, before it is named best), `validation` (embedded and scored, before
//! its record), `eval` (the final evaluation scored, before its record) and `plots` (the curves
//! written, before the PCA picture).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether this build has the kill points (feature `kill-points`: builds made for the tests).
pub const ENABLED: bool = cfg!(feature = "kill-points");

/// The kill point asked for: its name and the hit that kills.
fn target() -> Option<&'static (String, u64)> {
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let spec = std::env::var("TRIPLET_KILL_AT").ok()?;
            Some(match spec.rsplit_once(':') {
                Some((name, n)) if n.parse::<u64>().is_ok() => {
                    (name.to_owned(), n.parse().unwrap_or(1))
                }
                _ => (spec, 1),
            })
        })
        .as_ref()
}

/// Marks the kill point `name`: see the module docs. Does nothing in builds not made for the
/// tests or when `TRIPLET_KILL_AT` names another point.
pub fn point(name: &str) {
    if !ENABLED {
        return;
    }
    let Some((wanted, at)) = target() else {
        return;
    };
    if wanted != name {
        return;
    }
    static HITS: AtomicU64 = AtomicU64::new(0);
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == *at {
        kill_self();
    }
}

/// SIGKILL to this process (no destructor, flush or unwinding runs, as with `kill -9`); an
/// abort where `kill` cannot be started.
fn kill_self() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    // The signal is delivered asynchronously; never go on past the point meanwhile.
    std::thread::sleep(std::time::Duration::from_secs(5));
    std::process::abort()
}
