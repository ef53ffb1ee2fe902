//! Measures what a training step allocates once the first batches have sized every buffer:
//! the hot loop must not churn memory (fresh per-op buffers cost frameworks 10-30% here).
//!
//! Measured: cnn-ref makes about 160 allocations and 6 MB per step of 128 images on two threads
//! (2 MB before its dense layers ran in blocks of 512 inputs). All the large ones are the
//! `gemm` crate's packing buffers, which it allocates per call. They are harmless:
//! `digits bench train --model cnn-ref --threads 1` runs at the same speed (838 / 820 against
//! 815 / 839 images/s, alternating) with glibc told never to return such blocks to the OS
//! (`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456`).
//! Our own layers allocate only task lists and per-channel sums.

use digits_data::{Digits, PIXELS};
use digits_model::train::Trainer;
use digits_model::Architecture;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static CALLS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static LARGE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        if layout.size() >= 64 << 10 {
            LARGE.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_training_step_allocates_almost_nothing() {
    let n = 512;
    let images: Vec<u8> = (0..n * PIXELS).map(|i| (i * 7919 % 251) as u8).collect();
    let train = Digits::new(images, (0..n).map(|i| (i % 10) as u8).collect());
    for arch in [Architecture::CnnRef, Architecture::Cnn] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let mut t = Trainer::new(arch, arch.default_training(), 1);
            let batch: Vec<usize> = (0..128).collect();
            for s in 0..3 {
                t.step(&train, &batch, 0, s, 100);
            }
            let (c0, b0, l0) = (CALLS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed), LARGE.load(Ordering::Relaxed));
            let steps = 5;
            for s in 3..3 + steps {
                t.step(&train, &batch, 0, s, 100);
            }
            let calls = (CALLS.load(Ordering::Relaxed) - c0) / steps;
            let bytes = (BYTES.load(Ordering::Relaxed) - b0) / steps;
            let large = (LARGE.load(Ordering::Relaxed) - l0) / steps;
            println!("{arch}: {calls} allocations ({large} of 64 KiB or more), {bytes} bytes per training step of 128 images");
            // The activations alone are tens of MB; a step allocates a few MB of GEMM packing
            // space and small task lists (see above). Without AVX-512 or AVX2 the convolutions
            // take the im2col path, whose `gemm` calls allocate their packing space each time
            // (cnn-ref: 47 MB in 146 blocks a step on an AVX2 EPYC before its fast kernels), so
            // the sizes are held only where the fast kernels run.
            if digits_nn::convolutions_skip_im2col() {
                assert!(bytes < 8 << 20, "{arch}: {bytes} bytes per step");
                assert!(large < 64, "{arch}: {large} large allocations per step");
            }
            assert!(calls < 2000, "{arch}: {calls} allocations per step");
        });
    }
}
