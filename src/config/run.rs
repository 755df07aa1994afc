//! The `[train]` section: the loop's length, seed, device, logging and checkpoints, and the fast-mode switch.
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    pub epochs: u64,
    /// Stop after this many iterations in all (0: run all epochs).
    pub max_steps: u64,
    /// Stop, with a checkpoint, at the first step boundary after this many seconds of training in
    /// this process (0: no limit); for fixed wall-clock budgets. A time limit is not reproducible.
    pub max_seconds: f64,
    pub seed: u64,
    pub device: String,
    /// Write a line to metrics.jsonl every this many iterations.
    pub log_every: u64,
    /// Save a PNG sample grid every this many iterations (0: off).
    pub sample_every: u64,
    /// FID and KID of the model's samples against the training data every this many iterations
    /// and at the end, logged to metrics.jsonl (0: off; the Inception network is slow on a CPU).
    pub fid_every: u64,
    /// Samples per FID evaluation: replay-buffer chains as they stand (at most the buffer's
    /// size), or fresh chains of `sgld.steps` for objectives without a buffer.
    pub fid_samples: usize,
    /// Write a checkpoint every this many iterations (0: only at epoch ends and at the end).
    pub ckpt_every: u64,
    /// Step checkpoints kept besides `last` and `best`.
    pub keep_checkpoints: usize,
    /// CPU threads for libtorch (0: its default).
    pub threads: usize,
    /// Reproducible runs: no cuDNN autotuning and deterministic cuBLAS workspaces on CUDA (CPU runs
    /// with the same seed and thread count are reproducible in any case).
    pub deterministic: bool,
    /// The fast mode (bf16 conv/linear on float32 master weights, channels-last on CUDA):
    /// "auto" (on for CUDA, off on the CPU), true or false.
    pub fast: FastMode,
    /// Convolutions on NHWC ("channels-last") copies of their inputs and weights, the NCHW
    /// masters untouched: "auto" (on the CPU in float32, where oneDNN runs NHWC convolutions
    /// without reordering to its blocked layouts, measured faster; on CUDA in the fast mode, for
    /// cuDNN's tensor-core kernels), true or false. Same values, other rounding: a run is exactly
    /// reproducible for a given setting, not across settings.
    pub channels_last: FastMode,
    /// Also write TensorBoard event files into the run folder, beside metrics.jsonl: its scalars
    /// and the sample grids (`tensorboard --logdir RUN`).
    pub tensorboard: bool,
}

/// A switch as configs write it: `true`, `false` or `"auto"` (also `"on"`, `"off"`), where
/// `auto` leaves the choice to the program (`train.fast`, `train.channels_last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FastMode {
    /// The program's choice for the device at hand.
    #[default]
    Auto,
    On,
    Off,
}

impl FastMode {
    /// Whether the fast mode runs on `device`: `auto` means on for CUDA devices, off on the CPU.
    pub fn resolve(self, device: tch::Device) -> bool {
        self.or(device.is_cuda())
    }

    /// The switch's value, `auto` standing for `auto_value`.
    pub fn or(self, auto_value: bool) -> bool {
        match self {
            FastMode::Auto => auto_value,
            FastMode::On => true,
            FastMode::Off => false,
        }
    }

    /// Reads `auto`, `on`/`true` or `off`/`false` (the CLI's spelling).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "auto" => Some(FastMode::Auto),
            "on" | "true" => Some(FastMode::On),
            "off" | "false" => Some(FastMode::Off),
            _ => None,
        }
    }
}

impl Serialize for FastMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FastMode::Auto => s.serialize_str("auto"),
            FastMode::On => s.serialize_bool(true),
            FastMode::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for FastMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FastMode;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<FastMode, E> {
                Ok(if b { FastMode::On } else { FastMode::Off })
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FastMode, E> {
                FastMode::parse(s).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            epochs: 200,
            max_steps: 0,
            max_seconds: 0.0,
            seed: 1,
            device: "auto".into(),
            log_every: 100,
            sample_every: 1000,
            fid_every: 0,
            fid_samples: 5000,
            ckpt_every: 1000,
            keep_checkpoints: 2,
            threads: 0,
            deterministic: false,
            fast: FastMode::Auto,
            channels_last: FastMode::Auto,
            tensorboard: false,
        }
    }
}

impl LoopConfig {
    /// Rejects a loop that cannot run, naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        if self.epochs == 0 && self.max_steps == 0 {
            bail!("key `train.epochs` = 0 with no `train.max_steps`: nothing to train");
        }
        if !(self.max_seconds.is_finite() && self.max_seconds >= 0.0) {
            bail!("key `train.max_seconds` = {}: must be a finite number >= 0", self.max_seconds);
        }
        if self.log_every == 0 {
            bail!("key `train.log_every` = 0: must be positive");
        }
        if self.fid_every > 0 && self.fid_samples < 2 {
            bail!(
                "key `train.fid_samples` = {}: FID fits a covariance, which needs at least 2 samples",
                self.fid_samples
            );
        }
        crate::device::parse_device_syntax(&self.device).context("key `train.device`")?;
        Ok(())
    }
}
