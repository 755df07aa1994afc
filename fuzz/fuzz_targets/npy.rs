//! The `.npy` parser (ndarray-npy under ebm's checks), then the array taken as images (or points)
//! and as labels of a valid image array, as `npy:IMAGES.npy[,LABELS.npy]` does.
#![no_main]
use ebm::data::npy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(arr) = npy::parse(data, "fuzz.npy") else { return };
    assert_eq!(arr.values.len(), arr.numel());
    if let Ok(ds) = npy::dataset_from_arrays(&arr, "fuzz.npy", None) {
        assert!(!ds.is_empty());
    }
    if arr.shape.len() == 1 && arr.numel() <= 4096 {
        // As labels of as many 1x1 RGB images.
        let n = arr.numel();
        let images =
            npy::NpyArray { dtype: npy::Dtype::U8, shape: vec![n, 1, 1, 3], values: npy::Values::U8(vec![0; 3 * n]) };
        if let Ok(ds) = npy::dataset_from_arrays(&images, "images.npy", Some((&arr, "fuzz.npy"))) {
            assert_eq!(ds.labels.as_ref().map(|l| l.len()), Some(n));
        }
    }
});
