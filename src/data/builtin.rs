//! Built-in data sets generated deterministically from a seed, needing no download:
//! `synthetic:shapes` (10 classes of coloured shapes on textured backgrounds), the out-of-distribution
//! sets `noise:uniform`, `noise:gaussian`, `constant`, and `interp:SPEC`.
use super::{Dataset, Pixels};
use anyhow::bail;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

pub const SHAPE_CLASSES: [&str; 10] =
    ["disk", "square", "triangle", "ring", "plus", "cross", "diamond", "hbar", "vbar", "two-dots"];
const SIDE: usize = 32;

/// Whether the point (u, v), in shape coordinates where the shape spans about [-1, 1]^2, is inside shape `k`.
fn inside(k: usize, u: f32, v: f32) -> bool {
    let r = (u * u + v * v).sqrt();
    match k {
        0 => r < 0.9,
        1 => u.abs().max(v.abs()) < 0.75,
        2 => v > -0.8 && v < 0.9 && u.abs() < (0.9 - v) * 0.55,
        3 => r > 0.55 && r < 0.95,
        4 => (u.abs() < 0.28 && v.abs() < 0.95) || (v.abs() < 0.28 && u.abs() < 0.95),
        5 => {
            let (a, b) = ((u + v) * std::f32::consts::FRAC_1_SQRT_2, (u - v) * std::f32::consts::FRAC_1_SQRT_2);
            (a.abs() < 0.25 && b.abs() < 0.95) || (b.abs() < 0.25 && a.abs() < 0.95)
        }
        6 => u.abs() + v.abs() < 0.95,
        7 => u.abs() < 0.95 && v.abs() < 0.3,
        8 => v.abs() < 0.95 && u.abs() < 0.3,
        _ => ((u - 0.5).powi(2) + v * v).sqrt() < 0.42 || ((u + 0.5).powi(2) + v * v).sqrt() < 0.42,
    }
}

/// Draws one shapes image of class `k` into `out` (CHW bytes).
fn draw_shape(k: usize, rng: &mut ChaCha8Rng, out: &mut [u8]) {
    let bg: [f32; 3] = std::array::from_fn(|_| rng.gen_range(0.0..1.0));
    // The foreground contrasts with the background: each channel moved by at least 0.35.
    let fg: [f32; 3] = std::array::from_fn(|c| {
        let d = rng.gen_range(0.35..0.7);
        if bg[c] > 0.5 {
            bg[c] - d
        } else {
            bg[c] + d
        }
    });
    let (freq, angle, amp) =
        (rng.gen_range(0.3..1.2), rng.gen_range(0.0..std::f32::consts::PI), rng.gen_range(0.02..0.08));
    let size = rng.gen_range(9.0..12.0f32);
    let (cx, cy) = (rng.gen_range(13.0..19.0f32), rng.gen_range(13.0..19.0f32));
    for y in 0..SIDE {
        for x in 0..SIDE {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let stripes = amp * (freq * (fx * angle.cos() + fy * angle.sin())).sin();
            let is_fg = inside(k, (fx - cx) / size, (fy - cy) / size);
            for c in 0..3 {
                let base = if is_fg { fg[c] } else { bg[c] + stripes };
                let v = base + rng.gen_range(-0.04..0.04);
                out[c * SIDE * SIDE + y * SIDE + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
}

/// `synthetic:shapes:N`: N images, classes in turn (balanced), from the given seed.
pub fn shapes(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x05ba_9e55);
    let numel = 3 * SIDE * SIDE;
    let mut pixels = vec![0u8; n * numel];
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % SHAPE_CLASSES.len();
        draw_shape(k, &mut rng, &mut pixels[i * numel..(i + 1) * numel]);
        labels.push(k as i64);
    }
    let classes = SHAPE_CLASSES.iter().map(|s| s.to_string()).collect();
    Dataset::new("synthetic:shapes", Pixels::U8(pixels), vec![3, SIDE, SIDE], Some(labels), classes)
        .expect("generated shapes are consistent")
}

fn float_images(name: &str, values: Vec<f32>) -> Dataset {
    Dataset::new(name, Pixels::F32(values), vec![3, SIDE, SIDE], None, Vec::new())
        .expect("generated images are consistent")
}

/// `noise:uniform`: every pixel U(-1, 1), as JEM's uniform OOD set.
pub fn noise_uniform(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0a1f);
    let v = (0..n * 3 * SIDE * SIDE).map(|_| rng.gen_range(-1.0..1.0f32)).collect();
    float_images("noise:uniform", v)
}

/// `noise:gaussian`: every pixel N(0, 1) clipped to [-1, 1].
pub fn noise_gaussian(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6a55);
    let v = (0..n * 3 * SIDE * SIDE).map(|_| rng.sample::<f32, _>(StandardNormal).clamp(-1.0, 1.0)).collect();
    float_images("noise:gaussian", v)
}

/// `constant`: each image one uniformly drawn colour in [-1, 1]^3.
pub fn constant(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc0457);
    let plane = SIDE * SIDE;
    let mut v = vec![0f32; n * 3 * plane];
    for img in v.chunks_exact_mut(3 * plane) {
        for ch in img.chunks_exact_mut(plane) {
            ch.fill(rng.gen_range(-1.0..1.0));
        }
    }
    float_images("constant", v)
}

/// `interp:SPEC`: image i is the midpoint of images i and i+1 (cyclically) of the base set, as
/// JEM's `cifar_interp` OOD set; unlabelled.
pub fn interp(base: &Dataset) -> crate::Result<Dataset> {
    if !base.is_image() || base.len() < 2 {
        bail!("{}: interp needs an image set of at least 2 images", base.name);
    }
    let n = base.len();
    let numel = base.example_numel();
    let mut a = vec![0f32; numel];
    let mut b = vec![0f32; numel];
    let mut out = Vec::with_capacity(n * numel);
    for i in 0..n {
        base.write_example(i, &mut a);
        base.write_example((i + 1) % n, &mut b);
        out.extend(a.iter().zip(&b).map(|(x, y)| 0.5 * (x + y)));
    }
    Dataset::new(format!("interp:{}", base.name), Pixels::F32(out), base.shape.clone(), None, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_deterministic_balanced_and_seed_dependent() {
        let a = shapes(50, 3);
        let b = shapes(50, 3);
        let c = shapes(50, 4);
        let (Pixels::U8(pa), Pixels::U8(pb), Pixels::U8(pc)) = (&a.pixels, &b.pixels, &c.pixels) else { panic!() };
        assert_eq!(pa, pb);
        assert_ne!(pa, pc);
        assert_eq!(a.class_counts(), vec![5; 10]);
    }

    #[test]
    fn ood_sets_have_their_ranges() {
        let u = noise_uniform(4, 0);
        let (lo, hi) = u.value_range();
        assert!(lo >= -1.0 && hi <= 1.0 && hi - lo > 1.9);
        let g = gaussian_stats(&noise_gaussian(20, 0));
        assert!(g.0.abs() < 0.05, "mean {}", g.0);
        let c = constant(3, 0);
        let Pixels::F32(v) = &c.pixels else { panic!() };
        assert!(v[..1024].iter().all(|&x| x == v[0]));
    }

    fn gaussian_stats(ds: &Dataset) -> (f32, f32) {
        let Pixels::F32(v) = &ds.pixels else { panic!() };
        let m = v.iter().sum::<f32>() / v.len() as f32;
        (m, v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / v.len() as f32)
    }

    #[test]
    fn interp_is_the_midpoint() {
        let base = shapes(3, 0);
        let it = interp(&base).unwrap();
        let mut a = vec![0f32; 3072];
        let mut b = vec![0f32; 3072];
        let mut m = vec![0f32; 3072];
        base.write_example(0, &mut a);
        base.write_example(1, &mut b);
        it.write_example(0, &mut m);
        assert!((m[100] - 0.5 * (a[100] + b[100])).abs() < 1e-6);
        assert!(it.labels.is_none());
    }
}
