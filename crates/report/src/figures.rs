//! The report's figures, each drawn once for PNG (bitmap, with the bundled DejaVu Sans font so
//! it looks the same on every machine) and once for SVG (text left to the viewer's fonts).

use crate::{Comparison, ModelResult, ReportError};
use image::ImageEncoder;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::RangedCoordi32;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// Test digits shown per row of a gallery.
const GALLERY_COLUMNS: usize = 8;

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A rendered figure: `stem.png` and `stem.svg`, with a caption for the pages.
pub struct Rendered {
    pub stem: String,
    pub title: String,
    pub png: Vec<u8>,
    pub svg: String,
}

trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

fn render(stem: String, title: String, fig: &impl Figure) -> Result<Rendered, ReportError> {
    static FONT_ONCE: std::sync::Once = std::sync::Once::new();
    FONT_ONCE.call_once(|| {
        // Only fails on a corrupt font file, which is compiled in and tested.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
    let problem = |e: String| ReportError::Figure {
        figure: stem.clone(),
        problem: e,
    };
    let (w, h) = fig.size();
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| problem(e.to_string()))?;
        fig.draw(&root).map_err(|e| problem(e.to_string()))?;
        root.present().map_err(|e| problem(e.to_string()))?;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| problem(e.to_string()))?;
        fig.draw(&root).map_err(|e| problem(e.to_string()))?;
        root.present().map_err(|e| problem(e.to_string()))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| problem(e.to_string()))?;
    Ok(Rendered {
        stem,
        title,
        png,
        svg,
    })
}

/// Every figure of the report, in page order.
pub fn all(c: &Comparison, test_images: &[u8]) -> Result<Vec<Rendered>, ReportError> {
    let bars = Bars::of(c);
    let mut out = vec![
        render(
            "accuracy".into(),
            "Test accuracy per model".into(),
            &Accuracy(&bars),
        )?,
        render(
            "timing".into(),
            "Training and prediction time per model (log scale)".into(),
            &Timing(&bars),
        )?,
    ];
    let neural: Vec<&ModelResult> = c.models.iter().filter(|m| !m.history.is_empty()).collect();
    if !neural.is_empty() {
        out.push(render(
            "learning_curves".into(),
            "Learning curves of the neural models".into(),
            &Curves(&neural),
        )?);
    }
    out.push(render(
        "f1".into(),
        "F1 score per digit".into(),
        &F1(&c.models),
    )?);
    for m in &c.models {
        out.push(render(
            format!("confusion_{}", m.name),
            format!("Confusion matrix: {}", m.name),
            &Confusion(m),
        )?);
    }
    for m in &c.models {
        out.push(render(
            format!("mistakes_{}", m.name),
            format!("Most confident mistakes: {}", m.name),
            &Gallery {
                model: m,
                images: test_images,
            },
        )?);
    }
    Ok(out)
}

fn model_colour(name: &str) -> RGBColor {
    match name {
        "cnn" => RGBColor(31, 119, 180),
        "mlp" => RGBColor(255, 127, 14),
        "svm" => RGBColor(44, 160, 44),
        _ => RGBColor(127, 127, 127),
    }
}

/// One bar per model: ours, then the peers'.
struct Bar {
    label: String,
    colour: RGBColor,
    accuracy: f64,
    errors: usize,
    images: usize,
    train_seconds: Option<f64>,
    predict_seconds: f64,
}

struct Bars(Vec<Bar>);

impl Bars {
    fn of(c: &Comparison) -> Bars {
        let mut bars: Vec<Bar> = c
            .models
            .iter()
            .map(|m| Bar {
                label: format!("{} (digits)", m.name),
                colour: model_colour(&m.name),
                accuracy: 100.0 * m.evaluation.accuracy as f64,
                errors: m.evaluation.errors,
                images: m.evaluation.images,
                train_seconds: m.train_seconds.map(f64::from),
                predict_seconds: m.evaluation.seconds as f64,
            })
            .collect();
        bars.extend(c.peers.iter().map(|p| {
            let base = model_colour(&p.model);
            Bar {
                label: format!("{} ({})", p.model, p.framework),
                colour: base.mix(0.55).to_rgba().into_rgb(),
                accuracy: 100.0 * p.accuracy as f64,
                errors: ((1.0 - p.accuracy as f64) * p.test_images as f64).round() as usize,
                images: p.test_images,
                train_seconds: Some(p.train_seconds as f64),
                predict_seconds: p.predict_seconds as f64,
            }
        }));
        bars.sort_by(|a, b| a.label.split(' ').next().cmp(&b.label.split(' ').next()));
        Bars(bars)
    }
}

trait IntoRgb {
    fn into_rgb(self) -> RGBColor;
}

impl IntoRgb for RGBAColor {
    /// Blends onto white.
    fn into_rgb(self) -> RGBColor {
        let a = self.3;
        let f = |c: u8| (c as f64 * a + 255.0 * (1.0 - a)).round() as u8;
        RGBColor(f(self.0), f(self.1), f(self.2))
    }
}

/// `n` equal slots along an axis, one per bar or class (a range `0..k` spans k + 1 slots; a
/// single bar gets an empty slot beside it rather than a degenerate axis).
fn segments(n: usize) -> SegmentedCoord<RangedCoordi32> {
    (0..n.max(2) as i32 - 1).into_segmented()
}

fn label_of(labels: &[String], v: &SegmentValue<i32>) -> String {
    match v {
        SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

fn seconds(s: f64) -> String {
    if s >= 100.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} ms", s * 1000.0)
    }
}

struct Accuracy<'a>(&'a Bars);

impl Figure for Accuracy<'_> {
    fn size(&self) -> (u32, u32) {
        (200 + 150 * self.0 .0.len() as u32, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let bars = &self.0 .0;
        let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
        let low = bars.iter().map(|b| b.accuracy).fold(100.0, f64::min);
        let floor = (low - 1.0).floor().clamp(0.0, 99.0);
        let top = 100.0 + (100.0 - floor) * 0.12;
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("Test accuracy ({} test images)", bars[0].images),
                (FONT, 24),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(segments(bars.len()), floor..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("model (framework)")
            .y_desc("accuracy (%)")
            .y_labels(8)
            .y_label_formatter(&|v| {
                if *v <= 100.0 {
                    format!("{v:.1}")
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|v| label_of(&labels, v))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i as i32), floor),
                    (SegmentValue::Exact(i as i32 + 1), b.accuracy),
                ],
                b.colour.filled(),
            );
            r.set_margin(0, 0, 14, 14);
            r
        }))?;
        let style =
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                format!("{:.2}% ({} errors)", b.accuracy, b.errors),
                (SegmentValue::CenterOf(i as i32), b.accuracy),
                style.clone(),
            )
        }))?;
        Ok(())
    }
}

struct Timing<'a>(&'a Bars);

impl Figure for Timing<'_> {
    fn size(&self) -> (u32, u32) {
        (2 * (160 + 130 * self.0 .0.len() as u32), 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let bars = &self.0 .0;
        let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
        let train: Vec<Option<f64>> = bars.iter().map(|b| b.train_seconds).collect();
        let predict: Vec<Option<f64>> = bars.iter().map(|b| Some(b.predict_seconds)).collect();
        let images = bars[0].images;
        log_bars(&left, "Training time", "seconds (log scale)", bars, &train)?;
        log_bars(
            &right,
            &format!("Prediction time for {images} test images"),
            "seconds (log scale)",
            bars,
            &predict,
        )
    }
}

fn log_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    bars: &[Bar],
    values: &[Option<f64>],
) -> DrawResult<DB> {
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    let lo = present
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1e-4);
    let hi = present.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let (lo, hi) = (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil() + 0.3),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(segments(bars.len()), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_desc)
        .x_label_formatter(&|v| label_of(&labels, v))
        .y_label_formatter(&|v| seconds(*v))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 16))
        .draw()?;
    chart.draw_series(
        bars.iter()
            .zip(values)
            .enumerate()
            .filter_map(|(i, (b, v))| {
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i as i32), lo),
                        (SegmentValue::Exact(i as i32 + 1), (*v)?),
                    ],
                    b.colour.filled(),
                );
                r.set_margin(0, 0, 12, 12);
                Some(r)
            }),
    )?;
    let style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(values.iter().enumerate().map(|(i, v)| {
        Text::new(
            v.map_or("not recorded".to_string(), seconds),
            (SegmentValue::CenterOf(i as i32), v.unwrap_or(lo)),
            style.clone(),
        )
    }))?;
    Ok(())
}

struct Curves<'a>(&'a [&'a ModelResult]);

impl Figure for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (1100, 480)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (left, right) = root.split_horizontally(550);
        let loss = |e: &digits_model::train::EpochStats| e.train_loss as f64;
        let acc = |e: &digits_model::train::EpochStats| 100.0 * e.validation_accuracy as f64;
        curve_panel(&left, "Training loss", "mean cross-entropy", self.0, &loss)?;
        curve_panel(&right, "Validation accuracy", "accuracy (%)", self.0, &acc)
    }
}

fn curve_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    models: &[&ModelResult],
    value: &dyn Fn(&digits_model::train::EpochStats) -> f64,
) -> DrawResult<DB> {
    let epochs = models
        .iter()
        .map(|m| m.history.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let all: Vec<f64> = models
        .iter()
        .flat_map(|m| m.history.iter().map(value))
        .collect();
    let (lo, hi) = (
        all.iter().copied().fold(f64::INFINITY, f64::min),
        all.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let pad = ((hi - lo) * 0.1).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.5..epochs as f64 + 0.5, (lo - pad)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels(epochs.min(15))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 16))
        .draw()?;
    for m in models {
        let colour = model_colour(&m.name);
        let points: Vec<(f64, f64)> = m
            .history
            .iter()
            .map(|e| (e.epoch as f64, value(e)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(m.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, colour.filled())),
        )?;
    }
    legend(&mut chart, SeriesLabelPosition::MiddleRight)
}

/// The series legend every multi-model chart uses.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .position(position)
        .draw()
}

struct F1<'a>(&'a [ModelResult]);

impl Figure for F1<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 480)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let models = self.0;
        let low = models
            .iter()
            .flat_map(|m| m.evaluation.per_class.iter().map(|c| 100.0 * c.f1 as f64))
            .fold(100.0, f64::min);
        let floor = (low - 1.0).floor().clamp(0.0, 99.0);
        let mut chart = ChartBuilder::on(root)
            .caption("F1 score per digit (test set)", (FONT, 22))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(-0.5..9.5f64, floor..100.0 + (100.0 - floor) * 0.15)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("digit")
            .y_desc("F1 (%)")
            .y_label_formatter(&|v| {
                if *v <= 100.0 {
                    format!("{v:.1}")
                } else {
                    String::new()
                }
            })
            .x_labels(10)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 16))
            .draw()?;
        let width = 0.8 / models.len() as f64;
        for (k, m) in models.iter().enumerate() {
            let colour = model_colour(&m.name);
            chart
                .draw_series(m.evaluation.per_class.iter().map(|c| {
                    let x0 = c.digit as f64 - 0.4 + k as f64 * width;
                    Rectangle::new(
                        [(x0, floor), (x0 + width * 0.9, 100.0 * c.f1 as f64)],
                        colour.filled(),
                    )
                }))?
                .label(m.name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

struct Confusion<'a>(&'a ModelResult);

impl Figure for Confusion<'_> {
    fn size(&self) -> (u32, u32) {
        (620, 640)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let m = &self.0.evaluation;
        let worst = (0..10)
            .flat_map(|t| (0..10).filter(move |&p| p != t).map(move |p| (t, p)))
            .map(|(t, p)| m.confusion[t][p])
            .max()
            .unwrap_or(0)
            .max(1);
        let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        let flipped: Vec<String> = (0..10).rev().map(|d| d.to_string()).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "{}: confusion matrix ({} test images)",
                    self.0.name, m.images
                ),
                (FONT, 20),
            )
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(50)
            .build_cartesian_2d(segments(10), segments(10))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted digit")
            .y_desc("true digit")
            .x_label_formatter(&|v| label_of(&digits, v))
            .y_label_formatter(&|v| label_of(&flipped, v))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        chart.draw_series(
            (0..10)
                .flat_map(|t| (0..10).map(move |p| (t, p)))
                .map(|(t, p)| {
                    let n = m.confusion[t][p];
                    let colour = if t == p {
                        RGBColor(198, 226, 198)
                    } else if n == 0 {
                        WHITE
                    } else {
                        let f = (n as f64 / worst as f64).sqrt();
                        let shade = |c: f64| (255.0 - f * (255.0 - c)) as u8;
                        RGBColor(shade(214.0), shade(39.0), shade(40.0))
                    };
                    let start = (
                        SegmentValue::Exact(p as i32),
                        SegmentValue::Exact(9 - t as i32),
                    );
                    let end = (
                        SegmentValue::Exact(p as i32 + 1),
                        SegmentValue::Exact(10 - t as i32),
                    );
                    Rectangle::new([start, end], colour.filled())
                }),
        )?;
        let style =
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        chart.draw_series(
            (0..10)
                .flat_map(|t| (0..10).map(move |p| (t, p)))
                .map(|(t, p)| {
                    Text::new(
                        m.confusion[t][p].to_string(),
                        (
                            SegmentValue::CenterOf(p as i32),
                            SegmentValue::CenterOf(9 - t as i32),
                        ),
                        style.clone(),
                    )
                }),
        )?;
        Ok(())
    }
}

struct Gallery<'a> {
    model: &'a ModelResult,
    images: &'a [u8],
}

impl Figure for Gallery<'_> {
    fn size(&self) -> (u32, u32) {
        let rows = self.model.mistakes.len().div_ceil(GALLERY_COLUMNS).max(1) as u32;
        (GALLERY_COLUMNS as u32 * 110 + 20, 60 + rows * 120)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let title = format!(
            "{}: most confident mistakes (true → read, confidence)",
            self.model.name
        );
        let area = root.titled(&title, (FONT, 20))?.margin(4, 4, 10, 10);
        if self.model.mistakes.is_empty() {
            area.draw(&Text::new("no mistakes", (20, 20), (FONT, 16)))?;
            return Ok(());
        }
        let rows = self.model.mistakes.len().div_ceil(GALLERY_COLUMNS);
        let cells = area.split_evenly((rows, GALLERY_COLUMNS));
        let scale = 3;
        for (cell, miss) in cells.iter().zip(&self.model.mistakes) {
            let (w, _) = cell.dim_in_pixel();
            let x0 = (w as i32 - 28 * scale) / 2;
            let image = &self.images[miss.index * 784..(miss.index + 1) * 784];
            cell.draw(&Rectangle::new(
                [(x0 - 1, 1), (x0 + 28 * scale + 1, 28 * scale + 3)],
                RGBColor(200, 200, 200),
            ))?;
            for (i, &v) in image.iter().enumerate().filter(|(_, &v)| v > 0) {
                let (x, y) = ((i % 28) as i32 * scale + x0, (i / 28) as i32 * scale + 2);
                let g = 255 - v;
                cell.draw(&Rectangle::new(
                    [(x, y), (x + scale, y + scale)],
                    RGBColor(g, g, g).filled(),
                ))?;
            }
            let style =
                TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
            cell.draw(&Text::new(
                format!(
                    "{} → {}  {:.0}%",
                    miss.label,
                    miss.predicted,
                    100.0 * miss.confidence
                ),
                (w as i32 / 2, 28 * scale + 6),
                style,
            ))?;
        }
        Ok(())
    }
}
