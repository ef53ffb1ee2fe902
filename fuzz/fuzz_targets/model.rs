//! The model and judge loaders on arbitrary bytes: refused with a reason, or a model that
//! predicts (a judge that weighs a piece).
#![no_main]
use digits_model::Classify;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match digits_model::file::load_bytes(Path::new("fuzz-model"), data) {
        Ok(mut m) => {
            let p = m.predict(&[0.5; 784]);
            assert_eq!(p.len(), 1);
        }
        Err(e) => assert!(e.to_string().contains("fuzz-model")),
    }
    match digits_model::file::load_judge_bytes(Path::new("fuzz-judge"), data) {
        Ok(mut j) => {
            let view = [0.5; digits_vision::VIEW_H * digits_vision::VIEW_W * digits_vision::VIEW_CHANNELS];
            assert_eq!(j.whole(&view).len(), 1);
        }
        Err(e) => assert!(e.to_string().contains("fuzz-judge")),
    }
});
