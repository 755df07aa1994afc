//! Unit tests of the config: fast-mode spelling, JSON round trips.
use super::*;

fn fast_of(set: &str) -> crate::Result<FastMode> {
    let overrides: Vec<String> = if set.is_empty() { vec![] } else { vec![set.to_string()] };
    Ok(TrainConfig::parse("[model]\npreset = \"convnet-small\"\n", &overrides)?.train.fast)
}

#[test]
fn fast_mode_reads_bools_and_auto_and_names_the_key_when_bad() {
    assert_eq!(fast_of("").unwrap(), FastMode::Auto);
    assert_eq!(fast_of("train.fast=true").unwrap(), FastMode::On);
    assert_eq!(fast_of("train.fast=\"off\"").unwrap(), FastMode::Off);
    assert_eq!(fast_of("train.fast=auto").unwrap(), FastMode::Auto);
    let e = format!("{:#}", fast_of("train.fast=sometimes").unwrap_err());
    assert!(e.contains("train.fast") && e.contains("sometimes"), "{e}");
    assert!(FastMode::Auto.resolve(tch::Device::Cuda(0)) && !FastMode::Auto.resolve(tch::Device::Cpu));
    assert!(FastMode::On.resolve(tch::Device::Cpu) && !FastMode::Off.resolve(tch::Device::Cuda(0)));
    // The resolved config round-trips through JSON (config.json, checkpoint manifests).
    for set in [vec!["train.fast=true".to_string()], vec!["train.fast=false".to_string()], vec![]] {
        let cfg = TrainConfig::parse("[model]\npreset = \"convnet-small\"\n", &set).unwrap();
        assert_eq!(TrainConfig::from_json(&cfg.to_json()).unwrap().train.fast, cfg.train.fast);
    }
}
