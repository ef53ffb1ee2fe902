//! Decoding and normalising arbitrary bytes as an image, and splitting it as a number: an
//! error, or a 28x28 input in 0..1 and segments inside the image.
#![no_main]
use digits_vision::{decode, segment, InkMap, Limits};
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
    if let Ok(n) = ink.normalize(&ink.full_region()) {
        assert_eq!(n.pixels.len(), 784);
        assert!(n.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    for s in segment(&ink) {
        for option in &s.options {
            for r in option {
                assert!(r.x + r.w <= ink.width && r.y + r.h <= ink.height);
            }
        }
    }
});
