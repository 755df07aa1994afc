//! The CIFAR-10 and CIFAR-100 binary file parsers (`cifar10:DIR`, `cifar100:DIR` read every file
//! through them).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((pixels, labels)) = ebm::data::cifar::parse_cifar10_file(data, "fuzz.bin") {
        assert_eq!(pixels.len(), labels.len() * 3072);
        assert!(labels.iter().all(|l| (0..10).contains(l)));
    }
    if let Ok((pixels, labels)) = ebm::data::cifar::parse_cifar100_file(data, "fuzz.bin") {
        assert_eq!(pixels.len(), labels.len() * 3072);
        assert!(labels.iter().all(|l| (0..100).contains(l)));
    }
});
