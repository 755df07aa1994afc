//! FID and KID during training (`train.fid_every` > 0): every that many steps and at the last,
//! the model's samples against the whole training set, one `"event": "fid"` line in
//! metrics.jsonl (see [`crate::eval::fid`] for the definitions). The samples are the replay
//! buffer's chains as they stand (distinct, at most `train.fid_samples` of them: JEM++'s and
//! SADA-JEM's "buffer FID"), or, for objectives without a buffer, `train.fid_samples` fresh chains
//! of `sgld.steps` from U(-1, 1); the record says which. The network is found and checked when the
//! run starts, before anything is written; the training set's features are computed (or read from
//! the cache) at the first FID step. Draws reseed
//! libtorch's generator from (seed, step), and the next step reseeds it again, so a run logs the
//! same losses with FID on or off.
use super::checkpoint::TrainState;
use super::metrics::MetricsLog;
use super::progress::Progress;
use super::run_data::RunData;
use super::trainer::Trainer;
use crate::config::TrainConfig;
use crate::data::loader::mix_seed;
use crate::data::Dataset;
use crate::eval::draw::{self, Start};
use crate::eval::fid::{self, FeatureSet};
use crate::eval::inception::Inception;
use crate::eval::kid::KidOptions;
use anyhow::Context;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tch::Device;

/// The network and the training set (its features once computed), held for the run.
pub struct FidLog {
    net: Inception,
    data: Arc<Dataset>,
    reference: Option<FeatureSet>,
    range: f64,
    device: Device,
}

impl FidLog {
    /// The FID log of a run, or None when `train.fid_every` is 0.
    pub fn start(cfg: &TrainConfig, data: &RunData, device: Device) -> crate::Result<Option<Self>> {
        if cfg.train.fid_every == 0 {
            return Ok(None);
        }
        let net = Inception::find(None, device)
            .with_context(|| format!("key `train.fid_every` = {}", cfg.train.fid_every))?;
        Ok(Some(FidLog { net, data: data.full.clone(), reference: None, range: data.range, device }))
    }

    /// At FID steps (multiples of `train.fid_every`, and the last step `total`): FID and KID of
    /// the trainer's samples, a metrics line and a progress line.
    pub fn at_step(
        &mut self,
        trainer: &Trainer,
        cfg: &TrainConfig,
        pos: &TrainState,
        total: u64,
        metrics: &MetricsLog,
        progress: &Progress,
    ) -> crate::Result<()> {
        let step = pos.step;
        if !step.is_multiple_of(cfg.train.fid_every) && step != total {
            return Ok(());
        }
        let t = Instant::now();
        if self.reference.is_none() {
            let cache = crate::data::spec::default_cache_dir();
            let batch = cfg.data.batch_size;
            self.reference = Some(fid::dataset_features(&self.net, &self.data, None, batch, cache.as_deref())?.0);
        }
        let reference = self.reference.as_ref().expect("computed above");
        tch::manual_seed(mix_seed(&[cfg.train.seed, 2, step]) as i64 & i64::MAX);
        let buffer = trainer.buffer().map(|b| &b.data);
        let model = draw::Model { net: &trainer.net, config: cfg, buffer, name: "the run".into() };
        let (start, steps, n) = match buffer {
            Some(b) => (Start::Buffer, 0, cfg.train.fid_samples.min(b.size()[0] as usize)),
            None => (Start::Noise, cfg.sampler.steps, cfg.train.fid_samples),
        };
        let plan = draw::Plan::new(&model, start, steps, self.range, n, None)?;
        let what = format!("samples at step {step}");
        let (samples, _) = fid::generated_features(&self.net, n, cfg.data.batch_size, &what, |which| {
            Ok(draw::draw(&model, &plan, which, self.device).x)
        })?;
        let kid = KidOptions { seed: mix_seed(&[cfg.train.seed, 3, step]), ..KidOptions::default() };
        let s = fid::scores(&samples, reference, &kid, self.device)?;
        metrics.write(&json!({"step": step, "epoch": pos.epoch, "event": "fid", "fid": s.fid, "kid": s.kid.mean,
                              "kid_std": s.kid.std, "fid_samples": n, "fid_from": plan.describe(),
                              "fid_reference": cfg.data.spec, "fid_reference_n": reference.len(),
                              "fid_seconds": t.elapsed().as_secs_f64()}))?;
        progress.say(format!(
            "step {step}: FID {:.2}, KID {:.5} ± {:.5} ({n} samples, {}; against {} images of {})",
            s.fid,
            s.kid.mean,
            s.kid.std,
            plan.describe(),
            reference.len(),
            cfg.data.spec
        ));
        Ok(())
    }
}
