//! The TOML config parser and validation; a config it accepts must survive the JSON round trip
//! that checkpoints and `--resume` put it through.
#![no_main]
use ebm::config::TrainConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = TrainConfig::parse(text, &[]) else { return };
    let json = cfg.to_json();
    if let Err(e) = TrainConfig::from_json(&json) {
        panic!("an accepted config does not read back from its JSON: {e:#}\n{json}");
    }
    let value = ebm::config::json_to_toml(&json).expect("a config's JSON is a table");
    if let Err(e) = TrainConfig::from_value(value) {
        panic!("an accepted config does not read back through TOML: {e:#}\n{json}");
    }
});
