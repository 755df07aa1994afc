//! Importance-sampling maximum likelihood (Geyer 1994; seed 004, eqs. 8 and 13-14): with M draws
//! y_m ~ q and weights w_m = exp(-E(y_m)) / q(y_m),
//!   J_BL = mean_n E(x_n) + log[(1/M) sum_m w_m],
//! whose gradient is the self-normalised estimate mean_n grad E(x_n) - sum_m wbar_m grad E(y_m),
//! wbar_m = w_m / sum_k w_k. The effective sample size (sum w)^2 / sum w^2 is logged: when it
//! falls towards 1, the proposal no longer covers the model.
//!
//! The proposal q is either fixed, N(0, s^2 I), or adaptive: a diagonal Gaussian N(mu, diag(s^2))
//! over the shape of one example whose mean and per-dimension standard deviation follow the
//! model. After each step they move towards the moments of that step's self-normalised weighted
//! draws, mu <- (1 - r) mu + r sum_m wbar_m y_m and s <- max(floor, (1 - r) s + r sd_wbar(y)), so
//! q depends on theta through the weights, as seed 004's q2 = N(2, (2 + theta)^2) does through
//! theta itself. mu and s are non-trainable variables `objective.is_mean` / `objective.is_std`
//! of the VarStore: the optimiser leaves them alone and checkpoints save and restore them.
use super::{no_check, Inputs, Objective, Registration, Terms};
use crate::config::{IsProposal, TrainConfig};
use crate::models::EnergyNet;
use crate::sampling::independent::GaussianProposal;
use crate::sampling::Negatives;
use std::cell::RefCell;
use tch::{nn, Kind, Tensor};

/// The adaptive proposal's state and its update rule.
pub struct Adaptive {
    /// Mean and standard deviation, each of the shape of one example.
    pub mean: Tensor,
    pub std: Tensor,
    /// Damping rate of the moment matching, in (0, 1].
    pub rate: f64,
    /// Floor on each standard deviation.
    pub min_std: f64,
    /// The moments matched at the last loss evaluation, applied when the step is committed.
    pending: RefCell<Option<(Tensor, Tensor)>>,
}

impl Adaptive {
    /// Registers mean 0 and standard deviation `std0` (at least `min_std`) under `p`, for examples
    /// of shape `shape`.
    pub fn new(p: &nn::Path, shape: &[i64], std0: f64, rate: f64, min_std: f64) -> Self {
        let mean = p.zeros_no_train("is_mean", shape);
        let mut std = p.ones_no_train("is_std", shape);
        tch::no_grad(|| {
            let _ = std.fill_(std0.max(min_std));
        });
        Adaptive { mean, std, rate, min_std, pending: RefCell::new(None) }
    }

    /// n draws and their log q, per example.
    fn draw(&self, n: i64) -> (Tensor, Tensor) {
        let mut dims = vec![n];
        dims.extend(self.mean.size());
        let z = Tensor::randn(dims.as_slice(), (Kind::Float, self.mean.device()));
        let y = &z * &self.std + &self.mean;
        let d = self.mean.numel() as f64;
        let log_q = z.square().flatten(1, -1).sum_dim_intlist([1].as_slice(), false, Kind::Float) * -0.5
            - self.std.log().sum(Kind::Float)
            - 0.5 * d * (2.0 * std::f64::consts::PI).ln();
        (y, log_q)
    }

    /// Damped, floored moment matching to draws `y` with normalised weights `wbar`; held until
    /// [`Adaptive::commit`].
    fn propose_update(&self, y: &Tensor, wbar: &Tensor) {
        let next = tch::no_grad(|| {
            let w = wbar.view([-1, 1]);
            let flat = y.flatten(1, -1);
            let m = (&flat * &w).sum_dim_intlist([0].as_slice(), false, Kind::Float);
            let v = ((&flat - &m).square() * &w).sum_dim_intlist([0].as_slice(), false, Kind::Float);
            let shape = self.mean.size();
            let r = self.rate;
            let mean = &self.mean * (1.0 - r) + m.view(shape.as_slice()) * r;
            let std = (&self.std * (1.0 - r) + v.sqrt().view(shape.as_slice()) * r).clamp_min(self.min_std);
            (mean, std)
        });
        *self.pending.borrow_mut() = Some(next);
    }

    /// Moves mean and standard deviation to the moments matched at the last step.
    pub fn commit(&self) {
        if let Some((m, s)) = self.pending.borrow_mut().take() {
            tch::no_grad(|| {
                self.mean.shallow_clone().copy_(&m);
                self.std.shallow_clone().copy_(&s);
            });
        }
    }
}

/// IS-MLE with `objective.is_samples` draws per step from a fixed or adaptive Gaussian proposal.
pub const REGISTRATION: Registration = Registration {
    name: "is-mle",
    summary: "importance-sampling MLE (Geyer 1994) with a fixed or adaptive Gaussian proposal",
    check: no_check,
    build: |cfg, p| Box::new(IsMle::from_config(cfg, p)),
};

pub enum Proposal {
    Fixed(GaussianProposal),
    Adaptive(Adaptive),
}

pub struct IsMle {
    pub proposal: Proposal,
    pub samples: i64,
}

impl IsMle {
    /// The proposal of `objective.is_proposal`; the adaptive one's state goes under `p/objective`.
    pub fn from_config(cfg: &TrainConfig, p: &nn::Path) -> Self {
        let o = &cfg.objective;
        let proposal = match o.is_proposal {
            IsProposal::Fixed => Proposal::Fixed(GaussianProposal { mean: 0.0, std: o.is_proposal_std }),
            IsProposal::Adaptive => {
                let shape: Vec<i64> = cfg.model.input_shape.iter().map(|&d| d as i64).collect();
                let state = &(p / "objective");
                Proposal::Adaptive(Adaptive::new(state, &shape, o.is_proposal_std, o.is_adapt_rate, o.is_min_std))
            }
        };
        IsMle { proposal, samples: o.is_samples as i64 }
    }
}

impl Objective for IsMle {
    fn name(&self) -> &'static str {
        "is-mle"
    }

    fn loss(&self, net: &EnergyNet, batch: &Inputs, _n: Option<&mut Negatives>) -> Terms {
        let x = batch.x;
        let b = x.size()[0];
        let (y, log_q) = match &self.proposal {
            Proposal::Fixed(q) => {
                let y = q.draw(x, self.samples);
                let log_q = q.log_density(&y);
                (y, log_q)
            }
            Proposal::Adaptive(a) => a.draw(self.samples),
        };
        let e = net.energy(&Tensor::cat(&[x.shallow_clone(), y.shallow_clone()], 0), true);
        let (e_x, e_y) = (e.narrow(0, 0, b), e.narrow(0, b, self.samples));
        let log_w = -&e_y - log_q;
        let log_z = log_w.logsumexp([0].as_slice(), false) - (self.samples as f64).ln();
        let loss = e_x.mean(Kind::Float) + &log_z;
        let wbar = log_w.detach().softmax(0, Kind::Float);
        let ess = wbar.square().sum(Kind::Float).reciprocal();
        let mut logs = vec![
            ("e_data", e_x.mean(Kind::Float).detach()),
            ("log_z", log_z.detach()),
            ("ess", ess),
            ("loss", loss.detach()),
        ];
        if let Proposal::Adaptive(a) = &self.proposal {
            logs.push(("q_std", a.std.mean(Kind::Float)));
            a.propose_update(&y, &wbar);
        }
        Terms { loss, logs, samples: None }
    }

    fn commit(&self) {
        if let Proposal::Adaptive(a) = &self.proposal {
            a.commit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Weighted draws of a wider Gaussian pull a narrow proposal towards it: the matched moments
    /// are the target's, reached at the damping rate, and the floor holds.
    #[test]
    fn adaptive_proposal_moves_to_the_weighted_moments_with_damping_and_floor() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let a = Adaptive::new(&(vs.root() / "objective"), &[2], 0.5, 0.25, 0.05);
        // The variables are registered, untrainable.
        let vars = vs.variables();
        assert!(vars.contains_key("objective.is_mean") && vars.contains_key("objective.is_std"));
        assert!(vars.values().all(|t| !t.requires_grad()));
        // Equal weights on draws of N((1, -2), diag(3^2, 0.001^2)): one step moves a quarter of the way.
        let n = 200_000;
        let y = Tensor::randn([n, 2], (Kind::Float, Device::Cpu)) * Tensor::from_slice(&[3.0f32, 0.001])
            + Tensor::from_slice(&[1.0f32, -2.0]);
        let w = Tensor::ones([n], (Kind::Float, Device::Cpu)) / n as f64;
        a.propose_update(&y, &w);
        // Nothing moves before the commit.
        assert_eq!(Vec::<f32>::try_from(&a.std).unwrap(), vec![0.5, 0.5]);
        a.commit();
        let m: Vec<f32> = Vec::try_from(&a.mean).unwrap();
        let s: Vec<f32> = Vec::try_from(&a.std).unwrap();
        assert!((m[0] - 0.25).abs() < 0.01 && (m[1] + 0.5).abs() < 0.01, "{m:?}");
        assert!((s[0] - (0.75 * 0.5 + 0.25 * 3.0)).abs() < 0.01, "{s:?}");
        assert!((s[1] - (0.75 * 0.5 + 0.25 * 0.001)).abs() < 1e-3, "{s:?}");
        for _ in 0..60 {
            a.propose_update(&y, &w);
            a.commit();
        }
        let s: Vec<f32> = Vec::try_from(&a.std).unwrap();
        assert!((s[0] - 3.0).abs() < 0.02 && s[1] == 0.05, "{s:?}");
        // log q of the draws is that of the diagonal Gaussian.
        let (d, log_q) = a.draw(5);
        let mean: Vec<f32> = Vec::try_from(&a.mean).unwrap();
        let dv: Vec<f32> = Vec::try_from(&d.flatten(0, -1)).unwrap();
        let lq: Vec<f32> = Vec::try_from(&log_q).unwrap();
        for (p, l) in dv.chunks(2).zip(lq) {
            let want: f64 = (0..2)
                .map(|k| {
                    let z = (p[k] - mean[k]) as f64 / s[k] as f64;
                    -0.5 * z * z - (s[k] as f64).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
                })
                .sum();
            assert!((l as f64 - want).abs() < 1e-3 * want.abs().max(1.0), "{l} vs {want}");
        }
    }

    /// On images the state has the shape of one example, one mean and std per pixel and channel.
    #[test]
    fn adaptive_proposal_takes_the_shape_of_an_image() {
        let vs = nn::VarStore::new(Device::Cpu);
        let a = Adaptive::new(&(vs.root() / "objective"), &[3, 4, 4], 1.0, 0.5, 0.05);
        let (y, log_q) = a.draw(6);
        assert_eq!((y.size(), log_q.size()), (vec![6, 3, 4, 4], vec![6]));
        let w = Tensor::ones([6], (Kind::Float, Device::Cpu)) / 6.0;
        a.propose_update(&(y * 0.0 + 2.0), &w);
        a.commit();
        assert_eq!(a.mean.size(), vec![3, 4, 4]);
        assert!((a.mean.mean(Kind::Float).double_value(&[]) - 1.0).abs() < 1e-6);
        // All draws equal: the matched std is 0, so the damped one halves, above the floor.
        assert!((a.std.mean(Kind::Float).double_value(&[]) - 0.5).abs() < 1e-6);
    }
}
