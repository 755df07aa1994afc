//! The data of a training run: the training set (checked against the model), its held-out
//! validation part, the optional test set, and the batch plans of the loaders (the classifier's,
//! and the p(x) term's plain one when `data.px_batch = "plain"`).
use super::checkpoint::TrainState;
use crate::config::{BufferInit, PxBatch, TrainConfig};
use crate::data::loader::{mix_seed, train_valid_split, BatchPlan, Loader};
use crate::data::{self, Dataset, LoadOptions};
use crate::sampling::{ChainInit, ClassGaussians};
use anyhow::bail;
use std::sync::Arc;

pub struct RunData {
    /// The whole training set (the loader draws the training indices of `plan` from it).
    pub full: Arc<Dataset>,
    pub valid: Dataset,
    pub test: Option<Dataset>,
    pub plan: BatchPlan,
    /// The plan of the p(x) term's own loader: the same examples in another order (its own seed
    /// stream), never augmented; None: the p(x) term uses the classifier's batch.
    pub px_plan: Option<BatchPlan>,
    /// Range of fresh chains and of IGEBM's clamp: [-1, 1] for images, the data's extent for points.
    pub range: f64,
}

impl RunData {
    /// Loads `data.spec` (and `data.test_spec`), checks both fit the model and that one batch fits.
    pub fn load(cfg: &TrainConfig) -> crate::Result<Self> {
        let full = Arc::new(load_checked(&cfg.data.spec, cfg)?);
        let (train_idx, valid_idx) = train_valid_split(full.len(), cfg.data.valid_fraction);
        if train_idx.len() < cfg.data.batch_size {
            bail!(
                "{}: {} training examples, fewer than one batch of {}",
                cfg.data.spec,
                train_idx.len(),
                cfg.data.batch_size
            );
        }
        let valid = full.subset(&valid_idx);
        let test = cfg.data.test_spec.as_deref().map(|s| load_checked(s, cfg)).transpose()?;
        let plan = BatchPlan {
            seed: cfg.train.seed,
            batch_size: cfg.data.batch_size,
            indices: Arc::new(train_idx),
            augment: cfg.data.augment && full.is_image(),
            noise_sigma: if full.is_image() { cfg.data.noise_sigma as f32 } else { 0.0 },
            shard: None,
        };
        let px_plan = (cfg.data.px_batch == PxBatch::Plain).then(|| BatchPlan {
            seed: mix_seed(&[cfg.train.seed, 0x9c]),
            augment: false,
            ..plan.clone()
        });
        let range = full.chain_range();
        Ok(RunData { full, valid, test, plan, px_plan, range })
    }

    /// Global batches of `world` x B examples (B = data.batch_size), of which rank `rank` builds
    /// only its own B rows, [rank B, (rank + 1) B): the same examples as rows of one process's
    /// batches of world x B ([`BatchPlan::shard`]).
    pub fn scale_batches(&mut self, rank: usize, world: usize) {
        for p in std::iter::once(&mut self.plan).chain(self.px_plan.as_mut()) {
            p.batch_size *= world;
            p.shard = (world > 1).then_some((rank, world));
        }
    }

    /// The loaders of the training batches from the position `pos` on (`prefetch` batches ahead;
    /// pinned memory for a CUDA run): the classifier's, and the p(x) term's plain one if any.
    pub fn loaders(&self, pos: &TrainState, prefetch: usize, pin: bool) -> (Loader, Option<Loader>) {
        let start =
            |plan: &BatchPlan| Loader::start(self.full.clone(), plan.clone(), pos.epoch, pos.index, prefetch, pin);
        (start(&self.plan), self.px_plan.as_ref().map(start))
    }

    /// Where fresh chains start under `buffer.init`, when not uniform on the data's range (the
    /// trainer's own default, so None): JEM++'s class Gaussians are fitted here, to the training
    /// examples (not the validation ones), per class when the model classifies.
    pub fn chain_init(&self, cfg: &TrainConfig, device: tch::Device) -> crate::Result<Option<ChainInit>> {
        Ok(match cfg.buffer.init {
            BufferInit::Uniform => None,
            BufferInit::ClassGaussian => {
                let classes = cfg.model.is_conditional().then_some(cfg.model.num_classes);
                let g = ClassGaussians::fit(
                    &self.full,
                    &self.plan.indices,
                    classes,
                    cfg.buffer.init_ridge,
                    self.range,
                    device,
                )?;
                Some(ChainInit::ClassGaussians(g))
            }
        })
    }
}

/// Loads a data set and checks it fits the model.
fn load_checked(spec: &str, cfg: &TrainConfig) -> crate::Result<Dataset> {
    let ds = data::load(spec, &LoadOptions { resize: cfg.data.resize, ..LoadOptions::default() })?;
    if ds.shape != cfg.model.input_shape {
        bail!("{spec}: examples of shape {:?}, but model.input_shape is {:?}", ds.shape, cfg.model.input_shape);
    }
    if cfg.model.is_conditional() {
        if ds.labels.is_none() {
            bail!("{spec}: unlabelled, but the model has a classifier head (use model.head = \"energy\")");
        }
        if ds.num_classes() > cfg.model.num_classes {
            bail!("{spec}: {} classes, but model.num_classes is {}", ds.num_classes(), cfg.model.num_classes);
        }
    }
    Ok(ds)
}
