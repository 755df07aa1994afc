//! The fused Langevin sampler of MLP energies (src/sampling/mlp_langevin.rs) against the autograd
//! path it replaces: the same chains from the same seed, the same random stream, and the fused
//! path taken exactly for MLP energies. Its own test binary, and one lock: the chains are compared
//! through libtorch's global generator, which no other test may draw from meanwhile.
use ebm::config::{Activation, ModelConfig, SgldVariant};
use ebm::models::EnergyNet;
use ebm::sampling::mlp_langevin::{self, fused_weights, run, TILE};
use ebm::sampling::{Energy, Langevin, Sampler};
use std::sync::Mutex;
use tch::{nn, Device, Kind, Tensor};

static GENERATOR: Mutex<()> = Mutex::new(());

fn mlp(layers: usize, hidden: usize, act: Activation) -> (nn::VarStore, EnergyNet) {
    let mut cfg = ModelConfig::from_preset("mlp-2d").unwrap();
    (cfg.layers, cfg.hidden, cfg.activation) = (layers, hidden, act);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = EnergyNet::new(&vs.root(), &cfg);
    (vs, net)
}

/// The fused chains against the autograd path's from the same seed, in each Langevin form:
/// the same noise (one stream, drawn in the same order) and gradients that agree to float32
/// rounding, so the chains agree to a few ulps of their size after 60 steps, and the
/// generator is left in the same state.
#[test]
fn fused_chains_equal_the_autograd_path() {
    let _lock = GENERATOR.lock().unwrap();
    let (_vs, net) = mlp(3, 128, Activation::Swish);
    let m = net.mlp_weights().unwrap();
    let x0 = Tensor::rand([300, 2], (Kind::Float, Device::Cpu)) * 4.0 - 2.0;
    let forms = [
        Langevin { variant: SgldVariant::Textbook, step_size: 0.01, noise: 0.0, grad_clip: 1.0, clamp: None },
        Langevin { variant: SgldVariant::Jem, step_size: 0.05, noise: 0.01, grad_clip: 1.0, clamp: None },
        Langevin {
            variant: SgldVariant::Igebm,
            step_size: 0.5,
            noise: 0.05,
            grad_clip: 0.05,
            clamp: Some((-1.0, 1.0)),
        },
    ];
    for s in forms {
        tch::manual_seed(3);
        let fused = run(&m, &s, &x0, 60, TILE);
        let next_fused = Tensor::randn([4], (Kind::Float, Device::Cpu));
        tch::manual_seed(3);
        let auto = s.run(&|x: &Tensor| net.energy(x, false), &x0, 60);
        let next_auto = Tensor::randn([4], (Kind::Float, Device::Cpu));
        let diff = (&fused - &auto).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{:?}: max |fused - autograd| = {diff}", s.variant);
        assert!(next_fused.equal(&next_auto), "{:?}: the random stream moved differently", s.variant);
        assert!((&fused - &x0).abs().max().double_value(&[]) > 0.05, "{:?}: the chains moved", s.variant);
    }
}

/// The Langevin sampler runs an MLP energy fused (bit for bit the fused run) and everything
/// else through autograd: a classifier head, a closure, chains that are not [N, D] float32.
#[test]
fn the_sampler_takes_the_fused_path_exactly_for_mlp_energies() {
    let _lock = GENERATOR.lock().unwrap();
    let (_vs, net) = mlp(2, 16, Activation::Swish);
    let s = Langevin { variant: SgldVariant::Textbook, step_size: 0.01, noise: 0.0, grad_clip: 1.0, clamp: None };
    let x0 = Tensor::rand([40, 2], (Kind::Float, Device::Cpu));
    tch::manual_seed(1);
    let via_trait = s.sample_energy(Energy::Net(&net), &x0, 10).x;
    tch::manual_seed(1);
    assert!(via_trait.equal(&run(&net.mlp_weights().unwrap(), &s, &x0, 10, TILE)));
    assert!(fused_weights(Energy::Net(&net), &x0).is_some());
    assert!(fused_weights(Energy::Net(&net), &x0.to_kind(Kind::Double)).is_none());
    assert!(fused_weights(Energy::Net(&net), &x0.view([40, 2, 1])).is_none());
    let f = |x: &Tensor| net.energy(x, false);
    assert!(fused_weights(Energy::Fn(&f), &x0).is_none());
    let mut cfg = ModelConfig::from_preset("mlp-2d").unwrap();
    cfg.head = ebm::config::Head::Classifier;
    let vs = nn::VarStore::new(Device::Cpu);
    assert!(EnergyNet::new(&vs.root(), &cfg).mlp_weights().is_none());
    let fast = EnergyNet::new(&vs.root(), &ModelConfig::from_preset("mlp-2d").unwrap())
        .with_precision(ebm::models::Precision::Bf16 { channels_last: false });
    assert!(fast.mlp_weights().is_none());
}

/// The tiles are shared out between libtorch's threads, each tile computed whole by one thread:
/// the chains are bit for bit the same at 1 and 2 threads, and with 300 points (three tiles, the
/// last one short) as with a single tile; at 2 threads two threads did compute tiles (without
/// -fopenmp, at::parallel_for ran every tile on the calling thread and this held trivially).
#[test]
fn fused_chains_are_the_same_at_any_thread_count() {
    let _lock = GENERATOR.lock().unwrap();
    let (_vs, net) = mlp(3, 128, Activation::Swish);
    let m = net.mlp_weights().unwrap();
    let x0 = Tensor::rand([300, 2], (Kind::Float, Device::Cpu)) * 4.0 - 2.0;
    let s = Langevin { variant: SgldVariant::Textbook, step_size: 0.01, noise: 0.0, grad_clip: 1.0, clamp: None };
    let threads = tch::get_num_threads();
    let mut runs = Vec::new();
    for t in [1, 2] {
        tch::set_num_threads(t);
        tch::manual_seed(5);
        mlp_langevin::threads_used();
        runs.push(run(&m, &s, &x0, 40, TILE));
        assert_eq!(mlp_langevin::threads_used(), t as usize, "threads that computed tiles at {t} threads");
    }
    tch::set_num_threads(threads);
    assert!(runs[0].equal(&runs[1]), "1 and 2 threads differ");
    assert!((&runs[0] - &x0).abs().max().double_value(&[]) > 0.01, "the chains moved");
}
