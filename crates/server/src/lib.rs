//! `digits serve`: the drawing page and the JSON API, in one binary (axum on tokio).
//!
//! Handlers only parse and answer; decoding, normalisation and inference run on
//! [`workers::Workers`], off the async executor. Every input is bounded (body size, pixel count
//! from the image header, queue length, request time) and every failure is a JSON error with a
//! status and a stable `code`.

mod catalogue;
mod feedback;
pub mod guard;
mod metrics;
pub mod workers;

pub use catalogue::{Catalogue, CatalogueError, ReloadReport, Served};
pub use digits_feedback::Store;
pub use guard::{Rate, Token};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use digits_model::recognize::{read_digit, read_number, read_pixels, Reading};
use digits_vision::{Limits, VisionError};
use metrics::Metrics;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use workers::Workers;

const INDEX: &str = include_str!("../static/index.html");
const OPENAPI: &str = include_str!("../static/openapi.json");

#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    /// Largest request body accepted.
    pub max_body: usize,
    pub workers: usize,
    /// Requests that may wait for a worker before new ones are refused.
    pub queue: usize,
    pub timeout: Duration,
    /// Where `POST /api/v1/admin/reload` (and SIGHUP) look for new model files.
    pub models_dir: Option<PathBuf>,
    /// Without it the admin endpoints are off (404).
    pub admin_token: Option<Token>,
    /// With it, storing a correction needs this bearer token.
    pub feedback_token: Option<Token>,
    /// Corrections one client address may post.
    pub feedback_rate: Rate,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits {
                max_bytes: 8 << 20,
                max_pixels: 25_000_000,
            },
            max_body: 8 << 20,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: 256,
            timeout: Duration::from_secs(10),
            models_dir: None,
            admin_token: None,
            feedback_token: None,
            feedback_rate: Rate::default(),
        }
    }
}

struct AppState {
    config: Config,
    workers: Workers,
    /// The models on offer now; a reload swaps in a new catalogue.
    catalogue: RwLock<Arc<Catalogue>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    metrics: Metrics,
    feedback: Option<Arc<Mutex<Store>>>,
    limiter: guard::Limiter,
    openapi: Value,
}

/// An API error: status, stable code, message.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.2, "code": self.1}));
        if self.0 == StatusCode::UNAUTHORIZED {
            (self.0, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.0, body).into_response()
        }
    }
}

impl From<VisionError> for ApiError {
    fn from(e: VisionError) -> Self {
        let (status, code) = match e {
            VisionError::TooManyBytes { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            VisionError::TooManyPixels { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large"),
            VisionError::Empty => (StatusCode::BAD_REQUEST, "empty_body"),
            VisionError::UnknownFormat | VisionError::Decode(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "not_decodable")
            }
            VisionError::NoInk => (StatusCode::UNPROCESSABLE_ENTITY, "no_ink"),
        };
        ApiError(status, code, e.to_string())
    }
}

/// The application: its routes and a handle to reload its models.
pub struct App {
    pub router: Router,
    state: Arc<AppState>,
}

/// Builds the application with its worker threads; `feedback` is the corrections database,
/// when corrections are kept.
pub fn app(config: Config, catalogue: Catalogue, feedback: Option<Store>) -> App {
    let workers = Workers::start(config.workers, config.queue);
    let openapi: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
    let state = Arc::new(AppState {
        catalogue: RwLock::new(Arc::new(catalogue)),
        reloading: tokio::sync::Mutex::new(()),
        workers,
        metrics: Metrics::default(),
        feedback: feedback.map(|s| Arc::new(Mutex::new(s))),
        limiter: guard::Limiter::new(config.feedback_rate),
        openapi,
        config,
    });
    let router = Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics_handler))
        .route("/api/openapi.json", get(openapi_handler))
        .route("/api/v1/models", get(models_handler))
        .route("/api/v1/predict", post(predict))
        .route("/api/v1/predict/number", post(predict_number))
        .route(
            "/api/v1/feedback",
            get(feedback::status).post(feedback::digit),
        )
        .route("/api/v1/feedback/number", post(feedback::number))
        .route("/api/v1/admin/reload", post(feedback::reload))
        .layer(DefaultBodyLimit::max(state.config.max_body))
        .with_state(state.clone());
    App { router, state }
}

impl App {
    /// Reads the models folder again and swaps in what changed (as `POST /api/v1/admin/reload`).
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        self.state.reload().await.map_err(|e| e.2)
    }
}

async fn metrics_handler(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn models_handler(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(s.current().describe())
}

/// The OpenAPI document, with the models on offer now as the `model` parameter's values.
async fn openapi_handler(State(s): State<Arc<AppState>>) -> Json<Value> {
    let mut doc = s.openapi.clone();
    let names = json!(s.current().models.keys().collect::<Vec<_>>());
    doc["components"]["parameters"]["model"]["schema"]["enum"] = names.clone();
    doc["components"]["schemas"]["ModelName"]["enum"] = names;
    Json(doc)
}

#[derive(Deserialize)]
struct ModelQuery {
    model: Option<String>,
}

/// A query string that does not parse is a JSON 400 like every other error.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|q| q.0)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))
}

#[derive(Deserialize)]
struct PixelsBody {
    pixels: Vec<f64>,
}

/// What a request carries once its headers and body are checked.
enum Input {
    Image(Bytes),
    Pixels(Vec<f32>),
}

fn parse_input(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    allow_pixels: bool,
) -> Result<Input, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is over the size limit".into(),
            )
        } else {
            ApiError(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
        }
    })?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ctype = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ctype.starts_with("image/") {
        return Ok(Input::Image(body));
    }
    if ctype == "application/json" && allow_pixels {
        return parse_pixels(&body).map(Input::Pixels);
    }
    let accepted = if allow_pixels {
        "image/* or application/json"
    } else {
        "image/*"
    };
    Err(ApiError(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("Content-Type '{ctype}' is not supported; send {accepted}"),
    ))
}

/// The JSON body `{"pixels": [784 numbers in 0..1]}`, checked; every failure is a 400.
pub fn parse_pixels(body: &[u8]) -> Result<Vec<f32>, ApiError> {
    let parsed: PixelsBody = serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("invalid JSON body: {e}"),
        )
    })?;
    if parsed.pixels.len() != 784 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "wrong_pixel_count",
            format!("expected 784 pixels (28x28), got {}", parsed.pixels.len()),
        ));
    }
    if let Some(bad) = parsed
        .pixels
        .iter()
        .find(|v| !v.is_finite() || !(0.0..=1.0).contains(*v))
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_pixels",
            format!("pixel value {bad} is not a number in 0..1"),
        ));
    }
    Ok(parsed.pixels.iter().map(|&v| v as f32).collect())
}

impl AppState {
    fn current(&self) -> Arc<Catalogue> {
        self.catalogue
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The named model (or the default) as served now.
    fn model(&self, name: Option<String>) -> Result<(String, Served), ApiError> {
        let catalogue = self.current();
        let name = name.unwrap_or_else(|| catalogue.default.clone());
        match catalogue.models.get(&name) {
            Some(served) => Ok((name, served.clone())),
            None => Err(ApiError(
                StatusCode::BAD_REQUEST,
                "unknown_model",
                format!("unknown model '{name}'; see /api/v1/models"),
            )),
        }
    }

    /// Runs `f` with the model on a worker, bounded by the request timeout.
    async fn infer<T: Send + 'static>(
        &self,
        name: String,
        served: Served,
        f: impl FnOnce(&mut digits_model::Model) -> Result<T, VisionError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let job = self
            .workers
            .run(move |cache| f(cache.model(&name, &served)).map_err(ApiError::from));
        match tokio::time::timeout(self.config.timeout, job).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the server is at capacity; retry shortly".into(),
            )),
            Err(_) => Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long".into(),
            )),
        }
    }

    /// Reads the models folder again and swaps in the new catalogue.
    async fn reload(&self) -> Result<ReloadReport, ApiError> {
        let Some(dir) = self.config.models_dir.clone() else {
            return Err(ApiError(
                StatusCode::CONFLICT,
                "no_models_dir",
                "this server was not started with --models-dir; there is nothing to reload".into(),
            ));
        };
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.current();
        let (next, report) = tokio::task::spawn_blocking(move || current.reloaded(&dir))
            .await
            .map_err(|_| internal("the reload failed"))?
            .map_err(|e| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "reload_failed",
                    e.to_string(),
                )
            })?;
        *self.catalogue.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        tracing::warn!(
            loaded = ?report.loaded,
            removed = ?report.removed,
            refused = report.refused.len(),
            "models reloaded"
        );
        Ok(report)
    }
}

fn internal(what: &str) -> ApiError {
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        what.to_string(),
    )
}

/// A body that must be an image (the number endpoints).
fn image_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    match parse_input(headers, body, false)? {
        Input::Image(bytes) => Ok(bytes),
        Input::Pixels(_) => Err(internal("pixels are not accepted here")),
    }
}

fn number_json(n: &digits_model::recognize::NumberReading, model: &str, version: u32) -> Value {
    json!({
        "number": n.text,
        "confidence": n.confidence,
        "uncertain": n.uncertain,
        "digits": n.digits.iter().map(reading_json).collect::<Vec<_>>(),
        "model": model,
        "version": version,
    })
}

fn reading_json(r: &Reading) -> Value {
    json!({
        "digit": r.prediction.digit,
        "confidence": r.prediction.confidence,
        "probabilities": r.prediction.probabilities,
        "uncertain": r.uncertain,
        "bbox": r.normalized.bbox,
        "normalized": r.normalized.pixels,
    })
}

fn finish(
    s: &AppState,
    endpoint: &'static str,
    start: Instant,
    result: Result<Value, ApiError>,
) -> Response {
    finish_with(s, endpoint, start, result, StatusCode::OK)
}

/// Answers `result` (with `ok` on success), counting and logging it; never logs a header.
fn finish_with(
    s: &AppState,
    endpoint: &'static str,
    start: Instant,
    result: Result<Value, ApiError>,
    ok: StatusCode,
) -> Response {
    let elapsed = start.elapsed();
    match result {
        Ok(mut v) => {
            v["elapsed_ms"] = json!(elapsed.as_secs_f64() * 1e3);
            s.metrics.record(endpoint, ok.as_u16(), elapsed);
            tracing::info!(
                endpoint,
                status = ok.as_u16(),
                ms = elapsed.as_secs_f64() * 1e3,
                "request"
            );
            (ok, Json(v)).into_response()
        }
        Err(e) => {
            s.metrics.record(endpoint, e.0.as_u16(), elapsed);
            tracing::info!(
                endpoint,
                status = e.0.as_u16(),
                code = e.1,
                "request refused: {}",
                e.2
            );
            e.into_response()
        }
    }
}

async fn predict(
    State(s): State<Arc<AppState>>,
    q: Result<Query<ModelQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let result = async {
        let (name, served) = s.model(query(q)?.model)?;
        let version = served.model.lineage().version;
        let input = parse_input(&headers, body, true)?;
        let limits = s.config.limits;
        let reading = s
            .infer(name.clone(), served, move |m| match input {
                Input::Image(bytes) => read_digit(m, &bytes, &limits),
                Input::Pixels(p) => read_pixels(m, &p),
            })
            .await?;
        let mut v = reading_json(&reading);
        v["model"] = json!(name);
        v["version"] = json!(version);
        Ok(v)
    }
    .await;
    finish(&s, "predict", start, result)
}

async fn predict_number(
    State(s): State<Arc<AppState>>,
    q: Result<Query<ModelQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let result = async {
        let (name, served) = s.model(query(q)?.model)?;
        let version = served.model.lineage().version;
        let bytes = image_body(&headers, body)?;
        let limits = s.config.limits;
        let n = s
            .infer(name.clone(), served, move |m| {
                read_number(m, &bytes, &limits)
            })
            .await?;
        Ok(number_json(&n, &name, version))
    }
    .await;
    finish(&s, "predict_number", start, result)
}

/// Serves until SIGINT or SIGTERM, then lets requests in flight finish; SIGHUP reloads the
/// models folder.
pub async fn serve(listener: tokio::net::TcpListener, app: App) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let state = app.state.clone();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match state.reload().await {
                        Ok(r) if r.refused.is_empty() => {}
                        Ok(r) => tracing::error!(refused = ?r.refused, "reload refused files"),
                        Err(e) => tracing::error!("reload failed: {}", e.2),
                    }
                }
            });
        }
    }
    axum::serve(
        listener,
        app.router
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
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
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
