//! Downloading against a local HTTP server on 127.0.0.1 serving small fixture files: good,
//! corrupt, truncated and missing (404), and falling back from one mirror to the next.

use digits_data::idx::encode;
use digits_data::mnist::{sha256_hex, FileSpec, FILES};
use digits_data::DataDir;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// What the server answers for a path.
#[derive(Clone)]
enum Reply {
    Ok(Vec<u8>),
    /// Announces the full length but closes after half the body.
    Truncated(Vec<u8>),
    NotFound,
}

/// Serves `routes` until the test process ends; returns the base URL.
fn serve(routes: HashMap<String, Reply>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let routes = routes.clone();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let reply = routes.get(&path).cloned().unwrap_or(Reply::NotFound);
                let _ = match reply {
                    Reply::Ok(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        stream
                            .write_all(head.as_bytes())
                            .and_then(|_| stream.write_all(&body))
                    }
                    Reply::Truncated(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        stream
                            .write_all(head.as_bytes())
                            .and_then(|_| stream.write_all(&body[..body.len() / 2]))
                    }
                    Reply::NotFound => stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            });
        }
    });
    format!("http://{addr}/")
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Small stand-ins for the four MNIST files (3 train, 2 test images) and their checksums.
fn fixtures() -> (HashMap<&'static str, Vec<u8>>, Vec<FileSpec>) {
    let mut files = HashMap::new();
    for spec in FILES {
        let n = if spec.name.starts_with("train") { 3 } else { 2 };
        let raw = if spec.name.contains("images") {
            encode(&[n, 28, 28], &vec![7u8; n * 784])
        } else {
            encode(&[n], &(0..n as u8).collect::<Vec<_>>())
        };
        files.insert(spec.name, raw);
    }
    let specs = FILES
        .iter()
        .map(|s| FileSpec {
            name: s.name,
            sha256: Box::leak(sha256_hex(&files[s.name]).into_boxed_str()),
        })
        .collect();
    (files, specs)
}

fn routes(
    files: &HashMap<&'static str, Vec<u8>>,
    replace: Option<(&str, Reply)>,
) -> HashMap<String, Reply> {
    let mut r: HashMap<String, Reply> = files
        .iter()
        .map(|(n, raw)| (format!("/{n}.gz"), Reply::Ok(gz(raw))))
        .collect();
    if let Some((name, reply)) = replace {
        r.insert(format!("/{name}.gz"), reply);
    }
    r
}

#[test]
fn good_mirror_downloads_verifies_and_loads() {
    let (files, specs) = fixtures();
    let url = serve(routes(&files, None));
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path()).with_checksums(specs);
    let fetched = data.fetch(Some(std::slice::from_ref(&url)), false).unwrap();
    assert_eq!(fetched.len(), 4);
    assert!(data.verify().iter().all(|s| s.result.is_ok()));
    let m = data.load().unwrap();
    assert_eq!((m.train.len(), m.test.len()), (3, 2));
    // Nothing left to do the second time, and no temporary files left behind.
    assert!(data.fetch(Some(&[url]), false).unwrap().is_empty());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
}

#[test]
fn corrupt_file_is_rejected_and_not_kept() {
    let (files, specs) = fixtures();
    let bad = Reply::Ok(gz(&encode(&[3], &[9, 9, 9])));
    let url = serve(routes(&files, Some(("train-labels-idx1-ubyte", bad))));
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path()).with_checksums(specs);
    let err = data.fetch(Some(&[url]), false).unwrap_err().to_string();
    assert!(
        err.contains("train-labels-idx1-ubyte") && err.contains("SHA-256"),
        "{err}"
    );
    assert!(data.locate("train-labels-idx1-ubyte").is_none());
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with('.')));
}

#[test]
fn truncated_download_is_an_error() {
    let (files, specs) = fixtures();
    let body = gz(&files["t10k-images-idx3-ubyte"]);
    let url = serve(routes(
        &files,
        Some(("t10k-images-idx3-ubyte", Reply::Truncated(body))),
    ));
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path()).with_checksums(specs);
    let err = data.fetch(Some(&[url]), false).unwrap_err().to_string();
    assert!(err.contains("t10k-images-idx3-ubyte"), "{err}");
    assert!(data.locate("t10k-images-idx3-ubyte").is_none());
}

#[test]
fn missing_file_falls_back_to_the_next_mirror() {
    let (files, specs) = fixtures();
    let broken = serve(routes(
        &files,
        Some(("train-images-idx3-ubyte", Reply::NotFound)),
    ));
    let good = serve(routes(&files, None));
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path()).with_checksums(specs.clone());
    assert_eq!(
        data.fetch(Some(&[broken.clone(), good]), false)
            .unwrap()
            .len(),
        4
    );

    let dir2 = tempfile::tempdir().unwrap();
    let only_broken = DataDir::new(dir2.path()).with_checksums(specs);
    let err = only_broken
        .fetch(Some(&[broken]), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("404") && err.contains("train-images-idx3-ubyte"),
        "{err}"
    );
}

#[test]
fn damaged_local_file_fails_verification_with_its_name() {
    let (files, specs) = fixtures();
    let dir = tempfile::tempdir().unwrap();
    for (name, raw) in &files {
        std::fs::write(dir.path().join(name), raw).unwrap();
    }
    let mut labels = files["t10k-labels-idx1-ubyte"].clone();
    labels[9] = 3;
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let data = DataDir::new(dir.path()).with_checksums(specs);
    let err = data.load().unwrap_err().to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte") && err.contains("SHA-256"),
        "{err}"
    );
    let bad: Vec<_> = data
        .verify()
        .into_iter()
        .filter(|s| s.result.is_err())
        .map(|s| s.name)
        .collect();
    assert_eq!(bad, vec!["t10k-labels-idx1-ubyte"]);
}

#[test]
fn real_mnist_when_available() {
    // CI points DIGITS_DATA_DIR at the real files; elsewhere there is nothing to check.
    let Ok(dir) = std::env::var("DIGITS_DATA_DIR") else {
        return;
    };
    let m = DataDir::new(dir).load().unwrap();
    assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
    assert_eq!(m.train.labels[..5], [5, 0, 4, 1, 9]);
}
