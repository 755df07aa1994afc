//! Adam and SGD with momentum written on tensors, so that their state (moments, step count) can be
//! saved and restored exactly: tch's optimisers wrap C++ objects whose state cannot be read (tch-rs #360).
use crate::config::{OptimConfig, OptimizerKind};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn::VarStore, Kind, Tensor};

pub struct Optimizer {
    pub cfg: OptimConfig,
    /// Trainable parameters by name, in name order.
    params: Vec<(String, Tensor)>,
    /// Per-parameter state: Adam's (exp_avg, exp_avg_sq) or SGD's momentum buffer.
    state: BTreeMap<String, Vec<Tensor>>,
    /// Updates taken so far.
    pub t: u64,
}

impl Optimizer {
    pub fn new(vs: &VarStore, cfg: &OptimConfig) -> Self {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = match cfg.name {
            OptimizerKind::Adam => 2,
            OptimizerKind::Sgd => 1,
        };
        let state = params.iter().map(|(n, p)| (n.clone(), (0..slots).map(|_| p.zeros_like()).collect())).collect();
        Optimizer { cfg: cfg.clone(), params, state, t: 0 }
    }

    /// The trainable parameters by name, in name order.
    pub fn parameters(&self) -> &[(String, Tensor)] {
        &self.params
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// The global L2 norm of all gradients, as a 0-d tensor (no host synchronisation).
    pub fn grad_norm(&self) -> Tensor {
        let sq: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .map(|g| g.square().sum(Kind::Float))
            .collect();
        if sq.is_empty() {
            return Tensor::from(0f32);
        }
        Tensor::stack(&sq, 0).sum(Kind::Float).sqrt()
    }

    /// Scales gradients so their global norm is at most `max` (given the norm computed above).
    pub fn clip_grad_norm(&mut self, norm: &Tensor, max: f64) {
        let coef = (norm + 1e-6).reciprocal().g_mul_scalar(max).clamp_max(1.0);
        tch::no_grad(|| {
            for (_, p) in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_(&coef.to_device(g.device()));
                }
            }
        });
    }

    /// One update at learning rate `lr` (PyTorch's Adam and SGD formulas, L2 weight decay).
    pub fn step(&mut self, lr: f64) {
        self.t += 1;
        let c = &self.cfg;
        let t = self.t as i32;
        tch::no_grad(|| {
            for (name, p) in &self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = if c.weight_decay > 0.0 { g + p * c.weight_decay } else { g };
                let st = self.state.get_mut(name).expect("state for every parameter");
                let mut p = p.shallow_clone();
                match c.name {
                    OptimizerKind::Adam => {
                        let (b1, b2) = (c.beta1, c.beta2);
                        let _ = st[0].g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                        let _ = st[1].g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
                        let bc1 = 1.0 - b1.powi(t);
                        let bc2 = 1.0 - b2.powi(t);
                        let denom = st[1].sqrt() / bc2.sqrt() + c.eps;
                        let _ = p.g_sub_(&(&st[0] / denom * (lr / bc1)));
                    }
                    OptimizerKind::Sgd => {
                        let _ = st[0].g_mul_scalar_(c.momentum).g_add_(&g);
                        let d = if c.nesterov { g + &st[0] * c.momentum } else { st[0].shallow_clone() };
                        let _ = p.g_sub_(&(d * lr));
                    }
                }
            }
        });
    }

    /// Bytes of the moments as [`Optimizer::save`] writes them (data only, without the header).
    pub fn state_bytes(&self) -> u64 {
        self.state.values().flatten().map(super::tensor_file::tensor_bytes).sum()
    }

    /// Saves the moments (safetensors, named `<slot>.<param>`).
    pub fn save(&self, path: &Path) -> crate::Result<()> {
        let names = self.slot_names();
        let mut tensors = Vec::new();
        for (name, st) in &self.state {
            for (slot, t) in names.iter().zip(st) {
                tensors.push((format!("{slot}.{name}"), t.to_device(tch::Device::Cpu).contiguous()));
            }
        }
        Tensor::write_safetensors(&tensors, path)
            .with_context(|| format!("{}: cannot write optimiser state", path.display()))
    }

    /// Restores the moments saved by [`Optimizer::save`]; every parameter must be present with its shape.
    pub fn load(&mut self, path: &Path, t: u64) -> crate::Result<()> {
        let names = self.slot_names();
        let dst = self
            .state
            .iter_mut()
            .flat_map(|(name, st)| names.iter().zip(st.iter_mut()).map(move |(slot, t)| (format!("{slot}.{name}"), t)));
        super::tensor_file::load_into(path, "optimiser state", dst)?;
        self.t = t;
        Ok(())
    }

    fn slot_names(&self) -> &'static [&'static str] {
        match self.cfg.name {
            OptimizerKind::Adam => &["exp_avg", "exp_avg_sq"],
            OptimizerKind::Sgd => &["momentum_buffer"],
        }
    }
}

/// The learning rate at iteration `it` (0-based) of epoch `epoch`: linear warm-up to the base
/// rate over `warmup_iters` (JEM: lr * it / warmup), then x decay_rate at each decay epoch passed.
pub fn learning_rate(cfg: &OptimConfig, it: u64, epoch: u64) -> f64 {
    let warm =
        if cfg.warmup_iters > 0 && it < cfg.warmup_iters { (it + 1) as f64 / cfg.warmup_iters as f64 } else { 1.0 };
    let decays = cfg.decay_epochs.iter().filter(|&&e| epoch >= e).count() as i32;
    cfg.lr * warm * cfg.decay_rate.powi(decays)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    #[test]
    fn adam_matches_the_closed_form_first_steps() {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root().var("w", &[3], nn::Init::Const(1.0));
        let cfg = OptimConfig { lr: 0.1, warmup_iters: 0, ..OptimConfig::default() };
        let mut opt = Optimizer::new(&vs, &cfg);
        // Adam's first step moves every coordinate by lr * sign(g) (up to eps).
        let loss = (&p * Tensor::from_slice(&[2.0f32, -3.0, 0.5])).sum(Kind::Float);
        opt.zero_grad();
        loss.backward();
        opt.step(0.1);
        let w: Vec<f32> = Vec::try_from(&p.detach()).unwrap();
        for (a, e) in w.iter().zip([0.9f32, 1.1, 0.9]) {
            assert!((a - e).abs() < 1e-5, "{w:?}");
        }
    }

    #[test]
    fn schedule_warms_up_and_decays() {
        let cfg = OptimConfig {
            lr: 1.0,
            warmup_iters: 10,
            decay_epochs: vec![2, 4],
            decay_rate: 0.5,
            ..OptimConfig::default()
        };
        assert!((learning_rate(&cfg, 0, 0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&cfg, 50, 1) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&cfg, 50, 2) - 0.5).abs() < 1e-12);
        assert!((learning_rate(&cfg, 50, 5) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let mut opt = Optimizer::new(&vs, &OptimConfig::default());
        (&p * 3.0).sum(Kind::Float).backward();
        opt.step(0.01);
        opt.save(&dir.path().join("o.safetensors")).unwrap();
        let mut other = Optimizer::new(&vs, &OptimConfig::default());
        other.load(&dir.path().join("o.safetensors"), opt.t).unwrap();
        assert!(other.state["w"][1].equal(&opt.state["w"][1]));
        assert_eq!(other.t, 1);
    }
}
