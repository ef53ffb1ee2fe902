//! `report.md` (figures linked as PNG) and `index.html` (figures inlined as SVG, so the one file
//! can be mailed or archived on its own).

use crate::figures::Rendered;
use crate::Comparison;
use std::fmt::Write;

/// Rows of the results table: (model, framework, accuracy, errors, train, predict, images/s).
fn rows(c: &Comparison) -> Vec<[String; 7]> {
    let secs = |s: Option<f32>| s.map_or("not recorded".into(), |s| format!("{s:.2} s"));
    let mut rows: Vec<[String; 7]> = c
        .models
        .iter()
        .map(|m| {
            let e = &m.evaluation;
            [
                m.name.clone(),
                "digits".into(),
                format!("{:.2}%", 100.0 * e.accuracy),
                format!("{} of {}", e.errors, e.images),
                secs(m.train_seconds),
                format!("{:.3} s", e.seconds),
                format!("{:.0}", e.images_per_second),
            ]
        })
        .collect();
    rows.extend(c.peers.iter().map(|p| {
        let errors = ((1.0 - p.accuracy as f64) * p.test_images as f64).round();
        [
            p.model.clone(),
            p.framework.clone(),
            format!("{:.2}%", 100.0 * p.accuracy),
            format!("{errors:.0} of {}", p.test_images),
            secs(Some(p.train_seconds)),
            format!("{:.3} s", p.predict_seconds),
            format!("{:.0}", p.test_images as f32 / p.predict_seconds.max(1e-9)),
        ]
    }));
    rows
}

const HEADER: [&str; 7] = [
    "model",
    "framework",
    "test accuracy",
    "errors",
    "training time",
    "prediction time",
    "images/s",
];

fn setting(c: &Comparison) -> String {
    format!(
        "{} training images, {} validation images (used for calibration and learning curves), {} test images; seed {}; {} threads on {}{}.",
        c.train_images,
        c.validation_images,
        c.test_images,
        c.seed,
        c.threads,
        c.machine,
        if c.quick { "; quick mode (a subset and short training: the figures show the report works, not final accuracy)" } else { "" }
    )
}

/// "2.1x faster" for a peer-to-us time ratio of 2.1, "1.7x slower" for one of 0.6.
fn speed(ratio: f32) -> String {
    if ratio >= 1.0 {
        format!("{ratio:.1}x faster")
    } else {
        format!("{:.1}x slower", 1.0 / ratio.max(1e-9))
    }
}

/// Ratios of each peer's times to ours for the same kind of model.
fn ratios(c: &Comparison) -> Vec<String> {
    c.peers
        .iter()
        .filter_map(|p| {
            let ours = c.models.iter().find(|m| m.name == p.model)?;
            let train = ours
                .train_seconds
                .map(|t| format!("training {}", speed(p.train_seconds / t.max(1e-9))))
                .unwrap_or_else(|| "training not recorded".into());
            Some(format!(
                "{} vs {} ({}): {train}, prediction {}",
                ours.name,
                p.framework,
                p.recipe,
                speed(p.predict_seconds / ours.evaluation.seconds.max(1e-9))
            ))
        })
        .collect()
}

pub fn markdown(c: &Comparison, figures: &[Rendered]) -> String {
    let mut s = String::from("# digits: model comparison\n\n");
    let _ = writeln!(s, "{}\n", setting(c));
    let _ = writeln!(s, "| {} |", HEADER.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(HEADER.len()));
    for r in rows(c) {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    let r = ratios(c);
    if !r.is_empty() {
        s.push_str("\nSpeed-ups (peer time / our time, same run, same machine):\n\n");
        for line in r {
            let _ = writeln!(s, "- {line}");
        }
    }
    s.push_str("\nPer-class F1 (%):\n\n| model | ");
    s.push_str(
        &(0..10)
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    let _ = writeln!(s, " |\n|{}", "---|".repeat(11));
    for m in &c.models {
        let f1: Vec<String> = m
            .evaluation
            .per_class
            .iter()
            .map(|c| format!("{:.2}", 100.0 * c.f1))
            .collect();
        let _ = writeln!(s, "| {} | {} |", m.name, f1.join(" | "));
    }
    for f in figures {
        let _ = writeln!(
            s,
            "\n## {}\n\n![{}]({}.png) ([SVG]({}.svg))",
            f.title, f.title, f.stem, f.stem
        );
    }
    s.push_str("\nAll numbers: `results.json`.\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn html(c: &Comparison, figures: &[Rendered]) -> String {
    let mut s = String::from(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>digits: model comparison</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}\n\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}\n\
         th{background:#f4f4f4}td:first-child,td:nth-child(2){text-align:left}\n\
         figure{margin:2em 0}figure svg{max-width:100%;height:auto}\n</style>\n</head>\n<body>\n\
         <h1>digits: model comparison</h1>\n",
    );
    let _ = writeln!(s, "<p>{}</p>", escape(&setting(c)));
    s.push_str("<table>\n<tr>");
    for h in HEADER {
        let _ = write!(s, "<th>{h}</th>");
    }
    s.push_str("</tr>\n");
    for r in rows(c) {
        s.push_str("<tr>");
        for v in r {
            let _ = write!(s, "<td>{}</td>", escape(&v));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    let r = ratios(c);
    if !r.is_empty() {
        s.push_str("<p>Speed-ups (peer time / our time, same run, same machine):</p>\n<ul>\n");
        for line in r {
            let _ = writeln!(s, "<li>{}</li>", escape(&line));
        }
        s.push_str("</ul>\n");
    }
    for f in figures {
        // The SVG's own XML declaration is not allowed inside HTML.
        let svg = f.svg.trim_start_matches(|c| c != '<');
        let svg = match svg.strip_prefix("<?xml") {
            Some(rest) => rest.split_once("?>").map_or(svg, |(_, body)| body),
            None => svg,
        };
        let _ = writeln!(
            s,
            "<figure id=\"{}\">\n<h2>{}</h2>\n{}\n</figure>",
            f.stem,
            escape(&f.title),
            svg.trim()
        );
    }
    s.push_str(
        "<p>All numbers: <a href=\"results.json\">results.json</a>.</p>\n</body>\n</html>\n",
    );
    s
}
