//! PNG grids of images: [N, C, H, W] tensors in [-1, 1] (clamped), tiled row by row.
use anyhow::{bail, Context};
use std::path::Path;
use tch::{Device, Kind, Tensor};

const PAD: usize = 2;

/// Writes `images` as a grid with `ncol` images per row (0: a square-ish grid).
pub fn save_grid(images: &Tensor, ncol: usize, path: &Path) -> crate::Result<()> {
    let size = images.size();
    if size.len() != 4 || !(size[1] == 1 || size[1] == 3) {
        bail!("a sample grid needs images [N, 1|3, H, W], got {size:?}");
    }
    let (n, c, h, w) = (size[0] as usize, size[1] as usize, size[2] as usize, size[3] as usize);
    if n == 0 {
        bail!("no images to draw");
    }
    let ncol = if ncol == 0 { (n as f64).sqrt().ceil() as usize } else { ncol.min(n) };
    let nrow = n.div_ceil(ncol);
    let bytes = ((images.to_device(Device::Cpu).to_kind(Kind::Float).clamp(-1.0, 1.0) + 1.0) * 127.5)
        .round()
        .to_kind(Kind::Uint8)
        .contiguous();
    let mut px = vec![0u8; n * c * h * w];
    bytes.copy_data(&mut px, n * c * h * w);
    let (gw, gh) = (ncol * (w + PAD) + PAD, nrow * (h + PAD) + PAD);
    let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
    for i in 0..n {
        let (r, col) = (i / ncol, i % ncol);
        for y in 0..h {
            for x in 0..w {
                let at = |ch: usize| px[((i * c + ch.min(c - 1)) * h + y) * w + x];
                let (gx, gy) = (PAD + col * (w + PAD) + x, PAD + r * (h + PAD) + y);
                img.put_pixel(gx as u32, gy as u32, image::Rgb([at(0), at(1), at(2)]));
            }
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create folder", parent.display()))?;
    }
    img.save(path).with_context(|| format!("{}: cannot write PNG", path.display()))
}
