//! The checkpoint manifest parser, then its config as `ebm train --resume` and `load_model` take
//! it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = ebm::train::checkpoint::parse_manifest(data, Path::new("manifest.json")) else { return };
    assert!(m.files.iter().all(|f| !f.name.contains('/') && !f.name.contains("..")));
    let _ = ebm::config::TrainConfig::from_json(&m.config);
    if let Some(mut value) = ebm::config::json_to_toml(&m.config) {
        if ebm::config::apply_override(&mut value, "train.max_steps=3").is_ok() {
            let _ = ebm::config::TrainConfig::from_value(value);
        }
    }
});
