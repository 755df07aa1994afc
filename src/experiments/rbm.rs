//! `ebm experiment rbm`: a binary RBM trained by CD-k and by PCD (Tieleman 2008) on noisy
//! bars-and-stripes (`data::bars_stripes`), validated by exact likelihoods, with AIS checked
//! against the exact log Z.
//!
//! Training: minibatch stochastic gradient ascent on the log-likelihood with momentum,
//!   Delta <- m Delta + lr (Hebbian - anti-Hebbian - weight_decay W),  theta <- theta + Delta,
//! where the anti-Hebbian term comes from k block Gibbs sweeps started at the batch (CD-k, Hinton
//! 2002) or continued from persistent fantasy chains (PCD), one chain per batch row.
//! Evaluation, all exact because the visible layer has at most 24 units: log Z (the sum over the
//! smaller layer), the held-out log-likelihood of a fresh sample, KL(data || model) over all 2^V
//! images against the exact data distribution, and two references: the truth's own held-out
//! log-likelihood (the ceiling) and an independent-Bernoulli model fitted to the training pixels
//! (the baseline every RBM must beat). AIS (`sampling::rbm_ais`) then estimates each trained
//! model's log Z and is set beside the exact value.
//!
//! An experiment, not an `ebm train` config: the trainer's step, samplers and checkpoints are built
//! around a continuous energy network trained by autograd, while an RBM has binary units, a
//! closed-form gradient and a block Gibbs sampler, and its validation is exact enumeration.
use crate::data::bars_stripes::BarsStripes;
use crate::models::rbm::{all_states, Rbm};
use crate::sampling::rbm_ais;
use anyhow::bail;
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub data: BarsStripesSpec,
    pub hidden: usize,
    pub points: usize,
    pub test_points: usize,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Gibbs sweeps per update, for CD-k and for PCD.
    pub k: usize,
    pub ais_chains: usize,
    pub ais_temps: usize,
    pub seed: u64,
}

/// The data distribution as options (side, flip probability).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BarsStripesSpec {
    pub side: usize,
    pub flip: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            data: BarsStripesSpec { side: 4, flip: 0.05 },
            hidden: 16,
            points: 2000,
            test_points: 5000,
            epochs: 200,
            batch: 20,
            lr: 0.02,
            momentum: 0.5,
            weight_decay: 1e-4,
            k: 1,
            ais_chains: 100,
            ais_temps: 10_000,
            seed: 1,
        }
    }
}

/// The negatives of the anti-Hebbian term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// k sweeps from the data batch.
    Cd,
    /// k sweeps continuing persistent chains.
    Pcd,
}

/// One trained RBM, measured.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub method: String,
    pub log_z: f64,
    pub ais: rbm_ais::RbmAis,
    pub ais_seconds: f64,
    pub held_out_ll: f64,
    pub kl: f64,
    pub updates: usize,
    pub train_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub options: Options,
    /// The truth's held-out log-likelihood (the best any model can do, up to sampling noise).
    pub truth_ll: f64,
    /// Independent Bernoulli pixels fitted to the training set: held-out LL and KL.
    pub independent_ll: f64,
    pub independent_kl: f64,
    pub rows: Vec<Row>,
}

fn tensor(v: &[f64], d: usize) -> Tensor {
    Tensor::from_slice(v).view([-1, d as i64])
}

/// Trains one RBM on `data` ([n, V], 0/1) by `method`.
pub fn train(data: &Tensor, method: Method, o: &Options) -> Rbm {
    let n = data.size()[0];
    let mut r = Rbm::init(&data.mean_dim([0].as_slice(), false, Kind::Double), o.hidden);
    let mut vel = [r.w.zeros_like(), r.b.zeros_like(), r.c.zeros_like()];
    let mut chains = data.narrow(0, 0, (o.batch as i64).min(n)).bernoulli_p(0.5);
    for _ in 0..o.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        for start in (0..n - o.batch as i64 + 1).step_by(o.batch) {
            let v = data.index_select(0, &perm.narrow(0, start, o.batch as i64));
            let mut neg = if method == Method::Cd { v.shallow_clone() } else { chains.shallow_clone() };
            for _ in 0..o.k {
                neg = r.gibbs(&neg);
            }
            let g = r.gradient(&v, &neg);
            if method == Method::Pcd {
                chains = neg;
            }
            let grads = [g.w - &r.w * o.weight_decay, g.b, g.c];
            for ((p, d), g) in [&mut r.w, &mut r.b, &mut r.c].into_iter().zip(vel.iter_mut()).zip(grads) {
                *d = &*d * o.momentum + g * o.lr;
                *p = &*p + &*d;
            }
        }
    }
    r
}

/// Every visible state and the truth's log-probability of each (the exact data distribution).
fn truth_table(bs: &BarsStripes) -> (Tensor, Tensor) {
    let states = all_states(bs.dim()).collect::<Vec<_>>();
    let states = Tensor::cat(&states, 0);
    let v: Vec<f64> = Vec::try_from(&states.flatten(0, -1)).expect("float64");
    (states, Tensor::from_slice(&bs.log_prob(&v)))
}

/// KL(data || model) = sum_v p(v) [log p(v) - log q(v)] over every state.
fn kl(log_p: &Tensor, log_q: &Tensor) -> f64 {
    (log_p.exp() * (log_p - log_q)).sum(Kind::Double).double_value(&[])
}

/// Trains CD-k and PCD RBMs and measures them against the truth and the independent baseline.
pub fn run(o: &Options, mut progress: impl FnMut(&Row)) -> crate::Result<Report> {
    let bs = BarsStripes { side: o.data.side, flip: o.data.flip };
    if bs.dim() > 20 {
        bail!(
            "--side {}: {} pixels; the exact KL enumerates all 2^V images, at most 20 pixels (side 4)",
            o.data.side,
            bs.dim()
        );
    }
    if !(o.data.flip > 0.0 && o.data.flip < 0.5) {
        bail!("--flip {}: must be in (0, 0.5)", o.data.flip);
    }
    if o.points < o.batch || o.batch == 0 || o.hidden == 0 || o.k == 0 || o.epochs == 0 {
        bail!("--points must be at least --batch, and --batch, --hidden, --k and --epochs positive");
    }
    tch::manual_seed(o.seed as i64);
    let d = bs.dim();
    let train_v = tensor(&bs.sample(o.points, o.seed), d);
    let test_raw = bs.sample(o.test_points, o.seed.wrapping_add(1_000_003));
    let test_v = tensor(&test_raw, d);
    let truth_ll = bs.log_prob(&test_raw).iter().sum::<f64>() / o.test_points as f64;
    let (states, log_p) = truth_table(&bs);
    // Independent Bernoulli pixels, add-one smoothed: log q(v) = sum_i v_i log m_i + (1 - v_i) log(1 - m_i).
    let m = (train_v.sum_dim_intlist([0].as_slice(), false, Kind::Double) + 1.0) / (o.points as f64 + 2.0);
    let indep = |v: &Tensor| v.mv(&m.log()) + (v.neg() + 1.0).mv(&(m.neg() + 1.0).log());
    let independent_ll = indep(&test_v).mean(Kind::Double).double_value(&[]);
    let independent_kl = kl(&log_p, &indep(&states));
    let mut rows = Vec::new();
    for method in [Method::Cd, Method::Pcd] {
        let started = Instant::now();
        let r = train(&train_v, method, o);
        let train_seconds = started.elapsed().as_secs_f64();
        let log_z = r.exact_log_z()?;
        let started = Instant::now();
        let ais = rbm_ais::log_z(&r, &logit_means(&train_v), o.ais_chains, o.ais_temps);
        let row = Row {
            method: match method {
                Method::Cd => format!("cd-{}", o.k),
                Method::Pcd => format!("pcd-{}", o.k),
            },
            log_z,
            ais,
            ais_seconds: started.elapsed().as_secs_f64(),
            held_out_ll: r.log_prob(&test_v, log_z).mean(Kind::Double).double_value(&[]),
            kl: kl(&log_p, &r.log_prob(&states, log_z)),
            updates: o.epochs * (o.points / o.batch),
            train_seconds,
        };
        progress(&row);
        rows.push(row);
    }
    Ok(Report { options: o.clone(), truth_ll, independent_ll, independent_kl, rows })
}

/// The AIS base's visible biases: the log-odds of the training pixels' means, clamped as
/// [`Rbm::init`] clamps them (Salakhutdinov & Murray's choice of base).
fn logit_means(v: &Tensor) -> Tensor {
    let p = v.mean_dim([0].as_slice(), false, Kind::Double).clamp(0.01, 0.99);
    p.log() - (p.neg() + 1.0).log()
}

/// The report as text.
pub fn table(r: &Report) -> String {
    let o = &r.options;
    let mut s = format!(
        "bars-and-stripes {0}x{0}, flip {1}; {2} training and {3} held-out images; RBM with {4} hidden units, \
         {5} epochs, batch {6}, lr {7}, momentum {8}, weight decay {9}; AIS {10} chains x {11} temperatures\n",
        o.data.side,
        o.data.flip,
        o.points,
        o.test_points,
        o.hidden,
        o.epochs,
        o.batch,
        o.lr,
        o.momentum,
        o.weight_decay,
        o.ais_chains,
        o.ais_temps
    );
    s += &format!("truth: held-out LL {:.4} nats\n", r.truth_ll);
    s += &format!("independent Bernoulli: held-out LL {:.4}, KL {:.4}\n", r.independent_ll, r.independent_kl);
    s += &format!(
        "{:<8} {:>10} {:>20} {:>8} {:>12} {:>8} {:>8} {:>8}\n",
        "method", "exact logZ", "AIS logZ", "AIS-ex", "held-out LL", "KL", "train s", "AIS s"
    );
    for row in &r.rows {
        s += &format!(
            "{:<8} {:>10.4} {:>12.4} ± {:<5.3} {:>8.4} {:>12.4} {:>8.4} {:>8.1} {:>8.1}\n",
            row.method,
            row.log_z,
            row.ais.log_z,
            row.ais.std_err,
            row.ais.log_z - row.log_z,
            row.held_out_ll,
            row.kl,
            row.train_seconds,
            row.ais_seconds
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run: both methods beat the independent-Bernoulli baseline by a clear margin (half
    /// its KL), stay below the truth, and AIS agrees with the exact log Z.
    #[test]
    fn cd_and_pcd_learn_beyond_the_independent_baseline() {
        tch::set_num_threads(1); // tiny tensors: thread hand-offs cost more than the work
        let o = Options { test_points: 2000, epochs: 100, ais_chains: 50, ais_temps: 2000, ..Default::default() };
        let r = run(&o, |_| {}).unwrap();
        eprintln!("{}", table(&r));
        for row in &r.rows {
            assert!(row.kl < 0.5 * r.independent_kl, "{} KL {} vs {}", row.method, row.kl, r.independent_kl);
            assert!(
                row.held_out_ll > r.independent_ll + 1.5,
                "{} {} vs {}",
                row.method,
                row.held_out_ll,
                r.independent_ll
            );
            assert!(row.held_out_ll < r.truth_ll + 0.05, "{} beats the truth", row.method);
            assert!((row.ais.log_z - row.log_z).abs() < 4.0 * row.ais.std_err + 0.05, "{:?} vs {}", row.ais, row.log_z);
        }
    }
}
