//! `triplet train` end to end, as a user runs it: real PNG folders with broken files in them,
//! every user mistake the issue lists, a SIGKILL in the middle of a run followed by `--resume`,
//! and the same run on two backends.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use burn::module::Module;
use burn::prelude::*;
use common::{fails_with_one_line, ok, read_json, run, text, triplet};
use triplet_model::{EmbeddingModelConfig, SmallCnnConfig};

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
    let model = grey_model()
        .try_load_file(out.join("model.bpk"))
        .expect("the saved model loads");
    fixed_embeddings(&model.valid())
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
    let small_memory = cfg(
        "small_memory.toml",
        "[sampler]\np = 3\nk = 4\n[loss]\nmemory_size = 10\n",
    );
    let memory = cfg(
        "memory.toml",
        "[sampler]\np = 2\nk = 4\n[loss]\nmemory_size = 16\n",
    );
    let huge_memory = cfg("huge_memory.toml", "[loss]\nmemory_size = 100000000\n");
    let swap_memory = cfg(
        "swap_memory.toml",
        "[sampler]\np = 2\nk = 4\n[loss]\nmemory_size = 16\nswap = true\n",
    );
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--config", &small_memory, "--data", d, "--out", o],
            vec!["loss.memory_size = 10", "P×K = 12"],
        ),
        (
            vec!["--config", &huge_memory, "--data", d, "--out", o],
            vec!["loss.memory_size = 100000000", "training images"],
        ),
        (
            vec!["--config", &swap_memory, "--data", d, "--out", o],
            vec!["loss.swap cannot be combined with loss.memory_size"],
        ),
        (
            vec![
                "--config",
                &memory,
                "--data",
                d,
                "--out",
                o,
                "--devices",
                "0,0",
            ],
            vec!["--devices 0,0", "cross-batch memory", "one device"],
        ),
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
    let mut cases = cases;
    if !Path::new("/dev/nvidiactl").exists() {
        // No NVIDIA driver here (CI): a build without `cuda` says so, a build with it says
        // why it cannot start (no libdevice, no driver), in one line either way.
        cases.push((
            vec!["--data", d, "--out", o, "--backend", "cuda"],
            vec!["backend `cuda`"],
        ));
    }
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
            .fold(0.0f32, common::nan_max);
        assert!(
            worst < 1e-3,
            "flex and {backend} differ by {worst} after 4 steps"
        );
    }
    // Evaluation (embedding and the blocked kNN) on wgpu scores the flex run as flex does.
    let eval_on = |backend: &str| {
        let dir = tmp.path().join(format!("eval-{backend}"));
        let result = run(&[
            "eval",
            "--checkpoint",
            tmp.path().join("flex").to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--backend",
            backend,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(result.status.success(), "{}", text(&result.stderr));
        fs::read_to_string(dir.join("metrics.json")).unwrap()
    };
    let (flex, wgpu) = (eval_on("flex"), eval_on("wgpu"));
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    let (flex, wgpu) = (parse(&flex), parse(&wgpu));
    for key in [
        "precision_at_1",
        "recall_at_2",
        "r_precision",
        "mean_average_precision_at_r",
    ] {
        let (a, b) = (flex[key].as_f64().unwrap(), wgpu[key].as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{key}: flex {a}, wgpu {b}");
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

/// Reads a little-endian float32 `.npy` written by `triplet embed`: its shape and values.
fn read_npy(path: &Path) -> ((usize, usize), Vec<f32>) {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    let shape = header.split("'shape': (").nth(1).unwrap();
    let dims: Vec<usize> = shape
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let values = bytes[10 + len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    ((dims[0], dims[1]), values)
}

/// Embeddings of a fixed input by `model` (8×8 grey).
fn fixed_embeddings(model: &triplet_model::EmbeddingModel) -> Vec<f32> {
    let device = Device::flex();
    let input: Vec<f32> = (0..4 * 64)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(input, [4, 1, 8, 8]), &device);
    model.forward(x).into_data().try_into_vec::<f32>().unwrap()
}

fn grey_model() -> triplet_model::EmbeddingModel {
    EmbeddingModelConfig::new()
        .with_backbone(SmallCnnConfig::new().with_in_channels(1).into())
        .init(&Device::flex())
}

/// Trains with `config` (text) on 6 classes × 20 IDX images; returns the data folder, the run
/// folder, the stdout and the `validation` records.
fn train_validated(
    tmp: &Path,
    config: &str,
    extra: &[&str],
) -> (PathBuf, PathBuf, String, Vec<serde_json::Value>) {
    let data = tmp.join("idx");
    idx_folder(&data, 6, 20);
    let config = write_config(tmp, config);
    let out = tmp.join("run");
    let result = train(&config, &data, &out, extra);
    let stdout = text(&result.stdout);
    assert!(result.status.success(), "{stdout}{}", text(&result.stderr));
    let validations = metrics(&out)
        .into_iter()
        .filter(|r| r["kind"] == "validation")
        .collect();
    (data, out, stdout, validations)
}

/// Validation every epoch keeps the best checkpoint by MAP@R; `eval` on the run folder uses it
/// and reproduces its validation numbers; `embed` writes numpy, CSV and projector files in one
/// order; `export` writes safetensors that load back into the same model.
#[test]
fn validation_keeps_the_best_checkpoint_and_eval_embed_export_use_it() {
    let tmp = tempfile::tempdir().unwrap();
    // 6 classes: 4 and 5 are held out (40 %); one validation per epoch.
    let (data, out, stdout, validations) = train_validated(
        tmp.path(),
        "[sampler]\np = 4\nk = 4\n[train]\nepochs = 5\nkeep_checkpoints = 1\n\
         validate_every_epochs = 1\n[optimizer]\nlr = 0.01\n",
        &[],
    );
    assert_eq!(validations.len(), 5, "{stdout}");
    let map = |r: &serde_json::Value| r["mean_average_precision_at_r"].as_f64().unwrap();
    let best = validations
        .iter()
        .reduce(|a, b| if map(b) > map(a) { b } else { a })
        .unwrap();
    let best_step = best["step"].as_u64().unwrap();
    let named = fs::read_to_string(out.join("checkpoints/best")).unwrap();
    assert_eq!(named.trim(), format!("step-{best_step:09}"));
    let best_dir = out.join("checkpoints").join(named.trim());
    assert!(best_dir.join("model.bpk").is_file());
    for png in ["curves.png", "embeddings_pca.png"] {
        let img = image::open(out.join(png)).unwrap();
        assert!(img.width() > 500, "{png}");
    }

    // eval of the run folder = the best checkpoint, on the same held-out classes.
    let eval_dir = tmp.path().join("eval");
    let (d, o, e) = (
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        eval_dir.to_str().unwrap(),
    );
    let stdout = ok(&[
        "eval",
        "--checkpoint",
        o,
        "--data",
        d,
        "--classes",
        "4,5",
        "--out",
        e,
        "--plot",
    ]);
    assert!(stdout.contains("best checkpoint"), "{stdout}");
    assert!(stdout.contains("MAP@R"), "{stdout}");
    let m = read_json(&eval_dir.join("metrics.json"));
    for key in [
        "precision_at_1",
        "r_precision",
        "mean_average_precision_at_r",
        "recall_at_1",
        "recall_at_2",
        "recall_at_4",
        "recall_at_8",
    ] {
        let (a, b) = (m[key].as_f64().unwrap(), best[key].as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{key}: eval {a}, validation {b}");
    }
    assert_eq!(m["queries"], 40);
    assert_eq!(m["mode"], "leave-one-out");
    assert!(eval_dir.join("embeddings_pca.png").is_file());
    assert!(eval_dir.join("curves.png").is_file());

    // The same folder as queries and references: leave-one-out instead (each query would find
    // itself), with a note.
    let stdout = ok(&[
        "eval",
        "--checkpoint",
        o,
        "--data",
        d,
        "--reference",
        d,
        "--out",
        e,
    ]);
    assert!(stdout.contains("same images"), "{stdout}");
    let m = read_json(&eval_dir.join("metrics.json"));
    assert_eq!(m["mode"], "leave-one-out");
    assert_eq!(m["reference"], serde_json::Value::Null);
    // An IDX folder with t10k files: its test images query its training images. Here the test
    // files are copies, so every query has an identical reference, at distance 0.
    for kind in ["images-idx3", "labels-idx1"] {
        fs::copy(
            data.join(format!("train-{kind}-ubyte")),
            data.join(format!("t10k-{kind}-ubyte")),
        )
        .unwrap();
    }
    let stdout = ok(&[
        "eval",
        "--checkpoint",
        o,
        "--data",
        d,
        "--reference",
        d,
        "--out",
        e,
    ]);
    assert!(stdout.contains("t10k test images") && stdout.contains("training images"));
    let m = read_json(&eval_dir.join("metrics.json"));
    assert_eq!(m["mode"], "query-reference");
    assert_eq!(m["queries"], 120);
    assert_eq!(m["precision_at_1"], 1.0);
    assert_eq!(m["distance"], "euclidean");

    // embed: one row per image, the same order in every file.
    let emb = tmp.path().join("emb");
    ok(&[
        "embed",
        "--checkpoint",
        o,
        "--data",
        d,
        "--out",
        emb.to_str().unwrap(),
    ]);
    let ((n, dim), values) = read_npy(&emb.join("embeddings.npy"));
    assert_eq!((n, dim), (120, 64));
    for row in values.chunks_exact(dim) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "L2-normalised: {norm}");
    }
    let labels = fs::read_to_string(emb.join("labels.csv")).unwrap();
    let lines: Vec<&str> = labels.lines().collect();
    assert_eq!(lines[0], "path,label");
    assert_eq!(lines.len(), 121);
    // Image i of the IDX file has class i % 6.
    for (i, line) in lines[1..].iter().enumerate() {
        assert!(line.ends_with(&format!("#{i},{}", i % 6)), "{line}");
    }
    let vectors = fs::read_to_string(emb.join("vectors.tsv")).unwrap();
    let first: Vec<f32> = vectors
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(first, values[..dim]);
    assert_eq!(vectors.lines().count(), 120);
    let metadata = fs::read_to_string(emb.join("metadata.tsv")).unwrap();
    assert_eq!(metadata.lines().next(), Some("label\tpath"));
    assert_eq!(metadata.lines().count(), 121);

    // export: safetensors that load back into the best checkpoint's model.
    let file = tmp.path().join("model.safetensors");
    ok(&["export", "--checkpoint", o, "--out", file.to_str().unwrap()]);
    let bytes = fs::read(&file).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let config_text = header["__metadata__"]["triplet_config"].as_str().unwrap();
    assert!(config_text.contains("[model]"), "{config_text}");
    let names: Vec<&String> = header.as_object().unwrap().keys().collect();
    assert!(names.iter().any(|k| k.ends_with("weight")), "{names:?}");
    let best_model = grey_model()
        .try_load_file(best_dir.join("model.bpk"))
        .expect("the best checkpoint loads");
    let mut loaded = grey_model();
    let applied = burn::store::ModuleSnapshot::load_from(
        &mut loaded,
        &mut burn::store::SafetensorsStore::from_file(&file),
    )
    .unwrap();
    assert!(applied.errors.is_empty(), "{applied:?}");
    assert!(applied.missing.is_empty(), "{applied:?}");
    assert_eq!(fixed_embeddings(&loaded), fixed_embeddings(&best_model));
}

/// With patience 1, training stops at the first validation that does not beat the best, and the
/// best checkpoint is kept.
#[test]
fn early_stopping_stops_and_keeps_the_best() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, out, stdout, validations) = train_validated(
        tmp.path(),
        "[sampler]\np = 4\nk = 4\n[train]\nepochs = 40\nearly_stopping_patience = 1\n\
         [optimizer]\nlr = 0.01\n",
        &[],
    );
    let records = metrics(&out);
    let epochs = records.iter().filter(|r| r["kind"] == "epoch").count();
    assert!(epochs < 40, "stopped early: {stdout}");
    assert_eq!(validations.len(), epochs);
    assert!(stdout.contains("early stopping"), "{stdout}");
    // Every validation before the last improved; the last did not.
    assert_eq!(validations.last().unwrap()["best"], false);
    assert!(
        validations[..validations.len() - 1]
            .iter()
            .all(|v| v["best"] == true)
    );
    let best = &validations[validations.len() - 2];
    let named = fs::read_to_string(out.join("checkpoints/best")).unwrap();
    assert_eq!(
        named.trim(),
        format!("step-{:09}", best["step"].as_u64().unwrap())
    );
}

/// Mistakes with eval, embed and export: one `error:` line naming the problem, no panic.
#[test]
fn eval_mistakes_get_one_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("idx");
    idx_folder(&data, 4, 10);
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let config = write_config(tmp.path(), "[train]\nepochs = 1\n[sampler]\np = 2\nk = 4\n");
    let out = tmp.path().join("run");
    let result = train(&config, &data, &out, &[]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    let (d, o, e) = (
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        empty.to_str().unwrap(),
    );
    let missing = tmp.path().join("nope");
    let m = missing.to_str().unwrap();
    // Weights without any config.toml near them, and a broken weights file beside a config.
    fs::create_dir_all(tmp.path().join("loose")).unwrap();
    let weights_only = tmp.path().join("loose/model.bpk");
    fs::copy(out.join("model.bpk"), &weights_only).unwrap();
    let w = weights_only.to_str().unwrap();
    fs::create_dir_all(tmp.path().join("bad")).unwrap();
    let garbage = tmp.path().join("bad/garbage.bpk");
    fs::write(&garbage, b"not a model").unwrap();
    fs::copy(out.join("config.toml"), tmp.path().join("bad/config.toml")).unwrap();
    let g = garbage.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["eval", "--checkpoint", m, "--data", d],
            "does not exist",
        ),
        (
            vec!["eval", "--checkpoint", e, "--data", d],
            "neither a run folder",
        ),
        (vec!["eval", "--checkpoint", o, "--data", m], "nope"),
        (
            vec!["eval", "--checkpoint", o, "--data", d, "--classes", "3,x"],
            "`x`",
        ),
        (vec!["eval", "--checkpoint", g, "--data", d], "garbage.bpk"),
        (vec!["eval", "--checkpoint", w, "--data", d], "config.toml"),
        (
            vec![
                "embed",
                "--checkpoint",
                o,
                "--data",
                d,
                "--out",
                o,
                "--backend",
                "tpu",
            ],
            "unknown backend",
        ),
        (vec!["export", "--checkpoint", o, "--out", e], "is a folder"),
    ];
    for (args, expected) in cases {
        fails_with_one_line(&args, expected);
    }
}

/// `eval` and `embed` skip unreadable images, name each once, and count them.
#[test]
fn eval_and_embed_skip_broken_images() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("images");
    let (corrupt, truncated) = image_folder(&data);
    let out = tmp.path().join("run");
    let config = write_config(
        tmp.path(),
        "[data]\nsize = [12, 12]\nchannels = 1\n[train]\nepochs = 1\n",
    );
    let result = train(&config, &data, &out, &[]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let eval_dir = tmp.path().join("eval");
    let stdout = ok(&[
        "eval",
        "--checkpoint",
        o,
        "--data",
        d,
        "--out",
        eval_dir.to_str().unwrap(),
    ]);
    for bad in [&corrupt, &truncated] {
        let name = bad.display().to_string();
        assert_eq!(stdout.matches(&name).count(), 1, "{stdout}");
    }
    let m = read_json(&eval_dir.join("metrics.json"));
    assert_eq!(m["skipped_images"], 2);
    assert_eq!(m["queries"], 40);
    let emb = tmp.path().join("emb");
    ok(&[
        "embed",
        "--checkpoint",
        o,
        "--data",
        d,
        "--out",
        emb.to_str().unwrap(),
    ]);
    let labels = fs::read_to_string(emb.join("labels.csv")).unwrap();
    assert_eq!(labels.lines().count(), 41);
    assert!(!labels.contains("corrupt.png") && labels.contains("a/0.png,a"));
}

fn resnet18(dim: usize) -> triplet_model::EmbeddingModel {
    EmbeddingModelConfig::new()
        .with_backbone(triplet_model::ResNetConfig::new(18).into())
        .with_head(triplet_model::EmbeddingHeadConfig::new().with_dim(dim))
        .init(&Device::flex())
}

/// Backbone features of a fixed 3×32×32 input.
fn resnet_features(model: &triplet_model::EmbeddingModel) -> Vec<f32> {
    let device = Device::flex();
    let input: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(input, [2, 3, 32, 32]), &device);
    model
        .backbone()
        .forward(x)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

/// A ResNet-18 run on RGB photos of mixed sizes from torchvision-named weights: `--pretrained`
/// loads them (the run says how many tensors), `freeze_backbone` keeps them unchanged through
/// training while the head trains; a ResNet-34 is refused those weights with the missing tensor
/// named, and so are `small-cnn` and a missing file.
#[test]
fn resnet_trains_from_torchvision_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("photos");
    for c in 0..4 {
        let dir = data.join(format!("class{c}"));
        fs::create_dir_all(&dir).unwrap();
        for i in 0..6 {
            let (w, h) = if i % 2 == 0 { (40, 30) } else { (28, 44) };
            let grey = pattern(c, i, 48);
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                let v = grey[(y * 48 + x) as usize];
                image::Rgb([v, v / 2, 255 - v])
            });
            let ext = if i % 3 == 0 { "jpg" } else { "png" };
            img.save(dir.join(format!("{i}.{ext}"))).unwrap();
        }
    }
    let pretrained = resnet18(16);
    let weights = tmp.path().join("resnet18.safetensors");
    let triplet_model::Backbone::ResNet(resnet) = pretrained.backbone() else {
        unreachable!()
    };
    triplet_model::torchvision::save_resnet(resnet, &weights).unwrap();

    let config = write_config(
        tmp.path(),
        "[data]\nsize = [32, 32]\nsplit = \"none\"\n[model]\nbackbone = \"resnet18\"\ndim = 16\n\
         freeze_backbone = true\n[sampler]\np = 4\nk = 3\n[optimizer]\nlr = 0.01\n\
         [augment]\nrandom_resized_crop = true\nhorizontal_flip = true\n[train]\nepochs = 2\n",
    );
    let out = tmp.path().join("run");
    let w = weights.to_str().unwrap();
    let result = train(&config, &data, &out, &["--pretrained", w]);
    let stdout = text(&result.stdout);
    assert!(result.status.success(), "{stdout}{}", text(&result.stderr));
    assert!(
        stdout.contains("pretrained: 100 tensors from") && stdout.contains("backbone frozen"),
        "{stdout}"
    );
    let saved = fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains("pretrained = ") && saved.contains("resize = \"center-crop\""));
    assert!(
        saved.contains("0.485"),
        "ImageNet normalisation by default: {saved}"
    );

    let trained = resnet18(16)
        .try_load_file(out.join("model.bpk"))
        .expect("the run's model loads");
    assert_eq!(
        resnet_features(&trained),
        resnet_features(&pretrained),
        "a frozen backbone keeps the pretrained weights"
    );
    let probe = Tensor::<4>::ones([1, 3, 32, 32], &Device::flex());
    assert_ne!(
        trained.forward(probe.clone()).into_data(),
        pretrained.forward(probe).into_data(),
        "the head trained"
    );

    // Mistakes: one `error:` line each, naming the problem.
    let resnet34 = write_config(tmp.path(), "[model]\nbackbone = \"resnet34\"\n");
    let r = train(
        &resnet34,
        &data,
        &tmp.path().join("r34"),
        &["--pretrained", w],
    );
    let err = text(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.starts_with("error:")
            && err.contains("does not fit a resnet34")
            && err.contains("80 tensor(s) missing from the file: layer1.2.bn1.bias"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let r = train(
        &resnet34,
        &data,
        &tmp.path().join("missing"),
        &["--pretrained", "no/such/resnet.pth"],
    );
    assert!(
        text(&r.stderr).contains("no/such/resnet.pth") && text(&r.stderr).contains("not found"),
        "{}",
        text(&r.stderr)
    );
    let small = write_config(tmp.path(), "[model]\nbackbone = \"small-cnn\"\n");
    let r = train(
        &small,
        &data,
        &tmp.path().join("small"),
        &["--pretrained", w],
    );
    assert!(
        text(&r.stderr).contains("ResNet backbone"),
        "{}",
        text(&r.stderr)
    );
}

/// `--precision bf16` trains in mixed precision on flex (f32 weights, bfloat16 activations and
/// gradients), validates, records the precision, and `eval` reads the checkpoint back; an
/// unknown precision is one clear error.
#[test]
fn trains_in_half_precision() {
    let tmp = tempfile::tempdir().unwrap();
    let config = "[sampler]\np = 4\nk = 4\n[train]\nepochs = 2\n[optimizer]\nlr = 0.01\n";
    let (data, out, _, validations) = train_validated(tmp.path(), config, &["--precision", "bf16"]);
    let saved = fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains("precision = \"bf16\""), "{saved}");
    let losses = step_losses(&out);
    assert!(
        !losses.is_empty() && losses.iter().all(|l| l.is_finite()),
        "{losses:?}"
    );
    let p1 = validations.last().expect("a validation")["precision_at_1"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&p1));
    let o = out.to_str().unwrap();
    let eval = ok(&["eval", "--checkpoint", o, "--data", data.to_str().unwrap()]);
    assert!(eval.contains("MAP@R"), "{eval}");

    let config = write_config(tmp.path(), config);
    let r = train(
        &config,
        &data,
        &tmp.path().join("f8"),
        &["--precision", "f8"],
    );
    let err = text(&r.stderr);
    assert!(
        !r.status.success() && err.contains("unknown precision `f8`"),
        "{err}"
    );
}

/// `--precision f16` scales the loss: with an initial scale that overflows f16 (2^24), the
/// first steps are skipped, each halving the scale, until the gradients fit; metrics.jsonl and
/// the progress line say so, the run trains on to finite losses, and its checkpoint is f32
/// (`eval` reads it). No step is skipped with the default scale on the same run.
#[test]
fn f16_overflow_is_skipped_and_the_loss_scale_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let scale = 2f64.powi(24);
    let config = format!(
        "[sampler]\np = 4\nk = 4\n[train]\nepochs = 6\nlog_every_steps = 1\nloss_scale = {scale}\n\
         [optimizer]\nlr = 0.01\n"
    );
    let (data, out, stdout, _) = train_validated(tmp.path(), &config, &["--precision", "f16"]);
    let steps: Vec<serde_json::Value> = metrics(&out)
        .into_iter()
        .filter(|r| r["kind"] == "step" && r.get("loss").is_some())
        .collect();
    let skipped: Vec<bool> = steps
        .iter()
        .map(|r| {
            r["skipped"]
                .as_bool()
                .expect("an f16 step says whether it was skipped")
        })
        .collect();
    let first_taken = skipped.iter().position(|s| !s).expect("a step was taken");
    assert!(first_taken >= 1, "2^24 overflows f16: {skipped:?}");
    assert!(
        skipped[first_taken..].iter().filter(|s| **s).count() <= 1,
        "after the scale fits, overflow is rare: {skipped:?}"
    );
    // Each skipped step halves the scale the next one runs with.
    let scales: Vec<f64> = steps
        .iter()
        .map(|r| r["loss_scale"].as_f64().unwrap())
        .collect();
    assert_eq!(scales[0], scale);
    for i in 1..scales.len() {
        let want = if skipped[i - 1] {
            scales[i - 1] / 2.0
        } else {
            scales[i - 1]
        };
        assert_eq!(scales[i], want, "step {i}: {scales:?}");
    }
    let losses = step_losses(&out);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        stdout.contains(&format!("skipped {first_taken}")),
        "the progress line counts the skipped steps: {stdout}"
    );
    let o = out.to_str().unwrap();
    let eval = ok(&["eval", "--checkpoint", o, "--data", data.to_str().unwrap()]);
    assert!(eval.contains("MAP@R"), "{eval}");

    let config = config
        .replace(&format!("loss_scale = {scale}\n"), "")
        .replace("epochs = 6", "epochs = 2");
    let default = tmp.path().join("default");
    fs::create_dir_all(&default).unwrap();
    let (_, out, _, _) = train_validated(&default, &config, &["--precision", "f16"]);
    let skipped = metrics(&out)
        .into_iter()
        .filter(|r| r["kind"] == "step" && r["skipped"] == true)
        .count();
    assert_eq!(skipped, 0, "65536 fits this run's gradients");
}

/// `--devices 0,0` trains two replicas (each its own half of every batch's classes) and says so;
/// a device the backend does not have, and more devices than P/2, are one clear error each.
/// A loss that becomes non-finite (here a learning rate of 1e30 blows the weights up) stops the
/// run with one message naming the step, and nothing from that step reaches a checkpoint or
/// the metrics: the loss is read after the optimiser step is queued (the step's one wait for a
/// GPU), so the blown-up weights exist in memory, but are never saved.
#[test]
fn a_non_finite_loss_stops_the_run_and_saves_nothing_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("idx");
    idx_folder(&data, 6, 20);
    let config = write_config(
        tmp.path(),
        "[sampler]\np = 4\nk = 4\n[train]\nepochs = 3\nlog_every_steps = 1\n\
         checkpoint_every_steps = 1\n[optimizer]\nlr = 1e30\n",
    );
    let out = tmp.path().join("run");
    let result = train(&config, &data, &out, &[]);
    let stderr = text(&result.stderr);
    assert!(!result.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("the loss became") || l.contains("the embeddings became"))
        .unwrap_or_else(|| panic!("no loss message: {stderr}"));
    let step: u64 = line
        .split("at step ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the message names the step: {line}"));
    assert!(step >= 2, "a first step at lr 1e30 is finite: {line}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let losses = step_losses(&out);
    assert_eq!(losses.len() as u64, step - 1, "{losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let mut saved: Vec<u64> = fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("step-").and_then(|n| n.parse().ok())
        })
        .collect();
    saved.sort_unstable();
    assert_eq!(saved.last(), Some(&(step - 1)), "{saved:?}");
}

#[test]
fn data_parallel_replicas_train() {
    let tmp = tempfile::tempdir().unwrap();
    let config = "[sampler]\np = 4\nk = 4\n[train]\nepochs = 2\n[optimizer]\nlr = 0.01\n";
    let (data, out, stdout, _) = train_validated(tmp.path(), config, &["--devices", "0,0"]);
    assert!(
        stdout.contains("on 2 devices (2 classes of each batch per device)"),
        "{stdout}"
    );
    let losses = step_losses(&out);
    assert!(!losses.is_empty() && losses.iter().all(|l| l.is_finite()));

    let config = write_config(tmp.path(), config);
    let r = train(
        &config,
        &data,
        &tmp.path().join("two"),
        &["--devices", "0,1"],
    );
    let err = text(&r.stderr);
    assert!(err.contains("has one device here, index 0"), "{err}");
    let r = train(
        &config,
        &data,
        &tmp.path().join("three"),
        &["--devices", "0,0,0"],
    );
    let err = text(&r.stderr);
    assert!(
        err.contains("P = 4 classes") && err.contains("at least 6"),
        "{err}"
    );
}

/// The loss of every step in `out`'s metrics.jsonl.
fn step_losses(out: &Path) -> Vec<f64> {
    metrics(out)
        .iter()
        .filter(|r| r["kind"] == "step")
        .map(|r| r["loss"].as_f64().unwrap())
        .collect()
}
