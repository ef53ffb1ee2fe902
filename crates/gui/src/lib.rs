//! `digits gui`: a native window (egui / eframe) to draw a digit or a number and watch it read,
//! live while drawing and on release, by any shipped model, through the same pipeline as the
//! CLI and the web server (`digits-model::recognize`).
//!
//! Why egui: immediate-mode, pure Rust, one small OpenGL (glow) backend, works under X11 and
//! Wayland, and `egui_kittest` drives the real UI code in tests without a window.

mod app;
pub mod canvas;
pub mod demo;
pub mod state;

pub use app::App;
pub use state::State;

use eframe::egui;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum GuiError {
    #[error(
        "no display available (neither DISPLAY nor WAYLAND_DISPLAY is set): `digits gui` needs a \
         desktop session; `digits serve` offers the same in a browser, `digits predict` on files"
    )]
    NoDisplay,
    #[error(transparent)]
    Model(#[from] digits_model::ModelError),
    #[error("the window could not be opened: {0}")]
    Window(String),
    #[error("screenshot: {0}")]
    Screenshot(String),
    #[error(transparent)]
    Feedback(#[from] digits_feedback::FeedbackError),
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Shipped model name or model file selected at start.
    pub model: String,
    /// An image to open at start.
    pub open: Option<PathBuf>,
    /// Draw this digit with the built-in strokes at start.
    pub demo: Option<u8>,
    /// Save a PNG of the window to this path once it has drawn, then close (CI, docs).
    pub screenshot: Option<PathBuf>,
    /// Keep the corrections the user gives in this database.
    pub feedback_db: Option<PathBuf>,
}

/// What the screenshot callback hands back to the app.
type Shot = Arc<Mutex<Option<Result<(), String>>>>;

struct Window {
    app: App,
    answer: Arc<Mutex<Option<String>>>,
    screenshot: Option<PathBuf>,
    frames: u32,
    shot: Shot,
    requested: bool,
}

impl eframe::App for Window {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.app.show(ui);
        *self.answer.lock().expect("not poisoned") = self.app.state.answer();
        let Some(path) = self.screenshot.clone() else {
            return;
        };
        // Let a few frames settle (fonts, textures), then ask for the picture; close once saved.
        self.frames += 1;
        ui.ctx().request_repaint();
        if self.frames >= 5 && !self.requested {
            self.requested = true;
            let shot = self.shot.clone();
            ui.ctx().request_screenshot(move |image| {
                let [w, h] = image.size;
                let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
                let saved = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
                    .ok_or_else(|| "the screenshot has the wrong size".to_string())
                    .and_then(|img| {
                        img.save(&path)
                            .map_err(|e| format!("{}: {e}", path.display()))
                    });
                *shot.lock().expect("not poisoned") = Some(saved);
            });
        }
        if self.shot.lock().expect("not poisoned").is_some() || self.frames > 600 {
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }
}

/// Opens the window and runs until it is closed; returns the reading shown last.
pub fn run(options: Options) -> Result<Option<String>, GuiError> {
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        return Err(GuiError::NoDisplay);
    }
    let mut state = State::new(&options.model)?;
    if let Some(db) = &options.feedback_db {
        state.keep_corrections(digits_feedback::Store::open(db)?);
    }
    if let Some(path) = &options.open {
        state.open(path);
    }
    if let Some(d) = options.demo {
        for s in demo::strokes(d, state.brush) {
            state.canvas.push(s);
        }
        state.recognise();
    }
    let shot: Shot = Arc::default();
    let answer = Arc::new(Mutex::new(None));
    let window = Window {
        answer: answer.clone(),
        app: App::new(state),
        screenshot: options.screenshot.clone(),
        frames: 0,
        shot: shot.clone(),
        requested: false,
    };
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("digits")
            .with_inner_size([900.0, 620.0])
            .with_min_inner_size([640.0, 480.0]),
        ..Default::default()
    };
    eframe::run_native("digits", native, Box::new(|_| Ok(Box::new(window))))
        .map_err(|e| GuiError::Window(e.to_string()))?;
    if options.screenshot.is_some() {
        match shot.lock().expect("not poisoned").take() {
            Some(result) => result.map_err(GuiError::Screenshot)?,
            None => {
                return Err(GuiError::Screenshot(
                    "the window closed before a picture was taken".into(),
                ))
            }
        }
    }
    let last = answer.lock().expect("not poisoned").take();
    Ok(last)
}
