//! Built-in stroke paths for the digits 0-9 on the 280x280 canvas, written the way people draw
//! them (the same paths the web page's browser test draws): `digits gui --demo 3` draws one.

use crate::canvas::Stroke;

fn arc(c: [f32; 2], r: [f32; 2], from: f32, to: f32, steps: usize) -> Vec<[f32; 2]> {
    (0..=steps)
        .map(|i| {
            let t = (from + (to - from) * i as f32 / steps as f32).to_radians();
            [c[0] + r[0] * t.cos(), c[1] + r[1] * t.sin()]
        })
        .collect()
}

fn line(a: [f32; 2], b: [f32; 2]) -> Vec<[f32; 2]> {
    (0..=10)
        .map(|i| {
            let t = i as f32 / 10.0;
            [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]
        })
        .collect()
}

fn joined(parts: Vec<Vec<[f32; 2]>>) -> Vec<[f32; 2]> {
    parts.concat()
}

/// The strokes of `digit` (0-9) with a brush of `width` pixels.
pub fn strokes(digit: u8, width: f32) -> Vec<Stroke> {
    let paths = match digit {
        0 => vec![arc([140.0, 140.0], [55.0, 85.0], -90.0, 270.0, 40)],
        1 => vec![line([130.0, 60.0], [145.0, 225.0])],
        2 => vec![joined(vec![
            arc([140.0, 100.0], [50.0, 45.0], 190.0, 380.0, 24),
            line([187.0, 115.0], [90.0, 230.0]),
            line([90.0, 230.0], [205.0, 228.0]),
        ])],
        3 => vec![joined(vec![
            arc([138.0, 95.0], [45.0, 40.0], 200.0, 450.0, 24),
            arc([138.0, 182.0], [52.0, 48.0], 270.0, 520.0, 24),
        ])],
        4 => vec![
            joined(vec![
                line([120.0, 50.0], [85.0, 165.0]),
                line([85.0, 165.0], [210.0, 165.0]),
            ]),
            line([175.0, 95.0], [175.0, 235.0]),
        ],
        5 => vec![joined(vec![
            line([195.0, 55.0], [105.0, 55.0]),
            line([105.0, 55.0], [100.0, 130.0]),
            arc([135.0, 180.0], [55.0, 52.0], 235.0, 505.0, 24),
        ])],
        6 => vec![joined(vec![
            line([180.0, 50.0], [130.0, 80.0]),
            line([130.0, 80.0], [100.0, 130.0]),
            arc([140.0, 185.0], [45.0, 45.0], 180.0, 540.0, 32),
        ])],
        7 => vec![joined(vec![
            line([85.0, 60.0], [195.0, 60.0]),
            line([195.0, 60.0], [120.0, 235.0]),
        ])],
        8 => vec![
            arc([140.0, 92.0], [40.0, 40.0], 90.0, 450.0, 32),
            arc([140.0, 180.0], [50.0, 50.0], -90.0, 270.0, 32),
        ],
        _ => vec![
            arc([135.0, 100.0], [45.0, 45.0], 0.0, 360.0, 32),
            line([180.0, 100.0], [170.0, 235.0]),
        ],
    };
    paths
        .into_iter()
        .map(|points| Stroke { points, width })
        .collect()
}
