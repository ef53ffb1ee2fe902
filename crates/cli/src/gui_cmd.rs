//! `digits gui`: the desktop app (cargo feature `gui`, on by default).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct GuiArgs {
    /// An image file to open at start.
    file: Option<PathBuf>,
    /// The model selected at start: a shipped model's name (cnn, cnn-large, ensemble, ensemble-large, mlp, svm) or a model file.
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Draw this digit (0-9) with built-in strokes at start.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    demo: Option<u8>,
    /// Save a PNG of the window once it has drawn, then exit (for CI and documentation).
    #[arg(long)]
    screenshot: Option<PathBuf>,
    /// Keep the corrections you give ("Wrong? It is a ...") in this SQLite database.
    #[arg(long, env = "DIGITS_FEEDBACK_DB")]
    feedback_db: Option<PathBuf>,
}

#[cfg(feature = "gui")]
pub fn gui(args: GuiArgs) -> Result<()> {
    let screenshot = args.screenshot.clone();
    let answer = digits_gui::run(digits_gui::Options {
        model: args.model,
        open: args.file,
        demo: args.demo,
        screenshot: args.screenshot,
        feedback_db: args.feedback_db,
    })?;
    if let Some(path) = screenshot {
        println!(
            "read: {}; screenshot saved to {}",
            answer.as_deref().unwrap_or("nothing"),
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(feature = "gui"))]
pub fn gui(_args: GuiArgs) -> Result<()> {
    anyhow::bail!(
        "this build of digits has no desktop app; rebuild with the `gui` feature (on by default)"
    )
}
