//! Decoding and normalising arbitrary bytes as an image, and splitting it as a number: an
//! error, or a 28x28 input in 0..1, and pieces inside the image whose views are in 0..1.
#![no_main]
use digits_vision::{
    context_view, decode, lattice, normalize_ink, InkMap, Limits, VIEW_CHANNELS, VIEW_H, VIEW_W,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_pixels: 1 << 20,
    };
    let Ok(image) = decode(data, &limits) else {
        return;
    };
    let Ok(ink) = InkMap::from_rgba(&image) else {
        return;
    };
    // The single-digit path: the digit's region (far specks left out), then normalisation.
    if let Ok(n) = normalize_ink(&ink) {
        assert_eq!(n.pixels.len(), 784);
        assert!(n.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    let lattice = lattice(&ink);
    for step in &lattice.steps {
        assert!(step.from < step.to && step.to <= lattice.segments);
        for r in &step.pieces {
            assert!(r.x + r.w <= ink.width && r.y + r.h <= ink.height);
            let view = context_view(&ink, r, &lattice.line);
            assert_eq!(view.len(), VIEW_H * VIEW_W * VIEW_CHANNELS);
            assert!(view.iter().all(|v| (0.0..=1.0 + 1e-4).contains(v)));
        }
    }
});
