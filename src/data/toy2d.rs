//! 2-D toy densities for validating training methods: samplers for each and, where it exists in
//! closed form, the exact log-density log p(x).
use super::{Dataset, Pixels};
use anyhow::bail;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::f64::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toy {
    EightGaussians,
    Rings,
    Checkerboard,
    Moons,
    Pinwheel,
    Swissroll,
}

/// 8gaussians: centres on a circle of this radius, isotropic standard deviation `G8_STD`.
const G8_RADIUS: f64 = 2.0 * std::f64::consts::SQRT_2;
const G8_STD: f64 = 0.5 / std::f64::consts::SQRT_2;
/// rings: radii and radial standard deviation, equal weights.
const RING_RADII: [f64; 4] = [0.75, 1.5, 2.25, 3.0];
const RING_STD: f64 = 0.08;
/// checkerboard: a 4x4 board of 2x2 cells on [-4, 4]^2, half of them occupied.
const BOARD_HALF: f64 = 4.0;

impl Toy {
    pub const ALL: [Toy; 6] =
        [Toy::EightGaussians, Toy::Rings, Toy::Checkerboard, Toy::Moons, Toy::Pinwheel, Toy::Swissroll];

    pub fn parse(name: &str) -> crate::Result<Self> {
        Ok(match name {
            "8gaussians" => Toy::EightGaussians,
            "rings" => Toy::Rings,
            "checkerboard" => Toy::Checkerboard,
            "moons" => Toy::Moons,
            "pinwheel" => Toy::Pinwheel,
            "swissroll" => Toy::Swissroll,
            other => bail!(
                "unknown toy2d density `{other}` (expected 8gaussians, rings, checkerboard, moons, pinwheel or swissroll)"
            ),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Toy::EightGaussians => "8gaussians",
            Toy::Rings => "rings",
            Toy::Checkerboard => "checkerboard",
            Toy::Moons => "moons",
            Toy::Pinwheel => "pinwheel",
            Toy::Swissroll => "swissroll",
        }
    }

    /// Draws one point.
    pub fn sample(self, rng: &mut ChaCha8Rng) -> [f64; 2] {
        let n = |rng: &mut ChaCha8Rng| rng.sample::<f64, _>(StandardNormal);
        match self {
            Toy::EightGaussians => {
                let k = rng.gen_range(0..8) as f64;
                let a = k * PI / 4.0;
                [G8_RADIUS * a.cos() + G8_STD * n(rng), G8_RADIUS * a.sin() + G8_STD * n(rng)]
            }
            Toy::Rings => {
                let r0 = RING_RADII[rng.gen_range(0..RING_RADII.len())];
                // Radius from N(r0, std) truncated to r > 0 (rejection; r0/std >= 9 so it never loops long).
                let r = loop {
                    let r = r0 + RING_STD * n(rng);
                    if r > 0.0 {
                        break r;
                    }
                };
                let a = rng.gen_range(0.0..2.0 * PI);
                [r * a.cos(), r * a.sin()]
            }
            Toy::Checkerboard => loop {
                let x = rng.gen_range(-BOARD_HALF..BOARD_HALF);
                let y = rng.gen_range(-BOARD_HALF..BOARD_HALF);
                if checker_occupied(x, y) {
                    break [x, y];
                }
            },
            Toy::Moons => {
                let t = rng.gen_range(0.0..PI);
                let (x, y) = if rng.gen_bool(0.5) { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
                [2.0 * (x - 0.5) + 0.2 * n(rng), 2.0 * (y - 0.25) + 0.2 * n(rng)]
            }
            Toy::Pinwheel => {
                let k = rng.gen_range(0..5) as f64;
                let (f0, f1) = (0.3 * n(rng) + 1.0, 0.1 * n(rng));
                let a = 2.0 * PI * k / 5.0 + 0.25 * f0.exp();
                [2.0 * (f0 * a.cos() - f1 * a.sin()), 2.0 * (f0 * a.sin() + f1 * a.cos())]
            }
            Toy::Swissroll => {
                let t = 1.5 * PI * (1.0 + 2.0 * rng.gen_range(0.0..1.0));
                [(t * t.cos() + n(rng)) / 5.0, (t * t.sin() + n(rng)) / 5.0]
            }
        }
    }

    /// The mean exact log-density of points given as interleaved (x, y) coordinates, for the
    /// densities that have one in closed form.
    pub fn mean_log_density(self, xy: &[f32]) -> Option<f64> {
        let lp: Option<Vec<f64>> = xy.chunks(2).map(|p| self.log_density([p[0] as f64, p[1] as f64])).collect();
        lp.map(|lp| lp.iter().sum::<f64>() / lp.len() as f64)
    }

    /// The exact log-density at `p`, for the densities that have one in closed form.
    pub fn log_density(self, p: [f64; 2]) -> Option<f64> {
        let [x, y] = p;
        match self {
            Toy::EightGaussians => {
                let terms: Vec<f64> = (0..8)
                    .map(|k| {
                        let a = k as f64 * PI / 4.0;
                        let (dx, dy) = (x - G8_RADIUS * a.cos(), y - G8_RADIUS * a.sin());
                        -(dx * dx + dy * dy) / (2.0 * G8_STD * G8_STD) - (2.0 * PI * G8_STD * G8_STD).ln()
                    })
                    .collect();
                Some(log_sum_exp(&terms) - 8f64.ln())
            }
            Toy::Rings => {
                // p(x) = p_r(|x|) / (2 pi |x|), p_r a mixture of N(r_k, std) truncated to r > 0.
                let r = (x * x + y * y).sqrt();
                if r == 0.0 {
                    return Some(f64::NEG_INFINITY);
                }
                let terms: Vec<f64> = RING_RADII
                    .iter()
                    .map(|&rk| {
                        let z = (r - rk) / RING_STD;
                        -0.5 * z * z - (RING_STD * (2.0 * PI).sqrt()).ln() - std_normal_cdf(rk / RING_STD).ln()
                    })
                    .collect();
                Some(log_sum_exp(&terms) - (RING_RADII.len() as f64).ln() - (2.0 * PI * r).ln())
            }
            Toy::Checkerboard => Some(if checker_occupied(x, y) { -(32f64.ln()) } else { f64::NEG_INFINITY }),
            Toy::Moons | Toy::Pinwheel | Toy::Swissroll => None,
        }
    }
}

fn checker_occupied(x: f64, y: f64) -> bool {
    if x.abs() >= BOARD_HALF || y.abs() >= BOARD_HALF {
        return false;
    }
    let (i, j) = (((x + BOARD_HALF) / 2.0).floor() as i64, ((y + BOARD_HALF) / 2.0).floor() as i64);
    (i + j) % 2 == 0
}

/// log sum_i exp(v_i), stable.
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Phi(z) through erfc (Abramowitz-Stegun 7.1.26 is too coarse; this uses a continued series).
fn std_normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' erfcc, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// `toy2d:NAME:N` as an unlabelled data set of points [N, 2].
pub fn sample_dataset(toy: Toy, n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x2d2d);
    let v: Vec<f32> = (0..n).flat_map(|_| toy.sample(&mut rng)).map(|x| x as f32).collect();
    Dataset::new(format!("toy2d:{}", toy.name()), Pixels::F32(v), vec![2], None, Vec::new())
        .expect("points are consistent")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Integral of exp(log p) over a fine grid of [-6, 6]^2.
    fn grid_mass(toy: Toy) -> f64 {
        let n = 1200;
        let h = 12.0 / n as f64;
        let mut mass = 0.0;
        for i in 0..n {
            for j in 0..n {
                let p = [-6.0 + (i as f64 + 0.5) * h, -6.0 + (j as f64 + 0.5) * h];
                mass += toy.log_density(p).unwrap().exp() * h * h;
            }
        }
        mass
    }

    #[test]
    fn closed_form_densities_integrate_to_one() {
        for toy in [Toy::EightGaussians, Toy::Rings, Toy::Checkerboard] {
            let m = grid_mass(toy);
            assert!((m - 1.0).abs() < 2e-3, "{}: mass {m}", toy.name());
        }
    }

    #[test]
    fn samples_follow_the_density() {
        // The mean log-density of samples is the negative entropy; compare with the grid value.
        for toy in [Toy::EightGaussians, Toy::Rings, Toy::Checkerboard] {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let n = 20_000;
            let mc: f64 = (0..n).map(|_| toy.log_density(toy.sample(&mut rng)).unwrap()).sum::<f64>() / n as f64;
            let (g, h) = (600, 12.0 / 600.0);
            let mut neg_entropy = 0.0;
            for i in 0..g {
                for j in 0..g {
                    let lp = toy.log_density([-6.0 + (i as f64 + 0.5) * h, -6.0 + (j as f64 + 0.5) * h]).unwrap();
                    if lp.is_finite() {
                        neg_entropy += lp.exp() * lp * h * h;
                    }
                }
            }
            assert!((mc - neg_entropy).abs() < 0.03, "{}: mc {mc} vs grid {neg_entropy}", toy.name());
        }
    }

    #[test]
    fn every_density_samples_finite_points() {
        for toy in Toy::ALL {
            let ds = sample_dataset(toy, 100, 0);
            let (lo, hi) = ds.value_range();
            assert!(lo.is_finite() && hi.is_finite() && lo > -8.0 && hi < 8.0, "{}", toy.name());
        }
    }
}
