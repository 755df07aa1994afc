//! Sharpness-aware minimisation (Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently
//! Improving Generalization"), and its adaptive form ASAM (Kwon et al. 2021), as SADA-JEM uses it
//! (Yang et al. 2023). Given the gradient g of the loss L at the weights w:
//!
//!   e(w) = rho * T^2 g / ||T g||      (SAM: T = I;  ASAM: T = diag|w|)
//!   g_SAM = grad L(w + e(w))          (the same batch and negatives, at the perturbed weights)
//!
//! and the base optimiser (Adam, SGD) then steps from w with g_SAM. The norm is global over all
//! parameters. The second pass leaves running statistics (BatchNorm, spectral-norm vectors) as
//! the first pass left them: the trainer snapshots and restores them around it.
use tch::{Kind, Tensor};

/// Adds e(w) to every parameter with a gradient, in place, and returns the perturbations (to
/// take off again with [`unperturb`]). A zero gradient perturbs nothing.
pub fn perturb(params: &[(String, Tensor)], rho: f64, adaptive: bool) -> Vec<Option<Tensor>> {
    tch::no_grad(|| {
        let scaled: Vec<Option<Tensor>> = params
            .iter()
            .map(|(_, p)| {
                let g = p.grad();
                g.defined().then(|| if adaptive { p.abs() * &g } else { g })
            })
            .collect();
        let squares: Vec<Tensor> = scaled.iter().flatten().map(|t| t.square().sum(Kind::Float)).collect();
        if squares.is_empty() {
            return params.iter().map(|_| None).collect();
        }
        let norm = Tensor::stack(&squares, 0).sum(Kind::Float).sqrt();
        let scale = (norm + 1e-12).reciprocal() * rho;
        params
            .iter()
            .zip(scaled)
            .map(|((_, p), tg)| {
                tg.map(|tg| {
                    // T^2 g / ||T g|| = T (T g) / ||T g||.
                    let e = if adaptive { p.abs() * tg * &scale } else { tg * &scale };
                    let _ = p.shallow_clone().g_add_(&e);
                    e
                })
            })
            .collect()
    })
}

/// Takes the perturbations of [`perturb`] off the parameters again.
pub fn unperturb(params: &[(String, Tensor)], e: &[Option<Tensor>]) {
    tch::no_grad(|| {
        for ((_, p), e) in params.iter().zip(e) {
            if let Some(e) = e {
                let _ = p.shallow_clone().g_sub_(e);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    /// One SAM step on L(w) = 1/2 w^T A w (A diagonal), by hand: g = A w, e = rho g / |g| (ASAM:
    /// rho w^2 g / |w g|), g_SAM = A (w + e), w' = w - lr g_SAM.
    #[test]
    fn one_step_on_a_quadratic_matches_the_closed_form() {
        let a = [2.0f64, 0.5, -1.0];
        let w0 = [1.0f64, -2.0, 0.5];
        let (rho, lr) = (0.3, 0.1);
        for adaptive in [false, true] {
            let vs = nn::VarStore::new(Device::Cpu);
            let w = vs.root().var_copy("w", &Tensor::from_slice(&w0).to_kind(Kind::Float));
            let a_t = Tensor::from_slice(&a).to_kind(Kind::Float);
            let loss = |w: &Tensor| (w.square() * &a_t).sum(Kind::Float) * 0.5;
            let params = vec![("w".to_string(), w.shallow_clone())];
            loss(&w).backward();
            let e = perturb(&params, rho, adaptive);
            let _ = w.grad().zero_();
            loss(&w).backward();
            unperturb(&params, &e);
            tch::no_grad(|| {
                let _ = w.shallow_clone().g_sub_(&(w.grad() * lr));
            });
            // The closed form.
            let g: Vec<f64> = a.iter().zip(&w0).map(|(a, w)| a * w).collect();
            let tg: Vec<f64> = if adaptive { g.iter().zip(&w0).map(|(g, w)| g * w.abs()).collect() } else { g.clone() };
            let norm = tg.iter().map(|v| v * v).sum::<f64>().sqrt();
            let want: Vec<f64> = (0..3)
                .map(|i| {
                    let t = if adaptive { w0[i].abs() } else { 1.0 };
                    let e = rho * t * tg[i] / norm;
                    w0[i] - lr * a[i] * (w0[i] + e)
                })
                .collect();
            let got: Vec<f32> = Vec::try_from(&w.detach()).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-6, "adaptive {adaptive}: {got:?} vs {want:?}");
            }
        }
    }
}
