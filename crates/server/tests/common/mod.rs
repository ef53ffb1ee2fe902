//! What the API tests share: an in-process app, requests, and drawn digits.
#![allow(dead_code)] // each test file uses its own part

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use digits_server::{app, Catalogue, Config};
use serde_json::Value;
use tower::ServiceExt;

pub fn router(config: Config) -> Router {
    app(config, Catalogue::load("cnn", None).unwrap(), None).router
}

pub async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    (
        status,
        to_bytes(res.into_body(), 64 << 20).await.unwrap().to_vec(),
    )
}

pub async fn post(app: &Router, uri: &str, ctype: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, ctype)
        .body(Body::from(body))
        .unwrap();
    let (s, b) = call(app, req).await;
    (
        s,
        serde_json::from_slice(&b)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b))),
    )
}

pub async fn get(app: &Router, uri: &str) -> (StatusCode, Vec<u8>) {
    call(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

pub fn png(img: image::RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A "1" drawn as a browser canvas exports it: black strokes on a transparent background.
pub fn one() -> Vec<u8> {
    png(image::RgbaImage::from_fn(280, 280, |x, y| {
        image::Rgba(if (130..150).contains(&x) && (40..240).contains(&y) {
            [0, 0, 0, 255]
        } else {
            [0, 0, 0, 0]
        })
    }))
}

/// "11" on one line.
pub fn eleven() -> Vec<u8> {
    png(image::RgbaImage::from_fn(560, 280, |x, y| {
        let ink = ((150..170).contains(&x) || (380..400).contains(&x)) && (40..240).contains(&y);
        image::Rgba(if ink {
            [0, 0, 0, 255]
        } else {
            [255, 255, 255, 255]
        })
    }))
}

/// Sends `req`; the status, the headers and the JSON body.
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let b = to_bytes(res.into_body(), 64 << 20).await.unwrap();
    let v = serde_json::from_slice(&b)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b)));
    (status, headers, v)
}
