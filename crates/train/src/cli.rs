//! The command line (clap derive; doc comments are the help text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Precision;
use crate::device::Backend;
use crate::eval::verification::PairsSource;
use crate::eval::{DEFAULT_GALLERY_COLUMN, DEFAULT_QUERY_COLUMN, Group};

/// Triplet: deep metric learning with triplet loss, on CPU or GPU.
#[derive(Debug, Parser)]
#[command(name = "triplet", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train an embedding model; `--resume` continues the run in `--out`.
    Train(TrainArgs),
    /// Metrics of a trained model: retrieval (P@1, Recall@1/2/4/8, R-Precision, MAP@R, MAP,
    /// MRR), clustering (NMI, AMI), verification (ROC AUC, TAR@FAR, 10-fold accuracy and the
    /// best threshold) and re-identification (CMC rank-1/5/10, mAP).
    Eval(EvalArgs),
    /// Find the nearest gallery images of query images with a trained model, and say which are
    /// a match under a distance threshold.
    Search(SearchArgs),
    /// Embed images with a trained model: embeddings.npy, labels.csv, vectors.tsv,
    /// metadata.tsv.
    Embed(EmbedArgs),
    /// Export a trained model's weights to safetensors.
    Export(ExportArgs),
    /// A persistent gallery of a model's embeddings: build, add, remove, info.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Serve a model and an index over HTTP: embed, search, verify, enroll and remove.
    Serve(ServeArgs),
}

/// `triplet index …`.
#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Embed images (or read a `triplet embed` folder) and write a new index folder.
    Build(IndexBuildArgs),
    /// Embed images with the index's model and add them (atomically, durably).
    Add(IndexAddArgs),
    /// Remove items by id (all of them or none).
    Remove(IndexRemoveArgs),
    /// What an index holds: items, model, distance, graph, generation.
    Info(IndexInfoArgs),
}

/// `triplet index build`.
#[derive(Debug, Args)]
pub struct IndexBuildArgs {
    /// A run folder (its best checkpoint, else its latest), a checkpoint folder, or a model
    /// file.
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub checkpoint: PathBuf,
    /// What to index: a `triplet embed` output folder of this model, an image file, or images
    /// (an image folder, an IDX file or folder: its training images, or a CSV list, whose
    /// other columns are kept with each item).
    #[arg(long, value_name = "PATH|EMBED_DIR")]
    pub data: PathBuf,
    /// The index folder to write (must not exist, or be empty).
    #[arg(long, value_name = "INDEX")]
    pub out: PathBuf,
    /// The label of every item, instead of its class.
    #[arg(long, value_name = "L")]
    pub label: Option<String>,
    /// HNSW neighbours per node (faiss's M).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u64).range(2..=256))]
    pub hnsw_m: u64,
    /// HNSW candidates while inserting (faiss's efConstruction).
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u64).range(2..=4096))]
    pub ef_construction: u64,
    /// HNSW candidates while searching (faiss's efSearch; a search for k > N keeps k).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub ef_search: u64,
    /// Galleries of at most this many items are searched exactly (all distances) by default.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub exact_below: usize,
    /// `--backend`.
    #[command(flatten)]
    pub device: BackendArg,
}

/// `triplet index add`.
#[derive(Debug, Args)]
pub struct IndexAddArgs {
    /// The index folder.
    #[arg(value_name = "INDEX")]
    pub index: PathBuf,
    /// What to add: an image file, images (a folder, an IDX file or folder, a CSV list), or a
    /// `triplet embed` folder of the index's model.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// The label of every item added, instead of its class.
    #[arg(long, value_name = "L")]
    pub label: Option<String>,
    /// The model (default: the checkpoint the index was built with; another model is refused).
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub checkpoint: Option<PathBuf>,
    /// `--backend`.
    #[command(flatten)]
    pub device: BackendArg,
}

/// `triplet index remove`.
#[derive(Debug, Args)]
pub struct IndexRemoveArgs {
    /// The index folder.
    #[arg(value_name = "INDEX")]
    pub index: PathBuf,
    /// Ids of the items to remove (`triplet search --index` and `serve` report them).
    #[arg(long = "id", value_name = "ID", required = true, num_args = 1..)]
    pub ids: Vec<u64>,
}

/// `triplet index info`.
#[derive(Debug, Args)]
pub struct IndexInfoArgs {
    /// The index folder.
    #[arg(value_name = "INDEX")]
    pub index: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `triplet serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model (default: the checkpoint the index was built with). Needed when --index does
    /// not exist yet.
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub checkpoint: Option<PathBuf>,
    /// The index folder searched and enrolled into; made (empty) if it does not exist.
    #[arg(long, value_name = "INDEX")]
    pub index: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start). Anything but a
    /// loopback address needs --token-file.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Distance at most which two faces are the same person (`match`, `same`): a number,
    /// `run` (the threshold `triplet eval` found, from the run's metrics.json), or a
    /// metrics.json.
    #[arg(long, value_name = "T|run|FILE", allow_hyphen_values = true)]
    pub threshold: Option<String>,
    /// A file holding the bearer token that `POST /items` and `DELETE /items/…` require.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// With --token-file: every endpoint requires the token, /health too.
    #[arg(long, requires = "token_file")]
    pub token_all: bool,
    /// Largest request body, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_body_mib: u64,
    /// Largest image, in megapixels.
    #[arg(long, value_name = "MP", default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max_megapixels: u64,
    /// Most images per forward pass: concurrent requests are batched up to this.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub batch: u64,
    /// `--backend`.
    #[command(flatten)]
    pub device: BackendArg,
}

/// `triplet eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run folder (its best checkpoint by validation MAP@R, else its latest), a checkpoint
    /// folder, or a model file (`model.bpk`, with the run's config.toml beside it or in its run
    /// folder).
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub checkpoint: PathBuf,
    /// The queries: an image folder, an IDX file or folder (a folder's t10k test images when it
    /// has them), or a CSV list. Without --reference, each query is ranked against all the
    /// others (leave-one-out).
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// The references the queries are ranked against (an IDX folder: its training images).
    #[arg(long, value_name = "PATH")]
    pub reference: Option<PathBuf>,
    /// Where metrics.json (and the plots) go. Default: the run folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// `--backend`.
    #[command(flatten)]
    pub device: BackendArg,
    /// Also write embeddings_pca.png (a PCA map of the query embeddings by class) and, for a
    /// run, curves.png (loss, active triplets, validation MAP@R).
    #[arg(long)]
    pub plot: bool,
    /// Only these classes (comma-separated names, e.g. `6,7,8,9`), in queries and references.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Metric groups (comma-separated): retrieval, clustering (k-means NMI and AMI),
    /// verification (pairs: see --pairs), reid (query/gallery columns of a CSV --data). Default:
    /// retrieval, clustering and verification, and reid when --data is a CSV list with the
    /// query and gallery columns.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_group)]
    pub metrics: Option<Vec<Group>>,
    /// Verification pairs: a CSV `path_a,path_b,same` (paths relative to it; same is 1 or 0),
    /// `all` pairs of the queries, or a number of pairs drawn from the queries' labels, half of
    /// them same-class (as LFW's).
    #[arg(long, value_name = "FILE|all|N", default_value = "6000", value_parser = PairsSource::parse)]
    pub pairs: PairsSource,
    /// Column of a CSV --data that marks re-identification queries (1/0, true/false).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_QUERY_COLUMN)]
    pub query_column: String,
    /// Column of a CSV --data that marks the re-identification gallery.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_GALLERY_COLUMN)]
    pub gallery_column: String,
    /// Column of a CSV --data with a group per image, e.g. a camera id: re-identification
    /// leaves out a query's same-identity gallery images of its own group (Market-1501).
    #[arg(long, value_name = "NAME")]
    pub group_column: Option<String>,
    /// Write retrievals.png: N queries (1 to 20: the worst and the best of all queries by
    /// average precision, and N - 2 drawn with --seed) and their nearest references, framed
    /// green (same class) or red, with their distances; and roc.png when verification runs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=20))]
    pub show: Option<u64>,
    /// Seed of k-means, of the pairs drawn and of the queries shown.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

/// `triplet search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// A run folder (its best checkpoint, else its latest), a checkpoint folder, or a model
    /// file. With --index, default: the index's model.
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub checkpoint: Option<PathBuf>,
    /// The gallery: a `triplet embed` output folder (embeddings.npy and labels.csv, embedded
    /// once), or images: an image folder, an IDX file or folder (its training images), or a
    /// CSV list.
    #[arg(
        long,
        value_name = "PATH|EMBEDDINGS_DIR",
        required_unless_present = "index",
        conflicts_with = "index"
    )]
    pub gallery: Option<PathBuf>,
    /// Search an index folder (`triplet index build`) instead of a gallery.
    #[arg(long, value_name = "INDEX")]
    pub index: Option<PathBuf>,
    /// With --index: exact search (every distance) even where the HNSW graph would be used.
    #[arg(long, requires = "index")]
    pub exact: bool,
    /// Query images: image files, or folders of them.
    #[arg(long, value_name = "PATH", required = true, num_args = 1..)]
    pub query: Vec<PathBuf>,
    /// Neighbours per query.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub k: usize,
    /// Distance at most which a neighbour is a match: a number, `run` (the threshold `triplet
    /// eval` found by verification, from the run folder's metrics.json), or a metrics.json.
    #[arg(long, value_name = "T|run|FILE", allow_hyphen_values = true)]
    pub threshold: Option<String>,
    /// Also write the results to this file: JSON when it ends in .json, else CSV.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// `--backend`.
    #[command(flatten)]
    pub device: BackendArg,
}

/// `triplet embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A run folder (its best checkpoint, else its latest), a checkpoint folder, or a model
    /// file.
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub checkpoint: PathBuf,
    /// The images: an image folder, an IDX file or folder (a folder's t10k test images when it
    /// has them), or a CSV list.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// Output folder: embeddings.npy (float32 [N, dim]), labels.csv (path,label, same order),
    /// vectors.tsv and metadata.tsv (TensorBoard Embedding Projector), embed.json (the model
    /// that made them, which `triplet search --gallery DIR` checks).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// `--backend`.
    #[command(flatten)]
    pub device: BackendArg,
    /// Only these classes (comma-separated names).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// npy (embeddings.npy and the files above), or parquet (embeddings.parquet: id, path,
    /// label, other CSV columns, and a fixed-size-list `vector` column, for vector engines;
    /// cargo feature `parquet`).
    #[arg(long, value_enum, default_value_t = crate::embed::command::EmbedFormat::Npy)]
    pub format: crate::embed::command::EmbedFormat,
}

/// `triplet export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A run folder (its best checkpoint, else its latest), a checkpoint folder, or a model
    /// file.
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub checkpoint: PathBuf,
    /// The safetensors file to write (tensor names are module paths; the run's config is in
    /// the metadata as `triplet_config`).
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: PathBuf,
}

/// `triplet train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Experiment config (TOML). Without it, defaults for small images: the reference CNN,
    /// semi-hard mining, margin 0.2, Adam 1e-3, P×K from the data.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Training data: an image folder (one sub-folder per class), an IDX file or folder, or a
    /// CSV list (`path,label`). Overrides `data.path` of the config.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Number of epochs. Overrides `train.epochs`; with `--resume`, extends the run (a cosine
    /// schedule is stretched to the new length).
    #[arg(long, value_name = "N")]
    pub epochs: Option<u64>,
    /// Run folder: checkpoints, metrics.jsonl, the config and the final model.
    #[arg(long, value_name = "DIR", default_value = "runs/latest")]
    pub out: PathBuf,
    /// `--backend`.
    #[command(flatten)]
    pub device: BackendArg,
    /// Continue the run in `--out` from its latest checkpoint, with its saved config.
    #[arg(long)]
    pub resume: bool,
    /// torchvision weights for a ResNet backbone: a state dict saved with `torch.save`
    /// (`.pth`/`.pt`) or as `.safetensors`, e.g. torchvision's `resnet50-0676ba61.pth`.
    /// Overrides `model.pretrained`; not with `--resume`.
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,
    /// Float type of the forward and backward passes: f32, or mixed precision with f16 (with
    /// dynamic loss scaling) or bf16, the weights and optimiser state staying f32.
    /// Overrides `train.precision`; not with `--resume`.
    #[arg(long, value_name = "NAME", value_parser = parse_precision)]
    pub precision: Option<Precision>,
    /// Data-parallel training over several devices of `--backend`, by index: `0,1` for two GPUs.
    /// Each device gets a replica and whole classes of every P×K batch (P/n classes each, so P
    /// must be at least 2 per device); gradients are averaged on the first. A repeated index
    /// (`0,0`) runs two replicas on one device.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub devices: Vec<usize>,
}

/// `--backend`, declared once for every command that runs a model.
#[derive(Debug, Clone, Copy, Args)]
pub struct BackendArg {
    /// Device: flex (default, alias cpu), ndarray, wgpu, cuda (cargo feature `cuda`); gpu =
    /// cuda if built with it, else wgpu.
    #[arg(long = "backend", value_name = "NAME", default_value = "flex", value_parser = parse_backend)]
    pub backend: Backend,
}

impl Command {
    /// The backend the command runs on (`None`: `export`, which reads on the host).
    pub fn backend(&self) -> Option<Backend> {
        match self {
            Command::Train(a) => Some(a.device.backend),
            Command::Eval(a) => Some(a.device.backend),
            Command::Search(a) => Some(a.device.backend),
            Command::Embed(a) => Some(a.device.backend),
            Command::Export(_) => None,
            Command::Index(IndexCommand::Build(a)) => Some(a.device.backend),
            Command::Index(IndexCommand::Add(a)) => Some(a.device.backend),
            Command::Index(_) => None,
            Command::Serve(a) => Some(a.device.backend),
        }
    }
}

fn parse_backend(name: &str) -> Result<Backend, String> {
    name.parse()
}

fn parse_group(name: &str) -> Result<Group, String> {
    name.parse()
}

fn parse_precision(name: &str) -> Result<Precision, String> {
    name.parse()
}
