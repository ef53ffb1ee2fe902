//! The IDX parser on arbitrary bytes (plain or gzip): an error or a consistent array.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz-idx");
    if let Ok(a) = digits_data::idx::parse(path, data) {
        assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
        let _ = digits_data::idx::check_pair(path, &a, path, &a);
    }
});
