//! Importance-sampling maximum likelihood (Geyer 1994; seed 004, eqs. 8 and 13-14): with M draws
//! y_m ~ q = N(0, s^2 I) and weights w_m = exp(-E(y_m)) / q(y_m),
//!   J_BL = mean_n E(x_n) + log[(1/M) sum_m w_m],
//! whose gradient is the self-normalised estimate mean_n grad E(x_n) - sum_m wbar_m grad E(y_m),
//! wbar_m = w_m / sum_k w_k. The effective sample size (sum w)^2 / sum w^2 is logged: when it
//! falls towards 1, the proposal no longer covers the model.
use super::{Negatives, Objective, Terms};
use crate::models::EnergyNet;
use crate::sampling::independent::GaussianProposal;
use tch::{Kind, Tensor};

pub struct IsMle {
    pub proposal_std: f64,
    pub samples: i64,
}

impl Objective for IsMle {
    fn name(&self) -> &'static str {
        "is-mle"
    }

    fn loss(&self, net: &EnergyNet, x: &Tensor, _y: Option<&Tensor>, _n: &mut Negatives) -> Terms {
        let b = x.size()[0];
        let q = GaussianProposal { mean: 0.0, std: self.proposal_std };
        let y = q.draw(x, self.samples);
        let e = net.energy(&Tensor::cat(&[x.shallow_clone(), y.shallow_clone()], 0), true);
        let (e_x, e_y) = (e.narrow(0, 0, b), e.narrow(0, b, self.samples));
        let log_w = -&e_y - q.log_density(&y);
        let log_z = log_w.logsumexp([0].as_slice(), false) - (self.samples as f64).ln();
        let loss = e_x.mean(Kind::Float) + &log_z;
        let wbar = log_w.detach().softmax(0, Kind::Float);
        let ess = wbar.square().sum(Kind::Float).reciprocal();
        let logs = vec![
            ("e_data", e_x.mean(Kind::Float).detach()),
            ("log_z", log_z.detach()),
            ("ess", ess),
            ("loss", loss.detach()),
        ];
        Terms { loss, logs, samples: None }
    }
}
