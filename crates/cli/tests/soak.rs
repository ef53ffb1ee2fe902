//! Load and soak against the real `digits serve`: many concurrent keep-alive clients posting a
//! mix of good and bad bodies, plus slow clients that trickle a request and hold their
//! connection. Good requests must all succeed, bad ones all get a 4xx, memory must stay flat.
//! CI runs 3,000 requests; `DIGITS_SOAK_REQUESTS=100000 cargo test --release -p digits --test
//! soak -- --nocapture` is the long run reported in TESTING.md.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let port = 19000 + (std::process::id() % 1000) as u16;
    let child = Command::new(env!("CARGO_BIN_EXE_digits"))
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, port }
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One request on a keep-alive connection; the status, or None if the connection failed.
async fn post(conn: &mut BufReader<TcpStream>, ctype: &str, body: &[u8]) -> Option<u16> {
    let head = format!(
        "POST /api/v1/predict HTTP/1.1\r\nHost: soak\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.get_mut().write_all(head.as_bytes()).await.ok()?;
    conn.get_mut().write_all(body).await.ok()?;
    let mut line = String::new();
    conn.read_line(&mut line).await.ok()?;
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line).await.ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await.ok()?;
    Some(status)
}

fn corpus(p: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)).unwrap()
}

#[test]
fn mixed_load_with_slow_clients_keeps_serving_with_flat_memory() {
    let requests: u64 = std::env::var("DIGITS_SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let server = start_server();
    let (port, pid) = (server.port, server.child.id());
    let mut pixels = vec![0.0f32; 784];
    (4..24).for_each(|y| pixels[y * 28 + 14] = 1.0);
    // (content type, body, good?)
    let bodies: Arc<Vec<(&str, Vec<u8>, bool)>> = Arc::new(vec![
        ("image/png", corpus("examples/seven.png"), true),
        ("image/png", corpus("examples/five-photo.png"), true),
        ("image/png", corpus("examples/one-transparent.png"), true),
        (
            "application/json",
            serde_json::to_vec(&serde_json::json!({"pixels": pixels})).unwrap(),
            true,
        ),
        ("text/plain", b"hello".to_vec(), false),
        (
            "image/png",
            corpus("tests/corpus/images/truncated.png"),
            false,
        ),
        (
            "image/png",
            corpus("tests/corpus/images/bomb-30000x30000.png"),
            false,
        ),
        (
            "image/png",
            corpus("tests/corpus/images/blank-white.png"),
            false,
        ),
        (
            "application/json",
            corpus("tests/corpus/json/pixels-nan.json"),
            false,
        ),
        (
            "application/json",
            corpus("tests/corpus/json/deeply-nested.json"),
            false,
        ),
    ]);
    let before = rss_kb(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    // Resident memory at each quarter of the run, to tell warm-up from growth.
    let quarters = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let (peak, done, answered, quarters) = (
            peak.clone(),
            done.clone(),
            answered.clone(),
            quarters.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let rss = rss_kb(pid);
                peak.fetch_max(rss, Ordering::Relaxed);
                let mut q = quarters.lock().unwrap();
                if answered.load(Ordering::Relaxed) * 4 >= requests * (q.len() as u64 + 1) {
                    q.push(rss);
                }
                drop(q);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let (good_failed, bad_not_4xx) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    rt.block_on(async {
        // Slow clients: a request line, then one header byte every 2 s; they hold 32 connections.
        let mut slow = Vec::new();
        for _ in 0..32 {
            slow.push(tokio::spawn(async move {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let _ = s
                    .write_all(b"POST /api/v1/predict HTTP/1.1\r\nHost: slow\r\n")
                    .await;
                for _ in 0..600 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if s.write_all(b"X").await.is_err() {
                        return;
                    }
                }
            }));
        }
        let mut clients = Vec::new();
        for _ in 0..64 {
            let (bodies, next) = (bodies.clone(), next.clone());
            let (good_failed, bad_not_4xx, answered) =
                (good_failed.clone(), bad_not_4xx.clone(), answered.clone());
            clients.push(tokio::spawn(async move {
                let mut conn = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return;
                    }
                    let (ctype, body, good) = &bodies[(i % bodies.len() as u64) as usize];
                    let mut status = None;
                    for _ in 0..2 {
                        if conn.is_none() {
                            conn = TcpStream::connect(("127.0.0.1", port))
                                .await
                                .ok()
                                .map(BufReader::new);
                        }
                        if let Some(c) = conn.as_mut() {
                            status = post(c, ctype, body).await;
                        }
                        if status.is_some() {
                            break;
                        }
                        conn = None; // closed by the server after an error: reconnect
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                    match (good, status) {
                        (true, Some(200)) => {}
                        (true, _) => {
                            good_failed.fetch_add(1, Ordering::Relaxed);
                        }
                        (false, Some(s)) if (400..500).contains(&s) => {}
                        (false, _) => {
                            bad_not_4xx.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        // With the slow clients still connected, a fresh client is answered promptly.
        let t = Instant::now();
        let mut c = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        assert_eq!(post(&mut c, "image/png", &bodies[0].1).await, Some(200));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        slow.iter().for_each(|s| s.abort());
    });
    let seconds = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kb(pid);
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    let quarters = quarters.lock().unwrap().clone();
    println!(
        "{} requests in {seconds:.1}s ({:.0}/s) at concurrency 64 with 32 slow clients: {} good failed, {} bad not 4xx; resident memory before {before} kB, at each quarter {quarters:?} kB, peak {peak} kB, after {after} kB",
        answered.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed) as f64 / seconds,
        good_failed.load(Ordering::Relaxed),
        bad_not_4xx.load(Ordering::Relaxed),
    );
    assert_eq!(answered.load(Ordering::Relaxed), requests);
    assert_eq!(good_failed.load(Ordering::Relaxed), 0);
    assert_eq!(bad_not_4xx.load(Ordering::Relaxed), 0);
    // Flat: buffers and caches settle within a bounded amount, they do not grow per request.
    assert!(peak < before + 400_000, "peak {peak} kB from {before} kB");
    if requests >= 20_000 {
        // After the first quarter (warm-up) memory stays within 10% of where it was.
        let settled = quarters[0];
        assert!(
            after <= settled + settled / 10,
            "grew from {settled} kB to {after} kB"
        );
    }
}
