//! The image decoder of `folder:DIR` (PNG, JPEG): at the expected size, and resized.
#![no_main]
use ebm::data::{folder, LoadOptions};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let exact = LoadOptions { cache_dir: None, ..LoadOptions::default() };
    if let Ok(chw) = folder::decode(data, Path::new("fuzz.png"), &exact) {
        let side = exact.image_size as usize;
        assert_eq!(chw.len(), 3 * side * side);
    }
    let resized = LoadOptions { cache_dir: None, resize: Some(8), ..LoadOptions::default() };
    if let Ok(chw) = folder::decode(data, Path::new("fuzz.png"), &resized) {
        assert_eq!(chw.len(), 3 * 8 * 8);
    }
});
