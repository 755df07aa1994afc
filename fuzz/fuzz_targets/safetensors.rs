//! The safetensors reader of checkpoints (weights, optimiser state, buffer), then the weights
//! loaded into a small MLP energy as `load_model` does.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("model.safetensors");
    let Ok(tensors) = ebm::train::checkpoint::parse_tensors(data, path) else { return };
    let config = ebm::config::TrainConfig::parse(
        "[model]\npreset = \"mlp-2d\"\nhidden = 4\n[objective]\nname = \"igebm\"\n",
        &[],
    )
    .expect("a valid config");
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = ebm::models::EnergyNet::new(&vs.root(), &config.model);
    let _ = ebm::train::checkpoint::assign_weights(&mut vs, tensors, path);
});
