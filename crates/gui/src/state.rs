//! Everything the window shows, without the window: the drawing or an opened image, the chosen
//! model and mode, and the last reading. The UI only forwards input here and paints the result.

use crate::canvas::Canvas;
use digits_feedback::{digit_correction, number_corrections, Origin, Source, Store};
use digits_model::recognize::{read_digit_image, read_number_image, NumberReading, Reading};
use digits_model::{shipped, Model, ModelError};
use digits_vision::{decode, Limits, RgbaImage};
use std::collections::BTreeMap;
use std::path::Path;

/// What the last recognition found.
#[derive(Debug, Clone)]
pub enum Outcome {
    Digit(Reading),
    Number(NumberReading),
}

pub struct State {
    pub canvas: Canvas,
    /// Brush diameter in canvas pixels.
    pub brush: f32,
    number_mode: bool,
    models: BTreeMap<String, Model>,
    model: String,
    /// An image opened from a file (its name, pixels and bytes); shown and read instead of the
    /// drawing until cleared.
    pub opened: Option<(String, RgbaImage, Vec<u8>)>,
    /// The last reading, or why there is none (a message for the user).
    pub result: Option<Result<Outcome, String>>,
    /// Where corrections are kept, when they are.
    feedback: Option<Store>,
    /// What became of the last correction: "saved as #12", or why it was not.
    pub saved: Option<Result<String, String>>,
}

impl State {
    /// Loads the shipped models (and `model`, when it is a file) with `model` selected.
    pub fn new(model: &str) -> Result<State, ModelError> {
        let mut models = BTreeMap::new();
        for name in shipped::NAMES {
            models.insert(name.to_string(), shipped::resolve(name)?);
        }
        if !models.contains_key(model) {
            models.insert(model.to_string(), shipped::resolve(model)?);
        }
        Ok(State {
            canvas: Canvas::default(),
            brush: 18.0,
            number_mode: false,
            models,
            model: model.to_string(),
            opened: None,
            result: None,
            feedback: None,
            saved: None,
        })
    }

    /// Keeps the corrections the user gives in `store`.
    pub fn keep_corrections(&mut self, store: Store) {
        self.feedback = Some(store);
    }

    /// The database corrections go to, when they are kept.
    pub fn corrections_db(&self) -> Option<&Path> {
        self.feedback.as_ref().map(Store::path)
    }

    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Switches model and reads the current drawing again with it.
    pub fn select_model(&mut self, name: &str) {
        if self.models.contains_key(name) && name != self.model {
            self.model = name.to_string();
            self.recognise();
        }
    }

    pub fn number_mode(&self) -> bool {
        self.number_mode
    }

    pub fn set_number_mode(&mut self, on: bool) {
        if on != self.number_mode {
            self.number_mode = on;
            self.recognise();
        }
    }

    pub fn undo(&mut self) {
        if self.canvas.undo() {
            self.recognise();
        }
    }

    /// Clears the drawing and any opened image.
    pub fn clear(&mut self) {
        self.canvas.clear();
        self.opened = None;
        self.result = None;
        self.saved = None;
    }

    /// Opens an image file (any format the pipeline reads) and reads it.
    pub fn open(&mut self, path: &Path) {
        let opened = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                decode(&bytes, &Limits::default())
                    .map(|image| (image, bytes))
                    .map_err(|e| e.to_string())
            });
        match opened {
            Ok((image, bytes)) => {
                self.canvas.clear();
                self.opened = Some((path.display().to_string(), image, bytes));
                self.recognise();
            }
            Err(e) => self.result = Some(Err(format!("{}: {e}", path.display()))),
        }
    }

    /// Reads the opened image, or else the drawing, with the chosen model and mode.
    pub fn recognise(&mut self) {
        self.saved = None;
        let drawn;
        let image = match &self.opened {
            Some((_, image, _)) => image,
            None if self.canvas.is_empty() => {
                self.result = None;
                return;
            }
            None => {
                drawn = self.canvas.render();
                &drawn
            }
        };
        let model = self
            .models
            .get_mut(&self.model)
            .expect("the selected model is always loaded");
        let outcome = if self.number_mode {
            read_number_image(model, image).map(Outcome::Number)
        } else {
            read_digit_image(model, image).map(Outcome::Digit)
        };
        self.result = Some(outcome.map_err(|e| e.to_string()));
    }

    /// Stores that the digit just read is `label` (digit mode).
    pub fn correct(&mut self, label: u8) {
        self.store_correction(|reading, origin| match reading {
            Outcome::Digit(r) => Ok(vec![digit_correction(r, label, origin)]),
            Outcome::Number(_) => Err("switch off number mode to correct one digit".into()),
        });
    }

    /// Stores that the number just read is `text` (number mode), one correction per digit.
    pub fn correct_number(&mut self, text: &str) {
        self.store_correction(|reading, origin| match reading {
            Outcome::Number(n) => number_corrections(n, text, origin).map_err(|e| e.to_string()),
            Outcome::Digit(_) => Err("switch on number mode to correct a number".into()),
        });
    }

    fn store_correction(
        &mut self,
        make: impl FnOnce(&Outcome, Origin) -> Result<Vec<digits_feedback::Correction>, String>,
    ) {
        let saved = (|| {
            let Some(Ok(reading)) = &self.result else {
                return Err("there is no reading to correct".to_string());
            };
            let image = match &self.opened {
                Some((_, _, bytes)) => bytes.clone(),
                None => self.canvas.png().map_err(|e| e.to_string())?,
            };
            let version = self.models[&self.model].lineage().version;
            let origin = Origin {
                source: Source::Desktop,
                model: self.model.clone(),
                model_version: version,
                image: Some(image),
            };
            let all = make(reading, origin)?;
            let store = self
                .feedback
                .as_mut()
                .ok_or("corrections are not kept (start with --feedback-db FILE)")?;
            let ids = store.insert_all(&all).map_err(|e| e.to_string())?;
            let ids: Vec<String> = ids.iter().map(|id| format!("#{id}")).collect();
            Ok(format!("saved as correction {}, thank you", ids.join(", ")))
        })();
        self.saved = Some(saved);
    }

    /// The reading as text: the digit or number, or the message.
    pub fn answer(&self) -> Option<String> {
        self.result.as_ref().map(|r| match r {
            Ok(Outcome::Digit(d)) => d.prediction.digit.to_string(),
            Ok(Outcome::Number(n)) => n.text.clone(),
            Err(e) => e.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo;

    fn draw(state: &mut State, digit: u8) {
        state.canvas.clear();
        for s in demo::strokes(digit, state.brush) {
            state.canvas.push(s);
        }
        state.recognise();
    }

    /// A 7 and a 1 side by side, each at half size: "71" in number mode.
    fn draw_seventy_one(state: &mut State) {
        for (digit, dx) in [(7, 10.0), (1, 140.0)] {
            for mut s in demo::strokes(digit, 12.0) {
                s.points
                    .iter_mut()
                    .for_each(|p| *p = [p[0] * 0.5 + dx, p[1] * 0.5 + 70.0]);
                state.canvas.push(s);
            }
        }
    }

    #[test]
    fn every_drawn_digit_is_read_by_every_shipped_model() {
        let mut state = State::new("cnn").unwrap();
        let names: Vec<String> = state.model_names().map(String::from).collect();
        assert_eq!(
            names,
            [
                "cnn",
                "cnn-large",
                "ensemble",
                "ensemble-large",
                "mlp",
                "svm"
            ]
        );
        for name in &names {
            state.select_model(name);
            for d in 0..10 {
                draw(&mut state, d);
                assert_eq!(
                    state.answer(),
                    Some(d.to_string()),
                    "{name} reading a drawn {d}"
                );
            }
        }
    }

    #[test]
    fn undo_clear_number_mode_and_bad_files() {
        let mut state = State::new("cnn").unwrap();
        assert_eq!(state.answer(), None, "an empty canvas is not read");
        draw_seventy_one(&mut state);
        state.set_number_mode(true);
        assert_eq!(state.answer().as_deref(), Some("71"));
        state.undo();
        assert_eq!(state.answer().as_deref(), Some("7"));
        state.set_number_mode(false);
        state.clear();
        assert!(state.canvas.is_empty() && state.answer().is_none());

        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("not-an-image.png");
        std::fs::write(&bad, b"hello").unwrap();
        state.open(&bad);
        let e = state.answer().unwrap();
        assert!(
            e.contains("not-an-image.png") && e.contains("not a supported image"),
            "{e}"
        );
        state.open(&dir.path().join("absent.png"));
        assert!(state.answer().unwrap().contains("absent.png"));

        let png = dir.path().join("four.png");
        let mut four = Canvas::default();
        demo::strokes(4, 18.0)
            .into_iter()
            .for_each(|s| four.push(s));
        four.render().save(&png).unwrap();
        state.open(&png);
        assert_eq!(state.answer().as_deref(), Some("4"));
        assert!(state.opened.is_some());
    }

    #[test]
    fn corrections_are_stored_with_what_was_read() {
        let mut state = State::new("cnn").unwrap();
        draw(&mut state, 4);
        state.correct(9);
        assert!(
            matches!(&state.saved, Some(Err(e)) if e.contains("--feedback-db")),
            "{:?}",
            state.saved
        );

        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fb.sqlite");
        state.keep_corrections(Store::open(&db).unwrap());
        assert_eq!(state.corrections_db(), Some(db.as_path()));
        state.correct(9);
        assert_eq!(
            state.saved,
            Some(Ok("saved as correction #1, thank you".into()))
        );
        // "71" in number mode, corrected to "17": one correction per digit.
        state.clear();
        draw_seventy_one(&mut state);
        state.set_number_mode(true);
        assert_eq!(state.answer().as_deref(), Some("71"));
        state.correct(3);
        assert!(matches!(&state.saved, Some(Err(e)) if e.contains("number mode")));
        state.correct_number("1");
        assert!(matches!(&state.saved, Some(Err(e)) if e.contains("2 were found")));
        state.correct_number("17");
        assert_eq!(
            state.saved,
            Some(Ok("saved as correction #2, #3, thank you".into()))
        );

        let records = Store::open(&db).unwrap().records().unwrap();
        let got: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.correction.label,
                    r.correction.predicted,
                    r.correction.source,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (9, Some(4), Source::Desktop),
                (1, Some(7), Source::Desktop),
                (7, Some(1), Source::Desktop)
            ]
        );
        let png = records[0].correction.image.as_deref().unwrap();
        assert_eq!(image::guess_format(png).unwrap(), image::ImageFormat::Png);
    }
}
