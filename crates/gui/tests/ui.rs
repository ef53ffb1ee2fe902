//! The real window contents driven through egui_kittest (no display needed): drawing with the
//! pointer, the buttons, the model picker and the keyboard shortcuts.

use digits_gui::{demo, App, State};
use eframe::egui;
use egui::{Key, Modifiers, Pos2};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

fn harness() -> Harness<'static, App> {
    harness_with(State::new("cnn").expect("shipped models load"))
}

fn harness_with(state: State) -> Harness<'static, App> {
    let app = App::new(state);
    let mut h = Harness::builder()
        .with_size(egui::vec2(900.0, 620.0))
        .build_ui_state(|ui, app: &mut App| app.show(ui), app);
    h.run();
    h
}

/// Draws `digit` with the mouse: press, move along each stroke, release.
fn draw(h: &mut Harness<'static, App>, digit: u8) {
    let rect = h.state().canvas_rect.expect("the canvas was painted");
    let scale = rect.width() / digits_gui::canvas::SIDE as f32;
    let at = |p: [f32; 2]| Pos2::new(rect.left() + p[0] * scale, rect.top() + p[1] * scale);
    for stroke in demo::strokes(digit, 18.0) {
        h.drag_at(at(stroke.points[0]));
        h.step();
        for p in &stroke.points[1..] {
            h.hover_at(at(*p));
            h.step();
        }
        h.drop_at(at(stroke.points[stroke.points.len() - 1]));
        h.step();
    }
    h.run();
}

#[test]
fn drawing_with_the_mouse_is_read_and_shown() {
    let mut h = harness();
    h.get_by_label("Draw a digit, or open an image.");
    draw(&mut h, 3);
    assert_eq!(h.state().state.answer().as_deref(), Some("3"));
    assert!(h.query_by_label_contains("% confident (CNN)").is_some());
    assert!(h
        .query_by_label("What the model saw (28x28 per digit):")
        .is_some());
}

#[test]
fn buttons_shortcuts_and_model_picker_work() {
    let mut h = harness();
    draw(&mut h, 7);
    assert_eq!(h.state().state.canvas.strokes().count(), 1);
    h.get_by_label("Undo (Ctrl+Z)").click();
    h.run();
    assert!(h.state().state.canvas.is_empty());
    assert_eq!(h.state().state.answer(), None);

    draw(&mut h, 4);
    assert_eq!(h.state().state.answer().as_deref(), Some("4"));
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(
        h.state().state.canvas.strokes().count(),
        1,
        "Ctrl+Z undid one stroke"
    );
    h.key_press(Key::Escape);
    h.run();
    assert!(h.state().state.canvas.is_empty(), "Esc clears");

    h.get_by_label("model").click();
    h.run();
    h.get_by_label("SVM").click();
    h.run();
    assert_eq!(h.state().state.model(), "svm");
    draw(&mut h, 2);
    assert_eq!(h.state().state.answer().as_deref(), Some("2"));
    assert!(h.query_by_label_contains("% confident (SVM)").is_some());

    h.get_by_label("number (Ctrl+N)").click();
    h.run();
    assert!(h.state().state.number_mode());
    h.get_by_label("Clear (Esc)").click();
    h.run();
    assert!(h.state().state.canvas.is_empty());
}

#[test]
fn a_correction_is_clicked_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedback.sqlite");
    let mut state = State::new("cnn").unwrap();
    state.keep_corrections(digits_feedback::Store::open(&db).unwrap());
    let mut h = harness_with(state);
    draw(&mut h, 4);
    assert_eq!(h.state().state.answer().as_deref(), Some("4"));
    h.get_by_label_contains("Corrections are kept in");
    // The person meant a 9.
    h.get_by_role_and_label(egui::accesskit::Role::Button, "9")
        .click();
    h.run();
    h.get_by_label("saved as correction #1, thank you");
    let records = digits_feedback::Store::open(&db)
        .unwrap()
        .records()
        .unwrap();
    assert_eq!(records.len(), 1);
    let c = &records[0].correction;
    assert_eq!(
        (c.label, c.predicted, c.source.name()),
        (9, Some(4), "desktop")
    );
    assert_eq!(c.model, "cnn");
}

#[test]
fn without_a_database_no_correction_is_offered() {
    let mut h = harness();
    draw(&mut h, 4);
    assert!(h.query_by_label_contains("Wrong? It is").is_none());
}
