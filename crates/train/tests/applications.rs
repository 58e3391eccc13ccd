//! The applications as a user runs them, on the shipped fixture
//! (`datasets/fashion-mnist-small/applications`: 120 PNGs, `pairs.csv`, `reid.csv` with a camera
//! column): `triplet eval`'s clustering, verification and re-identification, `--show`, and
//! `triplet search`, each checked against the library's metrics (themselves checked against
//! scikit-learn and PML in `applications_golden.rs`) on the embeddings `triplet embed` writes;
//! and every bad input the issue names.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;

use common::{fails_with_one_line, ok, read_json};
use triplet_loss::Distance;
use triplet_metrics::verification::verification;
use triplet_metrics::{Rows, Split, clustering, reid};
use triplet_train::embed::files::{npy_f32, read_npy_f32};
use triplet_train::eval::verification::PairsSource;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fashion-mnist-small/applications")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One trained model for the whole file: the reference CNN, one epoch on the fixture's images.
fn trained() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let config = dir.join("run.toml");
        fs::write(
            &config,
            "[data]\nsize = [28, 28]\nchannels = 1\nmean = [0.286]\nstd = [0.353]\n\
             [sampler]\np = 5\nk = 4\n[train]\nepochs = 2\n[augment]\n\
             random_resized_crop = false\nhorizontal_flip = false\n",
        )
        .unwrap();
        let out = dir.join("run");
        ok(&[
            "train",
            "--config",
            s(&config),
            "--data",
            s(&fixture().join("images")),
            "--out",
            s(&out),
        ]);
        out
    })
}

/// What `triplet embed` wrote: each image's embedding by path, the rows' paths and labels.
struct Embedding {
    by_path: HashMap<PathBuf, Vec<f32>>,
    labels: Vec<(PathBuf, String)>,
    dim: usize,
}

/// `triplet embed` of `data` into a fresh folder.
fn embedded(data: &Path) -> Embedding {
    let out = tempfile::tempdir().unwrap().keep();
    ok(&[
        "embed",
        "--checkpoint",
        s(trained()),
        "--data",
        s(data),
        "--out",
        s(&out),
    ]);
    let embeddings = read_npy_f32(&out.join("embeddings.npy")).unwrap();
    let (rows, dim, values) = (embeddings.len(), embeddings.dim(), embeddings.values());
    let mut reader = csv::Reader::from_path(out.join("labels.csv")).unwrap();
    let labels: Vec<(PathBuf, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (PathBuf::from(&r[0]), r[1].to_owned())
        })
        .collect();
    assert_eq!(labels.len(), rows);
    let by_path = labels
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.clone(), values[i * dim..(i + 1) * dim].to_vec()))
        .collect();
    Embedding {
        by_path,
        labels,
        dim,
    }
}

fn close(what: &str, a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{what}: CLI {a}, library {b}");
}

/// The reid fixture's columns, by resolved path.
fn reid_rows() -> HashMap<PathBuf, (String, bool, bool, String)> {
    let csv_path = fixture().join("reid.csv");
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                fixture().join(&r[0]),
                (r[1].to_owned(), &r[2] == "1", &r[3] == "1", r[4].to_owned()),
            )
        })
        .collect()
}

#[test]
fn eval_scores_clustering_verification_and_reid_like_the_library() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let stdout = ok(&[
        "eval",
        "--checkpoint",
        s(trained()),
        "--data",
        s(&f.join("reid.csv")),
        "--pairs",
        s(&f.join("pairs.csv")),
        "--group-column",
        "camera",
        "--show",
        "4",
        "--out",
        s(out.path()),
    ]);
    for line in ["NMI", "ROC AUC", "TAR@FAR=1e-3", "CMC rank-1", "mAP", "MRR"] {
        assert!(stdout.contains(line), "{line} in {stdout}");
    }
    let m = read_json(&out.path().join("metrics.json"));
    assert_eq!(
        m["metrics"],
        serde_json::json!(["retrieval", "clustering", "verification", "reid"])
    );

    // The library on `triplet embed`'s embeddings of the same images.
    let Embedding {
        by_path,
        labels,
        dim,
    } = embedded(&f.join("reid.csv"));
    let classes: Vec<&String> = {
        let mut c: Vec<&String> = labels.iter().map(|l| &l.1).collect();
        c.sort();
        c.dedup();
        c
    };
    let label_ids: Vec<usize> = labels
        .iter()
        .map(|l| classes.iter().position(|c| **c == l.1).unwrap())
        .collect();
    let rows: Vec<f32> = labels.iter().flat_map(|l| by_path[&l.0].clone()).collect();

    let c = clustering(Rows::new(&rows, dim), &label_ids, 0);
    close("NMI", m["NMI"].as_f64().unwrap(), c.nmi);
    close("AMI", m["AMI"].as_f64().unwrap(), c.ami);

    let columns = reid_rows();
    let meta: Vec<&(String, bool, bool, String)> = labels.iter().map(|l| &columns[&l.0]).collect();
    let cameras: Vec<usize> = meta
        .iter()
        .map(|m| m.3.trim_start_matches('c').parse().unwrap())
        .collect();
    let (is_query, is_gallery): (Vec<bool>, Vec<bool>) = meta.iter().map(|m| (m.1, m.2)).unzip();
    let r = reid(
        Rows::new(&rows, dim),
        &label_ids,
        Split {
            is_query: &is_query,
            is_gallery: &is_gallery,
            groups: Some(&cameras),
        },
        Distance::Euclidean,
        &triplet_train::device::host(),
    )
    .unwrap();
    let got = &m["reid"];
    assert_eq!(
        got["queries"], 40,
        "every query has a match on another camera"
    );
    assert_eq!(
        (got["total_queries"].as_u64(), got["gallery"].as_u64()),
        (Some(40), Some(90))
    );
    close("CMC@1", got["cmc_rank_1"].as_f64().unwrap(), r.cmc_rank_1);
    close("CMC@5", got["cmc_rank_5"].as_f64().unwrap(), r.cmc_rank_5);
    close("mAP", got["mAP"].as_f64().unwrap(), r.map);

    // Verification from the pairs file.
    let mut reader = csv::Reader::from_path(f.join("pairs.csv")).unwrap();
    let (mut d, mut same) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.unwrap();
        let (a, b) = (&by_path[&f.join(&record[0])], &by_path[&f.join(&record[1])]);
        let sq: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum();
        d.push(sq.sqrt());
        same.push(&record[2] == "1");
    }
    let (v, _) = verification(&d, &same, "euclidean").unwrap();
    let got = &m["verification"];
    assert_eq!(got["pairs"], 300);
    assert_eq!(got["positive_pairs"], 150);
    close("AUC", got["auc"].as_f64().unwrap(), v.auc);
    close("accuracy", got["accuracy"].as_f64().unwrap(), v.accuracy);
    close("threshold", got["threshold"].as_f64().unwrap(), v.threshold);
    close(
        "TAR@FAR=1e-2",
        got["tar_at_far_1e-2"].as_f64().unwrap(),
        v.tar_at_far_1e2,
    );
    assert!(
        v.auc > 0.6,
        "a trained model tells pairs apart: AUC {}",
        v.auc
    );
    let roc = fs::read_to_string(out.path().join("roc.csv")).unwrap();
    assert_eq!(roc.lines().next(), Some("threshold,far,tar"));
    assert!(roc.lines().count() > 100);

    // The figures: 4 rows of a query and its 8 nearest; two ROC panels.
    let shown = image::open(out.path().join("retrievals.png")).unwrap();
    assert_eq!((shown.width(), shown.height()), (1074, 748));
    let roc_png = image::open(out.path().join("roc.png")).unwrap();
    assert_eq!((roc_png.width(), roc_png.height()), (1400, 720));

    // The same evaluation through the library's stages, without the CLI: each stage's output
    // is the next one's input, and the scores are those metrics.json holds.
    let mut options = triplet_train::eval::EvalOptions::new(trained(), f.join("reid.csv"));
    options.pairs = PairsSource::File(f.join("pairs.csv"));
    options.group_column = Some("camera".into());
    let plan = triplet_train::eval::plan(&options).unwrap();
    assert_eq!(plan.groups.len(), 4, "reid asked for by the group column");
    let embeddings = triplet_train::eval::embed(&plan).unwrap();
    assert!(embeddings.references.is_none(), "leave-one-out");
    assert_eq!(embeddings.queries.embedded.rows.len(), 120);
    let scored = triplet_train::eval::score(&plan, &embeddings).unwrap();
    let report = &scored.report;
    close(
        "P@1",
        m["precision_at_1"].as_f64().unwrap(),
        report.retrieval.precision_at_1,
    );
    close(
        "AMI",
        m["AMI"].as_f64().unwrap(),
        report.clustering.as_ref().unwrap().ami,
    );
    close(
        "AUC",
        m["verification"]["auc"].as_f64().unwrap(),
        report.verification.as_ref().unwrap().auc,
    );
    close(
        "mAP",
        m["reid"]["mAP"].as_f64().unwrap(),
        report.reid.as_ref().unwrap().map,
    );
    let table = triplet_train::eval::report(&plan, &embeddings, &scored).join("\n");
    for line in ["NMI", "ROC AUC", "CMC rank-1"] {
        assert!(table.contains(line), "{line} in {table}");
    }

    // Only what is asked for.
    let only = tempfile::tempdir().unwrap();
    ok(&[
        "eval",
        "--checkpoint",
        s(trained()),
        "--data",
        s(&f.join("reid.csv")),
        "--metrics",
        "retrieval,reid",
        "--out",
        s(only.path()),
    ]);
    let m = read_json(&only.path().join("metrics.json"));
    assert!(m.get("verification").is_none() && m.get("NMI").is_none());
    assert_eq!(m["reid"]["groups"], false);
    assert!(!only.path().join("roc.csv").exists());
}

/// Labels drawn pairs (the default, 6000 asked): as many same-class as different-class pairs.
#[test]
fn eval_draws_balanced_pairs_from_labels() {
    let out = tempfile::tempdir().unwrap();
    ok(&[
        "eval",
        "--checkpoint",
        s(trained()),
        "--data",
        s(&fixture().join("images")),
        "--pairs",
        "400",
        "--out",
        s(out.path()),
    ]);
    let m = read_json(&out.path().join("metrics.json"));
    let v = &m["verification"];
    assert_eq!(
        (v["pairs"].as_u64(), v["positive_pairs"].as_u64()),
        (Some(400), Some(200))
    );
    assert_eq!(
        m["metrics"],
        serde_json::json!(["retrieval", "clustering", "verification"])
    );
    let first = m["verification"]["auc"].as_f64().unwrap();
    ok(&[
        "eval",
        "--checkpoint",
        s(trained()),
        "--data",
        s(&fixture().join("images")),
        "--pairs",
        "400",
        "--out",
        s(out.path()),
    ]);
    let again = read_json(&out.path().join("metrics.json"));
    assert_eq!(
        again["verification"]["auc"].as_f64().unwrap(),
        first,
        "seeded"
    );
    assert_eq!(again["NMI"], m["NMI"], "seeded k-means");
}

#[derive(Debug, Clone, PartialEq)]
struct Hit {
    query: String,
    rank: u64,
    path: String,
    distance: f64,
    is_match: Option<bool>,
}

fn hits_of_json(path: &Path) -> Vec<Hit> {
    read_json(path)
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|q| {
            let query = q["query"].as_str().unwrap().to_owned();
            q["neighbours"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |n| Hit {
                    query: query.clone(),
                    rank: n["rank"].as_u64().unwrap(),
                    path: n["path"].as_str().unwrap().to_owned(),
                    distance: n["distance"].as_f64().unwrap(),
                    is_match: n["match"].as_bool(),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn hits_of_csv(path: &Path) -> Vec<Hit> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["query", "rank", "path", "label", "distance", "match"]
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            Hit {
                query: r[0].to_owned(),
                rank: r[1].parse().unwrap(),
                path: r[2].to_owned(),
                distance: r[4].parse().unwrap(),
                is_match: match &r[5] {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                },
            }
        })
        .collect()
}

#[test]
fn search_finds_neighbours_and_uses_evals_threshold() {
    let f = fixture();
    let images = f.join("images");
    // eval writes the verification threshold into a copy of the run folder.
    let run = tempfile::tempdir().unwrap();
    let copy = run.path().join("run");
    copy_dir(trained(), &copy);
    ok(&[
        "eval",
        "--checkpoint",
        s(&copy),
        "--data",
        s(&f.join("reid.csv")),
        "--pairs",
        s(&f.join("pairs.csv")),
    ]);
    let threshold = read_json(&copy.join("metrics.json"))["verification"]["threshold"]
        .as_f64()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("hits.json");
    let query = images.join("7/0009.png");
    let stdout = ok(&[
        "search",
        "--checkpoint",
        s(&copy),
        "--gallery",
        s(&images),
        "--query",
        s(&query),
        s(&images.join("1")),
        "--k",
        "5",
        "--threshold",
        "run",
        "--out",
        s(&json),
    ]);
    assert!(stdout.contains(&format!("{threshold:.4}")), "{stdout}");
    let hits = hits_of_json(&json);
    assert_eq!(
        hits.len(),
        13 * 5,
        "one query and the 12 of folder 1, 5 each"
    );
    for h in &hits {
        assert_eq!(h.is_match, Some(h.distance <= threshold), "{h:?}");
        if h.rank == 1 {
            // Every query is in the gallery: its nearest is itself, at distance 0.
            assert_eq!(h.path, h.query, "{h:?}");
            assert!(h.distance < 1e-6, "{h:?}");
        }
    }
    assert!(
        hits.windows(2)
            .all(|w| w[0].query != w[1].query || w[0].distance <= w[1].distance)
    );

    // The same search over an `embed` folder of the gallery, to CSV, with a given threshold.
    let emb = out.path().join("emb");
    ok(&[
        "embed",
        "--checkpoint",
        s(&copy),
        "--data",
        s(&images),
        "--out",
        s(&emb),
    ]);
    let csv = out.path().join("hits.csv");
    ok(&[
        "search",
        "--checkpoint",
        s(&copy),
        "--gallery",
        s(&emb),
        "--query",
        s(&query),
        s(&images.join("1")),
        "--k",
        "5",
        "--threshold",
        &threshold.to_string(),
        "--out",
        s(&csv),
    ]);
    let from_embed = hits_of_csv(&csv);
    assert_eq!(from_embed.len(), hits.len());
    for (a, b) in hits.iter().zip(&from_embed) {
        assert_eq!(
            (&a.query, a.rank, &a.path, a.is_match),
            (&b.query, b.rank, &b.path, b.is_match)
        );
        assert!((a.distance - b.distance).abs() < 1e-6, "{a:?} {b:?}");
    }
    // No threshold: no verdict.
    let plain = out.path().join("plain.csv");
    ok(&[
        "search",
        "--checkpoint",
        s(&copy),
        "--gallery",
        s(&emb),
        "--query",
        s(&query),
        "--out",
        s(&plain),
    ]);
    assert!(hits_of_csv(&plain).iter().all(|h| h.is_match.is_none()));
}

/// A gallery folder without class folders, and an eval whose queries make no pairs of both
/// kinds: both work, saying what they did.
#[test]
fn a_flat_gallery_folder_and_a_one_class_eval_work() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let flat = tmp.path().join("flat");
    fs::create_dir_all(&flat).unwrap();
    for (i, class) in ["3", "7"].iter().enumerate() {
        for entry in fs::read_dir(f.join("images").join(class)).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{i}-{}", entry.file_name().to_string_lossy());
            fs::copy(entry.path(), flat.join(name)).unwrap();
        }
    }
    let query = f.join("images/7/0009.png");
    let out = tmp.path().join("hits.json");
    let stdout = ok(&[
        "search",
        "--checkpoint",
        s(trained()),
        "--gallery",
        s(&flat),
        "--query",
        s(&query),
        "--k",
        "3",
        "--out",
        s(&out),
    ]);
    assert!(stdout.contains("24 images, no classes"), "{stdout}");
    let hits = hits_of_json(&out);
    assert_eq!(hits.len(), 3);
    assert!(
        hits[0].path.ends_with("1-0009.png") && hits[0].distance < 1e-6,
        "{hits:?}"
    );

    let eval_out = tmp.path().join("eval");
    let stdout = ok(&[
        "eval",
        "--checkpoint",
        s(trained()),
        "--data",
        s(&f.join("images")),
        "--classes",
        "7",
        "--out",
        s(&eval_out),
    ]);
    assert!(stdout.contains("verification left out"), "{stdout}");
    let m = read_json(&eval_out.join("metrics.json"));
    assert!(m.get("verification").is_none());
    assert_eq!(m["metrics"], serde_json::json!(["retrieval", "clustering"]));
    assert_eq!(m["NMI"], 1.0, "one class, one cluster");
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Bad input: one `error:` line naming the problem, no panic.
#[test]
fn application_mistakes_get_one_clear_message() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let model = s(trained());
    let reid_csv = f.join("reid.csv");
    let images = f.join("images");
    let query = images.join("7/0009.png");
    let missing_pairs = t.join("no-pairs.csv");
    let bad_pairs = t.join("bad-pairs.csv");
    fs::write(
        &bad_pairs,
        format!("path_a,path_b,same\n{0},{0},maybe\n", s(&query)),
    )
    .unwrap();
    let gone_pairs = t.join("gone-pairs.csv");
    fs::write(
        &gone_pairs,
        format!("path_a,path_b,same\n{},{}/gone.png,1\n", s(&query), s(t)),
    )
    .unwrap();
    // An embed folder whose labels.csv lost its label column.
    let bad_embed = t.join("bad-embed");
    fs::create_dir_all(&bad_embed).unwrap();
    fs::write(
        bad_embed.join("embeddings.npy"),
        npy_f32(Rows::new(&[0.0; 4], 4)),
    )
    .unwrap();
    fs::write(bad_embed.join("labels.csv"), "path\na.png\n").unwrap();
    let notes = t.join("notes.txt");
    fs::write(&notes, "not an image").unwrap();
    let corrupt = t.join("corrupt.png");
    fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    // Weights outside a run with a metrics.json.
    let loose = t.join("loose");
    fs::create_dir_all(&loose).unwrap();
    fs::copy(trained().join("model.bpk"), loose.join("model.bpk")).unwrap();
    fs::copy(trained().join("config.toml"), loose.join("config.toml")).unwrap();
    let loose_model = loose.join("model.bpk");
    let idx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fashion-mnist-small");
    let eval = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["eval", "--checkpoint", model, "--data", s(&reid_csv)]
            .iter()
            .map(|x| (*x).to_owned())
            .collect();
        a.extend(extra.iter().map(|x| (*x).to_owned()));
        a.extend(["--out".into(), s(&t.join("out")).to_owned()]);
        a
    };
    let search = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["search", "--checkpoint", model, "--gallery", s(&images)]
            .iter()
            .map(|x| (*x).to_owned())
            .collect();
        a.extend(extra.iter().map(|x| (*x).to_owned()));
        a
    };
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            eval(&["--pairs", s(&missing_pairs)]),
            format!("pairs file {} does not exist", s(&missing_pairs)),
        ),
        (
            eval(&["--pairs", s(&gone_pairs)]),
            "gone-pairs.csv:2: image".into(),
        ),
        (eval(&["--pairs", s(&bad_pairs)]), "`maybe`".into()),
        (eval(&["--group-column", "cam"]), "no column `cam`".into()),
        (
            eval(&["--query-column", "query"]),
            "no column `query`".into(),
        ),
        (
            eval(&["--metrics", "speed"]),
            "unknown metric group `speed`".into(),
        ),
        (
            vec![
                "eval".into(),
                "--checkpoint".into(),
                model.into(),
                "--data".into(),
                s(&idx).into(),
                "--metrics".into(),
                "reid".into(),
            ],
            "not a CSV list".into(),
        ),
        (
            vec![
                "eval".into(),
                "--checkpoint".into(),
                model.into(),
                "--data".into(),
                s(&idx.join("t10k-images-idx3-ubyte.gz")).into(),
                "--metrics".into(),
                "reid".into(),
            ],
            "is not a CSV list".into(),
        ),
        (
            search(&["--query", s(&query), "--threshold", "abc"]),
            "--threshold `abc` is not a number".into(),
        ),
        (
            search(&["--query", s(&notes)]),
            "notes.txt is not an image".into(),
        ),
        (
            search(&["--query", s(&corrupt)]),
            "corrupt.png is not an image".into(),
        ),
        (
            search(&["--query", s(&t.join("nope.png"))]),
            "nope.png does not exist".into(),
        ),
        (search(&["--query", s(&query), "--k", "0"]), "--k 0".into()),
        (
            search(&["--query", s(&query), "--k", "5000"]),
            "--k 5000: ask for 1 to 1000".into(),
        ),
        (eval(&["--pairs", "1"]), "--pairs 1: draw 2 to".into()),
        (
            eval(&["--metrics", "retrieval,speed"]),
            "unknown metric group `speed`".into(),
        ),
        (
            eval(&["--backend", "tpu"]),
            "invalid value 'tpu' for '--backend <NAME>': unknown backend `tpu`".into(),
        ),
        (
            search(&["--query", s(&query), "--threshold", "-1"]),
            "--threshold -1: a distance threshold is a finite number".into(),
        ),
        (
            eval(&["--metrics", "verification", "--classes", "7"]),
            "one class only; give a pairs file".into(),
        ),
        (
            vec![
                "search".into(),
                "--checkpoint".into(),
                model.into(),
                "--gallery".into(),
                s(&bad_embed).into(),
                "--query".into(),
                s(&query).into(),
            ],
            "no column `label`".into(),
        ),
        (
            vec![
                "search".into(),
                "--checkpoint".into(),
                s(&loose_model).into(),
                "--gallery".into(),
                s(&images).into(),
                "--query".into(),
                s(&query).into(),
                "--threshold".into(),
                "run".into(),
            ],
            "metrics.json".into(),
        ),
        (
            vec![
                "search".into(),
                "--checkpoint".into(),
                model.into(),
                "--gallery".into(),
                s(&t.join("no-gallery")).into(),
                "--query".into(),
                s(&query).into(),
            ],
            "no-gallery does not exist".into(),
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with_one_line(&args, &expected);
    }
}

/// The mode of a file, permission bits only.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Like `cp`: bare file names land in the working directory (their parent is the empty path),
/// and every file written gets `0666` less the umask, so a teammate or a serving process under
/// another user can read a model, its embeddings and the results.
#[test]
fn outputs_follow_the_working_directory_and_the_umask() {
    let cwd = tempfile::tempdir().unwrap();
    let images = fixture().join("images");
    // Under umask 027 (group may read, others nothing), in a folder of its own.
    let with_umask = |args: &[&str]| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 027 && exec \"$0\" \"$@\"")
            .arg(common::triplet().get_program())
            .args(args)
            .current_dir(cwd.path())
            .env_remove("TRIPLET_KILL_AT")
            .output()
            .unwrap();
        let (stdout, stderr) = (common::text(&out.stdout), common::text(&out.stderr));
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        stdout
    };
    let model = s(trained());
    with_umask(&[
        "export",
        "--checkpoint",
        model,
        "--out",
        "model.safetensors",
    ]);
    assert_eq!(mode(&cwd.path().join("model.safetensors")), 0o640);
    let query = images.join("7/0009.png");
    with_umask(&[
        "search",
        "--checkpoint",
        model,
        "--gallery",
        s(&images),
        "--query",
        s(&query),
        "--out",
        "results.csv",
    ]);
    assert_eq!(mode(&cwd.path().join("results.csv")), 0o640);
    with_umask(&[
        "embed",
        "--checkpoint",
        model,
        "--data",
        s(&images),
        "--out",
        "emb",
    ]);
    for file in ["embeddings.npy", "labels.csv", "embed.json", "vectors.tsv"] {
        assert_eq!(mode(&cwd.path().join("emb").join(file)), 0o640, "{file}");
    }
    // The run folder's own files, written under this process's umask.
    let probe = cwd.path().join("probe");
    fs::write(&probe, b"x").unwrap();
    let plain = mode(&probe);
    for file in ["model.bpk", "config.toml", "checkpoints/latest"] {
        assert_eq!(mode(&trained().join(file)), plain, "{file}");
    }
}
