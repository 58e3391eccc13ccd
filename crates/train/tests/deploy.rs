//! Deploying a trained model, as a user does: `triplet index build | add | remove | info`,
//! `triplet search --index` (against `triplet search --gallery` of the same images), and
//! `triplet serve` on 127.0.0.1 (an ephemeral port) with a real HTTP client: every endpoint,
//! every bad input, the token, SIGTERM and a restart, and a server killed (SIGKILL) during a
//! stream of enrollments, which keeps every enrollment it acknowledged.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

mod common;

use common::{fails_with_one_line, ok, triplet};
use serde_json::{Value, json};
use triplet_train::embed::files::read_npy_f32;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fashion-mnist-small/applications")
}

fn images() -> PathBuf {
    fixture().join("images")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Trains the reference CNN for an epoch on the fixture's images (`epochs` apart so two
/// calls are two models).
fn train(epochs: u32) -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let config = dir.join("run.toml");
    fs::write(
        &config,
        format!(
            "[data]\nsize = [28, 28]\nchannels = 1\nmean = [0.286]\nstd = [0.353]\n\
             [sampler]\np = 5\nk = 4\n[train]\nepochs = {epochs}\n[augment]\n\
             random_resized_crop = false\nhorizontal_flip = false\n"
        ),
    )
    .unwrap();
    let out = dir.join("run");
    ok(&[
        "train",
        "--config",
        s(&config),
        "--data",
        s(&images()),
        "--out",
        s(&out),
    ]);
    out
}

/// One trained model for the whole file.
fn trained() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| train(1))
}

/// An index of the fixture's 120 images, built once; tests that change one copy it.
fn built_index() -> &'static Path {
    static INDEX: OnceLock<PathBuf> = OnceLock::new();
    INDEX.get_or_init(|| {
        let out = tempfile::tempdir().unwrap().keep().join("gallery");
        ok(&[
            "index",
            "build",
            "--checkpoint",
            s(trained()),
            "--data",
            s(&images()),
            "--out",
            s(&out),
        ]);
        out
    })
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "lock" {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

fn fresh_copy() -> PathBuf {
    let to = tempfile::tempdir().unwrap().keep().join("ix");
    copy_dir(built_index(), &to);
    to
}

/// Every image of the fixture, sorted.
fn image_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for class in fs::read_dir(images()).unwrap() {
        for f in fs::read_dir(class.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn index_commands_and_search_by_index_agree_with_the_gallery_search() {
    let index = fresh_copy();
    let info = json_of(&ok(&["index", "info", s(&index), "--json"]));
    assert_eq!(info["items"], 120);
    assert_eq!(info["labels"], 10);
    assert_eq!(info["distance"], "euclidean");
    assert_eq!(info["search"], "exact");

    // The same neighbours, ids aside, as `triplet search --gallery` over the images.
    let query = &image_files()[7];
    let dir = tempfile::tempdir().unwrap();
    let (by_index, by_gallery) = (dir.path().join("i.json"), dir.path().join("g.json"));
    ok(&[
        "search",
        "--index",
        s(&index),
        "--query",
        s(query),
        "--k",
        "10",
        "--out",
        s(&by_index),
    ]);
    ok(&[
        "search",
        "--checkpoint",
        s(trained()),
        "--gallery",
        s(&images()),
        "--query",
        s(query),
        "--k",
        "10",
        "--out",
        s(&by_gallery),
    ]);
    let (a, b) = (
        json_of(&fs::read_to_string(&by_index).unwrap()),
        json_of(&fs::read_to_string(&by_gallery).unwrap()),
    );
    let (a, b) = (
        a[0]["neighbours"].as_array().unwrap(),
        b[0]["neighbours"].as_array().unwrap(),
    );
    assert_eq!(a.len(), 10);
    assert_eq!(a[0]["path"], b[0]["path"]);
    assert!(
        a[0]["path"]
            .as_str()
            .unwrap()
            .ends_with(query.file_name().unwrap().to_str().unwrap())
    );
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["label"], y["label"]);
        let (dx, dy) = (
            x["distance"].as_f64().unwrap(),
            y["distance"].as_f64().unwrap(),
        );
        assert!((dx - dy).abs() < 1e-5, "{dx} vs {dy}");
        assert!(x["id"].is_u64());
    }
    // Through the HNSW graph (--exact off, and the graph forced by a tiny exact_below
    // elsewhere): here exact, and --exact gives the same.
    let exact = dir.path().join("e.json");
    ok(&[
        "search",
        "--index",
        s(&index),
        "--exact",
        "--query",
        s(query),
        "--k",
        "10",
        "--out",
        s(&exact),
    ]);
    assert_eq!(
        fs::read_to_string(&exact).unwrap(),
        fs::read_to_string(&by_index).unwrap()
    );

    // Add one image under a new label: found first, with its id; remove it: gone.
    let added = ok(&[
        "index",
        "add",
        s(&index),
        "--data",
        s(query),
        "--label",
        "newcomer",
    ]);
    assert!(added.contains("added 1 items (ids 120–120)"), "{added}");
    let found = ok(&[
        "search",
        "--index",
        s(&index),
        "--query",
        s(query),
        "--k",
        "2",
    ]);
    assert!(found.contains("newcomer"), "{found}");
    ok(&["index", "remove", s(&index), "--id", "120"]);
    let found = ok(&[
        "search",
        "--index",
        s(&index),
        "--query",
        s(query),
        "--k",
        "2",
    ]);
    assert!(!found.contains("newcomer"), "{found}");
    assert_eq!(
        json_of(&ok(&["index", "info", s(&index), "--json"]))["items"],
        120
    );
    fails_with_one_line(
        &["index", "remove", s(&index), "--id", "5", "999"],
        "no item has id 999",
    );
    assert_eq!(
        json_of(&ok(&["index", "info", s(&index), "--json"]))["items"],
        120
    );

    // An index from a `triplet embed` folder holds the same vectors.
    let embedded = dir.path().join("emb");
    ok(&[
        "embed",
        "--checkpoint",
        s(trained()),
        "--data",
        s(&images()),
        "--out",
        s(&embedded),
    ]);
    let from_embed = dir.path().join("from-embed");
    ok(&[
        "index",
        "build",
        "--checkpoint",
        s(trained()),
        "--data",
        s(&embedded),
        "--out",
        s(&from_embed),
    ]);
    let rows = read_npy_f32(&embedded.join("embeddings.npy")).unwrap();
    let ix = triplet_index::Index::open(&from_embed).unwrap();
    assert_eq!(ix.len(), rows.len());
    assert_eq!(ix.get(3).unwrap().1, rows.rows().iter().nth(3).unwrap());

    // Mistakes: one clear line each.
    fails_with_one_line(
        &[
            "index",
            "build",
            "--checkpoint",
            s(trained()),
            "--data",
            s(&images()),
            "--out",
            s(&index),
        ],
        "already exists",
    );
    fails_with_one_line(&["index", "info", s(dir.path())], "not a Triplet index");
    fails_with_one_line(
        &[
            "search",
            "--index",
            s(&dir.path().join("nope")),
            "--query",
            s(query),
        ],
        "nope",
    );
    let other = train(2);
    fails_with_one_line(
        &[
            "search",
            "--index",
            s(&index),
            "--checkpoint",
            s(&other),
            "--query",
            s(query),
        ],
        "another model",
    );
    fails_with_one_line(
        &[
            "index",
            "build",
            "--checkpoint",
            s(&other),
            "--data",
            s(&embedded),
            "--out",
            s(&dir.path().join("x")),
        ],
        "was embedded by",
    );
}

/// A running `triplet serve`.
struct Server {
    child: Child,
    url: String,
    output: std::sync::mpsc::Receiver<String>,
}

impl Server {
    fn start(index: &Path, extra: &[&str]) -> Server {
        let mut child = triplet()
            .args(["serve", "--index", s(index), "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            let line = match output.recv_timeout(Duration::from_secs(120)) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let mut err = String::new();
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    panic!("the server did not start: {err}");
                }
            };
            if let Some(rest) = line.split("on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                return Server {
                    child,
                    url: format!("http://{addr}"),
                    output,
                };
            }
        }
    }

    /// SIGTERM, then the exit status and what it printed after.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.output.try_iter().collect();
        (status, rest.join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// What the HTTP client got.
type Reply = Result<ureq::http::Response<ureq::Body>, ureq::Error>;

/// Status and JSON body of an answer, which must be JSON whatever the status.
fn answer(r: Reply) -> (u16, Value) {
    let mut r = r.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!(ct, "application/json", "{status}: {text}");
    (status, json_of(&text))
}

fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "triplet-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}.png\"\r\nContent-Type: image/png\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn png_of_size(w: u32, h: u32) -> Vec<u8> {
    let img = image::GrayImage::from_pixel(w, h, image::Luma([128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn serve_answers_every_endpoint_and_every_bad_input_with_json() {
    let index = fresh_copy();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let server = Server::start(
        &index,
        &[
            "--token-file",
            s(&token_file),
            "--threshold",
            "0.5",
            "--max-body-mib",
            "1",
            "--max-megapixels",
            "1",
        ],
    );
    let (a, u) = (agent(), server.url.clone());
    let bearer = "Bearer 0123456789abcdef0123456789abcdef";
    let files = image_files();
    let png = fs::read(&files[7]).unwrap();
    let other_class = files
        .iter()
        .find(|f| f.parent() != files[7].parent())
        .unwrap();
    let png_other = fs::read(other_class).unwrap();

    let health = || answer(agent().get(&format!("{u}/health")).call());
    assert_eq!(health(), (200, json!({"status": "ok"})));
    let (st, info) = answer(a.get(&format!("{u}/info")).call());
    assert_eq!(st, 200);
    assert_eq!(
        (info["items"].clone(), info["dim"].clone()),
        (json!(120), json!(64))
    );
    assert_eq!(info["distance"], "euclidean");
    assert_eq!(info["threshold"], 0.5);

    // /embed gives what `triplet embed` gives.
    let (st, e) = answer(
        a.post(&format!("{u}/embed"))
            .header("content-type", "image/png")
            .send(&png[..]),
    );
    assert_eq!(st, 200, "{e}");
    assert_eq!(e["dim"], 64);
    let served: Vec<f32> = e["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let ix = triplet_index::Index::open(&index).unwrap();
    let stored = ix
        .items()
        .iter()
        .find(|it| {
            it.meta
                .path
                .as_deref()
                .unwrap()
                .ends_with(files[7].file_name().unwrap().to_str().unwrap())
        })
        .unwrap();
    let stored_vector = ix.get(stored.id).unwrap().1;
    let worst = served
        .iter()
        .zip(stored_vector)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, common::nan_max);
    assert!(worst < 1e-5, "{worst}");

    // /search: the image itself first, a match; by image and by embedding alike.
    let (st, found) = answer(a.post(&format!("{u}/search?k=3")).send(&png[..]));
    assert_eq!(st, 200, "{found}");
    let n = found["neighbors"].as_array().unwrap();
    assert_eq!(n.len(), 3);
    assert_eq!(n[0]["id"], stored.id);
    assert!(n[0]["distance"].as_f64().unwrap() < 1e-4);
    assert_eq!(n[0]["match"], true);
    assert_eq!(n[0]["label"], json!(stored.meta.label));
    let by_vector = json!({"embedding": served}).to_string();
    let (st, found2) = answer(
        a.post(&format!("{u}/search?k=3"))
            .header("content-type", "application/json")
            .send(&by_vector),
    );
    assert_eq!(st, 200);
    assert_eq!(found2["neighbors"][0]["id"], stored.id);
    let (st, exact) = answer(a.post(&format!("{u}/search?k=3&exact=true")).send(&png[..]));
    assert_eq!(
        (st, exact["neighbors"][0]["id"].clone()),
        (200, json!(stored.id))
    );

    // /verify: an image with itself is the same; with another class, farther.
    let (ct, form) = multipart(&[("a", &png), ("b", &png)]);
    let (st, v) = answer(
        a.post(&format!("{u}/verify"))
            .header("content-type", &ct)
            .send(&form[..]),
    );
    assert_eq!(st, 200, "{v}");
    assert!(v["distance"].as_f64().unwrap() < 1e-4);
    assert_eq!(
        (v["same"].clone(), v["threshold"].clone()),
        (json!(true), json!(0.5))
    );
    let (ct, form) = multipart(&[("a", &png), ("b", &png_other)]);
    let (_, v2) = answer(
        a.post(&format!("{u}/verify"))
            .header("content-type", &ct)
            .send(&form[..]),
    );
    assert!(v2["distance"].as_f64().unwrap() > v["distance"].as_f64().unwrap());

    // Enrolling needs the token; then the next search sees it; remove it again.
    let enroll = |auth: Option<&str>| {
        let mut r = a
            .post(&format!("{u}/items?label=zed"))
            .header("content-type", "image/png");
        if let Some(t) = auth {
            r = r.header("authorization", t);
        }
        answer(r.send(&png[..]))
    };
    assert_eq!(enroll(None).0, 401);
    assert_eq!(enroll(Some("Bearer wrong-token-wrong-token")).0, 401);
    let (st, added) = enroll(Some(bearer));
    assert_eq!(st, 201, "{added}");
    let id = added["id"].as_u64().unwrap();
    assert_eq!(id, 120);
    let (_, found) = answer(a.post(&format!("{u}/search?k=2")).send(&png[..]));
    let labels: Vec<&Value> = found["neighbors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["label"])
        .collect();
    assert!(labels.contains(&&json!("zed")), "{found}");
    assert_eq!(
        answer(a.get(&format!("{u}/items/{id}")).call()).1["label"],
        "zed"
    );
    assert_eq!(answer(a.delete(&format!("{u}/items/{id}")).call()).0, 401);
    let (st, gone) = answer(
        a.delete(&format!("{u}/items/{id}"))
            .header("authorization", bearer)
            .call(),
    );
    assert_eq!((st, gone), (200, json!({"id": id, "removed": true})));
    // Enrolled again, to outlive the restart below.
    let (_, kept) = enroll(Some(bearer));
    let kept = kept["id"].as_u64().unwrap();

    // Every bad input: a 4xx naming it, and the next request is served.
    let truncated = &png[..png.len() / 2];
    let big = png_of_size(1001, 1000);
    let over_limit = vec![0u8; (1 << 20) + 10];
    let cases: Vec<(&str, u16, &str, Reply)> = vec![
        (
            "not an image",
            415,
            "not an image",
            a.post(&format!("{u}/embed")).send("hello, not a picture"),
        ),
        (
            "a truncated PNG",
            400,
            "does not decode",
            a.post(&format!("{u}/search")).send(truncated),
        ),
        (
            "an empty body",
            400,
            "empty",
            a.post(&format!("{u}/embed")).send(&b""[..]),
        ),
        (
            "too many pixels",
            413,
            "1001×1000",
            a.post(&format!("{u}/embed")).send(&big[..]),
        ),
        (
            "a body over the limit",
            413,
            "size limit",
            a.post(&format!("{u}/embed")).send(&over_limit[..]),
        ),
        (
            "bad JSON",
            400,
            "not valid JSON",
            a.post(&format!("{u}/search"))
                .header("content-type", "application/json")
                .send("{\"embedding\": [1, 2"),
        ),
        (
            "a short embedding",
            400,
            "has 2 values",
            a.post(&format!("{u}/search"))
                .header("content-type", "application/json")
                .send("{\"embedding\": [1, 2]}"),
        ),
        (
            "k = 0",
            400,
            "k=0",
            a.post(&format!("{u}/search?k=0")).send(&png[..]),
        ),
        (
            "k too large",
            400,
            "k=5000",
            a.post(&format!("{u}/search?k=5000")).send(&png[..]),
        ),
        (
            "k not a number",
            400,
            "k=many",
            a.post(&format!("{u}/search?k=many")).send(&png[..]),
        ),
        (
            "an unknown parameter",
            400,
            "unknown query parameter `kk`",
            a.post(&format!("{u}/search?kk=3")).send(&png[..]),
        ),
        (
            "no label",
            400,
            "label",
            a.post(&format!("{u}/items"))
                .header("authorization", bearer)
                .send(&png[..]),
        ),
        (
            "a label with a newline",
            400,
            "control",
            a.post(&format!("{u}/items?label=a%0Ab"))
                .header("authorization", bearer)
                .send(&png[..]),
        ),
        (
            "an unknown id",
            404,
            "no item has id 999",
            a.get(&format!("{u}/items/999")).call(),
        ),
        (
            "an unknown id removed",
            404,
            "no item has id 999",
            a.delete(&format!("{u}/items/999"))
                .header("authorization", bearer)
                .call(),
        ),
        (
            "an id not a number",
            400,
            "not an item id",
            a.get(&format!("{u}/items/abc")).call(),
        ),
        (
            "verify without a form",
            400,
            "multipart",
            a.post(&format!("{u}/verify")).send(&png[..]),
        ),
        ("verify with one image", 400, "both images", {
            let (ct, form) = multipart(&[("a", &png)]);
            a.post(&format!("{u}/verify"))
                .header("content-type", &ct)
                .send(&form[..])
        }),
        ("verify with a bad image", 415, "image b", {
            let (ct, form) = multipart(&[("a", &png), ("b", b"text")]);
            a.post(&format!("{u}/verify"))
                .header("content-type", &ct)
                .send(&form[..])
        }),
        (
            "an unknown endpoint",
            404,
            "no such endpoint",
            a.get(&format!("{u}/nothing")).call(),
        ),
        (
            "a wrong method",
            405,
            "another method",
            a.get(&format!("{u}/search")).call(),
        ),
    ];
    for (what, status, says, r) in cases {
        let (st, body) = answer(r);
        assert_eq!(st, status, "{what}: {body}");
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert!(message.contains(says), "{what}: {message}");
        assert_eq!(health().0, 200, "after {what}");
    }

    // SIGTERM: a clean exit; a restart serves the same index, the enrolled item in it.
    let (status, said) = server.stop();
    assert!(status.success(), "{said}");
    assert!(said.contains("stopped: 121 items"), "{said}");
    let server = Server::start(&index, &[]);
    let (_, item) = answer(agent().get(&format!("{}/items/{kept}", server.url)).call());
    assert_eq!(item["label"], "zed");
    assert_eq!(
        answer(agent().get(&format!("{}/info", server.url)).call()).1["items"],
        121
    );
}

#[test]
fn the_token_guards_everything_with_token_all_and_no_token_means_loopback_only() {
    let index = fresh_copy();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    fs::write(&token_file, "fedcba9876543210fedcba9876543210").unwrap();
    let server = Server::start(&index, &["--token-file", s(&token_file), "--token-all"]);
    let u = &server.url;
    assert_eq!(answer(agent().get(&format!("{u}/health")).call()).0, 401);
    let (st, _) = answer(
        agent()
            .get(&format!("{u}/health"))
            .header("authorization", "Bearer fedcba9876543210fedcba9876543210")
            .call(),
    );
    assert_eq!(st, 200);
    drop(server);
    fails_with_one_line(
        &["serve", "--index", s(&index), "--addr", "0.0.0.0:0"],
        "loopback",
    );
    fs::write(&token_file, "short").unwrap();
    fails_with_one_line(
        &[
            "serve",
            "--index",
            s(&index),
            "--addr",
            "127.0.0.1:0",
            "--token-file",
            s(&token_file),
        ],
        "at least 16 characters",
    );
    fails_with_one_line(
        &[
            "serve",
            "--index",
            s(&dir.path().join("new")),
            "--addr",
            "127.0.0.1:0",
        ],
        "give --checkpoint",
    );
}

#[test]
fn a_server_killed_during_enrollments_keeps_every_acknowledged_one() {
    // A new, empty index made by the server for the model.
    let index = tempfile::tempdir().unwrap().keep().join("faces");
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let png = fs::read(&image_files()[0]).unwrap();
    for round in 0..3 {
        let checkpoint = trained();
        let server = Server::start(&index, &["--checkpoint", s(checkpoint)]);
        let url = server.url.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // Four clients enrolling as fast as they can.
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (url, tx, png) = (url.clone(), tx.clone(), png.clone());
                std::thread::spawn(move || {
                    let a = agent();
                    for i in 0.. {
                        let label = format!("r{round}c{c}n{i}");
                        let r = a.post(&format!("{url}/items?label={label}")).send(&png[..]);
                        let Ok(mut r) = r else { break };
                        if r.status() != 201 {
                            break;
                        }
                        let body: Value = json_of(&r.body_mut().read_to_string().unwrap());
                        if tx.send((body["id"].as_u64().unwrap(), label)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        for _ in 0..(25 + round * 10) {
            acknowledged.push(rx.recv_timeout(Duration::from_secs(120)).unwrap());
        }
        let mut server = server;
        server.child.kill().unwrap(); // SIGKILL, enrollments in flight
        server.child.wait().unwrap();
        acknowledged.extend(rx.try_iter());
        for c in clients {
            c.join().unwrap();
        }
        // The index opens and holds every acknowledged item, with its label.
        let ix =
            triplet_index::Index::open(&index).unwrap_or_else(|e| panic!("round {round}: {e}"));
        for (id, label) in &acknowledged {
            let (item, _) = ix
                .get(*id)
                .unwrap_or_else(|| panic!("round {round}: id {id} lost"));
            assert_eq!(item.meta.label.as_deref(), Some(label.as_str()));
        }
    }
    // And a server starts on it again.
    let server = Server::start(&index, &[]);
    let (_, info) = answer(agent().get(&format!("{}/info", server.url)).call());
    assert!(info["items"].as_u64().unwrap() >= acknowledged.len() as u64);
}
