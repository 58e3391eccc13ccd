//! Helpers shared by the integration tests: running the `triplet` binary as a user does, and
//! reading the JSON it writes. Each test file uses some of them.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The `triplet` binary, without a backtrace request or a kill point from the environment.
pub fn triplet() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_triplet"));
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("TRIPLET_KILL_AT");
    cmd
}

/// Runs `triplet ARGS…`.
pub fn run(args: &[&str]) -> Output {
    triplet().args(args).output().expect("the binary runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `triplet ARGS…`, asserts it succeeded, returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let result = run(args);
    let stdout = text(&result.stdout);
    assert!(
        result.status.success(),
        "{args:?}: {stdout}{}",
        text(&result.stderr)
    );
    stdout
}

/// Runs `triplet ARGS…` and asserts it fails with exactly one `error:` line on stderr that
/// contains `expected`, and no panic.
pub fn fails_with_one_line(args: &[&str], expected: &str) {
    let result = run(args);
    let stderr = text(&result.stderr);
    assert!(!result.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line, got {stderr}");
    assert!(
        lines[0].starts_with("error:") && lines[0].contains(expected),
        "{args:?}: expected `{expected}` in {stderr}"
    );
}

/// The larger of two, NaN when either is: `f32::max` drops a NaN (`m.max(NaN) == m`), so a
/// worst difference folded with it would pass a NaN by.
pub fn nan_max(m: f32, v: f32) -> f32 {
    if m.is_nan() || v.is_nan() {
        f32::NAN
    } else {
        m.max(v)
    }
}

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
