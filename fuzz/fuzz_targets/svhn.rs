//! The SVHN MATLAB v5 file parser (`svhn:DIR` reads `train_32x32.mat` and `test_32x32.mat`
//! through it): ebm's element walk and inflation, then the matfile crate.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((pixels, labels)) = ebm::data::svhn::parse_svhn_file(data, "fuzz.mat") {
        assert_eq!(pixels.len(), labels.len() * 3072);
        assert!(!labels.is_empty() && labels.iter().all(|l| (0..10).contains(l)));
    }
});
