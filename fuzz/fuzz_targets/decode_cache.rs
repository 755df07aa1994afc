//! The decode-cache file reader (image folders' decoded pixels, kept between runs).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(ds) = ebm::data::cache::parse(data, Path::new("fuzz.bin"), "fuzz") {
        let numel: usize = ds.shape.iter().product();
        assert!(numel > 0);
    }
});
