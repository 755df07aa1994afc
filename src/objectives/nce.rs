//! Noise-contrastive estimation (Gutmann & Hyvarinen 2010): logistic classification of data
//! against as many samples of a noise density q = N(0, s^2 I) that is known exactly, with the
//! model log p(u) = -E(u) - c and c (log Z) a learnt scalar `objective.log_z`:
//!   G(u) = log p(u) - log q(u),  J = E_data[softplus(-G(x))] + E_q[softplus(G(y))].
use super::{no_check, Inputs, Objective, Registration, Terms};
use crate::models::EnergyNet;
use crate::sampling::independent::GaussianProposal;
use crate::sampling::Negatives;
use tch::{nn, Kind, Tensor};

/// NCE against N(0, `objective.nce_noise_std`^2 I), log Z learnt as `objective.log_z`.
pub const REGISTRATION: Registration = Registration {
    name: "nce",
    summary: "noise-contrastive estimation (Gutmann & Hyvarinen 2010) with a learnt log Z",
    check: no_check,
    build: |cfg, p| Box::new(Nce::new(&(p / "objective"), cfg.objective.nce_noise_std)),
};

pub struct Nce {
    pub noise_std: f64,
    /// The learnt log-partition estimate c.
    pub log_z: Tensor,
}

impl Nce {
    /// Registers the learnt scalar under `p` (saved and restored with the weights).
    pub fn new(p: &nn::Path, noise_std: f64) -> Self {
        Nce { noise_std, log_z: p.var("log_z", &[1], nn::Init::Const(0.0)) }
    }

    /// log N(u; 0, s^2 I) per example.
    fn log_q(&self, u: &Tensor) -> Tensor {
        GaussianProposal { mean: 0.0, std: self.noise_std }.log_density(u)
    }
}

impl Objective for Nce {
    fn name(&self) -> &'static str {
        "nce"
    }

    fn loss(&self, net: &EnergyNet, batch: &Inputs, _n: Option<&mut Negatives>) -> Terms {
        let x = batch.x;
        let b = x.size()[0];
        let noise = x.randn_like() * self.noise_std;
        let e = net.energy(&Tensor::cat(&[x.shallow_clone(), noise.shallow_clone()], 0), true);
        let log_p = -&e - &self.log_z;
        let g_data = log_p.narrow(0, 0, b) - self.log_q(x);
        let g_noise = log_p.narrow(0, b, b) - self.log_q(&noise);
        let loss = (-&g_data).softplus().mean(Kind::Float) + g_noise.softplus().mean(Kind::Float);
        let acc = (g_data.gt(0.0).to_kind(Kind::Float).mean(Kind::Float)
            + g_noise.lt(0.0).to_kind(Kind::Float).mean(Kind::Float))
            * 0.5;
        let logs = vec![
            ("e_data", e.narrow(0, 0, b).mean(Kind::Float).detach()),
            ("log_z", self.log_z.detach().view([])),
            ("nce_acc", acc.detach()),
            ("loss", loss.detach()),
        ];
        Terms { loss, logs, samples: None }
    }
}
