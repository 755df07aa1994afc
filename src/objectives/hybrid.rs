//! JEM's hybrid objective and IGEBM's contrastive objective, which share one form:
//!
//!   L = ce * CE(f(x), y)                              (p(y|x), JEM)
//!     + px * (mean E(x+) - mean E(x-))                (p(x): the maximum-likelihood gradient estimate)
//!     + pxy * (mean E(x+|y) - mean E(x-_y|y))         (p(x|y), JEM's optional term, E(x|y) = -f(x)[y])
//!     + alpha * (mean E(x+)^2 + mean E(x-)^2)         (IGEBM's energy-magnitude penalty)
//!
//! x- are SGLD samples of the model, detached: from the replay buffer (JEM, IGEBM, PCD) or, for
//! CD-k, k steps from the data batch itself. The data batch and the samples go through the
//! network in one training forward pass (one spectral-norm power iteration per step), and the
//! logits of the data half serve the cross-entropy too: no forward pass is repeated.
use super::{no_check, Objective, Registration, Terms};
use crate::config::TrainConfig;
use crate::models::EnergyNet;
use crate::sampling::{ChainUse, Negatives};
use anyhow::bail;
use tch::{nn, Kind, Reduction, Tensor};

pub struct Hybrid {
    pub name: &'static str,
    pub ce_weight: f64,
    pub px_weight: f64,
    pub pxy_weight: f64,
    pub alpha: f64,
    /// Where the chains start: the buffer (restarted or not) or, for CD-k, the data batch.
    pub chains: ChainUse,
}

impl Hybrid {
    /// The generative objectives' form (no cross-entropy, no p(x|y)) from `[objective]`.
    fn generative(name: &'static str, cfg: &TrainConfig, chains: ChainUse) -> Box<dyn Objective> {
        let o = &cfg.objective;
        Box::new(Hybrid { name, ce_weight: 0.0, px_weight: o.px_weight, pxy_weight: 0.0, alpha: o.alpha, chains })
    }
}

/// JEM's hybrid: cross-entropy + p(x) [+ p(x|y)], persistent chains with restarts.
pub const JEM: Registration = Registration {
    name: "jem",
    summary: "JEM's hybrid: CE on labelled data + the p(x) term [+ the p(x|y) term]",
    check: |cfg| {
        if !cfg.model.is_conditional() {
            bail!("key `objective.name` = \"jem\": needs a classifier head (model.head = \"classifier\")");
        }
        Ok(())
    },
    build: |cfg: &TrainConfig, _: &nn::Path| {
        let o = &cfg.objective;
        Box::new(Hybrid {
            name: "jem",
            ce_weight: o.ce_weight,
            px_weight: o.px_weight,
            pxy_weight: o.pxy_weight,
            alpha: o.alpha,
            chains: ChainUse::Persistent { restarts: true },
        })
    },
};

/// IGEBM: the contrastive p(x) term with the energy-magnitude penalty; chains restarted at 5%.
pub const IGEBM: Registration = Registration {
    name: "igebm",
    summary: "IGEBM's contrastive divergence with the energy-magnitude penalty",
    check: no_check,
    build: |cfg, _| Hybrid::generative("igebm", cfg, ChainUse::Persistent { restarts: true }),
};

/// Persistent contrastive divergence (Tieleman 2008): persistent chains, never restarted.
pub const PCD: Registration = Registration {
    name: "pcd",
    summary: "persistent contrastive divergence (Tieleman 2008): persistent chains, never restarted",
    check: |cfg| {
        if !cfg.buffer.enabled {
            bail!("key `objective.name` = \"pcd\": persistent chains need the buffer (buffer.enabled = true)");
        }
        Ok(())
    },
    build: |cfg, _| Hybrid::generative("pcd", cfg, ChainUse::Persistent { restarts: false }),
};

/// CD-k (Hinton 2002): chains started at the data batch, `sgld.steps` = k steps.
pub const CD: Registration = Registration {
    name: "cd",
    summary: "CD-k (Hinton 2002): chains started at the data batch, sgld.steps = k",
    check: no_check,
    build: |cfg, _| Hybrid::generative("cd", cfg, ChainUse::FromData),
};

impl Objective for Hybrid {
    fn name(&self) -> &'static str {
        self.name
    }

    fn chain_use(&self) -> ChainUse {
        self.chains
    }

    fn loss(&self, net: &EnergyNet, x: &Tensor, y: Option<&Tensor>, negatives: Option<&mut Negatives>) -> Terms {
        let negatives = negatives.expect("the hybrid objective is given the chains it declares");
        let b = x.size()[0];
        let generative = self.px_weight > 0.0 || self.alpha > 0.0;
        let mut parts = vec![x.shallow_clone()];
        // SGLD runs the network in evaluation mode (as JEM does).
        let energy = |x: &Tensor| net.energy(x, false);
        let x_q = generative.then(|| match self.chains {
            ChainUse::FromData => negatives.sample_from(&energy, x),
            _ => negatives.sample(&energy, b, None),
        });
        if let Some(q) = &x_q {
            parts.push(q.shallow_clone());
        }
        let x_qy = match (self.pxy_weight > 0.0, y) {
            (true, Some(y)) => Some(negatives.sample(&|x: &Tensor| net.conditional_energy(x, y, false), b, Some(y))),
            _ => None,
        };
        if let Some(q) = &x_qy {
            parts.push(q.shallow_clone());
        }
        let out = net.forward(&Tensor::cat(&parts, 0), true);
        let e_data = out.energy.narrow(0, 0, b);
        let mut loss = x.zeros_like().sum(Kind::Float);
        let mut logs: Vec<(&'static str, Tensor)> = vec![("e_data", e_data.mean(Kind::Float).detach())];
        if let (Some(logits), Some(y)) = (&out.logits, y) {
            let l_data = logits.narrow(0, 0, b);
            let ce = l_data.cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, 0.0);
            let acc = l_data.argmax(1, false).eq_tensor(y).to_kind(Kind::Float).mean(Kind::Float);
            if self.ce_weight > 0.0 {
                loss += &ce * self.ce_weight;
            }
            logs.push(("ce", ce.detach()));
            logs.push(("acc", acc.detach()));
        }
        if x_q.is_some() {
            let e_q = out.energy.narrow(0, b, b);
            let gap = e_data.mean(Kind::Float) - e_q.mean(Kind::Float);
            loss += &gap * self.px_weight;
            if self.alpha > 0.0 {
                let reg = e_data.square().mean(Kind::Float) + e_q.square().mean(Kind::Float);
                loss += &reg * self.alpha;
                logs.push(("reg", reg.detach()));
            }
            logs.push(("e_samples", e_q.mean(Kind::Float).detach()));
            logs.push(("gap", gap.detach()));
        }
        if let (Some(_), Some(y), Some(logits)) = (&x_qy, y, &out.logits) {
            let idx = y.view([-1, 1]);
            let f_data = logits.narrow(0, 0, b).gather(1, &idx, false);
            let f_q = logits.narrow(0, parts.len() as i64 * b - b, b).gather(1, &idx, false);
            let term = f_q.mean(Kind::Float) - f_data.mean(Kind::Float);
            loss += &term * self.pxy_weight;
            logs.push(("pxy", term.detach()));
        }
        if let Some(a) = negatives.take_acceptance() {
            logs.push(("acceptance", a));
        }
        logs.push(("loss", loss.detach()));
        Terms { loss, logs, samples: x_q.or(x_qy) }
    }
}
