//! `digits serve`.

use anyhow::{Context, Result};
use clap::Args;
use digits_model::shipped;
use digits_server::workers::Models;
use digits_server::Config;

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The default model: a shipped model's name (cnn, ensemble, mlp, svm) or a model file. The shipped models
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
}

pub fn serve(args: ServeArgs, threads: usize) -> Result<()> {
    let mut models = Models::new();
    for name in shipped::NAMES {
        models.insert(name.to_string(), shipped::resolve(name)?);
    }
    let default = if models.contains_key(&args.model) {
        args.model.clone()
    } else {
        let m = shipped::resolve(&args.model)?;
        let name = std::path::Path::new(&args.model)
            .file_stem()
            .map_or("custom".into(), |s| s.to_string_lossy().into_owned());
        models.insert(name.clone(), m);
        name
    };
    anyhow::ensure!(
        args.max_body_mb > 0 && args.max_megapixels > 0 && args.queue > 0 && args.timeout_secs > 0,
        "--max-body-mb, --max-megapixels, --queue and --timeout-secs must be at least 1"
    );
    let config = Config {
        default_model: default,
        workers: threads,
        max_body: args.max_body_mb << 20,
        limits: digits_vision::Limits {
            max_bytes: args.max_body_mb << 20,
            max_pixels: args.max_megapixels * 1_000_000,
        },
        queue: args.queue,
        timeout: std::time::Duration::from_secs(args.timeout_secs),
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
            "digits is serving on http://{} (models: {}); Ctrl+C stops it",
            listener.local_addr()?,
            models.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        let app = digits_server::app(config, models);
        digits_server::serve(listener, app).await?;
        Ok(())
    })
}
