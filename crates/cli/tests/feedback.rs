//! The corrections loop as an operator runs it: `digits feedback`, `digits train --finetune`,
//! and `digits serve --feedback-db` killed under load. Tests that need MNIST run when
//! DIGITS_DATA_DIR points at it.

use digits_feedback::Store;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_SECRET: &str = "admin-secret-never-logged-0123";

fn digits(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_digits"))
        .args(args)
        .env_remove("DIGITS_FEEDBACK_DB")
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok_json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn data_dir() -> Option<String> {
    let d = std::env::var("DIGITS_DATA_DIR")
        .ok()
        .filter(|d| Path::new(d).is_dir());
    if d.is_none() {
        eprintln!("DIGITS_DATA_DIR not set: skipping a test that needs MNIST");
    }
    d
}

/// A digit drawn as a bar at column `x` (a "1" leaning as `lean` says), black on white.
fn bar_png(lean: i32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(120, 120, |x, y| {
        let centre = 60 + lean * (y as i32 - 60) / 100;
        let ink = (y as i32 > 15 && (y as i32) < 105) && (x as i32 - centre).abs() < 6;
        image::Luma([if ink { 0 } else { 255 }])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn import_stats_export_delete_and_check_one_database() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("labelled");
    for (label, lean) in [(1, 0), (1, 10), (7, 40)] {
        let sub = folder.join(label.to_string());
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("lean{lean}.png")), bar_png(lean)).unwrap();
    }
    std::fs::write(folder.join("1/notes.txt"), "not an image").unwrap();
    let db = tmp.path().join("fb.sqlite");
    let db_s = db.to_str().unwrap();

    let o = digits(&["feedback", "--db", db_s, "import", folder.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("imported 3 corrections"), "{}", text(&o));

    let s = ok_json(&digits(&["feedback", "--db", db_s, "stats", "--json"]));
    assert_eq!(s["records"], 3, "{s}");
    assert_eq!(s["by_label"][1], 2);
    assert_eq!(s["by_label"][7], 1);
    assert_eq!(s["by_source"][0], serde_json::json!(["import", 3]));
    let fingerprint = s["sha256"].as_str().unwrap().to_string();

    // A CSV with a bad label is refused whole, naming the line; nothing is stored.
    let csv = tmp.path().join("labels.csv");
    std::fs::write(
        &csv,
        "file,label\nlabelled/1/lean0.png,1\nlabelled/7/lean40.png,12\n",
    )
    .unwrap();
    let o = digits(&["feedback", "--db", db_s, "import", csv.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("line 3: label '12' is not a digit 0-9"),
        "{}",
        text(&o)
    );

    // Export, and the export imports into another database as the same corrections.
    let out = tmp.path().join("export");
    let o = digits(&["feedback", "--db", db_s, "export", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let records = std::fs::read_to_string(out.join("records.csv")).unwrap();
    assert_eq!(records.lines().count(), 4, "{records}");
    let db2 = tmp.path().join("copy.sqlite");
    let o = digits(&[
        "feedback",
        "--db",
        db2.to_str().unwrap(),
        "import",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let copy = Store::open(&db2).unwrap().records().unwrap();
    let original = Store::open(&db).unwrap().records().unwrap();
    let images = |r: &[digits_feedback::Record]| {
        let mut v: Vec<_> = r
            .iter()
            .map(|r| (r.correction.label, r.correction.image.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(images(&copy), images(&original));

    let first = original[0].id.to_string();
    let o = digits(&["feedback", "--db", db_s, "delete", &first]);
    assert!(o.status.success(), "{}", text(&o));
    let o = digits(&["feedback", "--db", db_s, "delete", &first]);
    assert!(
        !o.status.success() && text(&o).contains("there is no record"),
        "{}",
        text(&o)
    );
    let s = ok_json(&digits(&["feedback", "--db", db_s, "stats", "--json"]));
    assert_eq!(s["records"], 2);
    assert_ne!(s["sha256"], fingerprint.as_str());
    let o = digits(&["feedback", "--db", db_s, "check"]);
    assert!(
        o.status.success() && text(&o).contains("ok, 2 records"),
        "{}",
        text(&o)
    );

    // A file that is not a database is named, not overwritten.
    let junk = tmp.path().join("junk.sqlite");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let o = digits(&["feedback", "--db", junk.to_str().unwrap(), "stats"]);
    assert!(
        !o.status.success() && text(&o).contains("junk.sqlite"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(&junk).unwrap(), vec![7u8; 4096]);
    let o = digits(&["feedback", "stats"]);
    assert!(
        !o.status.success() && text(&o).contains("--db"),
        "{}",
        text(&o)
    );
}

fn folder_accuracy(dir: &Path, model: &str) -> f64 {
    let v = ok_json(&digits(&[
        "realworld",
        "--dir",
        dir.to_str().unwrap(),
        "--model",
        model,
        "--json",
    ]));
    v["kinds"]["all"]["accuracy"].as_f64().unwrap()
}

/// The acceptance test: a writer the shipped `cnn` reads badly (MNIST training digits
/// turned 45 degrees), a few hundred of their digits given as corrections, a fine-tuned model
/// that reads other digits of that writer far better and MNIST as well as before.
#[test]
fn finetuning_adapts_the_cnn_to_a_writer_it_misreads() {
    let Some(_) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pop = tmp.path().join("writer");
    let o = digits(&[
        "feedback",
        "simulate",
        pop.to_str().unwrap(),
        "--tilt",
        "45",
        "--count",
        "400",
        "--held-out",
        "1000",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let db = tmp.path().join("fb.sqlite");
    let db_s = db.to_str().unwrap();
    let o = digits(&[
        "feedback",
        "--db",
        db_s,
        "import",
        pop.join("corrections").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));

    // Refused: a margin no model can meet; nothing is written.
    let refused = tmp.path().join("refused.safetensors");
    let o = digits(&[
        "train",
        "--finetune",
        "cnn",
        "--feedback",
        db_s,
        "--out",
        refused.to_str().unwrap(),
        "--epochs",
        "1",
        "--max-mnist-drop=-1",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("was not written"), "{}", text(&o));
    assert!(!refused.exists());

    let tuned = tmp.path().join("cnn.safetensors");
    let o = digits(&[
        "train",
        "--finetune",
        "cnn",
        "--feedback",
        db_s,
        "--out",
        tuned.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("v2 (from cnn, 400 corrections)"),
        "{}",
        text(&o)
    );

    let held_out = pop.join("held-out");
    let before = folder_accuracy(&held_out, "cnn");
    let after = folder_accuracy(&held_out, tuned.to_str().unwrap());
    eprintln!(
        "held-out images of the writer: {:.1}% -> {:.1}%",
        100.0 * before,
        100.0 * after
    );
    assert!(
        before < 0.75,
        "the writer must be one cnn reads badly: {before}"
    );
    assert!(
        after >= 0.90 && after - before >= 0.2,
        "{before} -> {after}"
    );

    let shipped = ok_json(&digits(&["eval", "--model", "cnn", "--json"]));
    let mine = ok_json(&digits(&[
        "eval",
        "--model",
        tuned.to_str().unwrap(),
        "--json",
    ]));
    let drop = 100.0 * (shipped["accuracy"].as_f64().unwrap() - mine["accuracy"].as_f64().unwrap());
    eprintln!(
        "MNIST test: {} -> {} ({drop:.2} points down)",
        shipped["accuracy"], mine["accuracy"]
    );
    // Measured 0.10 points on this project's Intel machine (BENCHMARKS.md); the margin allows
    // for another CPU's arithmetic (a few test images either way).
    assert!(drop <= 0.15, "MNIST test fell {drop:.2} points");
}

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(args: &[&str], port: u16, log: &Path) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_digits"))
        .args(["serve", "--port", &port.to_string()])
        .args(args)
        .env("DIGITS_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child }
}

/// One request on its own connection: the status and the JSON body, or None when the
/// connection failed (the server was killed under it).
fn request(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: image/png\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// 64 clients post corrections; the server is killed with SIGKILL in the middle. Every
/// correction that was acknowledged with a 201 is in the database afterwards, which passes
/// SQLite's integrity check, and the restarted server goes on storing. Then a new model version
/// comes in by SIGHUP, and no token ever reached the log.
#[test]
fn every_acknowledged_correction_survives_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("fb.sqlite");
    let models = tmp.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let token = tmp.path().join("admin.token");
    std::fs::write(&token, format!("{ADMIN_SECRET}\n")).unwrap();
    let args = [
        "--feedback-db",
        db.to_str().unwrap(),
        "--feedback-per-minute",
        "1000000",
        "--feedback-burst",
        "1000000",
        "--models-dir",
        models.to_str().unwrap(),
        "--admin-token-file",
        token.to_str().unwrap(),
    ];
    let port = 21000 + (std::process::id() % 1000) as u16;
    let mut server = serve(&args, port, &tmp.path().join("first.log"));

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..64)
        .map(|c| {
            let stop = stop.clone();
            let body = bar_png(c % 20);
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let label = c % 10;
                    let path = format!("/api/v1/feedback?label={label}");
                    match request(port, "POST", &path, None, &body) {
                        Some((201, v)) => {
                            acknowledged.push((v["id"].as_i64().unwrap(), label as u8))
                        }
                        Some((status, v)) => panic!("{status} {v}"),
                        None => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<(i64, u8)> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() >= 64,
        "only {} corrections were acknowledged",
        acknowledged.len()
    );

    let store = Store::open(&db).unwrap();
    store.integrity_check().unwrap();
    for (id, label) in &acknowledged {
        let record = store
            .get(*id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {id} is lost"));
        assert_eq!(record.correction.label, *label);
    }
    let stored = store.ids().unwrap().len();
    drop(store);
    eprintln!(
        "{} acknowledged, {stored} stored before the kill",
        acknowledged.len()
    );

    let server = serve(&args, port, &tmp.path().join("second.log"));
    let (status, v) = request(port, "POST", "/api/v1/feedback?label=1", None, &bar_png(0)).unwrap();
    assert_eq!(status, 201, "{v}");
    assert_eq!(Store::open(&db).unwrap().ids().unwrap().len(), stored + 1);

    // A new version by SIGHUP; the operator's token is needed for the endpoint.
    let (status, _) = request(
        port,
        "POST",
        "/api/v1/admin/reload",
        Some("wrong-token-0123456789"),
        &[],
    )
    .unwrap();
    assert_eq!(status, 401);
    let mut model = digits_model::shipped::resolve("mlp").unwrap();
    if let digits_model::Model::Neural(m) = &mut model {
        m.meta.lineage.version = 2;
    }
    digits_model::file::save(&model, &models.join("mlp.safetensors")).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let start = Instant::now();
    loop {
        let (_, v) = request(port, "GET", "/api/v1/models", None, &[]).unwrap();
        let mlp = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "mlp")
            .cloned()
            .unwrap();
        if mlp["version"] == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "SIGHUP did not reload: {mlp}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, v) = request(
        port,
        "POST",
        "/api/v1/admin/reload",
        Some(ADMIN_SECRET),
        &[],
    )
    .unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["report"]["unchanged"], serde_json::json!(["mlp"]));
    let metrics = request_text(port, "/metrics");
    drop(server);
    for log in ["first.log", "second.log"] {
        let log = std::fs::read_to_string(tmp.path().join(log)).unwrap();
        assert!(!log.contains(ADMIN_SECRET), "the token reached the log");
    }
    assert!(!metrics.contains(ADMIN_SECRET));
}

fn request_text(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
