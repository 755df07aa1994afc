//! `ebm bench`: the speed of the trainer's own training step ([`crate::train::Trainer::step`]:
//! negatives, objective, backward, guard, update) for any training config, of its sampler alone,
//! and of the data loader; the device-against-CPU agreement check ([`agreement`]); peak memory
//! ([`memory`]: RSS on the CPU, NVML on CUDA). Run it beside the reference code at equal settings.
pub mod agreement;
pub mod compare;
pub mod memory;
pub mod scaling;

pub use memory::{peak_rss_mib, rss_mib};

use crate::config::TrainConfig;
use crate::data::loader::{train_valid_split, BatchPlan, Loader};
use crate::data::{self, LoadOptions};
use crate::models::{count_parameters, Precision};
use crate::train::{Step, Trainer};
use memory::{PeakMemory, PeakSampler};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TrainBench {
    pub model: String,
    pub parameters: i64,
    pub device: String,
    pub batch: i64,
    pub sgld_steps: usize,
    pub iters: usize,
    pub seconds_per_iter: f64,
    /// Sampler transitions per second on one batch of chains (None: the objective draws none).
    pub sgld_steps_per_second: Option<f64>,
    /// Timed steps the divergence guard discarded (random data can diverge; the time still counts).
    pub diverged: usize,
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
        Precision::Float32 { channels_last: false } => "float32",
        Precision::Float32 { channels_last: true } => "float32+channels-last",
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

/// Waits for the device's queued work (CUDA), so a wall-clock time covers it.
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// On CUDA: cuDNN autotuning on (as in a non-deterministic training run) and NVML's peak-memory
/// sampler started, or why there is none.
fn start_gpu_peak(device: Device) -> (Option<PeakSampler>, Option<String>) {
    let Device::Cuda(i) = device else { return (None, Some("not a CUDA device".to_string())) };
    tch::Cuda::cudnn_set_benchmark(true);
    match PeakSampler::start(i as u32, std::time::Duration::from_millis(5)) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    }
}

/// Per-iteration times of `iters` calls of `f` after `warmup` untimed ones, and how many returned
/// true (a step the guard discarded: its time still counts).
pub(crate) fn timed(iters: usize, warmup: usize, device: Device, mut f: impl FnMut() -> bool) -> (Vec<f64>, usize) {
    for _ in 0..warmup {
        f();
    }
    sync(device);
    let mut times = Vec::with_capacity(iters);
    let mut diverged = 0;
    for _ in 0..iters {
        let t0 = Instant::now();
        diverged += f() as usize;
        sync(device);
        times.push(t0.elapsed().as_secs_f64());
    }
    (times, diverged)
}

/// The trainer `cfg` builds (from seed 0) and one random batch: data in [-1, 1], random labels.
pub(crate) struct JemStep {
    pub(crate) trainer: Trainer,
    x: Tensor,
    y: Option<Tensor>,
    lr: f64,
}

impl JemStep {
    pub(crate) fn new(cfg: &TrainConfig, device: Device) -> crate::Result<Self> {
        tch::manual_seed(0);
        let trainer = Trainer::new(cfg, device, 1.0)?;
        let batch = cfg.data.batch_size as i64;
        let x = Tensor::rand(Self::dims(&trainer, batch).as_slice(), (Kind::Float, device)) * 2.0 - 1.0;
        let m = &cfg.model;
        let y = m.is_conditional().then(|| Tensor::randint(m.num_classes as i64, [batch], (Kind::Int64, device)));
        Ok(JemStep { trainer, x, y, lr: cfg.optim.lr })
    }

    /// [batch, ...one example's shape].
    fn dims(trainer: &Trainer, batch: i64) -> Vec<i64> {
        let mut dims = vec![batch];
        dims.extend(trainer.net.input_shape());
        dims
    }

    /// The step users run; true when the guard discarded it.
    pub(crate) fn step(&mut self) -> bool {
        matches!(
            self.trainer.step(&crate::objectives::Inputs::new(&self.x, self.y.as_ref()), self.lr),
            Step::Diverged { .. }
        )
    }
}

/// Times `iters` steps of the trainer `cfg` builds (after `warmup` untimed ones) on random data
/// in [-1, 1] with random labels, with `train.fast` as configured. On CUDA, cuDNN autotuning is on
/// (as in a non-deterministic training run) and the device's peak used memory is sampled through NVML.
pub fn train_iterations(cfg: &TrainConfig, iters: usize, warmup: usize, device: Device) -> crate::Result<TrainBench> {
    let (gpu_sampler, gpu_memory_unavailable) = start_gpu_peak(device);
    let mut jem = JemStep::new(cfg, device)?;
    let (times, diverged) = timed(iters, warmup, device, || jem.step());
    let per_iter = times.iter().sum::<f64>() / iters as f64;
    let batch = cfg.data.batch_size as i64;
    let sgld_rate = sampler_rate(&jem.trainer, &JemStep::dims(&jem.trainer, batch), cfg.sampler.steps.max(1), device);
    let gpu_memory = gpu_sampler.map(PeakSampler::finish);
    let precision = jem.trainer.net.precision;
    Ok(TrainBench {
        model: cfg.model.label(),
        parameters: count_parameters(&jem.trainer.vs),
        device: crate::device::device_name(device),
        batch,
        sgld_steps: cfg.sampler.steps,
        iters,
        seconds_per_iter: per_iter,
        sgld_steps_per_second: sgld_rate,
        diverged,
        images_per_second: batch as f64 / per_iter,
        fast: precision.is_fast(),
        precision: precision_name(precision).into(),
        peak_rss_mib: if device == Device::Cpu { peak_rss_mib() } else { None },
        gpu_memory,
        gpu_memory_unavailable,
        threads: tch::get_num_threads(),
    })
}

/// Transitions per second of the trainer's own sampler, `k` steps on fresh chains of shape `dims`
/// (the network in evaluation mode, as in training), without a parameter update.
fn sampler_rate(trainer: &Trainer, dims: &[i64], k: usize, device: Device) -> Option<f64> {
    let negatives = trainer.negatives.as_ref()?;
    let x0 = Tensor::rand(dims, (Kind::Float, device)) * 2.0 - 1.0;
    let energy = crate::sampling::Energy::Net(&trainer.net);
    let _ = negatives.sampler.sample_energy(energy, &x0, 1);
    sync(device);
    let t1 = Instant::now();
    let s = negatives.sampler.sample_energy(energy, &x0, k);
    let _ = s.x.sum(Kind::Float).double_value(&[]);
    Some(k as f64 / t1.elapsed().as_secs_f64())
}

/// Augmented training batches per second from the loader thread (JEM's augmentation + noise).
pub fn loader_throughput(spec: &str, opts: &LoadOptions, batch: usize, batches: usize) -> crate::Result<LoaderBench> {
    let ds = Arc::new(data::load(spec, opts)?);
    let (train, _) = train_valid_split(ds.len(), 0.0);
    let plan = BatchPlan {
        seed: 0,
        batch_size: batch,
        indices: Arc::new(train),
        augment: true,
        noise_sigma: 0.03,
        shard: None,
    };
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
