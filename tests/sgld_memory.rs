//! SGLD keeps no graph between steps: memory stays flat over thousands of steps. Alone in its
//! own test binary so that no other test moves the process's memory.
use ebm::config::{ModelConfig, SamplerConfig};
use ebm::models::EnergyNet;
use ebm::sampling::Langevin;
use tch::{nn, Device, Kind, Tensor};

#[test]
fn memory_is_flat_over_thousands_of_sgld_steps() {
    let mut cfg = ModelConfig::from_preset("convnet-small").unwrap();
    cfg.width = 4;
    let vs = nn::VarStore::new(Device::Cpu);
    let net = EnergyNet::new(&vs.root(), &cfg);
    let sampler = Langevin::from_config(&SamplerConfig::default(), (-1.0, 1.0));
    let x0 = Tensor::rand([8, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let energy = |x: &Tensor| net.energy(x, false);
    let x = sampler.run(&energy, &x0, 100);
    let before = ebm::bench::rss_mib().unwrap();
    let x = sampler.run(&energy, &x, 1500);
    let after = ebm::bench::rss_mib().unwrap();
    assert!(x.isfinite().all().int64_value(&[]) == 1);
    // A kept graph would hold 1500 steps of activations (over 300 MB here); allow allocator noise.
    assert!(after - before < 40.0, "RSS grew from {before:.0} MiB to {after:.0} MiB over 1500 steps");
    assert!(!x.requires_grad());
}
