//! Splitting a batch's images between the pool's threads.
//!
//! A layer's work is cut into runs of images that the threads take in order as they become
//! free, each with working memory of its own. Halving the batch between two threads left one
//! waiting for the other at the end of every layer: on these shared machines a core slows by
//! up to a quarter for milliseconds at a time, and the static halves of the reference CNN's
//! layers finished 5% apart on average (per-thread timers in `digits bench train`).

use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Longest run of images taken at once.
const LONGEST_RUN: usize = 64;

/// A run takes at most this fraction of the images left. Thirds and halves trained the
/// reference CNN equally fast on two threads, eighths 3% slower on one (each run finishes its
/// own weight gradient); halving the batch between the threads was 5-8% slower on two
/// (alternating segments of `digits bench train --threads 1,2`).
const SHARE: usize = 3;

/// The runs of images (first image, count) a layer's work is cut into: long runs first, then
/// shorter ones down to single images, so that the threads finish close together. They depend
/// only on `batch`, so per-run gradients sum in the same order whatever the thread count.
pub(crate) fn runs(batch: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < batch {
        let count = ((batch - start) / SHARE).clamp(1, LONGEST_RUN);
        out.push((start, count));
        start += count;
    }
    out
}

/// Runs `work(task, scratch)` for every task on the current pool's threads, each thread taking
/// the next task when it is free and passing it a `scratch` of its own (one per thread, kept
/// between calls so that it stays warm). Tasks that write disjoint outputs give the same
/// results whichever thread runs them.
pub(crate) fn run_tasks<T: Send, S: Default + Send>(
    tasks: Vec<T>,
    scratch: &mut Vec<S>,
    work: impl Fn(T, &mut S) + Sync,
) {
    let threads = rayon::current_num_threads().min(tasks.len()).max(1);
    if scratch.len() < threads {
        scratch.resize_with(threads, S::default);
    }
    if threads == 1 {
        let mine = &mut scratch[0];
        tasks.into_iter().for_each(|task| work(task, mine));
        return;
    }
    let tasks: Vec<Mutex<Option<T>>> = tasks.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let scratch: Vec<Mutex<&mut S>> = scratch.iter_mut().take(threads).map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    // One job per thread, each taking tasks until none are left. Jobs rather than a broadcast:
    // inside a parallel loop the other threads may be busy, and a broadcast would wait for
    // each of them; a job nobody picks up in time finds no tasks left.
    scratch.par_iter().with_max_len(1).for_each(|mine| {
        let mut mine = mine.lock().expect("a task panicked");
        while let Some(task) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) {
            let task = task.lock().expect("a task panicked").take();
            work(task.expect("each task is taken once"), &mut mine);
        }
    });
}

/// Splits `data` into one mutable part per run of samples.
pub(crate) fn split_runs<'a, T>(
    mut data: &'a mut [T],
    runs: &[(usize, usize)],
    per_sample: usize,
) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(runs.len());
    for &(_, count) in runs {
        let (head, tail) = data.split_at_mut(count * per_sample);
        out.push(head);
        data = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_the_batch_and_shrink() {
        for batch in [0, 1, 7, 9, 128, 1000] {
            let runs = runs(batch);
            let mut next = 0;
            for &(start, count) in &runs {
                assert_eq!(start, next);
                assert!((1..=LONGEST_RUN).contains(&count));
                next += count;
            }
            assert_eq!(next, batch);
            assert!(runs.windows(2).all(|w| w[0].1 >= w[1].1), "{runs:?}");
        }
        assert_eq!(runs(128)[..3], [(0, 42), (42, 28), (70, 19)]);
        assert_eq!(runs(128).last(), Some(&(127, 1)));
    }

    #[test]
    fn every_task_runs_once_with_one_scratch_per_thread() {
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0usize; 50];
            let mut scratch: Vec<Vec<usize>> = Vec::new();
            pool.install(|| {
                let tasks: Vec<_> = out.iter_mut().enumerate().collect();
                run_tasks(tasks, &mut scratch, |(i, out), mine| {
                    *out += i + 1;
                    mine.push(i);
                });
            });
            assert!(out.iter().enumerate().all(|(i, &v)| v == i + 1));
            assert_eq!(scratch.len(), threads);
            let mut seen: Vec<usize> = scratch.concat();
            seen.sort_unstable();
            assert_eq!(seen, (0..50).collect::<Vec<_>>());
        }
    }
}
