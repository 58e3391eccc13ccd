//! `triplet serve`: a trained model and an index over HTTP, with JSON answers (axum + tokio).
//!
//! - `GET /health`, `GET /info`;
//! - `POST /embed` (an image) → its embedding;
//! - `POST /search?k=K` (an image, or `{"embedding": […]}`) → the nearest items;
//! - `POST /verify` (a multipart form with images `a` and `b`) → their distance, same or not;
//! - `POST /items?label=L` (an image, or `{"embedding": […]}`) → enrolled, on the disk before the
//!   answer; `GET /items/{id}`, `DELETE /items/{id}`.
//!
//! Images are decoded and prepared on the blocking pool; the model runs on its own thread,
//! which batches whatever requests are waiting ([`embedder`]). Every bad request gets a 4xx
//! with `{"error": "…"}` ([`routes`]); SIGTERM (or Ctrl-C) finishes the requests in flight
//! and exits. With `--token-file`, enrolling and removing (and with `--token-all`, everything)
//! need `Authorization: Bearer <token>`; without one the server listens on loopback only.

#[cfg(feature = "serve")]
pub mod embedder;
#[cfg(feature = "serve")]
pub mod routes;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cli::ServeArgs;
use crate::device::Backend;

/// What `triplet serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `--checkpoint` (default: the index's model).
    pub checkpoint: Option<PathBuf>,
    /// `--index`.
    pub index: PathBuf,
    /// `--addr`.
    pub addr: std::net::SocketAddr,
    /// `--threshold`.
    pub threshold: Option<String>,
    /// The token read from `--token-file`.
    pub token: Option<String>,
    /// `--token-all`.
    pub token_all: bool,
    /// Largest body, in bytes.
    pub max_body: usize,
    /// Largest image, in pixels.
    pub max_pixels: u64,
    /// Most images per forward pass.
    pub batch: usize,
    /// `--backend`.
    pub backend: Backend,
}

/// Reads the token file: its first line, trimmed, at least 16 characters.
fn read_token(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--token-file {}: cannot read it", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.len() < 16 {
        bail!(
            "--token-file {}: the token (its first line) must be at least 16 characters, \
             e.g. `openssl rand -hex 32 > {}`",
            path.display(),
            path.display()
        );
    }
    Ok(token)
}

impl ServeOptions {
    /// From the command line: reads the token file and checks the address.
    pub fn of(a: ServeArgs) -> Result<Self> {
        let token = a.token_file.as_deref().map(read_token).transpose()?;
        if token.is_none() && !a.addr.ip().is_loopback() {
            bail!(
                "--addr {}: without --token-file the server listens on a loopback address only \
                 (127.0.0.1 or [::1]); enrolled faces are biometric data",
                a.addr
            );
        }
        Ok(Self {
            checkpoint: a.checkpoint,
            index: a.index,
            addr: a.addr,
            threshold: a.threshold,
            token,
            token_all: a.token_all,
            max_body: usize::try_from(a.max_body_mib << 20).unwrap_or(usize::MAX),
            max_pixels: a.max_megapixels * 1_000_000,
            batch: a.batch as usize,
            backend: a.device.backend,
        })
    }
}

/// Runs `triplet serve` until SIGTERM or Ctrl-C.
#[cfg(feature = "serve")]
pub fn serve(o: ServeOptions) -> Result<()> {
    routes::serve(o)
}

/// Runs `triplet serve`: this build has no server.
#[cfg(not(feature = "serve"))]
pub fn serve(_: ServeOptions) -> Result<()> {
    bail!("this build of triplet has no server: build it with `--features serve` (on by default)")
}
