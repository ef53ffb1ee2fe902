//! Every endpoint and every error, in process (tower `oneshot`), with the shipped models.

mod common;

use axum::http::StatusCode;
use common::{eleven, get, one, png, post, router};
use digits_server::Config;
use serde_json::{json, Value};

#[tokio::test]
async fn predict_an_image_with_each_model() {
    let app = router(Config::default());
    for model in digits_model::shipped::NAMES {
        let (s, v) = post(
            &app,
            &format!("/api/v1/predict?model={model}"),
            "image/png",
            one(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["digit"], 1, "{v}");
        assert_eq!(v["model"], model);
        assert_eq!(v["probabilities"].as_array().unwrap().len(), 10);
        assert_eq!(v["normalized"].as_array().unwrap().len(), 784);
        assert!(v["confidence"].as_f64().unwrap() > 0.5 && v["uncertain"] == false);
        assert!(v["elapsed_ms"].as_f64().unwrap() >= 0.0);
    }
}

#[tokio::test]
async fn predict_pixels_and_numbers() {
    let app = router(Config::default());
    let mut pixels = vec![0.0f32; 784];
    for y in 4..24 {
        pixels[y * 28 + 14] = 1.0;
        pixels[y * 28 + 13] = 0.6;
    }
    let body = serde_json::to_vec(&json!({ "pixels": pixels })).unwrap();
    let (s, v) = post(&app, "/api/v1/predict", "application/json", body).await;
    assert_eq!((s, v["digit"].clone()), (StatusCode::OK, json!(1)), "{v}");

    let (s, v) = post(&app, "/api/v1/predict/number", "image/png", eleven()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["number"], "11", "{v}");
    assert_eq!(v["digits"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn every_error_has_its_status_and_code() {
    let app = router(Config {
        max_body: 100_000,
        ..Config::default()
    });
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "/api/v1/predict",
            "application/json",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            "/api/v1/predict",
            "application/json",
            br#"{"pixels": [0.5, 0.5]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "wrong_pixel_count",
        ),
        (
            "/api/v1/predict",
            "application/json",
            format!("{{\"pixels\": [{}]}}", vec!["2.5"; 784].join(",")).into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_pixels",
        ),
        (
            "/api/v1/predict",
            "application/json",
            b"{\"pixels\": [NaN]}".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            "/api/v1/predict",
            "image/png",
            vec![7u8; 200_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "/api/v1/predict",
            "image/png",
            digits_vision::synth::png_claiming(30000, 30000),
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
        ),
        (
            "/api/v1/predict",
            "text/plain",
            b"7".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/api/v1/predict/number",
            "application/json",
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/api/v1/predict",
            "image/png",
            b"not an image at all".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_decodable",
        ),
        (
            "/api/v1/predict",
            "image/png",
            one()[..300].to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_decodable",
        ),
        (
            "/api/v1/predict",
            "image/png",
            png(image::RgbaImage::new(280, 280)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_ink",
        ),
        (
            "/api/v1/predict/number",
            "image/png",
            png(image::RgbaImage::new(280, 280)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_ink",
        ),
        // A flat square of pixels, grey or fully inked, holds no strokes: refused as a picture
        // without contrast is, not read as a digit.
        (
            "/api/v1/predict",
            "application/json",
            json!({"pixels": vec![0.5; 784]}).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_ink",
        ),
        (
            "/api/v1/predict",
            "application/json",
            json!({"pixels": vec![1.0; 784]}).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_ink",
        ),
        (
            "/api/v1/predict",
            "image/png",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "empty_body",
        ),
        (
            "/api/v1/predict?model=resnet",
            "image/png",
            one(),
            StatusCode::BAD_REQUEST,
            "unknown_model",
        ),
    ];
    for (uri, ctype, body, status, code) in cases {
        let (s, v) = post(&app, uri, ctype, body).await;
        assert_eq!(
            (s, v["code"].as_str().unwrap_or("")),
            (status, code),
            "{uri} {ctype}: {v}"
        );
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    // The server is still healthy after all that.
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn models_health_metrics_page_and_openapi() {
    let app = router(Config::default());
    let (s, b) = get(&app, "/api/v1/models").await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, v["default"].clone()), (StatusCode::OK, json!("cnn")));
    let kinds: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["architecture"].as_str().unwrap())
        .collect();
    // An ensemble's architecture is "ensemble", whatever its members.
    assert_eq!(
        kinds,
        ["cnn", "cnn-large", "ensemble", "ensemble", "mlp", "svm"]
    );

    let (s, b) = get(&app, "/healthz").await;
    assert_eq!(
        (s, serde_json::from_slice::<Value>(&b).unwrap()),
        (StatusCode::OK, json!({"status": "ok"}))
    );

    post(&app, "/api/v1/predict", "image/png", one()).await;
    let (s, b) = get(&app, "/metrics").await;
    let text = String::from_utf8(b).unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(
        text.contains("# TYPE digits_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("digits_requests_total{endpoint=\"predict\",status=\"200\"} 1"),
        "{text}"
    );

    let (s, b) = get(&app, "/").await;
    let page = String::from_utf8(b).unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("<canvas id=\"pad\"")
            && !page.contains("http://")
            && !page.contains("https://"),
        "the page must work offline"
    );

    // The OpenAPI document describes exactly the routes the server has, and every answer they
    // give here is one it declares; the models on offer are its enum.
    let (s, b) = get(&app, "/api/openapi.json").await;
    let spec: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        spec["components"]["schemas"]["ModelName"]["enum"],
        json!([
            "cnn",
            "cnn-large",
            "ensemble",
            "ensemble-large",
            "mlp",
            "svm"
        ])
    );
    let mut operations = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            operations += 1;
            let probe = match method.as_str() {
                "get" => get(&app, path).await.0,
                "post" => post(&app, path, "image/png", one()).await.0,
                other => panic!("{path}: unexpected method {other}"),
            };
            assert!(
                op["responses"][probe.as_str()].is_object(),
                "{method} {path} answered {probe}, which the document does not declare"
            );
            if path.contains("predict") || method == "get" {
                assert_eq!(probe, StatusCode::OK, "{path}");
            }
        }
    }
    assert_eq!(operations, 9);
}

#[tokio::test]
async fn a_full_queue_answers_busy_instead_of_piling_up() {
    let app = router(Config {
        workers: 1,
        queue: 1,
        ..Config::default()
    });
    let body = one();
    let requests = (0..16).map(|_| {
        let (app, body) = (app.clone(), body.clone());
        async move { post(&app, "/api/v1/predict", "image/png", body).await }
    });
    let results = futures_join(requests).await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let busy = results
        .iter()
        .filter(|(s, v)| *s == StatusCode::SERVICE_UNAVAILABLE && v["code"] == "busy")
        .count();
    assert_eq!(ok + busy, 16);
    assert!(ok >= 1);
}

/// Runs the futures concurrently on the test runtime.
async fn futures_join<F: std::future::Future<Output = (StatusCode, Value)> + Send + 'static>(
    fs: impl Iterator<Item = F>,
) -> Vec<(StatusCode, Value)> {
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn corpus(dir: &str) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/corpus")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Every malformed image and JSON body of `tests/corpus` gets a JSON error with the right status
/// from both predict endpoints; the unusual-but-valid images are read; the server keeps serving.
#[tokio::test]
async fn the_bad_input_corpus_is_answered_and_the_server_stays_up() {
    let app = router(Config::default());
    let list =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/readable.txt");
    let list = std::fs::read_to_string(list).unwrap();
    let valid: Vec<&str> = list
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for path in corpus("images") {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let ctype = match path.extension().and_then(|e| e.to_str()) {
            Some("jpg") => "image/jpeg",
            Some("gif") => "image/gif",
            Some("bmp") => "image/bmp",
            Some("webp") => "image/webp",
            Some("tif") => "image/tiff",
            _ => "image/png",
        };
        let body = std::fs::read(&path).unwrap();
        for uri in ["/api/v1/predict", "/api/v1/predict/number"] {
            let (s, v) = post(&app, uri, ctype, body.clone()).await;
            if valid.contains(&name.as_str()) {
                assert_eq!(s, StatusCode::OK, "{uri} {name}: {v}");
            } else {
                assert!(s.is_client_error(), "{uri} {name}: {s} {v}");
                assert!(
                    !v["error"].as_str().unwrap_or("").is_empty() && v["code"].is_string(),
                    "{uri} {name}: {v}"
                );
            }
        }
    }
    for path in corpus("json") {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let (s, v) = post(
            &app,
            "/api/v1/predict",
            "application/json",
            std::fs::read(&path).unwrap(),
        )
        .await;
        let want = if name == "pixels-blank.json" {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(s, want, "{name}: {v}");
        assert!(v["code"].is_string(), "{name}: {v}");
    }
    let (s, v) = post(&app, "/api/v1/predict", "image/png", one()).await;
    assert_eq!((s, v["digit"].clone()), (StatusCode::OK, json!(1)), "{v}");
}
