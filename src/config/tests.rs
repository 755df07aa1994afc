//! Config unit tests: fast-mode spelling, the sampler section's two spellings, JSON round trips.
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

const MODEL: &str = "[model]\npreset = \"mlp-2d\"\nhead = \"energy\"\n[objective]\nname = \"pcd\"\n";

fn parse(sections: &str, set: &[&str]) -> crate::Result<TrainConfig> {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    TrainConfig::parse(&format!("{MODEL}{sections}"), &set)
}

#[test]
fn the_sampler_section_reads_the_same_under_either_name() {
    let old = parse("[sgld]\nsampler = \"mala\"\nsteps = 7\nstep_size = 0.05\n", &[]).unwrap();
    let new = parse("[sampler]\nname = \"mala\"\nsteps = 7\nstep_size = 0.05\n", &[]).unwrap();
    assert_eq!(new.sampler.kind, SamplerKind::Mala);
    assert_eq!((new.sampler.steps, new.sampler.step_size), (7, 0.05));
    assert_eq!(old.to_json(), new.to_json());
    // Written out under the old name, so older builds read new checkpoints and config.json.
    assert_eq!(new.to_json()["sgld"]["sampler"], "mala");
    assert!(new.to_json().get("sampler").is_none());
}

#[test]
fn overrides_may_spell_the_sampler_section_either_way_over_either_file() {
    for file in ["[sgld]\nsampler = \"mala\"\nsteps = 7\n", "[sampler]\nname = \"mala\"\nsteps = 7\n"] {
        for set in [
            ["sgld.sampler=\"hmc\"", "sampler.steps=40", "sgld.leapfrog=3"],
            ["sampler.name=\"hmc\"", "sgld.steps=40", "sampler.leapfrog=3"],
        ] {
            let c = parse(file, &set).unwrap();
            assert_eq!(
                (c.sampler.kind, c.sampler.steps, c.sampler.leapfrog),
                (SamplerKind::Hmc, 40, 3),
                "{file} {set:?}"
            );
        }
        // A bad value names the key as written in config.json, whichever spelling set it.
        let e = format!("{:#}", parse(file, &["sampler.steps=-3"]).unwrap_err());
        assert!(e.contains("sgld.steps"), "{e}");
        let e = format!("{:#}", parse(file, &["sampler.name=\"hmc\"", "sampler.leapfrog=0"]).unwrap_err());
        assert!(e.contains("sgld.leapfrog"), "{e}");
    }
    // No file section at all: an override alone creates it.
    let c = parse("", &["sampler.name=\"independent-mh\""]).unwrap();
    assert_eq!(c.sampler.kind, SamplerKind::IndependentMh);
}

#[test]
fn a_setting_under_both_sampler_names_is_refused_naming_both() {
    let e = format!("{:#}", parse("[sgld]\nsteps = 3\n[sampler]\nsteps = 4\n", &[]).unwrap_err());
    assert!(e.contains("`sgld.steps`") && e.contains("`sampler.steps`"), "{e}");
    let e = format!("{:#}", parse("[sgld]\nsampler = \"mala\"\n[sampler]\nname = \"hmc\"\n", &[]).unwrap_err());
    assert!(e.contains("`sgld.sampler`") && e.contains("`sampler.name`"), "{e}");
    // Different settings under the two names merge.
    let c = parse("[sgld]\nsteps = 3\n[sampler]\nname = \"hmc\"\n", &[]).unwrap();
    assert_eq!((c.sampler.kind, c.sampler.steps), (SamplerKind::Hmc, 3));
}

#[test]
fn an_old_style_json_config_round_trips_and_resumes_with_either_spelling() {
    let mut old = parse("", &[]).unwrap().to_json();
    old["sgld"] = serde_json::json!({ "sampler": "hmc", "steps": 9, "leapfrog": 2, "step_size": 0.1 });
    let cfg = TrainConfig::from_json(&old).unwrap();
    assert_eq!((cfg.sampler.kind, cfg.sampler.steps, cfg.sampler.leapfrog), (SamplerKind::Hmc, 9, 2));
    assert_eq!(TrainConfig::from_json(&cfg.to_json()).unwrap().to_json(), cfg.to_json());
    // The new spelling in JSON loads too.
    let mut new = old.clone();
    let section = new.as_object_mut().unwrap().remove("sgld").unwrap();
    new["sampler"] = serde_json::json!({ "name": "hmc", "steps": 9, "leapfrog": 2, "step_size": section["step_size"] });
    assert_eq!(TrainConfig::from_json(&new).unwrap().to_json(), cfg.to_json());
    // A checkpoint's config takes overrides in either spelling (the resume path).
    let mut tree = json_to_toml(&old).unwrap();
    apply_override(&mut tree, "sampler.name=\"mala\"").unwrap();
    apply_override(&mut tree, "sgld.steps=11").unwrap();
    let resumed = TrainConfig::from_value(tree).unwrap();
    assert_eq!((resumed.sampler.kind, resumed.sampler.steps, resumed.sampler.leapfrog), (SamplerKind::Mala, 11, 2));
}

#[test]
fn a_config_whose_file_name_names_an_objective_trains_that_objective() {
    // configs/toy2d.toml was once toy2d-pcd.toml while it trained igebm: a file name that names
    // an objective (a dash-separated part equal to a registered name) must be that objective.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let cfg = TrainConfig::load(&path, &[]).unwrap();
        for part in stem.split('-') {
            if crate::objectives::REGISTRY.iter().any(|r| r.name == part) {
                assert_eq!(cfg.objective.name, part, "{}: named {part}, trains {}", path.display(), cfg.objective.name);
            }
        }
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} configs under {}", dir.display());
}
