//! `triplet serve` under load, beside `triplet embed`'s offline rate on the same images and
//! model: requests/s and p50/p99 latency of `/embed` and `/search` at 1, 8 and 64 concurrent
//! clients, each a closed loop (send, wait for the answer, send the next) for a fixed time, on
//! loopback. docs/BENCHMARKS.md has the command and the table.
//!
//! ```text
//! cargo bench -p triplet-train --bench serve_load -- --checkpoint RUN [--seconds 10]
//!     [--clients 1,8,64] [--copies 20]
//! ```
//!
//! The images are the fixture's 120 PNGs (`datasets/fashion-mnist-small/applications`),
//! copied `--copies` times into a folder: `triplet embed` reads that folder, the index is built
//! from it, and the clients send its files in turn.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn triplet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_triplet"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let Some(checkpoint) = arg("--checkpoint") else {
        eprintln!(
            "usage: cargo bench -p triplet-train --bench serve_load -- --checkpoint RUN \
             [--seconds 10] [--clients 1,8,64] [--copies 20]"
        );
        return;
    };
    let seconds: f64 = arg("--seconds").map_or(10.0, |s| s.parse().unwrap());
    let copies: usize = arg("--copies").map_or(20, |s| s.parse().unwrap());
    let clients: Vec<usize> = arg("--clients")
        .unwrap_or_else(|| "1,8,64".into())
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/fashion-mnist-small/applications/images");
    let work = tempfile::tempdir().unwrap();
    let images = work.path().join("images");
    let mut files: Vec<PathBuf> = Vec::new();
    for class in std::fs::read_dir(&fixture).unwrap() {
        let class = class.unwrap();
        let to = images.join(class.file_name());
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(class.path()).unwrap() {
            let f = f.unwrap();
            for c in 0..copies {
                let target = to.join(format!("{c}-{}", f.file_name().to_string_lossy()));
                std::fs::copy(f.path(), &target).unwrap();
                files.push(target);
            }
        }
    }
    files.sort();
    let bodies: Arc<Vec<Vec<u8>>> =
        Arc::new(files.iter().map(|f| std::fs::read(f).unwrap()).collect());

    // Offline: `triplet embed` of the folder, best of three.
    let mut offline = 0f64;
    for _ in 0..3 {
        let out = work.path().join("embedded");
        let started = Instant::now();
        let status = triplet()
            .args(["embed", "--checkpoint", &checkpoint, "--data"])
            .arg(&images)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        offline = offline.max(files.len() as f64 / started.elapsed().as_secs_f64());
    }
    let index = work.path().join("index");
    let status = triplet()
        .args(["index", "build", "--checkpoint", &checkpoint, "--data"])
        .arg(&images)
        .arg("--out")
        .arg(&index)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let mut server = triplet()
        .args(["serve", "--addr", "127.0.0.1:0", "--index"])
        .arg(&index)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("on http://").nth(1) {
            break format!("http://{}", rest.split_whitespace().next().unwrap());
        }
    };
    println!(
        "{} images, offline `triplet embed`: {offline:.0} images/s (best of 3)",
        files.len()
    );
    println!("| endpoint | clients | requests/s | vs offline embed | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for endpoint in ["embed", "search?k=10"] {
        for &c in &clients {
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            let threads: Vec<_> = (0..c)
                .map(|t| {
                    let (url, bodies) = (format!("{url}/{endpoint}"), Arc::clone(&bodies));
                    std::thread::spawn(move || {
                        let agent: ureq::Agent = ureq::Agent::config_builder()
                            .http_status_as_error(false)
                            .build()
                            .into();
                        let mut latencies = Vec::new();
                        let mut i = t * 7919;
                        while Instant::now() < until {
                            let body = &bodies[i % bodies.len()];
                            let started = Instant::now();
                            let mut r = agent.post(&url).send(&body[..]).unwrap();
                            let _ = r.body_mut().read_to_vec().unwrap();
                            assert_eq!(r.status(), 200);
                            latencies.push(started.elapsed().as_secs_f64() * 1e3);
                            i += 1;
                        }
                        latencies
                    })
                })
                .collect();
            let started = Instant::now();
            let mut all: Vec<f64> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            let elapsed = started.elapsed().as_secs_f64();
            all.sort_by(f64::total_cmp);
            let rate = all.len() as f64 / elapsed;
            println!(
                "| /{endpoint} | {c} | {rate:.0} | {:.2}× | {:.2} | {:.2} |",
                rate / offline,
                percentile(&all, 0.5),
                percentile(&all, 0.99)
            );
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
}
