//! `digits serve`.

use anyhow::{Context, Result};
use clap::Args;
use digits_server::{Catalogue, Config, Rate, Store, Token};
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The default model: a shipped model's name (cnn, cnn-large, ensemble, ensemble-large, mlp, svm) or a model file. The shipped models
    /// are always offered too.
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Largest request body accepted, in MB (413 above it).
    #[arg(long, default_value_t = 8)]
    max_body_mb: usize,
    /// Largest image accepted, in megapixels, checked from the header before decoding (413).
    #[arg(long, default_value_t = 25)]
    max_megapixels: u64,
    /// Requests that may wait for an inference thread before new ones get 503.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Seconds a request may take, waiting included, before it gets 503.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Also serve every NAME.safetensors model file in this folder (a file named like a shipped
    /// model replaces it); `POST /api/v1/admin/reload` or SIGHUP loads new and changed files.
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Keep the corrections users give in this SQLite database (off unless given).
    #[arg(long, env = "DIGITS_FEEDBACK_DB")]
    feedback_db: Option<PathBuf>,
    /// File holding the bearer token of the admin endpoints (without it they are off).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// File holding a bearer token that storing corrections then needs.
    #[arg(long)]
    feedback_token_file: Option<PathBuf>,
    /// Corrections one client address may post per minute (after its burst).
    #[arg(long, default_value_t = Rate::default().per_minute)]
    feedback_per_minute: u32,
    /// Corrections one client address may post at once.
    #[arg(long, default_value_t = Rate::default().burst)]
    feedback_burst: u32,
}

fn token(path: Option<&PathBuf>) -> Result<Option<Token>> {
    path.map(|p| Token::from_file(p).map_err(anyhow::Error::msg))
        .transpose()
}

pub fn serve(args: ServeArgs, threads: usize) -> Result<()> {
    anyhow::ensure!(
        args.max_body_mb > 0 && args.max_megapixels > 0 && args.queue > 0 && args.timeout_secs > 0,
        "--max-body-mb, --max-megapixels, --queue and --timeout-secs must be at least 1"
    );
    anyhow::ensure!(
        args.feedback_per_minute > 0 && args.feedback_burst > 0,
        "--feedback-per-minute and --feedback-burst must be at least 1"
    );
    let catalogue = Catalogue::load(&args.model, args.models_dir.as_deref())?;
    let feedback = args.feedback_db.as_deref().map(Store::open).transpose()?;
    let config = Config {
        workers: threads,
        max_body: args.max_body_mb << 20,
        limits: digits_vision::Limits {
            max_bytes: args.max_body_mb << 20,
            max_pixels: args.max_megapixels * 1_000_000,
        },
        queue: args.queue,
        timeout: std::time::Duration::from_secs(args.timeout_secs),
        models_dir: args.models_dir.clone(),
        admin_token: token(args.admin_token_file.as_ref())?,
        feedback_token: token(args.feedback_token_file.as_ref())?,
        feedback_rate: Rate {
            per_minute: args.feedback_per_minute,
            burst: args.feedback_burst,
        },
    };
    let names = catalogue
        .models
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let kept = match &args.feedback_db {
        Some(db) => format!("; corrections are kept in {}", db.display()),
        None => String::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        println!(
            "digits is serving on http://{} (models: {names}){kept}; Ctrl+C stops it",
            listener.local_addr()?,
        );
        let app = digits_server::app(config, catalogue, feedback);
        digits_server::serve(listener, app).await?;
        Ok(())
    })
}
