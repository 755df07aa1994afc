//! The divergence guard's test: a step diverges when its loss, gradient norm, energies or samples
//! are non-finite, or the energies, their gap or the samples leave the bounds of `[guard]`.
//! What a rollback then changes is [`after_rollback`]; the trainer carries it out.
use crate::config::GuardConfig;
use crate::objectives::Terms;
use tch::{Kind, Tensor};

/// What the guard reads of one step, in one host read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub loss: f64,
    pub grad_norm: f64,
    /// Mean E(data) and mean E(samples) (0 when the objective does not log them).
    pub e_data: f64,
    pub e_samples: f64,
    /// Largest |x| of the step's samples (0 without samples).
    pub max_sample: f64,
}

impl Probe {
    /// Stacks the five values on the device and reads them in one transfer.
    pub fn read(terms: &Terms, grad_norm: &Tensor) -> Probe {
        let device = terms.loss.device();
        let log =
            |name: &str| terms.logs.iter().find(|(n, _)| *n == name).map(|(_, t)| t.to_kind(Kind::Float).view([1]));
        let zero = || Tensor::zeros([1], (Kind::Float, device));
        let probe = Tensor::cat(
            &[
                terms.loss.detach().to_kind(Kind::Float).view([1]),
                grad_norm.to_kind(Kind::Float).to_device(device).view([1]),
                log("e_data").unwrap_or_else(zero),
                log("e_samples").unwrap_or_else(zero),
                terms.samples.as_ref().map(|s| s.abs().max().to_kind(Kind::Float).view([1])).unwrap_or_else(zero),
            ],
            0,
        );
        let v: Vec<f64> = Vec::try_from(&probe.to_kind(Kind::Double)).expect("five values");
        Probe { loss: v[0], grad_norm: v[1], e_data: v[2], e_samples: v[3], max_sample: v[4] }
    }
}

/// Why a step counts as diverged, if it does.
pub fn divergence(p: &Probe, g: &GuardConfig) -> Option<String> {
    let values = [p.loss, p.grad_norm, p.e_data, p.e_samples, p.max_sample];
    let names = ["loss", "gradient norm", "mean E(data)", "mean E(samples)", "largest |sample|"];
    if let Some(i) = values.iter().position(|x| !x.is_finite()) {
        return Some(format!("non-finite {}", names[i]));
    }
    let (ed, es, xs) = (p.e_data, p.e_samples, p.max_sample);
    if ed.abs() > g.max_energy || es.abs() > g.max_energy {
        return Some(format!("energy beyond {} (E(data) {ed:.3e}, E(samples) {es:.3e})", g.max_energy));
    }
    if (ed - es).abs() > g.max_gap {
        return Some(format!("energy gap {:.3e} beyond {}", ed - es, g.max_gap));
    }
    if xs > g.max_sample {
        return Some(format!("SGLD samples left the range (|x| up to {xs:.3e})"));
    }
    None
}

/// Whether the guard gives up instead of rolling back, after `rollbacks` so far.
pub fn gives_up(g: &GuardConfig, rollbacks: u32) -> bool {
    !g.enabled || rollbacks >= g.max_rollbacks
}

/// The learning-rate scale and chain length after one more rollback.
pub fn after_rollback(g: &GuardConfig, lr_scale: f64, sgld_steps: usize) -> (f64, usize) {
    (lr_scale * g.lr_factor, ((sgld_steps as f64) * g.sgld_steps_factor).round() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(loss: f64, e_data: f64, e_samples: f64, max_sample: f64) -> Probe {
        Probe { loss, grad_norm: 1.0, e_data, e_samples, max_sample }
    }

    #[test]
    fn names_the_first_bad_value_and_the_bound_crossed() {
        let g = GuardConfig::default();
        assert_eq!(divergence(&probe(0.5, -1.0, 2.0, 1.0), &g), None);
        assert_eq!(divergence(&probe(f64::NAN, 0.0, 0.0, 0.0), &g).unwrap(), "non-finite loss");
        assert_eq!(divergence(&probe(0.0, 0.0, f64::INFINITY, 0.0), &g).unwrap(), "non-finite mean E(samples)");
        assert!(divergence(&probe(0.0, 2e4, 0.0, 0.0), &g).unwrap().starts_with("energy beyond"));
        let gap = GuardConfig { max_gap: 10.0, ..GuardConfig::default() };
        assert!(divergence(&probe(0.0, 6.0, -6.0, 0.0), &gap).unwrap().starts_with("energy gap"));
        assert!(divergence(&probe(0.0, 0.0, 0.0, 2e3), &g).unwrap().starts_with("SGLD samples left"));
    }

    #[test]
    fn rollbacks_scale_the_rate_and_chains_until_the_limit() {
        let g = GuardConfig { lr_factor: 0.5, sgld_steps_factor: 1.5, max_rollbacks: 2, ..GuardConfig::default() };
        assert_eq!(after_rollback(&g, 1.0, 20), (0.5, 30));
        assert!(!gives_up(&g, 1) && gives_up(&g, 2));
        assert!(gives_up(&GuardConfig { enabled: false, ..g }, 0));
    }
}
