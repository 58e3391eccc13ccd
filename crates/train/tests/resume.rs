//! `--resume` after kills in every phase of a run ends exactly where an uninterrupted run ends:
//! every tensor of the model (parameters and BatchNorm buffers), its embeddings, the metrics
//! log, the run's state and files, and an extension of the run by one epoch (the optimiser's
//! moments). The kills are SIGKILLs at named points (`TRIPLET_KILL_AT`, see `fault.rs`), so
//! each phase is hit exactly: mid-step, while a checkpoint is written, between a checkpoint and
//! its `latest` pointer, during validation, while the final model is written, during the final
//! evaluation and between the plots. Also for a ResNet with frozen BatchNorm, for bf16 and for
//! two replicas (`--devices 0,0`). And a damaged newest checkpoint is passed over.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;

mod common;

use common::{ok, text, triplet};

/// 6 classes (`a`…`f`) × 10 grey 12×12 PNGs whose bright bar moves with the class; class `a`
/// also holds a corrupt and a truncated PNG, so skipped-image counts are part of the state.
/// `e` and `f` are held out for validation.
fn image_folder(root: &Path) {
    for (c, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        let dir = root.join(name);
        fs::create_dir_all(&dir).unwrap();
        for i in 0..10 {
            let size = 12;
            // Noisy enough that validation is not perfect (MAP@R 0.6-0.9, a new best in some
            // epochs and not in others), so eval's reproduction and the best pointer are tested.
            let pixels: Vec<u8> = (0..size * size)
                .map(|p| {
                    let (y, x) = (p / size, p % size);
                    let bar = (x + c * 2) % size < 3 || (y * (c + 1)) % size < 2;
                    let mut h = (p as u32)
                        .wrapping_mul(2_654_435_761)
                        .wrapping_add((i as u32).wrapping_mul(40_503))
                        .wrapping_add((c as u32).wrapping_mul(2_246_822_519));
                    h ^= h >> 15;
                    h = h.wrapping_mul(2_246_822_519);
                    h ^= h >> 13;
                    (if bar { 110 } else { 40 } + h % 160).min(255) as u8
                })
                .collect();
            image::GrayImage::from_raw(size as u32, size as u32, pixels)
                .unwrap()
                .save(dir.join(format!("{i}.png")))
                .unwrap();
        }
    }
    fs::write(root.join("a/corrupt.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let full = fs::read(root.join("a/0.png")).unwrap();
    fs::write(root.join("a/truncated.png"), &full[..full.len() / 2]).unwrap();
}

/// 4 training classes × 10 images (+2 broken), P 2 × K 4: 5 steps an epoch, 4 epochs; a
/// checkpoint every 3 steps, every one kept (so each can be evaluated), augmentation on,
/// validation every epoch, early stopping armed, plots on.
const CONFIG: &str = "\
[data]
channels = 1
size = [12, 12]
workers = 2
[sampler]
p = 2
k = 4
[augment]
random_resized_crop = true
horizontal_flip = true
[optimizer]
lr = 0.01
[train]
epochs = 4
checkpoint_every_steps = 3
keep_checkpoints = 100
early_stopping_patience = 3
seed = 11
";

/// A run of `config` on `data` into `out`: uninterrupted when `kills` is empty, else killed
/// at each named point in turn (each kill in a new process, resumed with `--resume`) and then
/// resumed to the end. Returns the last process's stdout.
fn run(config: &Path, data: &Path, out: &Path, extra: &[&str], kills: &[&str]) -> String {
    run_resumed_with(config, data, out, extra, kills, &[])
}

/// [`run`], each resume also given `resume_extra`.
fn run_resumed_with(
    config: &Path,
    data: &Path,
    out: &Path,
    extra: &[&str],
    kills: &[&str],
    resume_extra: &[&str],
) -> String {
    let mut first = true;
    for kill in kills.iter().map(Some).chain([None]) {
        let mut cmd = triplet();
        cmd.args(["train", "--data", data.to_str().unwrap()]);
        cmd.args(["--out", out.to_str().unwrap()]);
        if first {
            cmd.args(["--config", config.to_str().unwrap()]).args(extra);
        } else {
            cmd.arg("--resume").args(resume_extra);
            // `--devices` is not saved in the config: a resumed run is given it again.
            if let Some(i) = extra.iter().position(|a| *a == "--devices") {
                cmd.args(&extra[i..i + 2]);
            }
        }
        if let Some(point) = kill {
            cmd.env("TRIPLET_KILL_AT", point);
        }
        let output: Output = cmd.output().expect("the binary runs");
        let stdout = text(&output.stdout);
        match kill {
            Some(point) => assert_eq!(
                output.status.signal(),
                Some(9),
                "the run was to be killed at {point}, but it ended ({:?}):\n{stdout}\n{}",
                output.status,
                text(&output.stderr)
            ),
            None => {
                assert!(
                    output.status.success(),
                    "{stdout}\n{}",
                    text(&output.stderr)
                );
                return stdout;
            }
        }
        if !first {
            assert!(stdout.contains("resuming from"), "{stdout}");
        }
        assert!(
            !stdout.contains("Io(") && !text(&output.stderr).contains("Io("),
            "no Debug dump"
        );
        first = false;
    }
    unreachable!()
}

/// Every tensor of the run's final model by name (parameters and buffers), as `triplet export`
/// writes them: safetensors' raw bytes.
fn tensors(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = out.with_extension("safetensors");
    ok(&[
        "export",
        "--checkpoint",
        out.join("model.bpk").to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    let bytes = fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, t)| {
            let range = &t["data_offsets"];
            let (a, b) = (
                range[0].as_u64().unwrap() as usize,
                range[1].as_u64().unwrap() as usize,
            );
            (name.clone(), data[a..b].to_vec())
        })
        .collect()
}

/// The metrics log without its timings (wall-clock seconds and rates differ between runs).
fn records(out: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for key in [
                "seconds",
                "images_per_second",
                "data_wait_seconds",
                "data_wait_fraction",
            ] {
                o.remove(key);
            }
            v
        })
        .collect()
}

/// The files of a run folder, relative, sorted.
fn files(out: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, found);
            } else {
                found.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(out, out, &mut found);
    found.sort();
    found
}

/// `state.json` of every checkpoint, by folder name, without the epoch's timings and the
/// files' checksums (records carry Burn's random parameter ids).
fn states(out: &Path) -> BTreeMap<String, serde_json::Value> {
    let mut states = BTreeMap::new();
    for entry in fs::read_dir(out.join("checkpoints")).unwrap().flatten() {
        let state = entry.path().join("state.json");
        if state.is_file() {
            let mut v: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(&state).unwrap()).unwrap();
            let totals = v["epoch_totals"].as_object_mut().unwrap();
            totals.remove("seconds");
            totals.remove("waited");
            v.as_object_mut().unwrap().remove("files");
            states.insert(entry.file_name().to_string_lossy().into_owned(), v);
        }
    }
    states
}

fn embed(out: &Path, data: &Path) -> Vec<u8> {
    let dir = out.with_extension("embedded");
    ok(&[
        "embed",
        "--checkpoint",
        out.join("model.bpk").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    fs::read(dir.join("embeddings.npy")).unwrap()
}

/// The straight and the interrupted run agree in everything but timings.
fn assert_same_run(straight: &Path, killed: &Path, data: &Path) {
    let (a, b) = (tensors(straight), tensors(killed));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same tensors"
    );
    assert!(a.keys().any(|k| k.ends_with("running_var")), "{a:?}");
    let differing: Vec<&String> = a.keys().filter(|k| a[*k] != b[*k]).collect();
    assert!(differing.is_empty(), "tensors differ: {differing:?}");
    assert_eq!(embed(straight, data), embed(killed, data), "embeddings");
    assert_eq!(records(straight), records(killed), "metrics.jsonl");
    assert_eq!(states(straight), states(killed), "checkpoint states");
    assert_eq!(files(straight), files(killed), "the run folders' files");
    for pointer in ["best", "latest"] {
        let read = |out: &Path| fs::read_to_string(out.join("checkpoints").join(pointer)).ok();
        assert_eq!(read(straight), read(killed), "checkpoints/{pointer}");
    }
    if let Ok(best) = fs::read_to_string(straight.join("checkpoints/best")) {
        let at = |out: &Path| tensors(&out.join("checkpoints").join(best.trim()));
        assert!(at(straight) == at(killed), "the best checkpoint's tensors");
    }
}

/// The validation records of a run, by step.
fn validations(out: &Path) -> BTreeMap<u64, serde_json::Value> {
    records(out)
        .into_iter()
        .filter(|r| r["kind"] == "validation")
        .map(|r| (r["step"].as_u64().unwrap(), r))
        .collect()
}

#[test]
fn kills_in_every_phase_resume_to_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("images");
    image_folder(&data);
    let config = tmp.path().join("run.toml");
    fs::write(&config, CONFIG).unwrap();
    let straight = tmp.path().join("straight");
    run(&config, &data, &straight, &[], &[]);
    let killed = tmp.path().join("killed");
    // Each resume repeats `--epochs 4`: the same number neither extends the run nor restarts
    // early stopping's patience.
    let stdout = run_resumed_with(
        &config,
        &data,
        &killed,
        &[],
        &[
            "step:4",             // mid-step 4, after the backward pass (checkpoint 3 exists)
            "checkpoint-files:2", // step 6's checkpoint half written
            "validation",         // epoch 2 scored, its record not yet written
            "checkpoint-saved",   // epoch 2's checkpoint saved, not yet named best
            "write:latest:2",     // step 15's checkpoint in place, `latest` not yet moved
            "step:3",             // three steps into a process
            "write:model.bpk",    // the final model half written
            "eval",               // the final evaluation scored, its record not yet written
            "plots",              // curves.png written, not the PCA picture
        ],
        &["--epochs", "4"],
    );
    assert!(stdout.contains("resuming from"), "{stdout}");
    assert_same_run(&straight, &killed, &data);

    // The broken images were counted as in the uninterrupted run.
    let epochs: Vec<_> = records(&killed)
        .into_iter()
        .filter(|r| r["kind"] == "epoch")
        .collect();
    assert_eq!(epochs.len(), 4);
    assert!(
        epochs
            .iter()
            .all(|e| e["skipped_images"].as_u64() > Some(0))
    );

    // `eval` of each epoch's checkpoint reproduces the validation printed at its step.
    let validated = validations(&killed);
    assert_eq!(validated.len(), 4);
    let bests = validated.values().filter(|v| v["best"] == true).count();
    assert!(
        (2..4).contains(&bests),
        "a new best in some epochs, not all: {validated:?}"
    );
    for (step, v) in &validated {
        let dir = killed.join(format!("checkpoints/step-{step:09}"));
        let eval_out = tmp.path().join(format!("eval-{step}"));
        ok(&[
            "eval",
            "--checkpoint",
            dir.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--classes",
            "e,f",
            "--out",
            eval_out.to_str().unwrap(),
        ]);
        let m: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(eval_out.join("metrics.json")).unwrap())
                .unwrap();
        for key in [
            "precision_at_1",
            "mean_average_precision_at_r",
            "r_precision",
        ] {
            let (want, got) = (v[key].as_f64().unwrap(), m[key].as_f64().unwrap());
            assert!(
                (want - got).abs() < 1e-9,
                "step {step} {key}: {got} vs {want}"
            );
        }
    }

    // One more epoch on both: the optimiser's moments and the schedule went on identically.
    for out in [&straight, &killed] {
        ok(&[
            "train",
            "--resume",
            "--epochs",
            "5",
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    assert_same_run(&straight, &killed, &data);
}

/// The same for a ResNet-18 with frozen backbone BatchNorm (and a BatchNorm in the head that
/// trains), for bf16, for f16 with its dynamic loss scale, for two replicas on one device, and for a cross-batch memory of 28 rows
/// (batches of 8: the first checkpoint, at step 3, saves it 24/28 full, and step 4's batch
/// wraps across the end of the ring).
#[test]
fn kills_resume_exactly_for_resnets_half_precision_and_replicas() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("images");
    image_folder(&data);
    let kills = ["step:4", "checkpoint-saved:2", "validation", "eval"];
    let short = CONFIG.replace("epochs = 4", "epochs = 2");
    for (name, config, extra) in [
        (
            "resnet",
            short.replace(
                "[optimizer]",
                "[model]\nbackbone = \"resnet18\"\nfreeze_batch_norm = true\nbatch_norm = true\n\
                 [optimizer]",
            ),
            &[][..],
        ),
        ("bf16", short.clone(), &["--precision", "bf16"][..]),
        // Mixed f16 with a loss scale that overflows: the first steps are skipped and the
        // scale halved, so the scale and the skipped steps in the checkpoint must resume too.
        (
            "f16",
            short.replace("[train]\n", "[train]\nloss_scale = 1e12\n"),
            &["--precision", "f16"][..],
        ),
        (
            "replicas",
            short.replace("p = 2\nk = 4", "p = 4\nk = 2"),
            &["--devices", "0,0"][..],
        ),
        (
            "memory",
            short.replace(
                "[optimizer]",
                "[loss]\nmining = \"hard\"\nmemory_size = 28\n[optimizer]",
            ),
            &[][..],
        ),
    ] {
        let dir = tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.toml");
        fs::write(&path, config).unwrap();
        let straight = dir.join("straight");
        run(&path, &data, &straight, extra, &[]);
        let killed = dir.join("killed");
        run(&path, &data, &killed, extra, &kills);
        assert_same_run(&straight, &killed, &data);
        if name == "memory" {
            assert!(
                files(&straight).iter().any(|f| f.ends_with("memory.bin")),
                "{:?}",
                files(&straight)
            );
        }
    }
}

/// A truncated newest checkpoint: `--resume` warns, in words, that it is damaged, moves it
/// aside, and resumes from the checkpoint before it to the same end as an uninterrupted run;
/// `eval` and `embed` of the run folder pass over a damaged best checkpoint the same way; when
/// nothing is intact, one error says so.
/// A job scheduler re-runs the same command after a preemption: a run killed before its
/// first checkpoint (its config written, some steps logged) is started again from step 0 by
/// `--resume`, and ends as the uninterrupted run does.
#[test]
fn a_run_killed_before_its_first_checkpoint_resumes_from_step_0() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("images");
    image_folder(&data);
    let config = tmp.path().join("run.toml");
    fs::write(&config, CONFIG.replace("epochs = 4", "epochs = 1")).unwrap();
    let straight = tmp.path().join("straight");
    run(&config, &data, &straight, &[], &[]);
    let killed = tmp.path().join("killed");
    let mut cmd = triplet();
    cmd.args(["train", "--config", config.to_str().unwrap()])
        .args(["--data", data.to_str().unwrap()])
        .args(["--out", killed.to_str().unwrap()])
        .env("TRIPLET_KILL_AT", "step:2");
    assert_eq!(cmd.output().unwrap().status.signal(), Some(9));
    assert!(killed.join("config.toml").is_file());
    assert!(!killed.join("checkpoints").join("latest").exists());
    let resume = || {
        triplet()
            .args(["train", "--resume", "--data", data.to_str().unwrap()])
            .args(["--out", killed.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let output = resume();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("no checkpoint yet") && stdout.contains("from step 0"),
        "{stdout}"
    );
    assert_same_run(&straight, &killed, &data);
    // And the same command again resumes the finished run from its last checkpoint.
    let again = resume();
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("resuming from"));
}

#[test]
fn a_damaged_checkpoint_is_passed_over() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("images");
    image_folder(&data);
    let config = tmp.path().join("run.toml");
    fs::write(&config, CONFIG.replace("epochs = 4", "epochs = 2")).unwrap();
    let straight = tmp.path().join("straight");
    run(&config, &data, &straight, &[], &[]);
    // Killed in the last step: the newest checkpoint is a mid-epoch one, others before it.
    let damaged = tmp.path().join("damaged");
    let mut cmd = triplet();
    cmd.args(["train", "--config", config.to_str().unwrap()])
        .args([
            "--data",
            data.to_str().unwrap(),
            "--out",
            damaged.to_str().unwrap(),
        ])
        .env("TRIPLET_KILL_AT", "step:10");
    assert_eq!(cmd.output().unwrap().status.signal(), Some(9));
    let mut steps: Vec<String> = fs::read_dir(damaged.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    steps.sort();
    assert!(steps.len() >= 2, "{steps:?}");
    let latest = damaged.join("checkpoints").join(&steps[steps.len() - 1]);
    let before = &steps[steps.len() - 2];
    let model = latest.join("model.bpk");
    let bytes = fs::read(&model).unwrap();
    fs::write(&model, &bytes[..1000]).unwrap();
    let output = triplet()
        .args(["train", "--resume", "--out", damaged.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let warning = format!(
        "warning: checkpoint {} is damaged: model.bpk is 1000 bytes but {} were written \
         (truncated); it was moved to {}",
        latest.display(),
        bytes.len(),
        damaged
            .join("checkpoints")
            .join(format!("damaged-{}", steps[steps.len() - 1]))
            .display()
    );
    assert!(stdout.contains(&warning), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "resumes from {}",
            damaged.join("checkpoints").join(before).display()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("Io("), "no Debug dump: {stdout}");
    let (a, b) = (tensors(&straight), tensors(&damaged));
    assert!(
        a == b,
        "the same model after resuming from the older checkpoint"
    );
    assert_eq!(records(&straight), records(&damaged));

    // eval/embed of the run folder: its best checkpoint damaged, the latest is used.
    let best = fs::read_to_string(damaged.join("checkpoints/best")).unwrap();
    let best_model = damaged
        .join("checkpoints")
        .join(best.trim())
        .join("model.bpk");
    let mut altered = fs::read(&best_model).unwrap();
    let last = altered.len() - 1;
    altered[last] ^= 0xff;
    fs::write(&best_model, &altered).unwrap();
    let d = damaged.to_str().unwrap();
    let eval = ok(&["eval", "--checkpoint", d, "--data", data.to_str().unwrap()]);
    assert!(
        eval.contains(&format!(
            "warning: best checkpoint {} is damaged: model.bpk does not match the checksum \
             written with it (its bytes were altered); using the ",
            best.trim()
        )),
        "{eval}"
    );
    let embedded = tmp.path().join("embedded");
    let e = ok(&[
        "embed",
        "--checkpoint",
        d,
        "--data",
        data.to_str().unwrap(),
        "--out",
        embedded.to_str().unwrap(),
    ]);
    assert!(e.contains("is damaged"), "{e}");
    // Nothing intact: one error naming the checkpoints.
    for entry in fs::read_dir(damaged.join("checkpoints")).unwrap().flatten() {
        let m = entry.path().join("model.bpk");
        if m.is_file() {
            fs::write(&m, b"garbage").unwrap();
        }
    }
    let output = triplet()
        .args(["train", "--resume", "--out", d])
        .output()
        .unwrap();
    let err = text(&output.stderr);
    assert!(
        !output.status.success() && err.contains("every checkpoint is damaged"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let output = triplet()
        .args(["eval", "--checkpoint", d, "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    let err = text(&output.stderr);
    assert!(
        !output.status.success() && err.contains("no intact weights in"),
        "{err}"
    );
}

/// A run that stopped early, killed after its last checkpoint, stays stopped when resumed.
#[test]
fn an_early_stopped_run_stays_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("images");
    image_folder(&data);
    let config = tmp.path().join("run.toml");
    let body = CONFIG
        .replace("epochs = 4", "epochs = 8")
        .replace("early_stopping_patience = 3", "early_stopping_patience = 1");
    fs::write(&config, body).unwrap();
    let straight = tmp.path().join("straight");
    let stdout = run(&config, &data, &straight, &[], &[]);
    assert!(stdout.contains("early stopping"), "{stdout}");
    let last = records(&straight)
        .iter()
        .filter_map(|r| r["step"].as_u64())
        .max()
        .unwrap();
    assert!(last < 40, "stopped before the 8 epochs' 40 steps: {last}");
    // Killed right after the checkpoint of the epoch that stopped it (its n-th checkpoint).
    let n = states(&straight).len();
    let killed = tmp.path().join("killed");
    let kill = format!("checkpoint-saved:{n}");
    let resumed = run(&config, &data, &killed, &[], &[&kill]);
    assert!(resumed.contains("the run had stopped"), "{resumed}");
    assert_same_run(&straight, &killed, &data);
}
