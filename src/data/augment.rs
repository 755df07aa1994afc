//! JEM's training augmentation on one CHW float image: reflect-pad 4, random 32x32 crop,
//! horizontal flip with probability 1/2; then Gaussian noise of a given sigma on every value.
use rand::Rng;
use rand_distr::StandardNormal;

/// Index into [0, n) of position `i` of a reflect-padded axis (PyTorch's `reflect`: the edge is not repeated).
fn reflect(i: i64, n: i64) -> usize {
    let mut i = i;
    if i < 0 {
        i = -i;
    }
    if i >= n {
        i = 2 * (n - 1) - i;
    }
    i.clamp(0, n - 1) as usize
}

/// Crop offsets (dy, dx) in [0, 2*pad] and a flip flag: one draw of the augmentation.
#[derive(Debug, Clone, Copy)]
pub struct CropFlip {
    pub dy: i64,
    pub dx: i64,
    pub flip: bool,
}

impl CropFlip {
    pub fn draw<R: Rng>(rng: &mut R, pad: i64) -> Self {
        CropFlip { dy: rng.gen_range(0..=2 * pad), dx: rng.gen_range(0..=2 * pad), flip: rng.gen_bool(0.5) }
    }

    /// Writes the augmented `src` [C, H, W] into `dst`: dst[c, y, x] = padded[c, y + dy, x' + dx]
    /// with x' = W-1-x when flipped (flip after crop, as torchvision composes them).
    pub fn apply(&self, src: &[f32], dst: &mut [f32], shape: [usize; 3], pad: i64) {
        let [c, h, w] = shape;
        for ch in 0..c {
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                let sy = reflect(y as i64 + self.dy - pad, h as i64);
                let row = &plane[sy * w..(sy + 1) * w];
                let out = &mut dst[ch * h * w + y * w..ch * h * w + (y + 1) * w];
                for (x, o) in out.iter_mut().enumerate() {
                    let xc = if self.flip { w - 1 - x } else { x };
                    *o = row[reflect(xc as i64 + self.dx - pad, w as i64)];
                }
            }
        }
    }
}

/// Adds sigma * N(0, 1) to every value.
pub fn add_noise<R: Rng>(rng: &mut R, x: &mut [f32], sigma: f32) {
    if sigma > 0.0 {
        for v in x {
            *v += sigma * rng.sample::<f32, _>(StandardNormal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centre_crop_without_flip_is_identity() {
        let src: Vec<f32> = (0..3 * 4 * 4).map(|i| i as f32).collect();
        let mut dst = vec![0.0; src.len()];
        CropFlip { dy: 2, dx: 2, flip: false }.apply(&src, &mut dst, [3, 4, 4], 2);
        assert_eq!(src, dst);
    }

    #[test]
    fn shifted_crop_reflects_and_flip_mirrors() {
        // One channel, one row of width 4: [0 1 2 3]; reflect-padded by 2: [2 1 0 1 2 3 2 1].
        let src = vec![0.0, 1.0, 2.0, 3.0];
        let mut dst = vec![0.0; 4];
        CropFlip { dy: 0, dx: 0, flip: false }.apply(&src, &mut dst, [1, 1, 4], 2);
        // dy = 0 on a height-1 image reflects back to row 0.
        assert_eq!(dst, vec![2.0, 1.0, 0.0, 1.0]);
        CropFlip { dy: 0, dx: 2, flip: true }.apply(&src, &mut dst, [1, 1, 4], 2);
        assert_eq!(dst, vec![3.0, 2.0, 1.0, 0.0]);
    }
}
