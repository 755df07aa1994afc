//! Robust accuracy under projected gradient descent (Madry, Makelov, Schmidt, Tsipras & Vladu
//! 2018, "Towards deep learning models resistant to adversarial attacks", ICLR), as JEM evaluates
//! it (Grathwohl et al. 2020, section 5.3, and its `attack_model.py`): the untargeted attack
//! maximises the cross-entropy -log p(y | x + delta) over the ball |delta| <= eps,
//! - L-infinity: delta <- clip_eps(delta + alpha sign(g)),
//! - L2: delta <- proj_eps(delta + alpha g / |g|_2), proj_eps(d) = d min(1, eps / |d|_2),
//!
//! from delta = 0, with g the input gradient of the loss; the perturbed input is clamped to the
//! data range when one is given (images: [-1, 1]). An example counts as robust when its
//! prediction at the final iterate is still y (and it was right on the clean input too).
//!
//! JEM's defence refines each input by K steps of Langevin dynamics on the model's energy before
//! classifying. Through that stochastic refinement the attack uses the straight-through
//! (BPDA) gradient (Athalye, Carlini & Wagner 2018): the loss is taken at the refined input and
//! its gradient applied to the unrefined one, with fresh refinement noise at every PGD step
//! (expectation over transformation, one sample a step).
//!
//! Known answers (the tests): eps = 0 leaves every input as it is, so robust accuracy equals
//! clean accuracy; for a linear classifier f(x) = W x + b of two classes the smallest
//! perturbation that changes the decision at x (label y, other class k) has L2 norm
//! |(w_y - w_k).x + b_y - b_k| / |w_y - w_k|_2 and L-infinity norm the same over |w_y - w_k|_1,
//! and PGD, whose gradient direction is then constant, finds it.
use anyhow::bail;
use tch::{Kind, Reduction, Tensor};

/// The attack's norm ball.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Norm {
    Linf,
    L2,
}

impl Norm {
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "linf" => Ok(Norm::Linf),
            "l2" => Ok(Norm::L2),
            other => bail!("--norm {other}: unknown; use linf or l2"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        }
    }
}

/// The attack's settings.
#[derive(Debug, Clone, Copy)]
pub struct Pgd {
    pub norm: Norm,
    pub eps: f64,
    pub steps: usize,
    /// Step length alpha of each iteration.
    pub step_size: f64,
    /// Clamp the perturbed inputs to [lo, hi].
    pub clamp: Option<(f64, f64)>,
}

impl Pgd {
    pub fn check(&self) -> crate::Result<()> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            bail!("--eps {}: must be a finite number >= 0", self.eps);
        }
        if !(self.step_size.is_finite() && self.step_size > 0.0) {
            bail!("--step-size {}: must be positive", self.step_size);
        }
        Ok(())
    }
}

/// Per-example L2 norms of `t` [n, ...], shaped [n, 1, ...] for broadcasting.
fn norms(t: &Tensor) -> Tensor {
    let n = t.flatten(1, -1).square().sum_dim_intlist([1].as_slice(), false, t.kind()).sqrt();
    let mut shape = vec![t.size()[0]];
    shape.extend(std::iter::repeat_n(1, t.dim() - 1));
    n.view(shape.as_slice())
}

/// `delta` projected onto the eps-ball of `norm`.
fn project(delta: &Tensor, norm: Norm, eps: f64) -> Tensor {
    match norm {
        Norm::Linf => delta.clamp(-eps, eps),
        Norm::L2 => delta * (eps / norms(delta).clamp_min(1e-12)).clamp_max(1.0),
    }
}

/// The PGD adversarial inputs for `x` with labels `y`, against `logits` (a differentiable map
/// of inputs to class logits); `refine` maps inputs to the inputs the classifier sees (identity
/// when absent), treated as the identity in the gradient (BPDA).
pub fn pgd(
    logits: &dyn Fn(&Tensor) -> Tensor,
    refine: Option<&dyn Fn(&Tensor) -> Tensor>,
    x: &Tensor,
    y: &Tensor,
    p: &Pgd,
) -> Tensor {
    let x0 = x.detach();
    let mut xa = x0.shallow_clone();
    if p.eps == 0.0 {
        return xa;
    }
    for _ in 0..p.steps {
        let seen = match refine {
            Some(r) => r(&xa).detach(),
            None => xa.shallow_clone(),
        }
        .set_requires_grad(true);
        let loss = logits(&seen).cross_entropy_loss::<Tensor>(y, None, Reduction::Sum, -100, 0.0);
        let g = Tensor::run_backward(&[loss], &[&seen], false, false).pop().expect("one gradient");
        let step = match p.norm {
            Norm::Linf => g.sign() * p.step_size,
            Norm::L2 => &g / norms(&g).clamp_min(1e-12) * p.step_size,
        };
        let mut next = &x0 + project(&(&xa + step - &x0), p.norm, p.eps);
        if let Some((lo, hi)) = p.clamp {
            next = next.clamp(lo, hi);
        }
        xa = next.detach();
    }
    xa
}

/// Predictions of `logits` at `x` (refined first when `refine` is given), without a graph.
pub fn predict(logits: &dyn Fn(&Tensor) -> Tensor, refine: Option<&dyn Fn(&Tensor) -> Tensor>, x: &Tensor) -> Tensor {
    let seen = match refine {
        Some(r) => r(x).detach(),
        None => x.shallow_clone(),
    };
    tch::no_grad(|| logits(&seen).argmax(1, false))
}

/// Counts of one batch: (clean correct, robust correct), robust meaning correct both on the clean
/// input and at the attack's final iterate.
pub fn attack_batch(
    logits: &dyn Fn(&Tensor) -> Tensor,
    refine: Option<&dyn Fn(&Tensor) -> Tensor>,
    x: &Tensor,
    y: &Tensor,
    p: &Pgd,
) -> (i64, i64) {
    let clean = predict(logits, refine, x).eq_tensor(y);
    let xa = pgd(logits, refine, x, y, p);
    let robust = predict(logits, refine, &xa).eq_tensor(y).logical_and(&clean);
    let count = |t: &Tensor| t.sum(Kind::Int64).int64_value(&[]);
    (count(&clean), count(&robust))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// A two-class linear classifier, one labelled point, and the closed-form smallest
    /// perturbations that change its decision (L2, L-infinity).
    #[test]
    fn pgd_finds_the_closed_form_minimal_perturbation_of_a_linear_classifier() {
        let w = Tensor::from_slice(&[1.5f64, -0.5, 2.0, 0.5, 1.0, -1.0]).view([2, 3]);
        let b = Tensor::from_slice(&[0.3f64, -0.2]);
        let logits = |x: &Tensor| x.matmul(&w.transpose(0, 1)) + &b;
        let x = Tensor::from_slice(&[0.8f64, 0.1, 0.4]).view([1, 3]);
        let f = Vec::<f64>::try_from(logits(&x).view([-1])).unwrap();
        let y = if f[0] > f[1] { 0 } else { 1 };
        let margin = (f[0] - f[1]).abs();
        let dw: Vec<f64> = Vec::<f64>::try_from((w.get(0) - w.get(1)).view([-1])).unwrap();
        let l2 = margin / dw.iter().map(|v| v * v).sum::<f64>().sqrt();
        let linf = margin / dw.iter().map(|v| v.abs()).sum::<f64>();
        let yt = Tensor::from_slice(&[y as i64]);
        for (norm, d) in [(Norm::L2, l2), (Norm::Linf, linf)] {
            let run = |eps: f64| {
                let p = Pgd { norm, eps, steps: 50, step_size: eps / 10.0, clamp: None };
                attack_batch(&logits, None, &x, &yt, &p)
            };
            assert_eq!(run(0.97 * d), (1, 1), "{norm:?}: eps below {d} must not flip");
            assert_eq!(run(1.03 * d), (1, 0), "{norm:?}: eps above {d} must flip");
            // The found perturbation stays inside the ball.
            let p = Pgd { norm, eps: 1.03 * d, steps: 50, step_size: d / 10.0, clamp: None };
            let delta = pgd(&logits, None, &x, &yt, &p) - &x;
            let size = match norm {
                Norm::L2 => delta.norm().double_value(&[]),
                Norm::Linf => delta.abs().max().double_value(&[]),
            };
            assert!(size <= 1.03 * d + 1e-9, "{norm:?}: |delta| {size} > eps {}", 1.03 * d);
        }
    }

    /// eps = 0: robust accuracy is clean accuracy, on a random classifier and random labels.
    #[test]
    fn eps_zero_gives_clean_accuracy() {
        tch::manual_seed(5);
        let w = Tensor::randn([4, 10], (Kind::Float, Device::Cpu));
        let logits = |x: &Tensor| x.matmul(&w.transpose(0, 1)).tanh();
        let x = Tensor::randn([200, 10], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(4, [200], (Kind::Int64, Device::Cpu));
        let p = Pgd { norm: Norm::Linf, eps: 0.0, steps: 10, step_size: 0.01, clamp: Some((-1.0, 1.0)) };
        let (clean, robust) = attack_batch(&logits, None, &x, &y, &p);
        let direct = logits(&x).argmax(1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
        assert_eq!((clean, robust), (direct, direct));
        assert!(direct > 0 && direct < 200);
        let p = Pgd { eps: 0.5, ..p };
        assert!(attack_batch(&logits, None, &x, &y, &p).1 < direct, "an attack of 0.5 must cost accuracy");
        assert!(Pgd { eps: -1.0, ..p }.check().unwrap_err().to_string().contains("--eps"));
        assert!(Norm::parse("l1").unwrap_err().to_string().contains("linf or l2"));
    }
}
