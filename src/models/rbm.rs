//! A binary restricted Boltzmann machine (Smolensky 1986; Hinton 2002), the lecture's "Historical
//! Note: CD and RBMs".
//!
//! Visible v in {0,1}^V, hidden h in {0,1}^H, E(v, h) = -b.v - c.h - v^T W h. The hidden units are
//! independent given v and the visible ones given h (block Gibbs sampling):
//!   p(h_j = 1 | v) = sigmoid(c_j + (v W)_j),   p(v_i = 1 | h) = sigmoid(b_i + (W h)_i),
//! and summing out h gives the free energy
//!   F(v) = -b.v - sum_j softplus(c_j + (v W)_j),   p(v) = exp(-F(v)) / Z.
//! The log-likelihood gradient is the Hebbian term on the data minus the anti-Hebbian term on model
//! samples, with the hidden units summed out (their conditional means):
//!   d log p(v) / dW = v p(h|v)^T - E_model[v p(h|v)^T],  likewise for b (v) and c (p(h|v)).
//! Z is exact when one layer is small: log Z = logsumexp over all 2^H hidden states of
//!   c.h + sum_i softplus(b_i + (W h)_i), or over all 2^V visible states of -F(v).
//! Everything is float64 on the CPU: the models are small and exactness is the point.
use anyhow::bail;
use tch::{Device, Kind, Tensor};

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

/// The largest layer whose states [`Rbm::exact_log_z`] enumerates.
pub const MAX_ENUMERATED: usize = 24;

/// Weights [V, H], visible biases [V], hidden biases [H].
pub struct Rbm {
    pub w: Tensor,
    pub b: Tensor,
    pub c: Tensor,
}

/// The log-likelihood gradient estimate of one batch (ascent direction).
pub struct Gradient {
    pub w: Tensor,
    pub b: Tensor,
    pub c: Tensor,
}

impl Rbm {
    /// Small random weights N(0, 0.01^2), visible biases log(p / (1 - p)) of the data's pixel means
    /// `p` (clamped to [0.01, 0.99]), hidden biases zero (Hinton 2010, "A practical guide").
    pub fn init(visible_means: &Tensor, hidden: usize) -> Rbm {
        let v = visible_means.size()[0];
        let p = visible_means.to_kind(Kind::Double).clamp(0.01, 0.99);
        Rbm {
            w: Tensor::randn([v, hidden as i64], F64) * 0.01,
            b: p.log() - (p.neg() + 1.0).log(),
            c: Tensor::zeros([hidden as i64], F64),
        }
    }

    pub fn visible(&self) -> usize {
        self.b.size()[0] as usize
    }

    pub fn hidden(&self) -> usize {
        self.c.size()[0] as usize
    }

    /// F(v) per row of v [n, V].
    pub fn free_energy(&self, v: &Tensor) -> Tensor {
        -v.mv(&self.b) - (v.mm(&self.w) + &self.c).softplus().sum_dim_intlist([1].as_slice(), false, Kind::Double)
    }

    /// p(h = 1 | v), [n, H].
    pub fn hidden_probs(&self, v: &Tensor) -> Tensor {
        (v.mm(&self.w) + &self.c).sigmoid()
    }

    /// p(v = 1 | h), [n, V].
    pub fn visible_probs(&self, h: &Tensor) -> Tensor {
        (h.mm(&self.w.tr()) + &self.b).sigmoid()
    }

    /// One block Gibbs sweep v -> h -> v'.
    pub fn gibbs(&self, v: &Tensor) -> Tensor {
        let h = self.hidden_probs(v).bernoulli();
        self.visible_probs(&h).bernoulli()
    }

    /// The Hebbian (data) minus anti-Hebbian (model samples) statistics, averaged over each set.
    pub fn gradient(&self, data: &Tensor, model: &Tensor) -> Gradient {
        let (hd, hm) = (self.hidden_probs(data), self.hidden_probs(model));
        let (nd, nm) = (data.size()[0] as f64, model.size()[0] as f64);
        Gradient {
            w: data.tr().mm(&hd) / nd - model.tr().mm(&hm) / nm,
            b: data.mean_dim([0].as_slice(), false, Kind::Double) - model.mean_dim([0].as_slice(), false, Kind::Double),
            c: hd.mean_dim([0].as_slice(), false, Kind::Double) - hm.mean_dim([0].as_slice(), false, Kind::Double),
        }
    }

    /// The exact log Z, summing over the smaller layer's 2^n states (n <= [`MAX_ENUMERATED`]).
    pub fn exact_log_z(&self) -> crate::Result<f64> {
        let (v, h) = (self.visible(), self.hidden());
        let n = v.min(h);
        if n > MAX_ENUMERATED {
            bail!("exact log Z of an RBM with {v} visible and {h} hidden units: the smaller layer has {n} units; at most {MAX_ENUMERATED} can be enumerated");
        }
        let mut parts = Vec::new();
        for states in all_states(n) {
            let t = if h <= v {
                states.mv(&self.c)
                    + (states.mm(&self.w.tr()) + &self.b).softplus().sum_dim_intlist(
                        [1].as_slice(),
                        false,
                        Kind::Double,
                    )
            } else {
                -self.free_energy(&states)
            };
            parts.push(t.logsumexp([0].as_slice(), false));
        }
        Ok(Tensor::stack(&parts, 0).logsumexp([0].as_slice(), false).double_value(&[]))
    }

    /// Exact log p(v) per row, given log Z.
    pub fn log_prob(&self, v: &Tensor, log_z: f64) -> Tensor {
        -self.free_energy(v) - log_z
    }
}

/// Every binary vector of length n (n <= [`MAX_ENUMERATED`]) as float64 rows, in chunks of at most
/// 2^16 rows; row r of the whole is the binary expansion of r (bit i = unit i).
pub fn all_states(n: usize) -> impl Iterator<Item = Tensor> {
    let total: i64 = 1 << n;
    let chunk: i64 = total.min(1 << 16);
    let bits = Tensor::arange(n as i64, (Kind::Int64, Device::Cpu));
    (0..total / chunk).map(move |k| {
        let idx = Tensor::arange_start(k * chunk, (k + 1) * chunk, (Kind::Int64, Device::Cpu)).unsqueeze(1);
        idx.bitwise_right_shift(&bits).bitwise_and(1).to_kind(Kind::Double)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_rbm(v: i64, h: i64, scale: f64) -> Rbm {
        Rbm {
            w: Tensor::randn([v, h], F64) * scale,
            b: Tensor::randn([v], F64) * scale,
            c: Tensor::randn([h], F64) * scale,
        }
    }

    /// Summing over the hidden layer, over the visible layer, and brute force over the joint
    /// (v, h) all give the same log Z.
    #[test]
    fn exact_log_z_agrees_both_ways_and_with_the_joint_sum() {
        tch::manual_seed(0);
        let r = random_rbm(5, 4, 1.0);
        let by_hidden = r.exact_log_z().unwrap();
        let t = Rbm { w: r.w.tr().contiguous(), b: r.c.copy(), c: r.b.copy() }; // the same Z, layers swapped
        let by_visible = t.exact_log_z().unwrap();
        let joint = all_states(9).next().unwrap();
        let (v, h) = (joint.narrow(1, 0, 5), joint.narrow(1, 5, 4));
        let neg_e = v.mv(&r.b) + h.mv(&r.c) + (v.mm(&r.w) * &h).sum_dim_intlist([1].as_slice(), false, Kind::Double);
        let brute = neg_e.logsumexp([0].as_slice(), false).double_value(&[]);
        assert!((by_hidden - brute).abs() < 1e-10, "{by_hidden} vs {brute}");
        assert!((by_visible - brute).abs() < 1e-10, "{by_visible} vs {brute}");
        let too_big = random_rbm(30, 30, 0.1).exact_log_z().err().unwrap().to_string();
        assert!(too_big.contains("at most 24"), "{too_big}");
    }

    /// The Hebbian minus anti-Hebbian statistics are the gradient of mean F(model) - mean F(data)
    /// (autograd), i.e. of the log-likelihood with the model term estimated by the samples.
    #[test]
    fn hebbian_gradient_is_the_free_energy_difference_gradient() {
        tch::manual_seed(1);
        let r = random_rbm(6, 3, 0.5);
        let data = Tensor::rand([10, 6], F64).round();
        let model = Tensor::rand([7, 6], F64).round();
        let g = r.gradient(&data, &model);
        let p = [
            r.w.copy().set_requires_grad(true),
            r.b.copy().set_requires_grad(true),
            r.c.copy().set_requires_grad(true),
        ];
        let ra = Rbm { w: p[0].shallow_clone(), b: p[1].shallow_clone(), c: p[2].shallow_clone() };
        let obj = ra.free_energy(&model).mean(Kind::Double) - ra.free_energy(&data).mean(Kind::Double);
        let auto = Tensor::run_backward(&[obj], &p, false, false);
        for (a, b) in auto.iter().zip([&g.w, &g.b, &g.c]) {
            assert!((a - b).abs().max().double_value(&[]) < 1e-12);
        }
    }

    /// Block Gibbs sampling leaves p(v) invariant: from exact draws of a 4-unit RBM, one sweep
    /// gives the exact distribution back (chi-square over the 16 states).
    #[test]
    fn gibbs_sweeps_keep_the_exact_distribution() {
        tch::manual_seed(2);
        let r = random_rbm(4, 3, 1.0);
        let states = all_states(4).next().unwrap();
        let p = r.log_prob(&states, r.exact_log_z().unwrap()).exp();
        assert!((p.sum(Kind::Double).double_value(&[]) - 1.0).abs() < 1e-12);
        let n = 200_000;
        let start = states.index_select(0, &p.multinomial(n, true));
        let after = r.gibbs(&r.gibbs(&start));
        let codes = after.mv(&Tensor::from_slice(&[1.0f64, 2.0, 4.0, 8.0])).to_kind(Kind::Int64);
        let counts = codes.bincount::<Tensor>(None, 16).to_kind(Kind::Double);
        let expected = &p * n as f64;
        let chi2 = ((&counts - &expected).square() / &expected).sum(Kind::Double).double_value(&[]);
        // 15 degrees of freedom: chi-square 0.999 quantile is 37.7.
        assert!(chi2 < 37.7, "chi-square {chi2}");
    }
}
