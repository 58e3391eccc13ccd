//! Helpers shared by the integration tests: running the `triplet` binary as a user does, and
//! reading the golden fixtures' JSON arrays. Each test file uses some of them.
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

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A JSON array of numbers as f32.
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A JSON array of numbers as f64.
pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A JSON array of non-negative integers.
pub fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// A JSON array of booleans.
pub fn bools(v: &Value) -> Vec<bool> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_bool().unwrap())
        .collect()
}
