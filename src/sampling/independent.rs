//! Samplers that use an independent proposal q whose density is known (seed 004, section 6):
//! - Metropolis-Hastings with an independent proposal: y ~ q, accepted with probability
//!   min(1, [exp(-E(y)) q(x)] / [exp(-E(x)) q(y)]);
//! - importance sampling with resampling: z_1..z_M ~ q, weights w_m = exp(-E(z_m)) / q(z_m),
//!   then M draws from {z_m} with probabilities w_m / sum w (multinomial resampling).
//!
//! The proposal here is N(mean, std^2 I).
use super::mh::{acceptance_rate, chain_mask};
use super::{Chains, Sampler};
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct GaussianProposal {
    pub mean: f64,
    pub std: f64,
}

impl GaussianProposal {
    /// n draws shaped like `like` (batch first).
    pub fn draw(&self, like: &Tensor, n: i64) -> Tensor {
        let mut dims = like.size();
        dims[0] = n;
        Tensor::randn(dims.as_slice(), (Kind::Float, like.device())) * self.std + self.mean
    }

    /// log q per example.
    pub fn log_density(&self, x: &Tensor) -> Tensor {
        let flat = x.flatten(1, -1);
        let d = flat.size()[1] as f64;
        let s2 = self.std * self.std;
        (flat - self.mean).square().sum_dim_intlist([1].as_slice(), false, Kind::Float) * (-0.5 / s2)
            - 0.5 * d * (2.0 * std::f64::consts::PI * s2).ln()
    }
}

/// Runs `steps` independent-proposal MH steps from `x0`; returns samples and the acceptance rate.
pub fn metropolis_hastings(
    energy: &dyn Fn(&Tensor) -> Tensor,
    q: &GaussianProposal,
    x0: &Tensor,
    steps: usize,
) -> (Tensor, f64) {
    IndependentMh { q: q.clone() }.sample_with_rate(energy, x0, steps)
}

/// Metropolis-Hastings with the independent proposal `q`, as a chain sampler of the trainer.
#[derive(Debug, Clone)]
pub struct IndependentMh {
    pub q: GaussianProposal,
}

impl Sampler for IndependentMh {
    fn name(&self) -> &'static str {
        "independent-mh"
    }

    fn sample(&self, energy: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, steps: usize) -> Chains {
        tch::no_grad(|| {
            let q = &self.q;
            let mut x = x0.detach();
            let mut log_target = -energy(&x) - q.log_density(&x);
            let mut accepted = Tensor::zeros([x.size()[0]], (Kind::Float, x.device()));
            for _ in 0..steps {
                let y = q.draw(&x, x.size()[0]);
                let log_y = -energy(&y) - q.log_density(&y);
                let accept = Tensor::rand_like(&log_y).log().lt_tensor(&(&log_y - &log_target));
                x = y.where_self(&chain_mask(&accept, &x), &x);
                log_target = log_y.where_self(&accept, &log_target);
                accepted += accept.to_kind(Kind::Float);
            }
            Chains { x, acceptance: acceptance_rate(&accepted, steps) }
        })
    }
}

/// Importance sampling with resampling as a sampler of the trainer: every draw of n points
/// resamples them from `proposals` fresh draws of `q` (the chains' starting points and `steps`
/// play no part: the draws are independent of the past).
#[derive(Debug, Clone)]
pub struct ImportanceResampling {
    pub q: GaussianProposal,
    pub proposals: i64,
}

impl Sampler for ImportanceResampling {
    fn name(&self) -> &'static str {
        "importance-resampling"
    }

    fn sample(&self, energy: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, _steps: usize) -> Chains {
        let n = x0.size()[0];
        let (z, w) = weighted_proposals(energy, &self.q, x0, self.proposals);
        let idx = tch::no_grad(|| w.multinomial(n, true));
        Chains { x: z.index_select(0, &idx), acceptance: None }
    }
}

/// `m` draws of q shaped like `like`, with their normalised importance weights exp(-E) / q.
fn weighted_proposals(
    energy: &dyn Fn(&Tensor) -> Tensor,
    q: &GaussianProposal,
    like: &Tensor,
    m: i64,
) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let z = q.draw(like, m);
        let log_w = -energy(&z) - q.log_density(&z);
        (z, log_w.softmax(0, Kind::Double))
    })
}

/// Importance sampling with resampling: `m` proposals, `m` resampled points, and the effective
/// sample size of the weights.
pub fn importance_resample(
    energy: &dyn Fn(&Tensor) -> Tensor,
    q: &GaussianProposal,
    like: &Tensor,
    m: i64,
) -> (Tensor, f64) {
    let (z, w) = weighted_proposals(energy, q, like, m);
    let ess = w.square().sum(Kind::Double).reciprocal().double_value(&[]);
    let idx = w.multinomial(m, true);
    (z.index_select(0, &idx), ess)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// E(x) = |x - 1|^2 / (2 * 0.5^2): N(1, 0.25 I) in 2-D.
    fn target(x: &Tensor) -> Tensor {
        (x - 1.0).square().sum_dim_intlist([1].as_slice(), false, Kind::Float) * 2.0
    }

    fn check(name: &str, x: &Tensor) {
        let mean: Vec<f64> = Vec::try_from(&x.mean_dim([0].as_slice(), false, Kind::Double)).unwrap();
        let var: Vec<f64> = Vec::try_from(&x.to_kind(Kind::Double).var_dim([0].as_slice(), true, false)).unwrap();
        // 20,000 points: standard errors 0.0035 (mean) and 0.0025 (variance); four of them.
        assert!(mean.iter().all(|m| (m - 1.0).abs() < 0.02), "{name} mean {mean:?}");
        assert!(var.iter().all(|v| (v - 0.25).abs() < 0.015), "{name} var {var:?}");
    }

    #[test]
    fn independent_mh_and_importance_resampling_hit_the_target_moments() {
        tch::manual_seed(5);
        let q = GaussianProposal { mean: 0.0, std: 2.0 };
        let x0 = Tensor::zeros([20_000, 2], (Kind::Float, Device::Cpu));
        let (x, rate) = metropolis_hastings(&target, &q, &x0, 200);
        check("MH", &x);
        // Acceptance of an independence sampler with this proposal: well inside (0, 1).
        assert!(rate > 0.02 && rate < 0.5, "acceptance {rate}");
        let (x, ess) = importance_resample(&target, &q, &x0, 200_000);
        // Resampled points repeat; their moments still match up to the resampling noise.
        let x = x.narrow(0, 0, 20_000);
        check("IS-resampling", &x);
        assert!(ess > 1_000.0 && ess < 200_000.0, "ESS {ess}");
    }
}
