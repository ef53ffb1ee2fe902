//! Softmax cross-entropy, with optional label smoothing and a teacher's probabilities mixed
//! into the target (distillation: the teacher's doubts between similar digits carry more than
//! a one-hot label does).

/// Turns each row of logits into probabilities, in place (numerically stable).
pub fn softmax_in_place(logits: &mut [f32], classes: usize) {
    for row in logits.chunks_exact_mut(classes) {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
    }
}

/// A teacher's class probabilities for a batch (`batch x classes`), and how much of each
/// row's target they make up (0 to 1).
#[derive(Debug, Clone, Copy)]
pub struct SoftTargets<'a> {
    pub probabilities: &'a [f32],
    pub weight: f32,
}

/// Mean loss over the batch, with its gradient with respect to the logits written to `grad`.
/// The target puts `1 - smoothing` on the label and spreads `smoothing` over all classes; a
/// label of `classes` or more means "none of them" and targets the uniform distribution (for
/// negative examples, so the model learns to be unsure of them).
/// With `teacher`, each row's target is `(1 - weight)` times that and `weight` times the
/// teacher's probabilities for the row.
/// Returns (mean loss, number of rows whose arg-max is the label).
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u8],
    classes: usize,
    smoothing: f32,
    teacher: Option<SoftTargets>,
    grad: &mut [f32],
) -> (f32, usize) {
    let batch = labels.len();
    grad[..batch * classes].copy_from_slice(&logits[..batch * classes]);
    softmax_in_place(&mut grad[..batch * classes], classes);
    let off = smoothing / classes as f32;
    let on = 1.0 - smoothing + off;
    let mut loss = 0f64;
    let mut correct = 0;
    for (r, ((row, logit_row), &label)) in grad
        .chunks_exact_mut(classes)
        .zip(logits.chunks_exact(classes))
        .zip(labels)
        .enumerate()
    {
        let label = label as usize;
        let (on, off) = if label >= classes {
            (1.0 / classes as f32, 1.0 / classes as f32)
        } else {
            (on, off)
        };
        let argmax =
            logit_row.iter().enumerate().fold(
                0,
                |best, (i, &v)| if v > logit_row[best] { i } else { best },
            );
        correct += usize::from(argmax == label);
        for (i, p) in row.iter_mut().enumerate() {
            let mut target = if i == label { on } else { off };
            if let Some(t) = &teacher {
                target += t.weight * (t.probabilities[r * classes + i] - target);
            }
            if target > 0.0 {
                loss -= (target * p.max(1e-30).ln()) as f64;
            }
            *p = (*p - target) / batch as f32;
        }
    }
    ((loss / batch as f64) as f32, correct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let logits = vec![0.3, -1.2, 2.0, 0.1, 0.5, 0.5];
        let labels = [2u8, 0];
        let probabilities = [0.2, 0.1, 0.7, 0.5, 0.4, 0.1];
        let soft = SoftTargets {
            probabilities: &probabilities,
            weight: 0.6,
        };
        for (smoothing, teacher) in [(0.0, None), (0.1, None), (0.1, Some(soft))] {
            let mut grad = vec![0.0; 6];
            softmax_cross_entropy(&logits, &labels, 3, smoothing, teacher, &mut grad);
            for i in 0..6 {
                let mut scratch = vec![0.0; 6];
                let mut l = logits.clone();
                l[i] += 1e-3;
                let (up, _) =
                    softmax_cross_entropy(&l, &labels, 3, smoothing, teacher, &mut scratch);
                l[i] -= 2e-3;
                let (down, _) =
                    softmax_cross_entropy(&l, &labels, 3, smoothing, teacher, &mut scratch);
                assert!(((up - down) / 2e-3 - grad[i]).abs() < 1e-3, "{i}");
            }
        }
    }

    #[test]
    fn a_student_that_matches_its_teacher_at_full_weight_has_no_gradient() {
        let logits = [0.3, -1.2, 2.0, 1.0, 0.5, -0.5];
        let mut probabilities = logits;
        softmax_in_place(&mut probabilities, 3);
        let mut grad = [0.0; 6];
        let teacher = SoftTargets {
            probabilities: &probabilities,
            weight: 1.0,
        };
        let (_, correct) =
            softmax_cross_entropy(&logits, &[0, 0], 3, 0.1, Some(teacher), &mut grad);
        assert!(grad.iter().all(|g| g.abs() < 1e-7), "{grad:?}");
        assert_eq!(correct, 1, "accuracy still counts against the labels");
    }

    #[test]
    fn a_none_label_targets_the_uniform_distribution() {
        let mut grad = vec![0.0; 4];
        let (loss, correct) = softmax_cross_entropy(&[0.0; 4], &[10], 4, 0.0, None, &mut grad);
        assert!((loss - 4f32.ln()).abs() < 1e-6 && correct == 0);
        assert!(grad.iter().all(|g| g.abs() < 1e-7));
    }

    #[test]
    fn loss_and_accuracy_values() {
        let mut grad = vec![0.0; 4];
        let (loss, correct) =
            softmax_cross_entropy(&[0.0, 0.0, 5.0, 0.0], &[0, 1], 2, 0.0, None, &mut grad);
        assert!((loss - (2f32.ln() + (1.0 + 5f32.exp()).ln()) / 2.0).abs() < 1e-5);
        assert_eq!(correct, 1);
        let mut p = vec![1000.0, 0.0];
        softmax_in_place(&mut p, 2);
        assert_eq!(p, vec![1.0, 0.0]);
    }
}
