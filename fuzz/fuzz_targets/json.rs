//! The API's JSON body parser: a 400 with a reason, or exactly 784 pixels in 0..1.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match digits_server::parse_pixels(data) {
        Ok(p) => {
            assert_eq!(p.len(), 784);
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        Err(e) => {
            assert_eq!(e.0.as_u16(), 400);
            assert!(!e.2.is_empty());
        }
    }
});
