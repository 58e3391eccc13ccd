//! `triplet train` end to end, as a user runs it: real PNG folders with broken files in them,
//! every user mistake the issue lists, a SIGKILL in the middle of a run followed by `--resume`,
//! and the same run on two backends.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::prelude::*;
use triplet_model::{EmbeddingModelConfig, SmallCnnConfig};

fn triplet() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_triplet"));
    cmd.env_remove("RUST_BACKTRACE");
    cmd
}

fn run(args: &[&str]) -> Output {
    triplet().args(args).output().expect("the binary runs")
}

/// `triplet train --config CONFIG --data DATA --out OUT EXTRA…`
fn train(config: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    run(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A tiny image of class `class`: a bright bar whose position depends on the class, plus noise.
fn pattern(class: usize, seed: usize, size: usize) -> Vec<u8> {
    (0..size * size)
        .map(|i| {
            let (y, x) = (i / size, i % size);
            let bar = if (x + class * 3) % size < 3 || (y * (class + 1)) % size < 2 {
                200
            } else {
                30
            };
            let noise = (i * 7 + seed * 13 + class * 31) % 23;
            (bar + noise) as u8
        })
        .collect()
}

fn png(path: &Path, class: usize, seed: usize) {
    let size = 12;
    image::GrayImage::from_raw(size as u32, size as u32, pattern(class, seed, size))
        .unwrap()
        .save(path)
        .unwrap();
}

/// 4 classes × 10 PNGs; class `a` also holds a corrupt file, a truncated PNG and a text file;
/// `empty/` has no image.
fn image_folder(root: &Path) -> (PathBuf, PathBuf) {
    for (c, name) in ["a", "b", "c", "d"].iter().enumerate() {
        let dir = root.join(name);
        fs::create_dir_all(&dir).unwrap();
        for i in 0..10 {
            png(&dir.join(format!("{i}.png")), c, i);
        }
    }
    let corrupt = root.join("a/corrupt.png");
    fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
    let full = fs::read(root.join("a/0.png")).unwrap();
    let truncated = root.join("a/truncated.png");
    fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    fs::write(root.join("a/notes.txt"), "not an image").unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    (corrupt, truncated)
}

/// Raw IDX files `train-images-idx3-ubyte` / `train-labels-idx1-ubyte`: `classes × per_class`
/// images of 8×8.
fn idx_folder(root: &Path, classes: usize, per_class: usize) {
    fs::create_dir_all(root).unwrap();
    let n = classes * per_class;
    let mut images = vec![0, 0, 8, 3];
    for v in [n as u32, 8, 8] {
        images.extend(v.to_be_bytes());
    }
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    for i in 0..n {
        let class = i % classes;
        images.extend(pattern(class, i, 8));
        labels.push(class as u8);
    }
    fs::write(root.join("train-images-idx3-ubyte"), images).unwrap();
    fs::write(root.join("train-labels-idx1-ubyte"), labels).unwrap();
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("run.toml");
    fs::write(&path, body).unwrap();
    path
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Embeddings of a fixed input by the model saved in `out`.
fn embeddings(out: &Path) -> Vec<f32> {
    let device = Device::flex();
    let model = EmbeddingModelConfig::new()
        .with_backbone(SmallCnnConfig::new().with_in_channels(1).into())
        .init(&device)
        .try_load_file(out.join("model.bpk"))
        .expect("the saved model loads");
    let input: Vec<f32> = (0..4 * 64)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(input, [4, 1, 8, 8]), &device);
    model
        .valid()
        .forward(x)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn trains_on_a_folder_and_skips_broken_files_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("images");
    let (corrupt, truncated) = image_folder(&data);
    let out = tmp.path().join("run");
    let config = write_config(tmp.path(), "[data]\nsize = [12, 12]\nchannels = 1\n");
    let result = train(&config, &data, &out, &["--epochs", "3"]);
    let (stdout, stderr) = (text(&result.stdout), text(&result.stderr));
    assert!(
        result.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for bad in [&corrupt, &truncated] {
        let name = bad.display().to_string();
        assert_eq!(
            stdout.matches(&name).count(),
            1,
            "{name} reported once:\n{stdout}"
        );
    }
    assert!(stdout.contains("notes.txt"), "{stdout}");
    assert!(stdout.contains("`empty` has no images"), "{stdout}");
    // Classes a, b train; c, d are held out (the last 40 %). Listing counts the broken PNGs.
    assert!(
        stdout.contains("training on 22 images of 2 classes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("evaluating on 20 images of 2 classes"),
        "{stdout}"
    );
    assert!(stdout.contains("P@1"), "{stdout}");
    let records = metrics(&out);
    let epochs: Vec<_> = records.iter().filter(|r| r["kind"] == "epoch").collect();
    assert_eq!(epochs.len(), 3);
    let skipped: u64 = epochs
        .iter()
        .map(|r| r["skipped_images"].as_u64().unwrap())
        .sum();
    assert!(
        skipped >= 1,
        "the broken files were drawn and skipped: {epochs:?}"
    );
    let steps: Vec<_> = records.iter().filter(|r| r["kind"] == "step").collect();
    assert!(
        steps
            .iter()
            .all(|r| r["loss"].as_f64().is_some_and(f64::is_finite))
    );
    let eval = records
        .iter()
        .find(|r| r["kind"] == "eval")
        .expect("an eval record");
    let p1 = eval["precision_at_1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p1));
    assert!(out.join("model.bpk").is_file());
    assert!(out.join("config.toml").is_file());
    assert!(out.join("checkpoints/latest").is_file());
}

/// Each mistake: a non-zero exit, one `error:` line naming the problem, no panic.
#[test]
fn user_mistakes_get_one_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("idx");
    idx_folder(&data, 3, 10);
    let one_class = tmp.path().join("one");
    fs::create_dir_all(one_class.join("only")).unwrap();
    png(&one_class.join("only/0.png"), 0, 0);
    png(&one_class.join("only/1.png"), 0, 1);
    let d = data.to_str().unwrap();
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let cfg = |name: &str, body: &str| {
        let p = tmp.path().join(name);
        fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let wrong_type = cfg("wrong_type.toml", "[optimizer]\nlr = \"fast\"\n");
    let unknown = cfg("unknown.toml", "[optimizer]\nlearning_rate = 0.1\n");
    let negative = cfg("negative.toml", "[optimizer]\nlr = -1.0\n");
    let broken = cfg("broken.toml", "[optimizer\nlr = 1\n");
    let k_one = cfg("k_one.toml", "[sampler]\nk = 1\n");
    let p_big = cfg(
        "p_big.toml",
        "[sampler]\np = 9\nk = 2\n[data]\nsplit = \"none\"\n",
    );
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--data", "/no/such/folder", "--out", o],
            vec!["/no/such/folder", "does not exist"],
        ),
        (
            vec!["--data", d, "--out", o, "--backend", "tpu"],
            vec!["unknown backend `tpu`", "flex"],
        ),
        (
            vec!["--config", &wrong_type, "--data", d, "--out", o],
            vec!["wrong_type.toml", "lr", "invalid type"],
        ),
        (
            vec!["--config", &unknown, "--data", d, "--out", o],
            vec!["unknown.toml", "unknown field `learning_rate`"],
        ),
        (
            vec!["--config", &negative, "--data", d, "--out", o],
            vec!["negative.toml", "optimizer.lr", "-1"],
        ),
        (
            vec!["--config", &broken, "--data", d, "--out", o],
            vec!["broken.toml", "line 1"],
        ),
        (
            vec!["--config", "/no/such.toml", "--data", d, "--out", o],
            vec!["cannot read config /no/such.toml"],
        ),
        (
            vec!["--config", &k_one, "--data", d, "--out", o],
            vec!["sampler.k", "at least 2"],
        ),
        (
            vec!["--config", &p_big, "--data", d, "--out", o],
            vec!["P = 9", "only 3 classes"],
        ),
        (
            vec!["--data", d, "--out", o, "--resume"],
            vec!["nothing to resume"],
        ),
        (
            vec!["--data", one_class.to_str().unwrap(), "--out", o],
            vec!["1 usable class", "at least 2"],
        ),
        (
            vec!["--data", d, "--out", o, "--epochs", "0"],
            vec!["train.epochs", "at least 1"],
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["train"];
        full.extend(&args);
        let result = run(&full);
        let stderr = text(&result.stderr);
        assert!(!result.status.success(), "{args:?} should fail");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{args:?}: `{needle}` missing in: {stderr}"
            );
        }
    }
    assert!(
        !out.join("checkpoints").exists(),
        "no failed start left a checkpoint"
    );

    // A finished run is not overwritten by accident.
    let ok = run(&["train", "--data", d, "--out", o, "--epochs", "1"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let again = run(&["train", "--data", d, "--out", o, "--epochs", "1"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already holds a run"),
        "{}",
        text(&again.stderr)
    );
    let with_config = run(&["train", "--config", &negative, "--out", o, "--resume"]);
    assert!(text(&with_config.stderr).contains("--config cannot be combined with --resume"));
}

const RESUME_CONFIG: &str = "\
[data]
split = \"none\"
workers = 2
[sampler]
p = 2
k = 4
[augment]
random_resized_crop = true
horizontal_flip = true
[train]
epochs = 40
checkpoint_every_steps = 1
seed = 7
";

#[test]
fn a_run_killed_with_sigkill_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("idx");
    idx_folder(&data, 4, 20); // 80 images, 10 steps per epoch, 400 steps
    let config = write_config(tmp.path(), RESUME_CONFIG);
    let args = |out: &Path| {
        vec![
            "train".to_owned(),
            "--config".into(),
            config.display().to_string(),
            "--data".into(),
            data.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let straight = tmp.path().join("straight");
    let result = triplet().args(args(&straight)).output().unwrap();
    assert!(result.status.success(), "{}", text(&result.stderr));

    let killed = tmp.path().join("killed");
    let mut child = triplet()
        .args(args(&killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let step_of_latest = |out: &Path| -> u64 {
        fs::read_to_string(out.join("checkpoints/latest"))
            .ok()
            .and_then(|name| {
                name.trim()
                    .strip_prefix("step-")
                    .and_then(|s| s.parse().ok())
            })
            .unwrap_or(0)
    };
    while step_of_latest(&killed) < 45 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(started.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed, not finished");
    let at_kill = step_of_latest(&killed);
    assert!(at_kill < 400, "killed mid-run, at step {at_kill}");

    let mut resumed_args = args(&killed);
    resumed_args.push("--resume".into());
    resumed_args.retain(|a| a != "--config" && *a != config.display().to_string());
    let resumed = triplet().args(&resumed_args).output().unwrap();
    let stdout = text(&resumed.stdout);
    assert!(
        resumed.status.success(),
        "{stdout}\n{}",
        text(&resumed.stderr)
    );
    assert!(stdout.contains("resuming from"), "{stdout}");

    assert_eq!(
        embeddings(&straight),
        embeddings(&killed),
        "same weights after resume"
    );
    let steps: Vec<u64> = metrics(&killed)
        .iter()
        .filter(|r| r["kind"] == "step")
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(
        steps,
        (1..=400).collect::<Vec<_>>(),
        "each step logged once"
    );
}

/// The same run on flex, ndarray and wgpu (Mesa's software Vulkan in CI: about a minute of
/// kernel compilation) ends with the same weights up to float tolerance: weights are drawn on
/// the host, and data and augmentation do not depend on the device.
#[test]
fn backends_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("idx");
    idx_folder(&data, 4, 4);
    let config = write_config(
        tmp.path(),
        "[data]\nsplit = \"none\"\nworkers = 1\n[sampler]\np = 2\nk = 4\n[train]\nepochs = 2\n",
    );
    let run_on = |backend: &str| {
        let out = tmp.path().join(backend);
        let result = train(&config, &data, &out, &["--backend", backend]);
        assert!(
            result.status.success(),
            "{backend}: {}",
            text(&result.stderr)
        );
        embeddings(&out)
    };
    let flex = run_on("flex");
    for backend in ["ndarray", "wgpu"] {
        let other = run_on(backend);
        let worst = flex
            .iter()
            .zip(&other)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-3,
            "flex and {backend} differ by {worst} after 4 steps"
        );
    }
}

/// Every optimiser, schedule and the clipping option train (the loss stays finite and the
/// weights move), on the tiny IDX data.
#[test]
fn every_optimizer_and_schedule_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("idx");
    idx_folder(&data, 4, 8);
    let mut embedded = Vec::new();
    for (i, section) in [
        "[optimizer]\nname = \"adam\"\nweight_decay = 0.0001\n[schedule]\nname = \"constant\"",
        "[optimizer]\nname = \"adamw\"\ngrad_clip_norm = 1.0\n[schedule]\nname = \"cosine\"\nwarmup_steps = 2",
        "[optimizer]\nname = \"sgd\"\nlr = 0.05\nmomentum = 0.9\n[schedule]\nname = \"step\"\nstep_epochs = 1\ngamma = 0.5",
    ]
    .iter()
    .enumerate()
    {
        let config = tmp.path().join(format!("opt{i}.toml"));
        fs::write(
            &config,
            format!("{section}\n[data]\nsplit = \"none\"\n[sampler]\np = 2\nk = 4\n[train]\nepochs = 2\n"),
        )
        .unwrap();
        let out = tmp.path().join(format!("run{i}"));
        let result = train(&config, &data, &out, &[]);
        assert!(result.status.success(), "{section}: {}", text(&result.stderr));
        let records = metrics(&out);
        let lrs: Vec<f64> = records
            .iter()
            .filter(|r| r["kind"] == "step")
            .map(|r| {
                assert!(r["loss"].as_f64().is_some_and(f64::is_finite), "{section}: {r}");
                r["lr"].as_f64().unwrap()
            })
            .collect();
        assert_eq!(lrs.len(), 8, "{section}");
        if section.contains("cosine") {
            assert!(lrs[0] < lrs[1] && lrs[7] < lrs[2], "warm-up then decay: {lrs:?}");
        }
        if section.contains("step_epochs") {
            assert_eq!((lrs[0], lrs[4]), (0.05, 0.025), "{lrs:?}");
        }
        embedded.push(embeddings(&out));
    }
    assert_ne!(embedded[0], embedded[1]);
    assert_ne!(embedded[1], embedded[2]);
}

/// `triplet train … | head -1`: a closed stdout neither crashes nor stops the run.
#[test]
fn a_closed_stdout_does_not_stop_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("idx");
    idx_folder(&data, 4, 4);
    let config = write_config(
        tmp.path(),
        "[data]\nsplit = \"none\"\n[sampler]\np = 2\nk = 4\n",
    );
    let out = tmp.path().join("run");
    let mut child = triplet()
        .args(["train", "--config", config.to_str().unwrap(), "--data"])
        .args([data.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before the first line
    let result = child.wait_with_output().unwrap();
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert!(text(&result.stderr).is_empty(), "{}", text(&result.stderr));
    assert!(out.join("model.bpk").is_file());
}

/// A CSV list (`path,label`, paths relative to the CSV) trains like a folder.
#[test]
fn trains_from_a_csv_list() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("pics")).unwrap();
    let mut csv = String::from("path,label\n");
    for i in 0..24 {
        let class = i % 4;
        png(&tmp.path().join(format!("pics/{i}.png")), class, i);
        csv.push_str(&format!("pics/{i}.png,kind{class}\n"));
    }
    let list = tmp.path().join("list.csv");
    fs::write(&list, csv).unwrap();
    let config = write_config(tmp.path(), "[data]\nsize = [12, 12]\n[train]\nepochs = 1\n");
    let out = tmp.path().join("run");
    let result = train(&config, &list, &out, &[]);
    let stdout = text(&result.stdout);
    assert!(
        result.status.success(),
        "{stdout}\n{}",
        text(&result.stderr)
    );
    // kind0 and kind1 train, kind2 and kind3 (the last 40 %) are held out.
    assert!(
        stdout.contains("training on 12 images of 2 classes"),
        "{stdout}"
    );
    assert!(stdout.contains("input 3×12×12"), "{stdout}");
    assert!(stdout.contains("unseen classes kind2, kind3"), "{stdout}");
}
