//! The window: a drawing area on the left, the reading on the right. It forwards pointer and
//! keyboard input to [`State`] and paints what it holds.

use crate::canvas::SIDE;
use crate::state::{Outcome, State};
use eframe::egui;
use egui::{
    Color32, ColorImage, Key, KeyboardShortcut, Modifiers, RichText, Sense, TextureHandle,
    TextureOptions, Vec2,
};
use std::path::PathBuf;

/// Seconds between readings while a stroke is being drawn.
const LIVE_INTERVAL: f64 = 0.15;

pub struct App {
    pub state: State,
    /// Where the drawing area was last painted (tests aim the pointer with it).
    pub canvas_rect: Option<egui::Rect>,
    last_live: f64,
    open_path: String,
    /// The number typed to correct a number's reading.
    number_text: String,
    normalized: Option<(Vec<f32>, TextureHandle)>,
}

impl App {
    pub fn new(state: State) -> App {
        App {
            state,
            canvas_rect: None,
            last_live: 0.0,
            open_path: String::new(),
            number_text: String::new(),
            normalized: None,
        }
    }

    /// The whole window's contents.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.shortcuts(ui);
        egui::Panel::right("reading")
            .resizable(false)
            .exact_size(300.0)
            .show(ui, |ui| self.reading(ui));
        egui::CentralPanel::default_margins().show(ui, |ui| {
            self.toolbar(ui);
            self.drawing_area(ui);
        });
    }

    fn shortcuts(&mut self, ui: &mut egui::Ui) {
        // Esc and Delete belong to a text field while one is being typed in.
        let typing = ui.ctx().memory(|m| m.focused().is_some());
        let (clear, undo, number) = ui.input_mut(|i| {
            (
                !typing
                    && (i.consume_key(Modifiers::NONE, Key::Escape)
                        || i.consume_key(Modifiers::NONE, Key::Delete)),
                i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::Z)),
                i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::N)),
            )
        });
        if clear {
            self.state.clear();
        }
        if undo {
            self.state.undo();
        }
        if number {
            let on = !self.state.number_mode();
            self.state.set_number_mode(on);
        }
        let dropped: Vec<PathBuf> = ui.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if let Some(path) = dropped.last() {
            self.state.open(path);
        }
    }

    fn toolbar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            let mut model = self.state.model().to_string();
            egui::ComboBox::from_label("model")
                .selected_text(model.to_uppercase())
                .show_ui(ui, |ui| {
                    let names: Vec<String> = self.state.model_names().map(String::from).collect();
                    for name in names {
                        let label = name.to_uppercase();
                        ui.selectable_value(&mut model, name, label);
                    }
                });
            self.state.select_model(&model);
            let mut number = self.state.number_mode();
            if ui.checkbox(&mut number, "number (Ctrl+N)").changed() {
                self.state.set_number_mode(number);
            }
            ui.add(egui::Slider::new(&mut self.state.brush, 6.0..=40.0).text("brush"));
            if ui.button("Undo (Ctrl+Z)").clicked() {
                self.state.undo();
            }
            if ui.button("Clear (Esc)").clicked() {
                self.state.clear();
            }
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.open_path)
                    .hint_text("image file to open (or drop one here)")
                    .desired_width(300.0),
            );
            if ui.button("Open").clicked() && !self.open_path.is_empty() {
                let path = PathBuf::from(self.open_path.trim());
                self.state.open(&path);
            }
        });
    }

    fn drawing_area(&mut self, ui: &mut egui::Ui) {
        let side = ui
            .available_width()
            .min(ui.available_height())
            .clamp(200.0, 560.0);
        let (response, painter) = ui.allocate_painter(Vec2::splat(side), Sense::drag());
        let rect = response.rect;
        self.canvas_rect = Some(rect);
        let scale = side / SIDE as f32;
        painter.rect_filled(rect, 4.0, Color32::WHITE);
        if let Some((name, image, _)) = &self.state.opened {
            painter.text(
                rect.left_top() + Vec2::splat(8.0),
                egui::Align2::LEFT_TOP,
                format!(
                    "{name} ({}x{}); Esc returns to drawing",
                    image.width(),
                    image.height()
                ),
                egui::FontId::proportional(13.0),
                Color32::DARK_GRAY,
            );
        }
        let to_canvas = |p: egui::Pos2| [(p.x - rect.left()) / scale, (p.y - rect.top()) / scale];
        if let Some(pos) = response.interact_pointer_pos() {
            if response.drag_started() {
                self.state.opened = None;
                self.state.canvas.begin(to_canvas(pos), self.state.brush);
            } else if response.dragged() {
                self.state.canvas.extend(to_canvas(pos));
            }
        }
        if response.drag_stopped() {
            self.state.canvas.end();
            self.state.recognise();
        } else if self.state.canvas.is_drawing() {
            let now = ui.input(|i| i.time);
            if now - self.last_live >= LIVE_INTERVAL {
                self.last_live = now;
                self.state.recognise();
            }
        }
        for s in self.state.canvas.strokes() {
            let points: Vec<egui::Pos2> = s
                .points
                .iter()
                .map(|p| rect.left_top() + Vec2::new(p[0], p[1]) * scale)
                .collect();
            let width = s.width * scale;
            for p in &points {
                painter.circle_filled(*p, width / 2.0, Color32::BLACK);
            }
            painter.add(egui::Shape::line(
                points,
                egui::Stroke::new(width, Color32::BLACK),
            ));
        }
        if self.state.canvas.is_empty() && self.state.opened.is_none() {
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "draw a digit here",
                egui::FontId::proportional(18.0),
                Color32::GRAY,
            );
        }
    }

    fn reading(&mut self, ui: &mut egui::Ui) {
        ui.add_space(8.0);
        let answer = self.state.answer();
        match &self.state.result {
            None => {
                ui.label(RichText::new("–").size(72.0));
                ui.label("Draw a digit, or open an image.");
            }
            Some(Err(_)) => {
                ui.label(RichText::new("?").size(72.0));
                ui.colored_label(Color32::from_rgb(180, 40, 40), answer.unwrap_or_default());
            }
            Some(Ok(outcome)) => {
                let (confidence, uncertain, probabilities, pixels) = match outcome {
                    Outcome::Digit(d) => (
                        d.prediction.confidence,
                        d.uncertain,
                        Some(d.prediction.probabilities),
                        d.normalized.pixels.clone(),
                    ),
                    Outcome::Number(n) => (
                        n.confidence,
                        n.uncertain,
                        None,
                        n.digits
                            .iter()
                            .flat_map(|d| d.normalized.pixels.clone())
                            .collect(),
                    ),
                };
                ui.label(
                    RichText::new(answer.unwrap_or_default())
                        .size(72.0)
                        .strong(),
                );
                let mut line = format!(
                    "{:.1}% confident ({})",
                    100.0 * confidence,
                    self.state.model().to_uppercase()
                );
                if uncertain {
                    line.push_str(", uncertain");
                }
                ui.label(line);
                ui.add_space(8.0);
                if let Some(p) = probabilities {
                    for (d, &v) in p.iter().enumerate() {
                        ui.horizontal(|ui| {
                            ui.label(RichText::new(d.to_string()).monospace());
                            ui.add(
                                egui::ProgressBar::new(v)
                                    .desired_width(200.0)
                                    .text(format!("{:.1}%", 100.0 * v)),
                            );
                        });
                    }
                }
                ui.add_space(8.0);
                ui.label("What the model saw (28x28 per digit):");
                self.show_normalized(ui, pixels);
                self.corrections(ui);
            }
        }
    }

    /// "Wrong? It is a 0 1 .. 9" (or the right number in number mode), when corrections are kept.
    fn corrections(&mut self, ui: &mut egui::Ui) {
        let Some(db) = self.state.corrections_db() else {
            return;
        };
        let kept = format!("Corrections are kept in {}.", db.display());
        ui.add_space(8.0);
        if self.state.number_mode() {
            ui.horizontal(|ui| {
                ui.label("Wrong? It is");
                let field = ui.add(
                    egui::TextEdit::singleline(&mut self.number_text)
                        .desired_width(90.0)
                        .hint_text("the number"),
                );
                let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Save").clicked() || entered {
                    let text = std::mem::take(&mut self.number_text);
                    self.state.correct_number(&text);
                }
            });
        } else {
            ui.horizontal_wrapped(|ui| {
                ui.label("Wrong? It is a");
                for d in 0..10u8 {
                    if ui.button(d.to_string()).clicked() {
                        self.state.correct(d);
                    }
                }
            });
        }
        match &self.state.saved {
            Some(Ok(m)) => ui.colored_label(Color32::from_rgb(30, 130, 80), m),
            Some(Err(e)) => {
                ui.colored_label(Color32::from_rgb(180, 40, 40), format!("Not saved: {e}"))
            }
            None => ui.label(RichText::new(kept).small().color(Color32::GRAY)),
        };
    }

    /// The normalised 28x28 input(s), side by side, scaled up without smoothing.
    fn show_normalized(&mut self, ui: &mut egui::Ui, pixels: Vec<f32>) {
        let count = pixels.len() / 784;
        if count == 0 {
            return;
        }
        let stale = self.normalized.as_ref().is_none_or(|(p, _)| *p != pixels);
        if stale {
            let mut grey = vec![0u8; count * 784];
            for (k, digit) in pixels.chunks_exact(784).enumerate() {
                for (i, v) in digit.iter().enumerate() {
                    grey[(i / 28) * 28 * count + k * 28 + i % 28] =
                        (v.clamp(0.0, 1.0) * 255.0) as u8;
                }
            }
            let image = ColorImage::from_gray([28 * count, 28], &grey);
            let texture = ui
                .ctx()
                .load_texture("normalized", image, TextureOptions::NEAREST);
            self.normalized = Some((pixels, texture));
        }
        if let Some((_, texture)) = &self.normalized {
            let width = (140.0 * count as f32).min(ui.available_width());
            ui.image((texture.id(), Vec2::new(width, width / count as f32)));
        }
    }
}
