//! Batching: a held-out validation split, seeded shuffling, augmentation and data noise, done on a
//! prefetch thread so the training thread never waits. Batch (epoch, i) is a pure function of the
//! run seed, which is what makes resuming exact.
use super::augment::{add_noise, CropFlip};
use super::Dataset;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::{Device, Kind, Tensor};

/// Mixes seeds into one stream id (splitmix64 finaliser over the parts).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &p in parts {
        h ^= p.wrapping_add(0x9e37_79b9_7f4a_7c15).wrapping_add(h << 6).wrapping_add(h >> 2);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

/// Splits 0..n into (train, validation) index lists; the validation part is `fraction` of n,
/// drawn with a fixed seed (JEM's 1234) so it does not change with the run seed.
pub fn train_valid_split(n: usize, fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(1234));
    let n_valid = ((n as f64) * fraction).round() as usize;
    let n_valid = n_valid.min(n.saturating_sub(1));
    let valid = idx[..n_valid].to_vec();
    let mut train = idx[n_valid..].to_vec();
    train.sort_unstable();
    (train, valid)
}

/// One training batch on the CPU.
pub struct Batch {
    pub x: Tensor,
    pub y: Option<Tensor>,
    pub epoch: u64,
    pub index: u64,
}

/// How batches are made: which examples, in what order, with what augmentation.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    pub seed: u64,
    pub batch_size: usize,
    pub indices: Arc<Vec<usize>>,
    pub augment: bool,
    pub noise_sigma: f32,
    /// `Some((r, w))`: only rows [r G/w, (r + 1) G/w) of each batch of G = `batch_size` (rank r
    /// of a data-parallel run of w, which builds its own rows and no others'); each row then
    /// draws its crop, flip and noise from its own stream, seeded from (seed, epoch, index, row),
    /// so a row is the same whichever rank builds it. None: the whole batch, from one stream.
    pub shard: Option<(usize, usize)>,
}

impl BatchPlan {
    /// Batches per epoch; the last incomplete batch is dropped (as JEM's drop_last).
    pub fn batches_per_epoch(&self) -> u64 {
        (self.indices.len() / self.batch_size).max(1) as u64
    }

    /// The epoch's order of example indices.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut p = self.indices.as_ref().clone();
        p.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, 0x5u64, epoch])));
        p
    }

    /// Batch `index` of `epoch` given that epoch's permutation (this rank's rows of it, with
    /// `shard`).
    pub fn make(&self, ds: &Dataset, perm: &[usize], epoch: u64, index: u64) -> Batch {
        let start = index as usize * self.batch_size;
        let (first, rows) = match self.shard {
            Some((r, w)) => (r * self.batch_size / w, self.batch_size / w),
            None => (0, self.batch_size),
        };
        let take: Vec<usize> = (first..first + rows).map(|k| perm[(start + k) % perm.len()]).collect();
        let mut batch_rng = ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, 0xa0u64, epoch, index]));
        let numel = ds.example_numel();
        let mut buf = vec![0f32; take.len() * numel];
        let mut tmp = vec![0f32; numel];
        let image_shape = (ds.shape.len() == 3).then(|| [ds.shape[0], ds.shape[1], ds.shape[2]]);
        for (k, &i) in take.iter().enumerate() {
            let out = &mut buf[k * numel..(k + 1) * numel];
            let mut row_rng;
            let rng = match self.shard {
                Some(_) => {
                    row_rng =
                        ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, 0xa1u64, epoch, index, (first + k) as u64]));
                    &mut row_rng
                }
                None => &mut batch_rng,
            };
            match image_shape {
                Some(shape) if self.augment => {
                    ds.write_example(i, &mut tmp);
                    CropFlip::draw(rng, 4).apply(&tmp, out, shape, 4);
                }
                _ => ds.write_example(i, out),
            }
            add_noise(rng, out, self.noise_sigma);
        }
        let mut dims = vec![take.len() as i64];
        dims.extend(ds.shape.iter().map(|&d| d as i64));
        let x = Tensor::from_slice(&buf).view(dims.as_slice());
        let y = ds
            .labels
            .as_ref()
            .map(|l| Tensor::from_slice(&take.iter().map(|&i| l[i]).collect::<Vec<i64>>()).to_kind(Kind::Int64));
        Batch { x, y, epoch, index }
    }
}

/// Batches produced in order by a background thread, starting at (epoch, index).
pub struct Loader {
    rx: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts the worker at (epoch, index). With `pin`, batches come in page-locked host memory
    /// (for asynchronous copies to a CUDA device; needs CUDA), pinned on the worker thread.
    pub fn start(
        ds: Arc<Dataset>,
        plan: BatchPlan,
        start_epoch: u64,
        start_index: u64,
        prefetch: usize,
        pin: bool,
    ) -> Loader {
        let (tx, rx) = sync_channel(prefetch.max(1));
        let worker = std::thread::spawn(move || {
            let per_epoch = plan.batches_per_epoch();
            let (mut epoch, mut index) = (start_epoch, start_index);
            loop {
                let perm = plan.permutation(epoch);
                while index < per_epoch {
                    let mut b = plan.make(&ds, &perm, epoch, index);
                    if pin {
                        b.x = b.x.pin_memory(Device::Cuda(0));
                        b.y = b.y.map(|y| y.pin_memory(Device::Cuda(0)));
                    }
                    if tx.send(b).is_err() {
                        return;
                    }
                    index += 1;
                }
                epoch += 1;
                index = 0;
            }
        });
        Loader { rx: Some(rx), worker: Some(worker) }
    }

    /// The next batch (blocks until the worker has made it).
    pub fn next_batch(&mut self) -> Batch {
        self.rx.as_ref().expect("loader running").recv().expect("loader thread ended")
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::builtin;

    #[test]
    fn batches_are_a_pure_function_of_seed_epoch_and_index() {
        let ds = Arc::new(builtin::shapes(40, 0));
        let (train, valid) = train_valid_split(40, 0.25);
        assert_eq!((train.len(), valid.len()), (30, 10));
        assert!(valid.iter().all(|v| !train.contains(v)));
        let plan = BatchPlan {
            seed: 7,
            batch_size: 8,
            indices: Arc::new(train),
            augment: true,
            noise_sigma: 0.03,
            shard: None,
        };
        let mut from_start = Loader::start(ds.clone(), plan.clone(), 0, 0, 2, false);
        let batches: Vec<Batch> = (0..5).map(|_| from_start.next_batch()).collect();
        assert_eq!((batches[3].epoch, batches[3].index), (1, 0));
        // Resuming at (1, 0) reproduces the same batch bit for bit.
        let mut resumed = Loader::start(ds, plan, 1, 0, 2, false);
        let b = resumed.next_batch();
        assert!(b.x.equal(&batches[3].x));
        assert!(b.y.unwrap().equal(batches[3].y.as_ref().unwrap()));
        assert!(!batches[0].x.equal(&batches[3].x.narrow(0, 0, 8)));
    }

    /// Each rank's rows: the examples of the same rows of the whole batch, as before; with
    /// augmentation and noise, each row the same whichever split built it (2 ranks or 4).
    #[test]
    fn a_rank_builds_only_its_rows_of_the_global_batch() {
        let ds = builtin::shapes(64, 0);
        let (train, _) = train_valid_split(64, 0.0);
        let plain = BatchPlan {
            seed: 3,
            batch_size: 16,
            indices: Arc::new(train),
            augment: false,
            noise_sigma: 0.0,
            shard: None,
        };
        let perm = plain.permutation(2);
        let rows = |plan: &BatchPlan, w: usize| -> (Tensor, Tensor) {
            let parts: Vec<Batch> =
                (0..w).map(|r| BatchPlan { shard: Some((r, w)), ..plan.clone() }.make(&ds, &perm, 2, 1)).collect();
            assert!(parts.iter().all(|b| b.x.size()[0] == 16 / w as i64));
            let cat = |f: &dyn Fn(&Batch) -> Tensor| Tensor::cat(&parts.iter().map(f).collect::<Vec<_>>(), 0);
            (cat(&|b| b.x.shallow_clone()), cat(&|b| b.y.as_ref().unwrap().shallow_clone()))
        };
        let whole = plain.make(&ds, &perm, 2, 1);
        let (x2, y2) = rows(&plain, 2);
        assert!(x2.equal(&whole.x) && y2.equal(whole.y.as_ref().unwrap()));
        let noisy = BatchPlan { augment: true, noise_sigma: 0.03, ..plain };
        let ((x2, y2), (x4, y4)) = (rows(&noisy, 2), rows(&noisy, 4));
        assert!(x2.equal(&x4) && y2.equal(&y4));
        assert!(y2.equal(whole.y.as_ref().unwrap()), "the same examples");
        assert!(!x2.equal(&whole.x), "augmented and noised");
    }
}
