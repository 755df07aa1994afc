//! Adversarial training with a learned sampler (the lecture's "Adversarial Training"): a noisy
//! generator q_phi, x = g_phi(z) + sigma eps with z ~ N(0, I_k), eps ~ N(0, I), supplies the
//! negatives, so samples come from q without MCMC.
//!
//! The energy maximises the likelihood with q's samples as negatives,
//!   L_theta = E_data[E(x)] - E_q[E(x)]   (+ alpha (E(x+)^2 + E(x-)^2), as the other objectives),
//! and the sampler minimises E_q[E_theta(x)] - H(q_phi). Both gradients are reparametrised through
//! x = g_phi(z) + sigma eps (the score-function term E_q[grad_phi log q_phi] is zero):
//!   grad_phi (E_q[E(x)] - H(q)) = E[(grad_x E(x) + grad_x log q(x))^T dx/dphi].
//! The entropy's part needs the marginal score grad_x log q(x), intractable for a latent-variable
//! sampler. Estimator (Dieng, Ruiz, Blei & Titsias 2019, "Prescribed generative adversarial
//! networks", section 3.2): treat q as the latent-variable model q(x) = int N(x; g(z), sigma^2 I)
//! N(z; 0, I) dz, whence
//!   grad_x log q(x) = E_{p(z|x)}[-(x - g(z)) / sigma^2],
//! with the posterior p(z|x) proportional to N(z; 0, I) N(x; g(z), sigma^2 I) sampled by MCMC
//! started at the z that generated x (an exact posterior draw, so any kernel that leaves p(z|x)
//! invariant keeps each z_K exact given x). The steps must also decorrelate z_K from x's own z:
//! the estimate is dotted with dx/dphi, which depends on that z, so a chain that has not forgotten
//! it biases the gradient (measured in the tests: 10 short steps put the noise level's entropy
//! gradient 25% off, 100 steps within 1%; the recipe trades that bias for speed). PresGAN uses HMC; here `objective.gen_posterior_steps`
//! MALA steps (Metropolis-corrected, so invariance is exact) whose size starts at
//! `objective.gen_posterior_step` and is adapted after every step towards an acceptance of 0.57,
//! s <- s exp(acc - 0.57) (an untrainable variable `objective.generator.posterior_step`, kept in
//! checkpoints). Control variate: with z_0 the generating latent, x - g(z_0) = sigma eps is
//! independent of z_0 and of dx/dphi's dependence on it, so E[eps^T dx/dphi] = 0 and
//!   s_hat(x) = -(x - g(z_K)) / sigma^2 + (x - g(z_0)) / sigma^2 = (g(z_K) - g(z_0)) / sigma^2
//! has the same expectation as the plain estimate without its O(1/sigma) noise. The loss adds
//! the surrogate mean_x (grad_x E(x) + s_hat(x)).x with the bracket held constant, whose
//! phi-gradient is the one above and whose theta-gradient is zero.
//!
//! A learned noise level (`objective.gen_learn_sigma`, sigma = exp(log_sigma), one scalar, as
//! PresGAN and VERA learn theirs): dx/dsigma = eps, and there the control variate is not free,
//! E[(x - g(z_0))^T eps] / sigma^2 = D / sigma with D the input's size, so the surrogate also
//! carries -D log sigma, the noise's own entropy, whose sigma-gradient restores that term.
//!
//! Stabiliser (`objective.gen_grad_penalty` = lambda, VERA's, Grathwohl et al. 2021, "No MCMC for
//! me"): lambda E_data[|grad_x E(x)|^2] added to the energy's loss (double backward), which keeps
//! the energy from digging wells where q's samples never go.
use super::{Inputs, Objective, Registration, Terms};
use crate::config::TrainConfig;
use crate::models::EnergyNet;
use crate::sampling::Negatives;
use std::cell::RefCell;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// The learned sampler: generator MLP `gen_latent` -> `gen_hidden` -> `gen_hidden` -> input, SiLU.
pub const REGISTRATION: Registration = Registration {
    name: "learned-sampler",
    summary: "adversarial training with a noisy generator x = g(z) + sigma eps, entropy gradient by posterior MALA (Dieng et al. 2019)",
    check: super::no_check,
    build: |cfg, p| Box::new(LearnedSampler::new(&(p / "objective" / "generator"), cfg)),
};

pub struct LearnedSampler {
    gen: nn::Sequential,
    latent: i64,
    shape: Vec<i64>,
    /// The fixed noise level, or the start of the learned one.
    sigma: f64,
    /// log sigma when `objective.gen_learn_sigma` (0-d, trainable).
    log_sigma: Option<Tensor>,
    steps: usize,
    /// The MALA step size on p(z|x), adapted (0-d, untrainable).
    step: Tensor,
    /// The acceptance of the last `loss`, applied to `step` by `commit`.
    pending: RefCell<Option<Tensor>>,
    alpha: f64,
    grad_penalty: f64,
}

impl LearnedSampler {
    pub fn new(p: &nn::Path, cfg: &TrainConfig) -> Self {
        let o = &cfg.objective;
        let shape: Vec<i64> = cfg.model.input_shape.iter().map(|&d| d as i64).collect();
        let (k, h, d) = (o.gen_latent as i64, o.gen_hidden as i64, shape.iter().product::<i64>());
        let gen = nn::seq()
            .add(nn::linear(p / "l1", k, h, Default::default()))
            .add_fn(|t| t.silu())
            .add(nn::linear(p / "l2", h, h, Default::default()))
            .add_fn(|t| t.silu())
            .add(nn::linear(p / "l3", h, d, Default::default()));
        LearnedSampler {
            gen,
            latent: k,
            shape,
            sigma: o.gen_sigma,
            log_sigma: o.gen_learn_sigma.then(|| p.var("log_sigma", &[], nn::Init::Const(o.gen_sigma.ln()))),
            steps: o.gen_posterior_steps,
            step: p.var("posterior_step", &[], nn::Init::Const(o.gen_posterior_step)).set_requires_grad(false),
            pending: RefCell::new(None),
            alpha: o.alpha,
            grad_penalty: o.gen_grad_penalty,
        }
    }

    /// g(z) in the input's shape.
    fn mean(&self, z: &Tensor) -> Tensor {
        let mut shape = vec![z.size()[0]];
        shape.extend(&self.shape);
        self.gen.forward(z).view(shape.as_slice())
    }

    /// The noise level sigma, 0-d, differentiable in log_sigma when learned (kept in [1e-3, 10]).
    fn sigma(&self) -> Tensor {
        match &self.log_sigma {
            Some(l) => l.exp().clamp(1e-3, 10.0),
            None => Tensor::from(self.sigma as f32),
        }
    }

    /// 1 / sigma^2, held constant.
    fn precision(&self) -> Tensor {
        tch::no_grad(|| self.sigma().square().reciprocal())
    }

    /// n draws x = g(z) + sigma eps, differentiable in phi, and their latents z.
    pub fn sample(&self, n: i64, device: tch::Device) -> (Tensor, Tensor) {
        let z = Tensor::randn([n, self.latent], (Kind::Float, device));
        let m = self.mean(&z);
        let x = &m + m.randn_like() * self.sigma().to_device(device);
        (x, z)
    }

    /// log p(z|x) up to a constant per row, and its gradient in z (no phi-gradient kept).
    fn log_post(&self, z: &Tensor, x: &Tensor) -> (Tensor, Tensor) {
        let zr = z.detach().set_requires_grad(true);
        let r = (x - self.mean(&zr)).flatten(1, -1);
        let lp = -(zr.square().sum_dim_intlist([1].as_slice(), false, Kind::Float) * 0.5)
            - r.square().sum_dim_intlist([1].as_slice(), false, Kind::Float)
                * (self.precision().to_device(x.device()) / 2.0);
        let g = Tensor::run_backward(&[lp.sum(Kind::Float)], &[&zr], false, false).pop().expect("one gradient");
        (lp.detach(), g)
    }

    /// `steps` MALA steps on p(z|x) from z; the end point and the mean acceptance.
    pub fn posterior(&self, z: &Tensor, x: &Tensor) -> (Tensor, Tensor) {
        let (mut z, x) = (z.detach(), x.detach());
        let (mut lp, mut g) = self.log_post(&z, &x);
        let mut acc = Tensor::zeros([], (Kind::Float, x.device()));
        let s = self.step.detach();
        let log_q = |to: &Tensor, from: &Tensor, g_from: &Tensor| {
            -(to - from - g_from * (&s / 2.0)).square().sum_dim_intlist([1].as_slice(), false, Kind::Float) / (&s * 2.0)
        };
        for _ in 0..self.steps {
            let prop = &z + &g * (&s / 2.0) + z.randn_like() * s.sqrt();
            let (lp_p, g_p) = self.log_post(&prop, &x);
            let log_a = &lp_p - &lp + log_q(&z, &prop, &g_p) - log_q(&prop, &z, &g);
            let accept = log_a.exp().clamp_max(1.0).bernoulli().to_kind(Kind::Bool);
            acc += accept.to_kind(Kind::Float).mean(Kind::Float) / self.steps as f64;
            let a = accept.unsqueeze(1);
            z = prop.where_self(&a, &z);
            g = g_p.where_self(&a, &g);
            lp = lp_p.where_self(&accept, &lp);
        }
        (z, acc)
    }

    /// The sampler's surrogate loss for draws x = g(z) + sigma eps (differentiable in phi and
    /// sigma) given grad_x E(x): its phi- and sigma-gradients are those of E_q[E(x)] - H(q) (the
    /// module's comment). Also the posterior chain's mean acceptance.
    fn surrogate(&self, x: &Tensor, z: &Tensor, grad_e: Tensor) -> (Tensor, Tensor) {
        let (z_post, acc) = self.posterior(z, x);
        let s_hat = tch::no_grad(|| (self.mean(&z_post) - self.mean(z)) * self.precision().to_device(x.device()));
        let direction = (grad_e + s_hat).detach();
        let mut surrogate =
            (direction * x).flatten(1, -1).sum_dim_intlist([1].as_slice(), false, Kind::Float).mean(Kind::Float);
        if let Some(l) = &self.log_sigma {
            // -H of the noise, D log sigma, whose gradient the control variate dropped.
            surrogate -= l.clamp(1e-3f64.ln(), 10f64.ln()) * self.shape.iter().product::<i64>() as f64;
        }
        (surrogate, acc)
    }

    /// The estimate of grad_x log q(x) at x from a posterior draw z: -(x - g(z)) / sigma^2.
    pub fn score_estimate(&self, x: &Tensor, z: &Tensor) -> Tensor {
        tch::no_grad(|| -(x - self.mean(z)) * self.precision().to_device(x.device()))
    }
}

impl Objective for LearnedSampler {
    fn name(&self) -> &'static str {
        "learned-sampler"
    }

    fn loss(&self, net: &EnergyNet, batch: &Inputs, _n: Option<&mut Negatives>) -> Terms {
        let x_data = batch.x.detach().set_requires_grad(self.grad_penalty > 0.0);
        let (x, z) = self.sample(x_data.size()[0], x_data.device());
        // The energy's part: data against q's samples (held fixed).
        let e = net.energy(&Tensor::cat(&[x_data.shallow_clone(), x.detach()], 0), true);
        let b = x_data.size()[0];
        let (e_pos, e_neg) = (e.narrow(0, 0, b), e.narrow(0, b, b));
        let mut loss = e_pos.mean(Kind::Float) - e_neg.mean(Kind::Float);
        if self.alpha > 0.0 {
            loss += (e_pos.square() + e_neg.square()).mean(Kind::Float) * self.alpha;
        }
        if self.grad_penalty > 0.0 {
            // |grad_x E|^2 at the data, differentiable in theta (double backward).
            let g =
                Tensor::run_backward(&[e_pos.sum(Kind::Float)], &[&x_data], true, true).pop().expect("one gradient");
            let sq = g.square().flatten(1, -1).sum_dim_intlist([1].as_slice(), false, Kind::Float);
            loss += sq.mean(Kind::Float) * self.grad_penalty;
        }
        // The sampler's part: grad_x E(x) (no theta-gradient) plus the posterior score estimate.
        let xr = x.detach().set_requires_grad(true);
        let grad_e = Tensor::run_backward(&[net.energy(&xr, true).sum(Kind::Float)], &[&xr], false, false)
            .pop()
            .expect("one gradient");
        let (surrogate, acc) = self.surrogate(&x, &z, grad_e);
        *self.pending.borrow_mut() = Some(acc.shallow_clone());
        let total = &loss + &surrogate;
        let logs = vec![
            ("e_data", e_pos.mean(Kind::Float).detach()),
            ("e_samples", e_neg.mean(Kind::Float).detach()),
            ("posterior_acceptance", acc),
            ("posterior_step", self.step.detach()),
            ("gen_sigma", self.sigma().detach()),
            ("loss", loss.detach()),
        ];
        Terms { loss: total, logs, samples: Some(x.detach()) }
    }

    fn commit(&self) {
        if let Some(acc) = self.pending.borrow_mut().take() {
            tch::no_grad(|| {
                let mut step = self.step.shallow_clone();
                step.copy_(&(&self.step * (acc - 0.57).exp()).clamp(1e-6, 1.0));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn sampler(sets: &[&str]) -> (nn::VarStore, LearnedSampler) {
        let mut o = vec!["objective.name=\"learned-sampler\"".to_string()];
        o.extend(sets.iter().map(|s| s.to_string()));
        let cfg = TrainConfig::parse("[model]\npreset = \"mlp-2d\"\nhead = \"energy\"\n", &o).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let s = LearnedSampler::new(&(vs.root() / "objective" / "generator"), &cfg);
        (vs, s)
    }

    /// Replaces the generator by the linear g(z) = A z + m of the closed-form tests; returns (A, m).
    fn make_linear(s: &mut LearnedSampler) -> (Tensor, Tensor) {
        let a = Tensor::from_slice(&[1.0f32, 0.5, -0.3, 0.8]).view([2, 2]);
        let m = Tensor::from_slice(&[0.2f32, -0.1]);
        let (a2, m2) = (a.shallow_clone(), m.shallow_clone());
        s.gen = nn::seq().add_fn(move |z| z.mm(&a2.tr()) + &m2);
        (a, m)
    }

    /// For a linear generator g(z) = A z + m the sampler is Gaussian, q = N(m, A A^T + sigma^2 I),
    /// and its score is known: the posterior-MALA estimate, averaged over many posterior draws at
    /// fixed x, matches -(A A^T + sigma^2 I)^{-1} (x - m).
    #[test]
    fn posterior_score_estimate_matches_a_linear_gaussian_sampler() {
        tch::manual_seed(7);
        let (vs, mut s) = sampler(&[
            "objective.gen_latent=2",
            "objective.gen_sigma=0.5",
            "objective.gen_posterior_steps=20",
            "objective.gen_posterior_step=0.1",
        ]);
        let (a, m) = make_linear(&mut s);
        drop(vs);
        let n = 20_000;
        let x = Tensor::from_slice(&[1.0f32, -0.5]).view([1, 2]).expand([n, 2], false).contiguous();
        // Start from exact posterior draws is not needed for the mean: run the chain long enough.
        let mut z = Tensor::zeros([n, 2], (Kind::Float, Device::Cpu));
        let mut accs = Vec::new();
        for _ in 0..10 {
            let (zn, acc) = s.posterior(&z, &x);
            z = zn;
            accs.push(acc.double_value(&[]));
        }
        let est = s.score_estimate(&x, &z).mean_dim([0].as_slice(), false, Kind::Float);
        let cov = a.mm(&a.tr()) + Tensor::eye(2, (Kind::Float, Device::Cpu)) * 0.25;
        let truth = -cov.inverse().mv(&(x.get(0) - &m));
        let err = (&est - &truth).abs().max().double_value(&[]);
        assert!(err < 0.05, "estimate {est:?} vs closed form {truth:?}");
        assert!(accs.iter().all(|&a| a > 0.3 && a < 1.0), "acceptance {accs:?}");
    }

    /// With a learned noise level and a zero energy, the surrogate's gradient in log sigma is that
    /// of -H(q) for the Gaussian q = N(m, S), S = A A^T + sigma^2 I: -H = -log det(2 pi e S) / 2,
    /// whose log-sigma derivative is -sigma^2 tr(S^-1). Without the D log sigma term it would be
    /// off by D = 2. The chain must forget the generating z (here 100 steps; after 10 steps of 0.1
    /// the estimate was -0.53 against -0.42: the bias of a short posterior chain).
    #[test]
    fn the_learned_noise_level_gets_the_entropy_gradient_of_a_linear_gaussian_sampler() {
        tch::manual_seed(3);
        let (vs, mut s) = sampler(&[
            "objective.gen_latent=2",
            "objective.gen_sigma=0.5",
            "objective.gen_learn_sigma=true",
            "objective.gen_posterior_steps=100",
            "objective.gen_posterior_step=0.5",
        ]);
        let (a, _) = make_linear(&mut s);
        let log_sigma = s.log_sigma.as_ref().unwrap().shallow_clone();
        let (x, z) = s.sample(40_000, Device::Cpu);
        let (surrogate, _) = s.surrogate(&x, &z, x.zeros_like());
        let g = Tensor::run_backward(&[surrogate], &[&log_sigma], false, false).pop().unwrap().double_value(&[]);
        eprintln!("d/dlog sigma {g}");
        let cov = a.mm(&a.tr()) + Tensor::eye(2, (Kind::Float, Device::Cpu)) * 0.25;
        let truth = -0.25 * cov.inverse().trace().double_value(&[]);
        assert!((g - truth).abs() < 0.03 * truth.abs().max(1.0), "d/dlog sigma {g} vs closed form {truth}");
        drop(vs);
    }
}
