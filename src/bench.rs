//! `ebm bench`: the speed of one JEM training iteration (SGLD + update), of SGLD alone and of the
//! data loader, for a chosen network, batch and chain length, so it can be run side by side with
//! the reference code at equal settings.
use crate::config::{ModelConfig, TrainConfig};
use crate::data::loader::{train_valid_split, BatchPlan, Loader};
use crate::data::{self, LoadOptions};
use crate::gpu_memory::{PeakMemory, PeakSampler};
use crate::models::{count_parameters, EnergyNet, Precision};
use crate::objectives::{self, Negatives};
use crate::sampling::{Langevin, ReplayBuffer};
use crate::train::optim::Optimizer;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TrainBench {
    pub model: String,
    pub parameters: i64,
    pub device: String,
    pub batch: i64,
    pub sgld_steps: usize,
    pub iters: usize,
    pub seconds_per_iter: f64,
    pub sgld_steps_per_second: f64,
    pub images_per_second: f64,
    /// Whether the fast mode ran (bf16 conv/linear; channels-last on CUDA).
    pub fast: bool,
    /// "float32", "bf16" or "bf16+channels-last".
    pub precision: String,
    /// Peak resident memory of the process (CPU) in MiB.
    pub peak_rss_mib: Option<f64>,
    /// Peak used device memory from NVML (CUDA only; device-wide, includes the CUDA context).
    pub gpu_memory: Option<PeakMemory>,
    /// Why `gpu_memory` is absent, when it is.
    pub gpu_memory_unavailable: Option<String>,
    pub threads: i32,
}

/// A short name of a precision, as the bench prints it.
pub fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Float32 => "float32",
        Precision::Bf16 { channels_last: false } => "bf16",
        Precision::Bf16 { channels_last: true } => "bf16+channels-last",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoaderBench {
    pub spec: String,
    pub batch: usize,
    pub batches: usize,
    pub images_per_second: f64,
    pub threads: usize,
}

/// Peak resident set size (VmHWM) in MiB, on Linux.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Current resident set size (VmRSS) in MiB, on Linux.
pub fn rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Times `iters` JEM iterations (after `warmup` untimed ones) of `model` on random data, in float32
/// or in the fast mode. On CUDA, cuDNN autotuning is on (as in a non-deterministic training run)
/// and the device's peak used memory is sampled through NVML.
pub fn train_iterations(
    model: &ModelConfig,
    batch: i64,
    sgld_steps: usize,
    iters: usize,
    warmup: usize,
    device: Device,
    fast: bool,
) -> crate::Result<TrainBench> {
    let precision = Precision::for_fast(fast, device);
    let (gpu_sampler, gpu_memory_unavailable) = match device {
        Device::Cuda(i) => {
            tch::Cuda::cudnn_set_benchmark(true);
            match PeakSampler::start(i as u32, std::time::Duration::from_millis(5)) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e)),
            }
        }
        _ => (None, Some("not a CUDA device".to_string())),
    };
    let mut cfg: TrainConfig = TrainConfig::parse("[model]\npreset = \"convnet-small\"\n", &[])?;
    cfg.model = model.clone();
    cfg.sampler.steps = sgld_steps;
    cfg.data.batch_size = batch as usize;
    cfg.validate()?;
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let net = EnergyNet::new(&vs.root(), model).with_precision(precision);
    let objective = objectives::build(&cfg, &vs.root());
    let mut opt = Optimizer::new(&vs, &cfg.optim);
    let shape = net.input_shape();
    let buffer = ReplayBuffer::new(cfg.buffer.size as i64, &shape, 0.05, None, 1.0, device);
    let sampler = Langevin::from_config(&cfg.sampler, (-1.0, 1.0));
    let mut negatives =
        Negatives::new(Box::new(sampler.clone()), cfg.sampler.steps, Some(buffer), shape.clone(), 1.0, device);
    let mut dims = vec![batch];
    dims.extend(&shape);
    let x = Tensor::rand(dims.as_slice(), (Kind::Float, device)) * 2.0 - 1.0;
    let y = model.is_conditional().then(|| Tensor::randint(model.num_classes as i64, [batch], (Kind::Int64, device)));
    let mut step = || {
        let terms = objective.loss(&net, &x, y.as_ref(), &mut negatives);
        opt.zero_grad();
        terms.loss.backward();
        opt.step(1e-4);
        negatives.commit();
    };
    for _ in 0..warmup {
        step();
    }
    sync(device);
    let t0 = Instant::now();
    for _ in 0..iters {
        step();
    }
    sync(device);
    let per_iter = t0.elapsed().as_secs_f64() / iters as f64;
    // SGLD alone: the same chains, no parameter update.
    let x0 = Tensor::rand(dims.as_slice(), (Kind::Float, device)) * 2.0 - 1.0;
    let k = sgld_steps.max(1);
    let _ = sampler.run(&|x: &Tensor| net.energy(x, false), &x0, 1);
    sync(device);
    let t1 = Instant::now();
    let s = sampler.run(&|x: &Tensor| net.energy(x, false), &x0, k);
    let _ = s.sum(Kind::Float).double_value(&[]);
    let sgld_rate = k as f64 / t1.elapsed().as_secs_f64();
    let gpu_memory = gpu_sampler.map(PeakSampler::finish);
    Ok(TrainBench {
        model: model.label(),
        parameters: count_parameters(&vs),
        device: crate::device::device_name(device),
        batch,
        sgld_steps,
        iters,
        seconds_per_iter: per_iter,
        sgld_steps_per_second: sgld_rate,
        images_per_second: batch as f64 / per_iter,
        fast,
        precision: precision_name(precision).into(),
        peak_rss_mib: if device == Device::Cpu { peak_rss_mib() } else { None },
        gpu_memory,
        gpu_memory_unavailable,
        threads: tch::get_num_threads(),
    })
}

/// Augmented training batches per second from the loader thread (JEM's augmentation + noise).
pub fn loader_throughput(spec: &str, batch: usize, batches: usize) -> crate::Result<LoaderBench> {
    let ds = Arc::new(data::load(spec, &LoadOptions::default())?);
    let (train, _) = train_valid_split(ds.len(), 0.0);
    let plan = BatchPlan { seed: 0, batch_size: batch, indices: Arc::new(train), augment: true, noise_sigma: 0.03 };
    let mut loader = Loader::start(ds, plan, 0, 0, 8, false);
    let _ = loader.next_batch();
    let t0 = Instant::now();
    for _ in 0..batches {
        let b = loader.next_batch();
        assert_eq!(b.x.size()[0] as usize, batch);
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(LoaderBench {
        spec: spec.into(),
        batch,
        batches,
        images_per_second: (batch * batches) as f64 / secs,
        threads: 1,
    })
}
