//! `digits serve`: the drawing page and the JSON API, in one binary (axum on tokio).
//!
//! Handlers only parse and answer; decoding, normalisation and inference run on
//! [`workers::Workers`], off the async executor. Every input is bounded (body size, pixel count
//! from the image header, queue length, request time) and every failure is a JSON error with a
//! status and a stable `code`.

mod metrics;
pub mod workers;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
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
use std::sync::Arc;
use std::time::{Duration, Instant};
use workers::{Models, Workers};

const INDEX: &str = include_str!("../static/index.html");
const OPENAPI: &str = include_str!("../static/openapi.json");

#[derive(Debug, Clone)]
pub struct Config {
    pub default_model: String,
    pub limits: Limits,
    /// Largest request body accepted.
    pub max_body: usize,
    pub workers: usize,
    /// Requests that may wait for a worker before new ones are refused.
    pub queue: usize,
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_model: "cnn".into(),
            limits: Limits {
                max_bytes: 8 << 20,
                max_pixels: 25_000_000,
            },
            max_body: 8 << 20,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: 256,
            timeout: Duration::from_secs(10),
        }
    }
}

struct AppState {
    config: Config,
    workers: Workers,
    /// Name -> description for `GET /api/v1/models`.
    catalogue: Vec<Value>,
    metrics: Metrics,
}

/// An API error: status, stable code, message.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.2, "code": self.1}))).into_response()
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

/// Builds the application with its worker threads.
pub fn app(config: Config, models: Models) -> Router {
    let catalogue = models
        .iter()
        .map(|(name, m)| {
            json!({
                "name": name,
                "architecture": m.kind(),
                "parameters": m.parameter_count(),
                "test_accuracy": m.test_accuracy(),
                "default": *name == config.default_model,
            })
        })
        .collect();
    let workers = Workers::start(&models, config.workers, config.queue);
    let state = Arc::new(AppState {
        catalogue,
        workers,
        metrics: Metrics::default(),
        config,
    });
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics_handler))
        .route(
            "/api/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/api/v1/models", get(models_handler))
        .route("/api/v1/predict", post(predict))
        .route("/api/v1/predict/number", post(predict_number))
        .layer(DefaultBodyLimit::max(state.config.max_body))
        .with_state(state)
}

async fn metrics_handler(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn models_handler(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"default": s.config.default_model, "models": s.catalogue}))
}

#[derive(Deserialize)]
struct ModelQuery {
    model: Option<String>,
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
    fn model_name(&self, q: ModelQuery) -> Result<String, ApiError> {
        let name = q.model.unwrap_or_else(|| self.config.default_model.clone());
        if self.catalogue.iter().any(|m| m["name"] == name.as_str()) {
            Ok(name)
        } else {
            Err(ApiError(
                StatusCode::BAD_REQUEST,
                "unknown_model",
                format!("unknown model '{name}'; see /api/v1/models"),
            ))
        }
    }

    /// Runs `f` with the named model on a worker, bounded by the request timeout.
    async fn infer<T: Send + 'static>(
        &self,
        name: String,
        f: impl FnOnce(&mut digits_model::Model) -> Result<T, VisionError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let job = self.workers.run(move |models| match models.get_mut(&name) {
            Some(m) => f(m).map_err(ApiError::from),
            None => Err(ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "model missing on worker".into(),
            )),
        });
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
    let elapsed = start.elapsed();
    match result {
        Ok(mut v) => {
            v["elapsed_ms"] = json!(elapsed.as_secs_f64() * 1e3);
            s.metrics.record(endpoint, 200, elapsed);
            tracing::info!(
                endpoint,
                status = 200,
                ms = elapsed.as_secs_f64() * 1e3,
                "request"
            );
            Json(v).into_response()
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
    q: Query<ModelQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let result = async {
        let name = s.model_name(q.0)?;
        let input = parse_input(&headers, body, true)?;
        let limits = s.config.limits;
        let reading = s
            .infer(name.clone(), move |m| match input {
                Input::Image(bytes) => read_digit(m, &bytes, &limits),
                Input::Pixels(p) => read_pixels(m, &p),
            })
            .await?;
        let mut v = reading_json(&reading);
        v["model"] = json!(name);
        Ok(v)
    }
    .await;
    finish(&s, "predict", start, result)
}

async fn predict_number(
    State(s): State<Arc<AppState>>,
    q: Query<ModelQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let result = async {
        let name = s.model_name(q.0)?;
        let Input::Image(bytes) = parse_input(&headers, body, false)? else {
            unreachable!("pixels are not accepted here")
        };
        let limits = s.config.limits;
        let n = s
            .infer(name.clone(), move |m| read_number(m, &bytes, &limits))
            .await?;
        Ok(json!({
            "number": n.text,
            "confidence": n.confidence,
            "uncertain": n.uncertain,
            "digits": n.digits.iter().map(reading_json).collect::<Vec<_>>(),
            "model": name,
        }))
    }
    .await;
    finish(&s, "predict_number", start, result)
}

/// Serves until SIGINT or SIGTERM, then lets requests in flight finish.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app)
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
