//! Training objectives: given the network, a data batch and (for the objectives that draw them)
//! the model's chains, the loss and its separately logged terms.
//!
//! Each objective is one file that implements [`Objective`] and exports a [`Registration`]; the
//! [`REGISTRY`] below lists them, and `objective.name` in the config selects one by name. An
//! objective states which chains it needs ([`Objective::chain_use`]); the trainer builds them from
//! the `[sgld]` and `[buffer]` settings and passes them to [`Objective::loss`], and passes nothing
//! to the objectives that draw no model samples.
pub mod hybrid;
pub mod is_mle;
pub mod ksd;
pub mod learned_sampler;
pub mod mpf;
pub mod nce;
pub mod score_matching;

use crate::config::TrainConfig;
use crate::models::EnergyNet;
use crate::sampling::{ChainUse, Negatives};
use anyhow::bail;
use tch::{nn, Tensor};

/// The loss of one step, its terms for the log (0-d tensors, read only at log steps), and the
/// model samples it used (for sample grids).
pub struct Terms {
    pub loss: Tensor,
    pub logs: Vec<(&'static str, Tensor)>,
    pub samples: Option<Tensor>,
}

/// A training batch as an objective sees it.
pub struct Inputs<'a> {
    /// The data batch (augmented as configured).
    pub x: &'a Tensor,
    /// Its labels, when the set is labelled.
    pub y: Option<&'a Tensor>,
    /// The p(x) term's own data batch (`data.px_batch = "plain"`: other examples, not augmented);
    /// None: the p(x) term uses `x`.
    pub x_px: Option<&'a Tensor>,
}

impl<'a> Inputs<'a> {
    /// A batch whose p(x) term uses the batch itself.
    pub fn new(x: &'a Tensor, y: Option<&'a Tensor>) -> Self {
        Inputs { x, y, x_px: None }
    }
}

/// A way to train an energy-based model.
pub trait Objective {
    fn name(&self) -> &'static str;
    /// The model samples this objective draws, if any: fixed for the objective's life.
    fn chain_use(&self) -> ChainUse {
        ChainUse::None
    }
    /// The loss on a batch (labels when the set is labelled); `negatives` are the chains of
    /// [`Objective::chain_use`] (`None` when it declares none).
    fn loss(&self, net: &EnergyNet, batch: &Inputs, negatives: Option<&mut Negatives>) -> Terms;
    /// Called once the step of the last `loss` is taken (not when the step is discarded):
    /// objectives with state that follows the model (the adaptive IS proposal) update it here.
    fn commit(&self) {}
}

/// One objective as the registry knows it.
pub struct Registration {
    /// The value of `objective.name` that selects it.
    pub name: &'static str,
    /// What it is, in one line (for error messages and the README).
    pub summary: &'static str,
    /// The config checks this objective needs beyond each section's own, naming the key.
    pub check: fn(&TrainConfig) -> crate::Result<()>,
    /// Builds it; parameters or state of its own go under `p` (saved with the weights).
    pub build: fn(&TrainConfig, &nn::Path) -> Box<dyn Objective>,
}

/// Every objective `objective.name` can select. Adding one: a new file in this folder that
/// implements [`Objective`] and exports a [`Registration`], its `pub mod` line above, and one
/// entry here.
pub const REGISTRY: &[Registration] = &[
    hybrid::JEM,
    hybrid::IGEBM,
    hybrid::PCD,
    hybrid::CD,
    score_matching::SM,
    score_matching::DSM,
    score_matching::SSM,
    nce::REGISTRATION,
    is_mle::REGISTRATION,
    mpf::REGISTRATION,
    learned_sampler::REGISTRATION,
    ksd::REGISTRATION,
];

/// The registered objective called `name`, or an error naming the key and the choices.
pub fn find(name: &str) -> crate::Result<&'static Registration> {
    match REGISTRY.iter().find(|r| r.name == name) {
        Some(r) => Ok(r),
        None => {
            let names: Vec<&str> = REGISTRY.iter().map(|r| r.name).collect();
            bail!("key `objective.name` = \"{name}\": unknown objective; choose one of {}", names.join(", "))
        }
    }
}

/// Checks that `cfg` names a registered objective and meets that objective's own requirements.
pub fn check(cfg: &TrainConfig) -> crate::Result<()> {
    (find(cfg.objective.name.as_str())?.check)(cfg)
}

/// The objective named in the config, checked against it; objectives with parameters of their
/// own (NCE's log Z) or state (the adaptive IS proposal, untrainable) register them under
/// `objective.*` in `p`.
pub fn build(cfg: &TrainConfig, p: &nn::Path) -> crate::Result<Box<dyn Objective>> {
    let r = find(cfg.objective.name.as_str())?;
    (r.check)(cfg)?;
    Ok((r.build)(cfg, p))
}

/// A check for objectives that need nothing beyond the sections' own checks.
pub fn no_check(_: &TrainConfig) -> crate::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::ChainSpace;
    use tch::Device;

    fn config(name: &str, sets: &[&str]) -> TrainConfig {
        let mut o = vec![format!("objective.name=\"{name}\"")];
        o.extend(sets.iter().map(|s| s.to_string()));
        TrainConfig::parse("[model]\npreset = \"mlp-2d\"\nhead = \"energy\"\n", &o).unwrap()
    }

    /// The chains each objective declares become the buffer policy the trainer builds: JEM and
    /// IGEBM restart 5% of their buffer chains, PCD never restarts, CD-k keeps no buffer, and the
    /// sampling-free objectives get no chains at all.
    #[test]
    fn objectives_declare_their_chains_and_the_buffer_follows() {
        let space = ChainSpace { shape: vec![2], range: 1.0, classes: None, device: Device::Cpu };
        let vs = nn::VarStore::new(Device::Cpu);
        let expect = [
            ("igebm", Some((true, 0.05))),
            ("pcd", Some((true, 0.0))),
            ("cd", Some((false, 0.0))),
            ("sm", None),
            ("ssm", None),
            ("dsm", None),
            ("nce", None),
            ("is-mle", None),
            ("mpf", None),
            ("learned-sampler", None),
            ("ksd", None),
        ];
        for (name, want) in expect {
            let cfg = config(name, &[]);
            let objective = build(&cfg, &vs.root()).unwrap();
            let negatives = Negatives::for_use(objective.chain_use(), &cfg.sampler, &cfg.buffer, &space);
            let got = negatives.map(|n| (n.buffer.is_some(), n.buffer.map_or(0.0, |b| b.reinit_fraction)));
            assert_eq!(got, want, "{name}");
        }
        // Without a buffer, persistent objectives start from fresh noise; PCD refuses to.
        let cfg = config("igebm", &["buffer.enabled=false"]);
        let n = Negatives::for_use(build(&cfg, &vs.root()).unwrap().chain_use(), &cfg.sampler, &cfg.buffer, &space);
        assert!(n.is_some_and(|n| n.buffer.is_none()));
        let e = build(&config("pcd", &["buffer.enabled=false"]), &vs.root()).err().unwrap().to_string();
        assert!(e.contains("objective.name") && e.contains("buffer.enabled"), "{e}");
    }

    #[test]
    fn every_registered_name_is_unique_and_an_unknown_one_lists_them() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
        let e = find("no-such-objective").err().unwrap().to_string();
        assert!(e.contains("objective.name") && e.contains("no-such-objective"), "{e}");
        assert!(REGISTRY.iter().all(|r| e.contains(r.name)), "{e}");
    }
}
