//! Corrections, tokens, rate limits and reloading models, in process with the shipped models.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{eleven, get, one, post, send};
use digits_server::{app, Catalogue, Config, Rate, Store, Token};
use serde_json::{json, Value};
use std::path::Path;

const FEEDBACK_SECRET: &str = "feedback-secret-0123456789";
const ADMIN_SECRET: &str = "admin-secret-0123456789abc";

fn with_store(config: Config, db: &Path) -> Router {
    let store = Store::open(db).unwrap();
    app(config, Catalogue::load("cnn", None).unwrap(), Some(store)).router
}

fn request(uri: &str, ctype: &str, token: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut req = Request::post(uri).header(header::CONTENT_TYPE, ctype);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    req.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn a_correction_is_stored_before_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedback.sqlite");
    let app = with_store(Config::default(), &db);

    let (s, b) = get(&app, "/api/v1/feedback").await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, v["enabled"].clone()), (StatusCode::OK, json!(true)));

    let (s, v) = post(&app, "/api/v1/feedback?label=7", "image/png", one()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["label"].clone(), v["read"].clone()),
        (json!(7), json!(1))
    );
    assert_eq!(
        (v["model"].clone(), v["version"].clone()),
        (json!("cnn"), json!(1))
    );
    let id = v["id"].as_i64().unwrap();

    // Pixels work too, and name their model and source.
    let mut pixels = vec![0.0f32; 784];
    for y in 4..24 {
        pixels[y * 28 + 14] = 1.0;
    }
    let body = serde_json::to_vec(&json!({ "pixels": pixels })).unwrap();
    let (s, v) = post(
        &app,
        "/api/v1/feedback?label=4&model=mlp&source=web",
        "application/json",
        body,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // A number: one correction per digit, in order.
    let (s, v) = post(
        &app,
        "/api/v1/feedback/number?text=17",
        "image/png",
        eleven(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["read"].clone(), v["ids"].as_array().unwrap().len()),
        (json!("11"), 2)
    );

    // Whatever is refused stores nothing.
    for (uri, ctype, body, status, code) in [
        ("/api/v1/feedback", "image/png", one(), 400, "bad_label"),
        (
            "/api/v1/feedback?label=10",
            "image/png",
            one(),
            400,
            "bad_label",
        ),
        (
            "/api/v1/feedback?label=x",
            "image/png",
            one(),
            400,
            "bad_label",
        ),
        (
            "/api/v1/feedback?label=3&source=mail",
            "image/png",
            one(),
            400,
            "bad_source",
        ),
        (
            "/api/v1/feedback?label=3&model=resnet",
            "image/png",
            one(),
            400,
            "unknown_model",
        ),
        (
            "/api/v1/feedback?label=3",
            "image/png",
            b"junk".to_vec(),
            422,
            "not_decodable",
        ),
        (
            "/api/v1/feedback?label=3",
            "text/plain",
            one(),
            415,
            "unsupported_media_type",
        ),
        (
            "/api/v1/feedback/number?text=1",
            "image/png",
            eleven(),
            422,
            "bad_correction",
        ),
        (
            "/api/v1/feedback/number?text=a1",
            "image/png",
            eleven(),
            422,
            "bad_correction",
        ),
        (
            "/api/v1/feedback/number",
            "image/png",
            eleven(),
            400,
            "bad_text",
        ),
    ] {
        let (s, v) = post(&app, uri, ctype, body).await;
        assert_eq!(
            (s.as_u16(), v["code"].as_str().unwrap()),
            (status, code),
            "{uri}: {v}"
        );
    }

    // Another connection sees exactly what was acknowledged.
    let store = Store::open(&db).unwrap();
    let records = store.records().unwrap();
    assert_eq!(records.len(), 4);
    let first = &records[0];
    assert_eq!(first.id, id);
    let c = &first.correction;
    assert_eq!((c.label, c.predicted, c.source.name()), (7, Some(1), "api"));
    assert_eq!(c.image.as_deref(), Some(&one()[..]));
    assert_eq!(c.normalized.len(), 784);
    assert!(c.confidence.unwrap() > 0.5);
    let second = &records[1].correction;
    assert_eq!(
        (second.label, second.model.as_str(), second.source.name()),
        (4, "mlp", "web")
    );
    assert!(second.image.is_none());
    let labels: Vec<_> = records[2..].iter().map(|r| r.correction.label).collect();
    assert_eq!(labels, [1, 7]);
    let positions: Vec<_> = records[2..].iter().map(|r| r.correction.position).collect();
    assert_eq!(positions, [Some(0), Some(1)]);
    store.integrity_check().unwrap();
}

#[tokio::test]
async fn without_a_database_corrections_are_off() {
    let app = common::router(Config::default());
    let (_, b) = get(&app, "/api/v1/feedback").await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["enabled"], false);
    for uri in ["/api/v1/feedback?label=1", "/api/v1/feedback/number?text=1"] {
        let (s, v) = post(&app, uri, "image/png", one()).await;
        assert_eq!(
            (s, v["code"].clone()),
            (StatusCode::NOT_FOUND, json!("feedback_off"))
        );
    }
}

#[tokio::test]
async fn a_feedback_token_guards_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedback.sqlite");
    let app = with_store(
        Config {
            feedback_token: Some(Token::new(FEEDBACK_SECRET).unwrap()),
            ..Config::default()
        },
        &db,
    );
    let (_, b) = get(&app, "/api/v1/feedback").await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["token_required"], true);
    for token in [None, Some("wrong-token-0123456789"), Some(ADMIN_SECRET)] {
        let req = request("/api/v1/feedback?label=1", "image/png", token, one());
        let (s, h, v) = send(&app, req).await;
        assert_eq!(
            (s, v["code"].clone()),
            (StatusCode::UNAUTHORIZED, json!("unauthorized"))
        );
        assert_eq!(h[header::WWW_AUTHENTICATE], "Bearer");
        assert!(!v["error"].as_str().unwrap().contains(FEEDBACK_SECRET));
    }
    let req = request(
        "/api/v1/feedback?label=1",
        "image/png",
        Some(FEEDBACK_SECRET),
        one(),
    );
    assert_eq!(send(&app, req).await.0, StatusCode::CREATED);
    assert_eq!(Store::open(&db).unwrap().records().unwrap().len(), 1);
}

#[tokio::test]
async fn a_client_over_its_rate_is_told_when_to_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedback.sqlite");
    let app = with_store(
        Config {
            feedback_rate: Rate {
                per_minute: 6,
                burst: 3,
            },
            ..Config::default()
        },
        &db,
    );
    for _ in 0..3 {
        let (s, v) = post(&app, "/api/v1/feedback?label=1", "image/png", one()).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let req = request("/api/v1/feedback?label=1", "image/png", None, one());
    let (s, h, v) = send(&app, req).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!("rate_limited"))
    );
    let wait: u64 = h[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&wait), "Retry-After {wait}");
    // Reading is not limited.
    assert_eq!(
        post(&app, "/api/v1/predict", "image/png", one()).await.0,
        StatusCode::OK
    );
    assert_eq!(Store::open(&db).unwrap().records().unwrap().len(), 3);
}

/// The shipped `mlp` saved as a later version, as `digits train --finetune` would write it.
fn save_version(path: &Path, version: u32) {
    let mut model = digits_model::shipped::resolve("mlp").unwrap();
    let digits_model::Model::Neural(m) = &mut model else {
        panic!("mlp is a network")
    };
    m.meta.lineage.version = version;
    m.meta.lineage.base = Some("mlp".into());
    digits_model::file::save(&model, path).unwrap();
}

fn model_entry(models: &Value, name: &str) -> Value {
    models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {models}"))
}

async fn models(app: &Router) -> Value {
    serde_json::from_slice(&get(app, "/api/v1/models").await.1).unwrap()
}

#[tokio::test]
async fn reload_swaps_new_versions_in_and_refuses_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        models_dir: Some(dir.path().to_path_buf()),
        admin_token: Some(Token::new(ADMIN_SECRET).unwrap()),
        ..Config::default()
    };
    let catalogue = Catalogue::load("cnn", Some(dir.path())).unwrap();
    let app = app(config, catalogue, None).router;
    let reload = |token: Option<&'static str>| {
        let app = app.clone();
        async move {
            send(
                &app,
                request("/api/v1/admin/reload", "application/json", token, vec![]),
            )
            .await
        }
    };
    assert_eq!(model_entry(&models(&app).await, "mlp")["version"], 1);

    // Only the operator may reload.
    for token in [None, Some(FEEDBACK_SECRET)] {
        let (s, _, v) = reload(token).await;
        assert_eq!(
            (s, v["code"].clone()),
            (StatusCode::UNAUTHORIZED, json!("unauthorized"))
        );
    }

    save_version(&dir.path().join("mlp.safetensors"), 2);
    let (s, _, v) = reload(Some(ADMIN_SECRET)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["report"]["loaded"], json!(["mlp"]));
    let mlp = model_entry(&models(&app).await, "mlp");
    assert_eq!(
        (mlp["version"].clone(), mlp["source"].clone()),
        (json!(2), json!("models-dir"))
    );
    assert_eq!(mlp["lineage"]["base"], "mlp");
    let (_, v) = post(&app, "/api/v1/predict?model=mlp", "image/png", one()).await;
    assert_eq!(
        (v["model"].clone(), v["version"].clone()),
        (json!("mlp"), json!(2))
    );

    // Nothing changed: nothing loaded.
    let (_, _, v) = reload(Some(ADMIN_SECRET)).await;
    assert_eq!(
        (
            v["report"]["loaded"].clone(),
            v["report"]["unchanged"].clone()
        ),
        (json!([]), json!(["mlp"]))
    );

    // A broken file is refused and version 2 keeps serving.
    std::fs::write(dir.path().join("mlp.safetensors"), b"half a file").unwrap();
    let (s, _, v) = reload(Some(ADMIN_SECRET)).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("reload_refused"))
    );
    assert_eq!(model_entry(&models(&app).await, "mlp")["version"], 2);
    let (s, v) = post(&app, "/api/v1/predict?model=mlp", "image/png", one()).await;
    assert_eq!((s, v["digit"].clone()), (StatusCode::OK, json!(1)));

    // The file gone, the shipped model is back.
    std::fs::remove_file(dir.path().join("mlp.safetensors")).unwrap();
    let (_, _, v) = reload(Some(ADMIN_SECRET)).await;
    assert_eq!(v["report"]["removed"], json!(["mlp"]));
    let mlp = model_entry(&models(&app).await, "mlp");
    assert_eq!(
        (mlp["version"].clone(), mlp["source"].clone()),
        (json!(1), json!("shipped"))
    );
}

#[tokio::test]
async fn admin_endpoints_do_not_exist_without_a_token_and_reload_needs_a_folder() {
    let app = common::router(Config::default());
    let (s, v) = post(&app, "/api/v1/admin/reload", "application/json", vec![]).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );

    let app = app_with_admin(None);
    let req = request(
        "/api/v1/admin/reload",
        "application/json",
        Some(ADMIN_SECRET),
        vec![],
    );
    let (s, _, v) = send(&app, req).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::CONFLICT, json!("no_models_dir"))
    );
}

fn app_with_admin(dir: Option<&Path>) -> Router {
    let config = Config {
        models_dir: dir.map(Path::to_path_buf),
        admin_token: Some(Token::new(ADMIN_SECRET).unwrap()),
        ..Config::default()
    };
    app(config, Catalogue::load("cnn", dir).unwrap(), None).router
}

/// Requests keep being answered, by one version or the other, while versions are swapped in
/// and out under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_under_load_drops_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_admin(Some(dir.path()));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut answered = 0;
                for _ in 0..40 {
                    let (s, v) = post(&app, "/api/v1/predict?model=mlp", "image/png", one()).await;
                    assert_eq!((s, v["digit"].clone()), (StatusCode::OK, json!(1)), "{v}");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    for version in 2..12 {
        save_version(&dir.path().join("mlp.safetensors"), version);
        let req = request(
            "/api/v1/admin/reload",
            "application/json",
            Some(ADMIN_SECRET),
            vec![],
        );
        let (s, _, v) = send(&app, req).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let mut answered = 0;
    for h in load {
        answered += h.await.unwrap();
    }
    assert_eq!(answered, 320);
    assert_eq!(model_entry(&models(&app).await, "mlp")["version"], 11);
}
