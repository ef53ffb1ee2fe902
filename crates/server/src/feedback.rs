//! Corrections (`/api/v1/feedback`) and the operator's reload (`/api/v1/admin/reload`).
//!
//! A correction is read with the model like a prediction (same limits, same errors), then
//! committed to the database before the 201 goes out: an acknowledged correction is on disk.
//! Writes are per-client rate limited and, when the server has a feedback token, need it; the
//! admin endpoints need the admin token and do not exist without one.

use crate::{finish_with, image_body, parse_input, query, ApiError, AppState, Input};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use digits_feedback::{
    digit_correction, number_corrections, Correction, FeedbackError, Origin, Source, Store,
};
use digits_model::recognize::{read_digit, read_number, read_pixels};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Deserialize)]
pub(crate) struct FeedbackQuery {
    label: Option<String>,
    text: Option<String>,
    model: Option<String>,
    source: Option<String>,
}

/// `GET /api/v1/feedback`: whether corrections are kept here, for the page to say so.
pub(crate) async fn status(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "enabled": s.feedback.is_some(),
        "token_required": s.feedback.is_some() && s.config.feedback_token.is_some(),
    }))
}

impl AppState {
    /// The database, once the request may write to it: 404 when corrections are not kept,
    /// 401 without the feedback token (when there is one), 429 over the client's rate.
    fn feedback_gate(
        &self,
        headers: &HeaderMap,
        client: Option<Extension<ConnectInfo<SocketAddr>>>,
    ) -> Result<Arc<Mutex<Store>>, Refusal> {
        let Some(store) = self.feedback.clone() else {
            return Err(Refusal::Api(ApiError(
                StatusCode::NOT_FOUND,
                "feedback_off",
                "this server keeps no corrections (start it with --feedback-db FILE)".into(),
            )));
        };
        if let Some(token) = &self.config.feedback_token {
            token.check(headers).map_err(Refusal::Api)?;
        }
        let ip = client.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0 .0.ip());
        self.limiter.take(ip).map_err(Refusal::Wait)?;
        Ok(store)
    }
}

/// Why a write is refused before it is read.
pub(crate) enum Refusal {
    Api(ApiError),
    Wait(std::time::Duration),
}

impl AppState {
    fn refuse(&self, endpoint: &'static str, start: Instant, r: Refusal) -> Response {
        match r {
            Refusal::Api(e) => finish_with(self, endpoint, start, Err(e), StatusCode::CREATED),
            Refusal::Wait(wait) => {
                self.metrics.record(endpoint, 429, start.elapsed());
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, secs.to_string())],
                    Json(json!({
                        "error": format!("too many corrections from this address; retry in {secs} s"),
                        "code": "rate_limited",
                    })),
                )
                    .into_response()
            }
        }
    }
}

fn parse_label(label: Option<String>) -> Result<u8, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, "bad_label", m);
    let label = label.ok_or_else(|| bad("give the right digit as ?label=0..9".into()))?;
    match label.trim().parse::<u8>() {
        Ok(d) if d < 10 => Ok(d),
        _ => Err(bad(format!("label '{label}' is not a digit 0-9"))),
    }
}

fn parse_source(source: Option<String>) -> Result<Source, ApiError> {
    match source.as_deref() {
        None | Some("api") => Ok(Source::Api),
        Some("web") => Ok(Source::Web),
        Some(other) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_source",
            format!("source '{other}' is not one of api, web"),
        )),
    }
}

/// Commits corrections on a blocking thread; returns their ids.
async fn store(db: Arc<Mutex<Store>>, all: Vec<Correction>) -> Result<Vec<i64>, ApiError> {
    let written = tokio::task::spawn_blocking(move || {
        db.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert_all(&all)
    })
    .await
    .map_err(|_| crate::internal("storing the correction failed"))?;
    written.map_err(|e| match e {
        FeedbackError::Invalid(m) => {
            ApiError(StatusCode::UNPROCESSABLE_ENTITY, "bad_correction", m)
        }
        other => {
            tracing::error!("storing a correction failed: {other}");
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_failed",
                "the correction could not be stored; it was not kept".into(),
            )
        }
    })
}

/// `POST /api/v1/feedback?label=D`: the image (or pixels) is the digit D.
pub(crate) async fn digit(
    State(s): State<Arc<AppState>>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    q: Result<Query<FeedbackQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    const ENDPOINT: &str = "feedback";
    let start = Instant::now();
    let db = match s.feedback_gate(&headers, client) {
        Ok(db) => db,
        Err(r) => return s.refuse(ENDPOINT, start, r),
    };
    let result = async {
        let q = query(q)?;
        let label = parse_label(q.label)?;
        let source = parse_source(q.source)?;
        let (name, served) = s.model(q.model)?;
        let input = parse_input(&headers, body, true)?;
        let image = match &input {
            Input::Image(b) => Some(b.to_vec()),
            Input::Pixels(_) => None,
        };
        let limits = s.config.limits;
        let version = served.model.lineage().version;
        let reading = s
            .infer(name.clone(), served, move |m| match input {
                Input::Image(bytes) => read_digit(m, &bytes, &limits),
                Input::Pixels(p) => read_pixels(m, &p),
            })
            .await?;
        let origin = Origin {
            source,
            model: name.clone(),
            model_version: version,
            image,
        };
        let ids = store(db, vec![digit_correction(&reading, label, origin)]).await?;
        Ok(json!({
            "id": ids[0],
            "label": label,
            "read": reading.prediction.digit,
            "confidence": reading.prediction.confidence,
            "model": name,
            "version": version,
        }))
    }
    .await;
    finish_with(&s, ENDPOINT, start, result, StatusCode::CREATED)
}

/// `POST /api/v1/feedback/number?text=123`: the number in the image is 123, one correction per
/// digit found.
pub(crate) async fn number(
    State(s): State<Arc<AppState>>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    q: Result<Query<FeedbackQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    const ENDPOINT: &str = "feedback_number";
    let start = Instant::now();
    let db = match s.feedback_gate(&headers, client) {
        Ok(db) => db,
        Err(r) => return s.refuse(ENDPOINT, start, r),
    };
    let result = async {
        let q = query(q)?;
        let text = q.text.ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "bad_text",
                "give the right number as ?text=123".into(),
            )
        })?;
        let source = parse_source(q.source)?;
        let (name, served) = s.model(q.model)?;
        let bytes = image_body(&headers, body)?;
        let limits = s.config.limits;
        let version = served.model.lineage().version;
        let image = bytes.to_vec();
        let reading = s
            .infer(name.clone(), served, move |m| {
                read_number(m, &bytes, &limits)
            })
            .await?;
        let origin = Origin {
            source,
            model: name.clone(),
            model_version: version,
            image: Some(image),
        };
        let all = number_corrections(&reading, &text, origin).map_err(|e| {
            ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_correction",
                e.to_string(),
            )
        })?;
        let ids = store(db, all).await?;
        Ok(json!({
            "ids": ids,
            "text": text.trim(),
            "read": reading.text,
            "model": name,
            "version": version,
        }))
    }
    .await;
    finish_with(&s, ENDPOINT, start, result, StatusCode::CREATED)
}

/// `POST /api/v1/admin/reload`: swaps in new and changed model files (404 without an admin
/// token configured, 401 without the right one, 422 when a file was refused).
pub(crate) async fn reload(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    const ENDPOINT: &str = "reload";
    let start = Instant::now();
    let Some(token) = &s.config.admin_token else {
        return finish_with(
            &s,
            ENDPOINT,
            start,
            Err(ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "admin endpoints are off (start the server with --admin-token-file)".into(),
            )),
            StatusCode::OK,
        );
    };
    let result = async {
        token.check(&headers)?;
        let report = s.reload().await?;
        Ok(report)
    }
    .await;
    match result {
        Ok(report) if !report.refused.is_empty() => {
            s.metrics.record(ENDPOINT, 422, start.elapsed());
            let first = &report.refused[0];
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "error": format!("{} file(s) refused, their models kept: {}: {}", report.refused.len(), first.file, first.error),
                    "code": "reload_refused",
                    "report": report,
                    "models": s.current().describe()["models"],
                })),
            )
                .into_response()
        }
        Ok(report) => finish_with(
            &s,
            ENDPOINT,
            start,
            Ok(json!({"report": report, "models": s.current().describe()["models"]})),
            StatusCode::OK,
        ),
        Err(e) => finish_with(&s, ENDPOINT, start, Err(e), StatusCode::OK),
    }
}
