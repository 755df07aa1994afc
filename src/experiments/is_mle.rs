//! The importance-sampling MLE experiment of seed 004, section 7: data x_n ~ N(0, theta*^2) with
//! theta* = 2, N = 100; the EBM phi(x|theta) = exp(-x^2 / (2 theta^2)) with Z(theta) treated as
//! unknown and estimated by importance sampling (Geyer's baseline, eq. 8):
//!   J_BL(theta) = sum_n E(x_n|theta) + N log[(1/M) sum_m phi(y_m|theta) / q(y_m)],
//! with q1 = N(2, 2^2) fixed or q2 = N(2, (2 + theta)^2) depending on theta (y_m = 2 + (2 + theta) z_m,
//! the same z_m for every theta of a run). The true NLL is J(theta) = sum_n x_n^2/(2 theta^2) +
//! N log(sqrt(2 pi) theta), whose minimiser, the exact MLE, is the root mean square of the data.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Proposal {
    /// q1 = N(2, 2^2), independent of theta.
    Fixed,
    /// q2 = N(2, (2 + theta)^2).
    ThetaDependent,
}

#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub proposal: Proposal,
    pub m: usize,
    /// theta-hat: mean over runs and mean squared error against the exact MLE.
    pub mean_estimate: f64,
    pub mse_vs_mle: f64,
    /// Spread (max - min over runs) of J_BL(theta) - J(theta), averaged over the grid where
    /// theta <= 2 and where theta > 2.
    pub spread_low: f64,
    pub spread_high: f64,
    /// Per grid point: min, mean and max of J_BL over runs (for the plots).
    #[serde(skip)]
    pub curves: (Vec<f64>, Vec<f64>, Vec<f64>),
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub theta_star: f64,
    pub n: usize,
    pub runs: usize,
    pub exact_mle: f64,
    pub grid: Vec<f64>,
    #[serde(skip)]
    pub true_nll: Vec<f64>,
    pub settings: Vec<Setting>,
}

/// J_BL(theta) [runs, G] for `runs` fresh proposal draws of size M (eq. 8).
fn j_bl_runs(theta: &Tensor, runs: usize, m: usize, proposal: Proposal, sum_sq: f64, n: f64) -> Tensor {
    let z = Tensor::randn([runs as i64, 1, m as i64], (Kind::Double, Device::Cpu)); // [R, 1, M]
    let sigma_q = match proposal {
        Proposal::Fixed => theta.ones_like() * 2.0,
        Proposal::ThetaDependent => theta + 2.0,
    };
    let y = &sigma_q * &z + 2.0; // [R, G, M]
                                 // log phi(y|theta) - log q(y), with log q(y) = -z^2/2 - log(sqrt(2 pi) sigma_q).
    let log_w =
        -(&y * &y) / (theta * theta * 2.0) + z.square() * 0.5 + (sigma_q * (2.0 * std::f64::consts::PI).sqrt()).log();
    let log_z = log_w.logsumexp([2].as_slice(), false) - (m as f64).ln(); // [R, G]
    let data_term = theta.view([1, -1]).square().reciprocal() * (sum_sq / 2.0); // [1, G]
    log_z * n + data_term
}

/// Runs the experiment: `runs` independent proposal draws for each proposal and M.
pub fn run(ms: &[usize], runs: usize, seed: u64) -> Report {
    let (theta_star, n) = (2.0, 100usize);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f64> = (0..n).map(|_| theta_star * Distribution::<f64>::sample(&StandardNormal, &mut rng)).collect();
    let sum_sq: f64 = x.iter().map(|v| v * v).sum();
    let exact_mle = (sum_sq / n as f64).sqrt();
    let grid: Vec<f64> = (0..=220).map(|i| 0.5 + 0.025 * i as f64).collect();
    let nf = n as f64;
    let true_nll: Vec<f64> =
        grid.iter().map(|t| sum_sq / (2.0 * t * t) + nf * ((2.0 * std::f64::consts::PI).sqrt() * t).ln()).collect();
    let theta = Tensor::from_slice(&grid).view([1, -1, 1]); // [1, G, 1]
    let mut settings = Vec::new();
    for proposal in [Proposal::Fixed, Proposal::ThetaDependent] {
        for &m in ms {
            // Runs in chunks so that one [runs, grid, M] block stays around 16M values.
            let chunk = (16_000_000 / (grid.len() * m)).max(1);
            let mut rows = Vec::new();
            let mut done = 0;
            while done < runs {
                let r = chunk.min(runs - done);
                rows.push(j_bl_runs(&theta, r, m, proposal, sum_sq, nf));
                done += r;
            }
            let j_bl = Tensor::cat(&rows, 0); // [R, G]
            let est_idx = j_bl.argmin(1, false);
            let est = Tensor::from_slice(&grid).index_select(0, &est_idx);
            let mean_estimate = est.mean(Kind::Double).double_value(&[]);
            let mse_vs_mle = (est - exact_mle).square().mean(Kind::Double).double_value(&[]);
            let lo: Vec<f64> = Vec::try_from(&j_bl.min_dim(0, false).0).unwrap();
            let hi: Vec<f64> = Vec::try_from(&j_bl.max_dim(0, false).0).unwrap();
            let mean: Vec<f64> = Vec::try_from(&j_bl.mean_dim([0].as_slice(), false, Kind::Double)).unwrap();
            let spread = |keep: &dyn Fn(f64) -> bool| {
                let v: Vec<f64> =
                    grid.iter().zip(lo.iter().zip(&hi)).filter(|(t, _)| keep(**t)).map(|(_, (a, b))| b - a).collect();
                v.iter().sum::<f64>() / v.len() as f64
            };
            settings.push(Setting {
                proposal,
                m,
                mean_estimate,
                mse_vs_mle,
                spread_low: spread(&|t| t <= 2.0),
                spread_high: spread(&|t| t > 2.0),
                curves: (lo, mean, hi),
            });
        }
    }
    Report { theta_star, n, runs, exact_mle, grid, true_nll, settings }
}
