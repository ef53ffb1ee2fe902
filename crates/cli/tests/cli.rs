//! The `digits` binary as a user runs it. Tests that need the real MNIST files run when
//! DIGITS_DATA_DIR points at them (CI sets it) and say so when skipped.

use std::path::Path;
use std::process::{Command, Output};

fn digits(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_digits"))
        .args(args)
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

fn data_dir() -> Option<String> {
    let d = std::env::var("DIGITS_DATA_DIR")
        .ok()
        .filter(|d| Path::new(d).is_dir());
    if d.is_none() {
        eprintln!("DIGITS_DATA_DIR not set: skipping a test that needs MNIST");
    }
    d
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn shipped_models_meet_their_accuracy_bars() {
    let Some(_) = data_dir() else { return };
    let cnn = json(&digits(&["eval", "--model", "cnn", "--json"]));
    // 99.6%, in either arithmetic (32 errors in bfloat16 here, 33 in f32).
    assert!(cnn["errors"].as_u64().unwrap() <= 40, "{cnn}");
    assert!(cnn["calibration_error"].as_f64().unwrap() <= 0.01, "{cnn}");
    let mlp = json(&digits(&["eval", "--model", "mlp", "--json"]));
    assert!(mlp["accuracy"].as_f64().unwrap() >= 0.983, "{mlp}");
    let ensemble = json(&digits(&["eval", "--model", "ensemble", "--json"]));
    // 99.7%: at most 30 of the 10,000 test images wrong (the f32 accuracy reads 0.99699998).
    assert!(ensemble["errors"].as_u64().unwrap() <= 30, "{ensemble}");
    assert!(
        ensemble["calibration_error"].as_f64().unwrap() <= 0.01,
        "{ensemble}"
    );
}

#[test]
fn eval_prints_a_readable_report() {
    let Some(_) = data_dir() else { return };
    let o = digits(&["eval", "--model", "mlp"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("confusion matrix") && t.contains("precision") && t.contains("images/s"),
        "{t}"
    );
}

#[test]
fn eval_reads_the_held_out_validation_digits_when_asked() {
    let Some(_) = data_dir() else { return };
    let e = json(&digits(&[
        "eval",
        "--model",
        "mlp",
        "--source",
        "validation",
        "--json",
    ]));
    assert_eq!(e["source"], "validation", "{e}");
    assert_eq!(e["images"], 5000, "{e}");
    assert!(e["accuracy"].as_f64().unwrap() >= 0.98, "{e}");
    let o = digits(&["eval", "--model", "mlp", "--source", "validation"]);
    assert!(
        text(&o).contains("on the validation digits"),
        "{}",
        text(&o)
    );
}

#[test]
fn smoke_training_saves_resumes_and_evaluates() {
    let Some(_) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ref.safetensors");
    let out_s = out.to_str().unwrap();
    let common = [
        "--model",
        "cnn-ref",
        "--limit",
        "3000",
        "--validation",
        "500",
        "--epochs",
        "2",
        "--out",
        out_s,
    ];
    let o = digits(&[&["train", "--max-batches", "23"][..], &common].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("epoch  1/2"), "{}", text(&o));
    let o = digits(&[&["train", "--resume"][..], &common].concat());
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("resuming") && t.contains("epoch  2/2"),
        "{t}"
    );
    let e = json(&digits(&["eval", "--model", out_s, "--json"]));
    // 46 batches of 128 images: far from converged, far above chance.
    assert!(e["accuracy"].as_f64().unwrap() > 0.85, "{e}");
}

#[test]
fn a_distilled_run_reloads_its_teacher_when_it_resumes() {
    let Some(_) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (teacher, student) = (path("teacher.safetensors"), path("student.safetensors"));
    let split = ["--limit", "2000", "--validation", "500"];
    let o = digits(
        &[
            &[
                "train", "--model", "mlp", "--epochs", "1", "--out", &teacher,
            ][..],
            &split,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let common = [
        &[
            "train",
            "--model",
            "cnn-small",
            "--epochs",
            "2",
            "--out",
            &student,
        ][..],
        &split,
    ]
    .concat();
    let o = digits(&[&common[..], &["--teacher", &teacher, "--max-batches", "15"]].concat());
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("learning from") && t.contains("epoch  1/2"),
        "{t}"
    );
    // The checkpoint names the teacher: resuming needs no --teacher and loads it again.
    let o = digits(&[&common[..], &["--resume"]].concat());
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("learning from") && t.contains("epoch  2/2"),
        "{t}"
    );

    let o = digits(&[&common[..], &["--teacher", "cnn"]].concat());
    assert!(
        !o.status.success() && text(&o).contains("held out other validation images"),
        "{}",
        text(&o)
    );
    let o = digits(&[
        "train",
        "--model",
        "svm",
        "--teacher",
        "cnn",
        "--out",
        &path("s"),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("only networks"),
        "{}",
        text(&o)
    );
}

#[test]
fn preset_best_trains_members_resumes_and_ensembles() {
    let Some(_) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("best.safetensors");
    let out_s = out.to_str().unwrap();
    let member = |k: usize| dir.path().join(format!("best.member{k}.safetensors"));
    let common = [
        "train",
        "--preset",
        "best",
        "--limit",
        "2000",
        "--validation",
        "500",
        "--epochs",
        "1",
        "--max-batches",
        "4",
        "--out",
        out_s,
    ];
    let o = digits(&common);
    let t = text(&o);
    assert!(o.status.success() && t.contains("member 3 of 3"), "{t}");
    assert!((1..=3).all(|k| member(k).exists()), "{t}");
    let e = json(&digits(&["eval", "--model", out_s, "--json"]));
    assert_eq!(e["architecture"], "ensemble", "{e}");
    // Four batches per member: far from converged, far above chance.
    assert!(e["accuracy"].as_f64().unwrap() > 0.3, "{e}");

    // Finished members are reused, not retrained.
    std::fs::remove_file(&out).unwrap();
    let o = digits(&[&common[..], &["--resume"]].concat());
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("reusing member 3 of 3"),
        "{t}"
    );
    assert!(!t.contains("epoch  1/1"), "{t}");
    assert!(out.exists());

    // Members are combined by hand too, but only networks that held out the same images.
    let (m1, m2) = (member(1), member(2));
    let again = dir.path().join("again.safetensors");
    let o = digits(&[
        "ensemble",
        m1.to_str().unwrap(),
        m2.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success() && again.exists(), "{}", text(&o));
    // Combinations compared on validation alone: with --no-test the test files are not needed.
    let train_only = dir.path().join("train-only");
    std::fs::create_dir(&train_only).unwrap();
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::copy(Path::new(&data_dir().unwrap()).join(f), train_only.join(f)).unwrap();
    }
    let o = digits(&[
        "--data-dir",
        train_only.to_str().unwrap(),
        "ensemble",
        m1.to_str().unwrap(),
        m2.to_str().unwrap(),
        "--no-test",
        "--out",
        again.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("validation accuracy"),
        "{t}"
    );
    assert!(
        t.contains("test set not read") && !t.contains("test accuracy"),
        "{t}"
    );
    let o = digits(&["ensemble", m1.to_str().unwrap(), "cnn"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("held out other validation images"),
        "{}",
        text(&o)
    );
    let o = digits(&["ensemble", "cnn", "svm"]);
    assert!(text(&o).contains("only networks"), "{}", text(&o));
}

#[test]
fn preset_record_trains_five_large_members_and_one_unpooled() {
    let Some(_) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("record.safetensors");
    let o = digits(&[
        "train",
        "--preset",
        "record",
        "--limit",
        "1000",
        "--validation",
        "500",
        "--epochs",
        "1",
        "--max-batches",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success() && t.contains("member 6 of 6"), "{t}");
    assert!(t.contains("training cnn-large"), "{t}");
    assert!(t.contains("training cnn-nopool"), "{t}");
    for (k, architecture) in [(5, "cnn-large"), (6, "cnn-nopool")] {
        let member = dir.path().join(format!("record.member{k}.safetensors"));
        let e = json(&digits(&[
            "eval",
            "--model",
            member.to_str().unwrap(),
            "--json",
        ]));
        assert_eq!(e["architecture"], architecture, "{e}");
    }
}

#[test]
fn bench_reports_images_per_second() {
    let Some(_) = data_dir() else { return };
    let bench = |args: &[&str]| {
        let common = ["bench", "train", "--model", "mlp", "--json"];
        json(&digits(&[&common[..], args].concat()))
    };
    let v = bench(&["--batches", "3", "--threads", "1"]);
    assert!(v["images_per_second"].as_f64().unwrap() > 0.0, "{v}");
    let v = bench(&["--batches", "6", "--compare-threads", "1,2"]);
    assert_eq!(v["threads"], serde_json::json!([1, 2]), "{v}");
    let speeds = v["images_per_second"].as_array().unwrap();
    assert!(speeds.iter().all(|s| s.as_f64().unwrap() > 0.0), "{v}");
    assert_eq!(v["ratio_to_first"][0], 1.0, "{v}");
    // The machine's own gain from the threads, measured alongside (its value depends on
    // what else the machine runs, the tests beside this one included).
    let probe = v["compute_loop_ratio_to_first"][1].as_f64().unwrap();
    assert!(probe.is_finite() && probe > 0.0, "{v}");
    let o = digits(&["bench", "train", "--compare-threads", "1,0"]);
    assert!(text(&o).contains("at least 1"), "{}", text(&o));
}

#[test]
fn bench_predict_times_every_stage() {
    let Some(_) = data_dir() else { return };
    let v = json(&digits(&[
        "bench", "predict", "--model", "mlp", "--runs", "5", "--bulk", "20", "--json",
    ]));
    let stages = &v["stages"];
    for stage in [
        "decode_us",
        "ink_us",
        "normalize_us",
        "classify_us",
        "read_us",
    ] {
        assert!(stages[stage].as_f64().unwrap() > 0.0, "{v}");
    }
    let total = stages["total_us"].as_f64().unwrap();
    assert!(total >= stages["ink_us"].as_f64().unwrap(), "{v}");
    assert_eq!(v["bulk_images"], 20, "{v}");
    assert!(v["bulk_images_per_second"].as_f64().unwrap() > 0.0, "{v}");
    let o = digits(&["bench", "predict", "--image", "/no/such.png", "--runs", "5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/no/such.png"), "{}", text(&o));
}

#[test]
fn corrupt_model_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.safetensors");
    std::fs::write(&p, b"definitely not a model").unwrap();
    let o = digits(&[
        "eval",
        "--model",
        p.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("broken.safetensors") && t.contains("not a digits model file"),
        "{t}"
    );
    let o = digits(&["eval", "--model", "nonsense"]);
    assert!(text(&o).contains("not a shipped model"), "{}", text(&o));
}

#[test]
fn missing_data_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let o = digits(&["data", "verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("missing") && t.contains("digits data fetch"),
        "{t}"
    );
}

#[test]
fn bad_arguments_are_rejected_without_a_panic() {
    let o = digits(&["train", "--model", "resnet"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown model 'resnet'"), "{}", text(&o));
    let o = digits(&["--threads", "0", "data", "info"]);
    assert!(
        text(&o).contains("--threads must be at least 1"),
        "{}",
        text(&o)
    );
}

/// A PNG of a thick vertical bar (a "1") on a large white canvas, dark ink.
fn one_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(300, 300, |x, y| {
        if (140..165).contains(&x) && (40..260).contains(&y) {
            image::Rgb([20, 20, 20])
        } else {
            image::Rgb([250, 250, 250])
        }
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn predict_reads_files_folders_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.png");
    std::fs::write(&one, one_png()).unwrap();
    let o = digits(&["predict", one.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success() && t.contains("one.png: 1 ("), "{t}");

    let o = digits(&[
        "predict",
        "--json",
        "--top",
        "3",
        dir.path().to_str().unwrap(),
    ]);
    let v = json(&o);
    assert_eq!(v["digit"], 1);
    assert_eq!(v["probabilities"].as_array().unwrap().len(), 10);
    assert_eq!(v["top"].as_array().unwrap().len(), 3);
    assert!(v["confidence"].as_f64().unwrap() > 0.5);

    let mut child = Command::new(env!("CARGO_BIN_EXE_digits"))
        .args(["predict", "--show", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&one_png()).unwrap();
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("<stdin>: 1") && t.contains('@'),
        "{t}"
    );
}

#[test]
fn malformed_files_fail_one_by_one_and_the_rest_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let good = one_png();
    let files = [
        ("a-empty.png", Vec::new()),
        ("b-text.png", b"this is not an image".to_vec()),
        ("c-truncated.png", good[..good.len() / 3].to_vec()),
        ("d-good.png", good.clone()),
        ("e-blank.png", {
            let mut out = Vec::new();
            image::RgbImage::from_pixel(200, 200, image::Rgb([255, 255, 255]))
                .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
                .unwrap();
            out
        }),
    ];
    let mut paths = Vec::new();
    for (name, bytes) in &files {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        paths.push(p.to_str().unwrap().to_string());
    }
    paths.push(dir.path().join("absent.png").to_str().unwrap().to_string());
    let args: Vec<&str> = std::iter::once("predict")
        .chain(paths.iter().map(String::as_str))
        .collect();
    let o = digits(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("d-good.png: 1"), "{t}");
    assert!(t.contains("a-empty.png: empty input"), "{t}");
    assert!(t.contains("b-text.png: not a supported image"), "{t}");
    assert!(
        t.contains("c-truncated.png: the image could not be decoded"),
        "{t}"
    );
    assert!(t.contains("e-blank.png: no ink found"), "{t}");
    assert!(t.contains("absent.png: cannot read"), "{t}");
    assert!(t.contains("5 input(s) could not be read"), "{t}");
}

#[test]
fn huge_header_is_refused_before_decoding() {
    let p = digits_vision::synth::png_claiming(30000, 30000);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("huge.png");
    std::fs::write(&f, p).unwrap();
    let o = digits(&["predict", "--json", f.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(t.contains("30000x30000") && t.contains("\"error\""), "{t}");
}

#[test]
fn a_labelled_folder_is_scored_and_its_misreadings_listed_and_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for (name, from) in [
        ("seven.png", "seven.png"),
        ("five.png", "five-photo.png"),
        ("wrong.png", "seven.png"),
    ] {
        std::fs::copy(examples.join(from), dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("broken.png"), b"not an image").unwrap();
    std::fs::write(
        dir.path().join("labels.csv"),
        "file,label,kind\nseven.png,7,canvas\nfive.png,5,photo\nwrong.png,1,canvas\nbroken.png,3,photo\n",
    )
    .unwrap();
    let failures = dir.path().join("failures");
    let folder = dir.path().to_str().unwrap();
    let o = digits(&[
        "realworld",
        "--dir",
        folder,
        "--save-failures",
        failures.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("canvas") && t.contains("50.00%  (1/2)"), "{t}");
    assert!(t.contains("all") && t.contains("(2/4)"), "{t}");
    assert!(
        t.contains("wrong.png (canvas): is 1, read 7 (100.0%)"),
        "{t}"
    );
    assert!(
        t.contains("broken.png (photo): is 3, not a supported image"),
        "{t}"
    );
    assert!(t.contains("wrong at confidence 95% or more: 1"), "{t}");
    let picture = image::open(failures.join("wrong-is1-read7.png")).unwrap();
    assert_eq!(
        picture.height(),
        224,
        "the original beside what the model saw"
    );
    let v = json(&digits(&["realworld", "--dir", folder, "--json"]));
    assert_eq!(v["kinds"]["all"]["correct"], 2, "{v}");
    assert_eq!(v["misread"].as_array().unwrap().len(), 2, "{v}");
    let o = digits(&["realworld", "--dir", "/no/such/folder"]);
    assert!(
        !o.status.success() && text(&o).contains("labels.csv"),
        "{}",
        text(&o)
    );
}

/// The real images other people drew and photographed (`../shared/data/realworld-dev`), when
/// the workspace has them: never trained on, they measure.
#[test]
fn real_images_from_other_projects_are_read_no_worse_than_today() {
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/realworld-dev");
    if !dev.join("labels.csv").exists() {
        eprintln!("no ../shared/data/realworld-dev: skipping");
        return;
    }
    let v = json(&digits(&[
        "realworld",
        "--dir",
        dev.to_str().unwrap(),
        "--json",
    ]));
    // Today's floor, 237 of 239 (99.2%; 236 before a fill that turns was taken for paper,
    // 235 before thin lines across the page were cleared, 233 before far specks were left out
    // of the ink box, 226 before small canvases kept their light strokes); the reader's goal
    // there is 99% with no error at 95% confidence or more (the issue on real photos and
    // drawings), and this bar rises with it. Every photo is read since the specks change; the
    // 1 on crossed lines since the lines are cleared; every digit over a coloured or
    // cluttered fill since the fill's turns are paper.
    assert!(v["kinds"]["all"]["correct"].as_u64().unwrap() >= 237, "{v}");
    for kind in ["photo", "canvas-cluttered-background"] {
        assert_eq!(
            v["kinds"][kind]["correct"], v["kinds"][kind]["total"],
            "{kind}: {v}"
        );
    }
    assert!(v["confident_errors"].as_u64().unwrap() <= 1, "{v}");
    // The models the goal is met with there: 238 and no confident error.
    for model in ["cnn-large", "ensemble-large"] {
        let v = json(&digits(&[
            "realworld",
            "--dir",
            dev.to_str().unwrap(),
            "--model",
            model,
            "--json",
        ]));
        assert!(
            v["kinds"]["all"]["correct"].as_u64().unwrap() >= 238,
            "{model}: {v}"
        );
        assert_eq!(v["confident_errors"], 0, "{model}: {v}");
    }
}

#[test]
fn realistic_drawings_and_numbers_are_read() {
    let Some(_) = data_dir() else { return };
    let realworld = |args: &[&str]| json(&digits(&[&["realworld", "--json"], args].concat()));
    let v = realworld(&["--per-style", "200", "--numbers", "300"]);
    // Measured on 1000 per style and 1000 numbers (see the README): 99.3% of the fifteen
    // styles' digits without `finger`, 98% of the numbers; a finger or a pen cap at the edge
    // 98.5%.
    assert!(v["digit_accuracy"].as_f64().unwrap() >= 0.98, "{v}");
    assert!(v["number_accuracy"].as_f64().unwrap() >= 0.96, "{v}");
    for (style, s) in v["styles"].as_object().unwrap() {
        assert!(s["accuracy"].as_f64().unwrap() >= 0.95, "{style}: {s}");
        // Of a style's misreads, those the model makes on the MNIST image too.
        let wrong = s["total"].as_u64().unwrap() - s["correct"].as_u64().unwrap();
        assert!(
            v["misread_as_mnist"][style].as_u64().unwrap() <= wrong,
            "{v}"
        );
    }
    for style in ["crossed", "ruled", "small", "finger", "backdrop"] {
        assert!(v["styles"][style].is_object(), "{v}");
    }
    // The tuning set: the same kinds of images from the held-out training digits; 98.27% of
    // 3,000 numbers (BENCHMARKS.md).
    let held_out = ["--source", "validation", "--per-style", "0", "--numbers"];
    let v = realworld(&[&held_out[..], &["300"]].concat());
    assert!(v["number_accuracy"].as_f64().unwrap() >= 0.96, "{v}");
    // A number's confidence means what it says: 0.60% calibration error on 3,000.
    assert!(
        v["number_calibration_error"].as_f64().unwrap() < 0.03,
        "{v}"
    );
    // A photo of a number on paper lit from one side: 97.8% of 1,000.
    let v = realworld(&[&held_out[..], &["200", "--number-style", "uneven-light"]].concat());
    assert!(v["number_accuracy"].as_f64().unwrap() >= 0.94, "{v}");
    // A number held at the page's edge by a finger or a pen cap, close to it: 96.9% of 1,000.
    let v = realworld(&[&held_out[..], &["200", "--number-style", "finger"]].concat());
    assert!(v["number_accuracy"].as_f64().unwrap() >= 0.93, "{v}");
    // Only what was asked for is printed: no styles of nothing.
    let o = digits(&[&["realworld"], &held_out[..], &["20"]].concat());
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("read exactly") && !t.contains("canvas") && !t.contains("(0/0)"),
        "{t}"
    );
    let o = digits(&["realworld", "--number-style", "sketchy"]);
    assert!(
        !o.status.success() && text(&o).contains("uneven-light"),
        "{}",
        text(&o)
    );
    let o = digits(&["realworld", "--per-style", "100000000"]);
    assert!(
        !o.status.success() && text(&o).contains("at most 1000000 images a group"),
        "{}",
        text(&o)
    );
}

#[test]
fn compare_quick_writes_a_complete_valid_report() {
    let Some(_) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let out_s = out.to_str().unwrap();
    let o = digits(&["compare", "--quick", "--out", out_s]);
    assert!(o.status.success(), "{}", text(&o));
    let mut figures: Vec<String> = ["accuracy", "timing", "learning_curves", "f1"]
        .map(String::from)
        .to_vec();
    for m in ["svm", "mlp", "cnn"] {
        figures.push(format!("confusion_{m}"));
        figures.push(format!("mistakes_{m}"));
    }
    for f in &figures {
        let png = image::open(out.join(format!("{f}.png")))
            .unwrap_or_else(|e| panic!("{f}.png: {e}"))
            .to_luma8();
        assert!(png.width() >= 300 && png.height() >= 300, "{f}.png is tiny");
        // Not blank: a figure has ink (text, bars) as well as background.
        let dark = png.pixels().filter(|p| p.0[0] < 128).count();
        assert!(dark > 500, "{f}.png looks blank ({dark} dark pixels)");
        let svg = std::fs::read_to_string(out.join(format!("{f}.svg"))).unwrap();
        let svg = svg.trim();
        assert!(
            svg.contains("<svg") && svg.ends_with("</svg>") && svg.contains("<text"),
            "{f}.svg is not a complete SVG with text"
        );
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(
        html.matches("<svg").count(),
        figures.len(),
        "every figure inlined"
    );
    assert!(!html.contains("<?xml"), "no XML declarations inside HTML");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for f in &figures {
        assert!(
            md.contains(&format!("({f}.png)")),
            "report.md links {f}.png"
        );
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let models = results["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    for m in models {
        let acc = m["evaluation"]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.85, "{}: {acc}", m["name"]);
        assert!(m["train_seconds"].as_f64().unwrap() > 0.0);
    }
    assert!(
        !models[2]["history"].as_array().unwrap().is_empty(),
        "cnn learning curve"
    );

    // --reuse loads the saved models instead of training them again.
    let o = digits(&[
        "compare", "--quick", "--reuse", "--models", "svm,cnn", "--out", out_s,
    ]);
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("svm: reusing") && t.contains("cnn: reusing"),
        "{t}"
    );

    let o = digits(&["compare", "--quick", "--models", "svm,knn", "--out", out_s]);
    assert!(
        !o.status.success() && text(&o).contains("unknown model 'knn'"),
        "{}",
        text(&o)
    );
}

/// The desktop app's real window under Xvfb (CI installs it): draw a 3, take a screenshot.
#[test]
fn desktop_app_draws_reads_and_screenshots_under_xvfb() {
    let xvfb = Command::new("xvfb-run").arg("--help").output();
    if xvfb.is_err() {
        eprintln!("xvfb-run not installed: skipping the desktop window test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("gui.png");
    let o = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x800x24"])
        .arg(env!("CARGO_BIN_EXE_digits"))
        .args(["gui", "--demo", "3", "--screenshot"])
        .arg(&shot)
        .output()
        .expect("xvfb-run runs");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("read: 3;"), "{t}");
    let img = image::open(&shot).unwrap().to_rgb8();
    assert!(
        img.width() >= 640 && img.height() >= 480,
        "{}x{}",
        img.width(),
        img.height()
    );
    // The drawing area is white paper with black ink; the rest of the window is neither.
    let ink = img.pixels().filter(|p| p.0 == [0, 0, 0]).count();
    let paper = img.pixels().filter(|p| p.0 == [255, 255, 255]).count();
    assert!(
        ink > 2000 && paper > 50_000,
        "no drawing in the screenshot? {ink} ink, {paper} paper pixels"
    );
    // Kept for people to look at: target/gui-screenshot.png.
    let _ = std::fs::copy(
        &shot,
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/gui-screenshot.png"
        ),
    );
}

#[test]
fn desktop_app_without_a_display_says_so() {
    let o = Command::new(env!("CARGO_BIN_EXE_digits"))
        .arg("gui")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("no display available"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}

/// SIGKILL in the middle of training loses at most the epoch under way: the checkpoint on disk
/// is whole, `--resume` finishes the run, and the result matches an uninterrupted run.
#[test]
fn training_killed_mid_epoch_resumes_to_the_same_result() {
    let Some(_) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "--threads",
            "1",
            "train",
            "--model",
            "mlp",
            "--limit",
            "6000",
            "--validation",
            "500",
            "--epochs",
            "3",
            "--seed",
            "5",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_str().unwrap().to_string()])
        .collect()
    };
    let reference = dir.path().join("reference.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_digits"))
        .args(args(&reference))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    let killed = dir.path().join("killed.safetensors");
    let ckpt = dir.path().join("killed.safetensors.ckpt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_digits"))
        .args(args(&killed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !ckpt.exists() {
        assert!(
            start.elapsed().as_secs() < 120,
            "no checkpoint after 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before it could be killed"
    );
    assert!(!killed.exists(), "no model file before training ends");

    let mut resume = args(&killed);
    resume.push("--resume".into());
    let o = Command::new(env!("CARGO_BIN_EXE_digits"))
        .args(&resume)
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success() && t.contains("resuming"), "{t}");
    let accuracy = |p: &Path| {
        json(&digits(&["eval", "--model", p.to_str().unwrap(), "--json"]))["accuracy"]
            .as_f64()
            .unwrap()
    };
    // Resuming replays the same seeded shuffles and augmentation: the same model, bit for bit.
    assert_eq!(accuracy(&killed), accuracy(&reference));
}

#[test]
fn an_unwritable_output_path_is_a_clear_error() {
    let Some(_) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let out = file.join("model.safetensors");
    let o = digits(&[
        "train",
        "--model",
        "mlp",
        "--limit",
        "600",
        "--validation",
        "100",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("a-file") && !t.contains("panicked"),
        "{t}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"not a folder",
        "nothing overwritten"
    );
}
