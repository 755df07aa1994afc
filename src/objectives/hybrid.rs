//! JEM's hybrid objective and IGEBM's contrastive objective, which share one form:
//!
//!   L = ce * CE(f(x), y)                              (p(y|x), JEM)
//!     + px * (mean E(x+) - mean E(x-))                (p(x): the maximum-likelihood gradient estimate)
//!     + pxy * (mean E(x+|y) - mean E(x-_y|y))         (p(x|y), JEM's optional term, E(x|y) = -f(x)[y])
//!     + alpha * (mean E(x+)^2 + mean E(x-)^2)         (IGEBM's energy-magnitude penalty)
//!
//! x- are SGLD samples of the model, detached: from the replay buffer (JEM, IGEBM, PCD) or, for
//! CD-k, k steps from the data batch itself. x+ is the data batch, or the p(x) term's own plain
//! batch (`data.px_batch = "plain"`, SADA-JEM). Without BatchNorm the data and the samples go
//! through the network in one training forward pass (one spectral-norm power iteration per step),
//! and the logits of the data serve the cross-entropy too; with BatchNorm every part is its own
//! pass (see [`forward_parts`]).
use super::{no_check, Inputs, Objective, Registration, Terms};
use crate::config::{Norm, TrainConfig};
use crate::models::{EnergyNet, Output};
use crate::sampling::{ChainUse, Energy, Negatives};
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
        if cfg.objective.pxy_weight > 0.0 && cfg.buffer.enabled && !cfg.buffer.per_class {
            bail!(
                "key `objective.pxy_weight` = {}: the p(x|y) term samples each class from its own chains; set buffer.per_class = true",
                cfg.objective.pxy_weight
            );
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

    fn loss(&self, net: &EnergyNet, batch: &Inputs, negatives: Option<&mut Negatives>) -> Terms {
        let negatives = negatives.expect("the hybrid objective is given the chains it declares");
        let (x, y) = (batch.x, batch.y);
        // The data of the p(x) term: its own plain batch (SADA-JEM) or the classifier's.
        let x_pos = batch.x_px.unwrap_or(x);
        let generative = self.px_weight > 0.0 || self.alpha > 0.0;
        // SGLD runs the network in evaluation mode (as JEM does).
        let energy = Energy::Net(net);
        let x_q = generative.then(|| match self.chains {
            ChainUse::FromData => negatives.sample_from(energy, x_pos),
            _ => negatives.sample(energy, x_pos.size()[0], None),
        });
        let x_qy = match (self.pxy_weight > 0.0, y) {
            (true, Some(y)) => {
                let conditional = |x: &Tensor| net.conditional_energy(x, y, false);
                Some(negatives.sample(Energy::Fn(&conditional), x.size()[0], Some(y)))
            }
            _ => None,
        };
        let mut outs = forward_parts(net, &[Some(x), batch.x_px, x_q.as_ref(), x_qy.as_ref()]).into_iter();
        let out_x = outs.next().flatten().expect("the data batch is always passed");
        let out_px = outs.next().flatten();
        let (out_q, out_qy) = (outs.next().flatten(), outs.next().flatten());
        let e_pos = &out_px.as_ref().unwrap_or(&out_x).energy;
        let mut loss = x.zeros_like().sum(Kind::Float);
        let mut logs: Vec<(&'static str, Tensor)> = vec![("e_data", e_pos.mean(Kind::Float).detach())];
        if let (Some(logits), Some(y)) = (&out_x.logits, y) {
            let ce = logits.cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, 0.0);
            let acc = logits.argmax(1, false).eq_tensor(y).to_kind(Kind::Float).mean(Kind::Float);
            if self.ce_weight > 0.0 {
                loss += &ce * self.ce_weight;
            }
            logs.push(("ce", ce.detach()));
            logs.push(("acc", acc.detach()));
        }
        if let Some(out_q) = &out_q {
            let e_q = &out_q.energy;
            let gap = e_pos.mean(Kind::Float) - e_q.mean(Kind::Float);
            loss += &gap * self.px_weight;
            if self.alpha > 0.0 {
                let reg = e_pos.square().mean(Kind::Float) + e_q.square().mean(Kind::Float);
                loss += &reg * self.alpha;
                logs.push(("reg", reg.detach()));
            }
            logs.push(("e_samples", e_q.mean(Kind::Float).detach()));
            logs.push(("gap", gap.detach()));
        }
        if let (Some(out_qy), Some(y), Some(logits)) = (&out_qy, y, &out_x.logits) {
            let idx = y.view([-1, 1]);
            let f_data = logits.gather(1, &idx, false);
            let f_q = out_qy.logits.as_ref().expect("a classifier head").gather(1, &idx, false);
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

/// The training-mode outputs of each present part. Without BatchNorm the parts go through the
/// network as one batch (one spectral-norm power iteration per step) and the outputs are split;
/// with BatchNorm each part is its own pass, as JEM runs them, so the batch statistics of the data
/// never mix with those of the samples (and the classifier's logits do not depend on them).
fn forward_parts(net: &EnergyNet, parts: &[Option<&Tensor>]) -> Vec<Option<Output>> {
    if net.cfg.norm == Norm::Batch {
        return parts.iter().map(|p| p.map(|x| net.forward(x, true))).collect();
    }
    let present: Vec<Tensor> = parts.iter().flatten().map(|t| t.shallow_clone()).collect();
    let out = net.forward(&Tensor::cat(&present, 0), true);
    let mut at = 0;
    parts
        .iter()
        .map(|p| {
            p.map(|x| {
                let n = x.size()[0];
                let part = Output {
                    logits: out.logits.as_ref().map(|l| l.narrow(0, at, n)),
                    energy: out.energy.narrow(0, at, n),
                };
                at += n;
                part
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Trainer;
    use tch::Device;

    /// The cross-entropy of a batch, with fresh samples drawn from a buffer filled with `fill`.
    /// The cross-entropy of one batch under `norm`, with the replay buffer filled with each of
    /// `fills` in turn: one network and one batch (drawn once, so tests running beside this one
    /// and drawing from libtorch's global generator cannot make the two differ).
    fn ce_with_buffer(norm: &str, fills: [f64; 2]) -> [f64; 2] {
        let text = format!("[model]\npreset = \"convnet-small\"\nwidth = 4\nnorm = \"{norm}\"\n[buffer]\nsize = 16\nreinit_fraction = 0.0\n[sgld]\nsteps = 1\n");
        let cfg = TrainConfig::parse(&text, &[]).unwrap();
        let mut t = Trainer::new(&cfg, Device::Cpu, 1.0).unwrap();
        let x = Tensor::rand([8, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let y = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        fills.map(|fill| {
            let b = t.negatives.as_mut().unwrap().buffer.as_mut().unwrap();
            b.data = b.data.full_like(fill);
            let terms = t.objective.loss(&t.net, &Inputs::new(&x, Some(&y)), t.negatives.as_mut());
            terms.logs.iter().find(|(k, _)| *k == "ce").unwrap().1.double_value(&[])
        })
    }

    /// With BatchNorm the data and the samples are separate passes: the classifier's loss on a
    /// batch does not depend on the samples drawn beside it. In one shared pass (as without a
    /// norm, where it is harmless) it does: the check can fail.
    #[test]
    fn batch_norm_statistics_never_mix_data_and_samples() {
        let [a, b] = ce_with_buffer("batch", [-0.9, 0.9]);
        assert_eq!(a, b, "the samples changed the data's logits under BatchNorm");
        let cfg =
            TrainConfig::parse("[model]\npreset = \"convnet-small\"\nwidth = 4\nnorm = \"batch\"\n", &[]).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EnergyNet::new(&vs.root(), &cfg.model);
        let x = Tensor::rand([8, 3, 32, 32], (Kind::Float, Device::Cpu));
        let q = Tensor::rand([8, 3, 32, 32], (Kind::Float, Device::Cpu)) * 5.0;
        let joint = net.forward(&Tensor::cat(&[&x, &q], 0), true).energy.narrow(0, 0, 8);
        let alone = net.forward(&x, true).energy;
        assert!(!joint.allclose(&alone, 1e-5, 1e-5, false), "a shared pass would not show the mixing");
    }

    /// A p(x|y) term needs per-class chains, and per-class blocks need a size the classes divide.
    #[test]
    fn the_conditional_term_needs_per_class_blocks_of_equal_size() {
        let parse = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            TrainConfig::parse("[model]\npreset = \"convnet-small\"\n", &sets)
                .and_then(|c| crate::objectives::check(&c))
        };
        let e = parse(&["objective.pxy_weight=1.0"]).unwrap_err().to_string();
        assert!(e.contains("objective.pxy_weight") && e.contains("buffer.per_class = true"), "{e}");
        parse(&["objective.pxy_weight=1.0", "buffer.per_class=true"]).unwrap();
        let e = format!("{:#}", parse(&["buffer.per_class=true", "buffer.size=105"]).unwrap_err());
        assert!(e.contains("buffer.size") && e.contains("num_classes = 10 divides") && e.contains("e.g. 100"), "{e}");
    }
}
