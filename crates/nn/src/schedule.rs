//! Learning-rate schedules.

use serde::{Deserialize, Serialize};
use std::f32::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Linear warm-up over `warmup` of the steps, then cosine decay to zero.
    CosineWarmup {
        warmup: f32,
    },
    /// One-cycle: cosine rise from `max / div` to `max` over `warmup` of the steps, then cosine
    /// fall to `max / final_div`.
    OneCycle {
        warmup: f32,
        div: f32,
        final_div: f32,
    },
}

impl Schedule {
    /// Learning rate at `step` (0-based) of `total`, for peak rate `max`.
    pub fn rate(&self, max: f32, step: usize, total: usize) -> f32 {
        let t = step as f32 / total.max(1) as f32;
        let cos = |from: f32, to: f32, frac: f32| {
            to + (from - to) * 0.5 * (1.0 + (PI * frac.clamp(0.0, 1.0)).cos())
        };
        match *self {
            Schedule::Constant => max,
            Schedule::CosineWarmup { warmup } => {
                if t < warmup {
                    max * (step + 1) as f32 / (warmup * total as f32).max(1.0)
                } else {
                    cos(max, 0.0, (t - warmup) / (1.0 - warmup).max(1e-6))
                }
            }
            Schedule::OneCycle {
                warmup,
                div,
                final_div,
            } => {
                if t < warmup {
                    cos(max / div, max, t / warmup)
                } else {
                    cos(
                        max,
                        max / final_div,
                        (t - warmup) / (1.0 - warmup).max(1e-6),
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_the_schedules() {
        let s = Schedule::OneCycle {
            warmup: 0.25,
            div: 10.0,
            final_div: 100.0,
        };
        assert!((s.rate(1.0, 0, 100) - 0.1).abs() < 1e-6);
        assert!((s.rate(1.0, 25, 100) - 1.0).abs() < 1e-6);
        assert!(s.rate(1.0, 99, 100) < 0.02);
        let c = Schedule::CosineWarmup { warmup: 0.1 };
        assert!((c.rate(1.0, 9, 100) - 1.0).abs() < 1e-6);
        assert!(c.rate(1.0, 0, 100) < 0.2);
        assert!((c.rate(1.0, 55, 100) - 0.5).abs() < 1e-6);
        assert_eq!(Schedule::Constant.rate(0.3, 50, 100), 0.3);
    }
}
