//! The endpoints, their errors (every one a 4xx or 5xx with `{"error": "…"}`), the server's
//! start and its clean stop.

use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use triplet_index::{Index, IndexSpec, Meta, SearchMode};

use super::ServeOptions;
use super::embedder::Embedder;
use crate::console::say;
use crate::data::augment::Transform;
use crate::data::decode::{BytesError, decode_bytes};
use crate::embed::say_model;
use crate::index::{check_model, load_model_for, metric_of, model_of};
use crate::run::trained::load;
use crate::search::MAX_K;
use crate::threshold::resolve_threshold;

/// Most characters in a label.
const MAX_LABEL: usize = 256;

/// An error answer: a status and a message naming what was wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    json_text(status, value.to_string())
}

/// A JSON text as an answer.
fn json_text(status: StatusCode, text: String) -> Response {
    let mut r = (status, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json_response(self.status, &json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(status, "the body is over the size limit (--max-body-mib)")
        } else {
            Self::new(status, format!("cannot read the body: {}", r.body_text()))
        }
    }
}

type Answer = Result<Response, ApiError>;

fn ok(value: &Value) -> Answer {
    Ok(json_response(StatusCode::OK, value))
}

/// What the handlers share.
struct App {
    embedder: Embedder,
    transform: Arc<Transform>,
    index: RwLock<Index>,
    threshold: Option<f64>,
    token: Option<String>,
    token_all: bool,
    max_pixels: u64,
    model: Value,
    backend: String,
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl App {
    /// Checks the bearer token, where one is set: for writes always, for reads with
    /// `--token-all`.
    fn authorize(&self, headers: &HeaderMap, write: bool) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        if !write && !self.token_all {
            return Ok(());
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if same_secret(g.trim().as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the bearer token is wrong",
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs `Authorization: Bearer <token>`",
            )),
        }
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// An image's embedding: decoded and prepared on the blocking pool, embedded in the
    /// next forward pass.
    async fn embed_image(self: &Arc<Self>, bytes: Bytes, what: &str) -> Result<Vec<f32>, ApiError> {
        let app = Arc::clone(self);
        let input = tokio::task::spawn_blocking(move || {
            let t = &app.transform;
            decode_bytes(&bytes, t.channels, app.max_pixels)
                .map(|(chw, native)| t.prepare(chw, native, 0))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            let status = match e {
                BytesError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                BytesError::NotAnImage => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::BAD_REQUEST,
            };
            ApiError::new(status, format!("{what}: {e}"))
        })?;
        self.embedder.embed(input).await.map_err(ApiError::internal)
    }

    /// The query vector of a body: `{"embedding": […]}` when it is JSON, else an image.
    async fn vector_of(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Vec<f32>, ApiError> {
        if !is_json(headers) {
            return self.embed_image(body, "the body").await;
        }
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad(format!("the body is not valid JSON: {e}")))?;
        let Some(values) = value.get("embedding").and_then(Value::as_array) else {
            return Err(ApiError::bad(
                "a JSON body is {\"embedding\": [numbers…]}; or send the image's bytes",
            ));
        };
        let dim = self.read_index().spec().dim;
        if values.len() != dim {
            return Err(ApiError::bad(format!(
                "the embedding has {} values, the model's have {dim}",
                values.len()
            )));
        }
        values
            .iter()
            .map(|v| match v.as_f64() {
                Some(x) if x.is_finite() && x.abs() <= f64::from(f32::MAX) => Ok(x as f32),
                _ => Err(ApiError::bad(format!(
                    "the embedding holds `{v}`, not a finite number"
                ))),
            })
            .collect()
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// The query string's parameters, only those `allowed`, each at most once.
fn params(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) =
        query.map_err(|e| ApiError::bad(format!("bad query string: {}", e.body_text())))?;
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::bad(format!(
                "unknown query parameter `{name}` (this endpoint takes {})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(ApiError::bad(format!(
                "query parameter `{name}` given twice"
            )));
        }
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    Ok(body?)
}

fn item_json(index: &Index, id: u64) -> Option<Value> {
    let (item, _) = index.get(id)?;
    Some(json!({
        "id": item.id,
        "path": item.meta.path,
        "label": item.meta.label,
        "extra": item.meta.extra,
    }))
}

async fn health(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer {
    app.authorize(&headers, false)?;
    ok(&json!({"status": "ok"}))
}

async fn info(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer {
    app.authorize(&headers, false)?;
    let index = app.read_index();
    let spec = index.spec();
    ok(&json!({
        "model": app.model,
        "model_key": spec.model.key,
        "dim": spec.dim,
        "distance": spec.metric.name(),
        "items": index.len(),
        "threshold": app.threshold,
        "search": if index.uses_graph(SearchMode::Auto) { "hnsw" } else { "exact" },
        "backend": app.backend,
        "max_k": MAX_K,
    }))
}

async fn embed(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    app.authorize(&headers, false)?;
    params(query, &[])?;
    let v = app.embed_image(body_of(body)?, "the body").await?;
    /// Serialised from f32 (the shortest decimal that reads back the same float), not
    /// widened to f64's seventeen digits.
    #[derive(serde::Serialize)]
    struct Embedding {
        dim: usize,
        embedding: Vec<f32>,
    }
    let text = serde_json::to_string(&Embedding {
        dim: v.len(),
        embedding: v,
    })
    .expect("floats serialise");
    Ok(json_text(StatusCode::OK, text))
}

async fn search(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    app.authorize(&headers, false)?;
    let pairs = params(query, &["k", "exact"])?;
    let k = match param(&pairs, "k") {
        None => 5,
        Some(text) => match text.parse::<usize>() {
            Ok(k) if (1..=MAX_K).contains(&k) => k,
            _ => {
                return Err(ApiError::bad(format!(
                    "k={text}: ask for 1 to {MAX_K} neighbours"
                )));
            }
        },
    };
    let mode = match param(&pairs, "exact") {
        None | Some("false" | "0") => SearchMode::Auto,
        Some("true" | "1" | "") => SearchMode::Exact,
        Some(other) => {
            return Err(ApiError::bad(format!("exact={other}: true or false")));
        }
    };
    let query = app.vector_of(&headers, body_of(body)?).await?;
    let app2 = Arc::clone(&app);
    tokio::task::spawn_blocking(move || {
        let index = app2.read_index();
        let hits = index
            .search(&query, k, mode)
            .map_err(|e| ApiError::bad(e.to_string()))?;
        let neighbors: Vec<Value> = hits
            .iter()
            .map(|h| {
                let (item, _) = index.get(h.id).expect("a hit is an item");
                json!({
                    "id": h.id,
                    "path": item.meta.path,
                    "label": item.meta.label,
                    "distance": h.distance,
                    "match": app2.threshold.map(|t| h.distance <= t),
                })
            })
            .collect();
        ok(&json!({ "neighbors": neighbors }))
    })
    .await
    .map_err(ApiError::internal)?
}

async fn verify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Answer {
    app.authorize(&headers, false)?;
    params(query, &[])?;
    let mut form = form.map_err(|e| {
        ApiError::new(
            e.status(),
            format!(
                "send a multipart/form-data form with images `a` and `b`: {}",
                e.body_text()
            ),
        )
    })?;
    let (mut a, mut b) = (None, None);
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| ApiError::new(e.status(), format!("the form: {}", e.body_text())))?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or("").to_owned();
        let slot = match name.as_str() {
            "a" => &mut a,
            "b" => &mut b,
            other => {
                return Err(ApiError::bad(format!(
                    "unknown form field `{other}`: send images `a` and `b`"
                )));
            }
        };
        if slot.is_some() {
            return Err(ApiError::bad(format!("form field `{name}` given twice")));
        }
        let bytes = field.bytes().await.map_err(|e| {
            ApiError::new(
                e.status(),
                format!("form field `{name}`: {}", e.body_text()),
            )
        })?;
        *slot = Some(bytes);
    }
    let (Some(a), Some(b)) = (a, b) else {
        return Err(ApiError::bad("send both images: form fields `a` and `b`"));
    };
    let (ea, eb) = tokio::join!(app.embed_image(a, "image a"), app.embed_image(b, "image b"));
    let (ea, eb) = (ea?, eb?);
    let metric = app.read_index().spec().metric;
    let distance = triplet_index::distance(metric, &ea, &eb);
    ok(&json!({
        "distance": distance,
        "same": app.threshold.map(|t| distance <= t),
        "threshold": app.threshold,
    }))
}

/// A label from a request: kept as metadata only (never a path), printable, not too long.
fn check_label(label: &str) -> Result<(), ApiError> {
    if label.is_empty() || label.chars().count() > MAX_LABEL {
        return Err(ApiError::bad(format!(
            "label: 1 to {MAX_LABEL} characters, got {}",
            label.chars().count()
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "label: no control characters (newlines, tabs)",
        ));
    }
    Ok(())
}

async fn enroll(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    app.authorize(&headers, true)?;
    let pairs = params(query, &["label"])?;
    let Some(label) = param(&pairs, "label").map(str::to_owned) else {
        return Err(ApiError::bad(
            "give the item's label: POST /items?label=NAME",
        ));
    };
    check_label(&label)?;
    let vector = app.vector_of(&headers, body_of(body)?).await?;
    let app2 = Arc::clone(&app);
    tokio::task::spawn_blocking(move || {
        let mut index = app2.index.write().unwrap_or_else(|e| e.into_inner());
        let meta = Meta {
            path: None,
            label: Some(label.clone()),
            extra: Default::default(),
        };
        let id = index
            .add(vec![(vector, meta)])
            .map_err(|e| ApiError::internal(format!("enrolling: {e}")))?[0];
        if index.needs_compaction()
            && let Err(e) = index.compact()
        {
            // The item is on the disk (in the log): compaction can wait for the next time.
            say(&format!(
                "warning: compacting {}: {e}",
                index.dir().display()
            ));
        }
        let mut r = json_response(StatusCode::CREATED, &json!({"id": id, "label": label}));
        if let Ok(v) = HeaderValue::from_str(&format!("/items/{id}")) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Ok(r)
    })
    .await
    .map_err(ApiError::internal)?
}

fn id_of(id: Result<Path<String>, PathRejection>) -> Result<u64, ApiError> {
    let Path(text) = id.map_err(|e| ApiError::bad(e.body_text()))?;
    text.parse()
        .map_err(|_| ApiError::bad(format!("`{text}` is not an item id (a whole number)")))
}

async fn get_item(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    app.authorize(&headers, false)?;
    let id = id_of(id)?;
    match item_json(&app.read_index(), id) {
        Some(v) => ok(&v),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no item has id {id}"),
        )),
    }
}

async fn remove_item(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    app.authorize(&headers, true)?;
    let id = id_of(id)?;
    let app2 = Arc::clone(&app);
    tokio::task::spawn_blocking(move || {
        let mut index = app2.index.write().unwrap_or_else(|e| e.into_inner());
        if index.get(id).is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no item has id {id}"),
            ));
        }
        index
            .remove(&[id])
            .map_err(|e| ApiError::internal(format!("removing: {e}")))?;
        ok(&json!({"id": id, "removed": true}))
    })
    .await
    .map_err(ApiError::internal)?
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint: GET /health, /info, /items/{id}; POST /embed, /search, /verify, \
         /items; DELETE /items/{id}",
    )
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint takes another method",
    )
}

fn router(app: Arc<App>, max_body: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/embed", post(embed))
        .route("/search", post(search))
        .route("/verify", post(verify))
        .route("/items", post(enroll))
        .route("/items/{id}", get(get_item).delete(remove_item))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// Opens the index (made empty if the folder does not exist) with its model.
fn open(o: &ServeOptions) -> Result<(Index, crate::run::trained::Trained)> {
    let device = o.backend.device().map_err(anyhow::Error::msg)?;
    if o.index.exists() {
        let index = Index::open_writer(&o.index)?;
        let trained = load_model_for(&index, o.checkpoint.as_deref(), &device)?;
        return Ok((index, trained));
    }
    let Some(checkpoint) = &o.checkpoint else {
        anyhow::bail!(
            "--index {} does not exist; give --checkpoint to start an empty index for that model",
            o.index.display()
        );
    };
    let trained = load(checkpoint, &device, || None)?;
    let spec = IndexSpec {
        dim: trained.config.model.dim,
        metric: metric_of(&trained),
        model: model_of(&trained)?,
        ann: Default::default(),
    };
    let index = Index::build(&o.index, spec, &[], Vec::new())?;
    check_model(&index, &trained)?;
    say(&format!("new empty index {}", o.index.display()));
    Ok((index, trained))
}

/// Serves until SIGTERM or Ctrl-C, then finishes the requests in flight and compacts the
/// index if its log has grown.
pub fn serve(o: ServeOptions) -> Result<()> {
    let (index, trained) = open(&o)?;
    say_model(&trained, o.backend);
    let distance = crate::config::toml_name(&trained.config.loss.distance);
    let threshold = o
        .threshold
        .as_deref()
        .map(|t| resolve_threshold(t, &trained, &distance))
        .transpose()?;
    if let Some((t, from)) = &threshold {
        say(&format!(
            "threshold: {distance} distance ≤ {t:.4} is the same ({from})"
        ));
    }
    let model = model_of(&trained)?.info;
    let transform = Arc::clone(&trained.transform);
    let items = index.len();
    let app = Arc::new(App {
        embedder: Embedder::start(trained, o.batch),
        transform,
        index: RwLock::new(index),
        threshold: threshold.map(|(t, _)| t),
        token: o.token.clone(),
        token_all: o.token_all,
        max_pixels: o.max_pixels,
        model,
        backend: o.backend.to_string(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()
        .context("starting the server's runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(o.addr)
            .await
            .with_context(|| format!("--addr {}: cannot listen there", o.addr))?;
        let local = listener.local_addr().context("the listening address")?;
        say(&format!(
            "serving {} on http://{local} ({items} items{}); SIGTERM or Ctrl-C stops",
            o.index.display(),
            if o.token.is_some() {
                ", token required to enroll"
            } else {
                ""
            }
        ));
        axum::serve(listener, router(Arc::clone(&app), o.max_body))
            .with_graceful_shutdown(stop_signal())
            .await
            .context("serving")
    })?;
    // Every request has been answered; the runtime's blocking threads are done.
    drop(runtime);
    let app = Arc::into_inner(app).context("requests still hold the server's state")?;
    let mut index = app.index.into_inner().unwrap_or_else(|e| e.into_inner());
    drop(app.embedder);
    if index.needs_compaction() {
        index.compact()?;
    }
    say(&format!(
        "stopped: {} items in {}",
        index.len(),
        o.index.display()
    ));
    Ok(())
}

async fn stop_signal() {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
