//! The exact log-partition function of a 2-D energy model by numerical integration on a grid,
//! log Z = log sum_cells exp(-E(c)) h^2 (midpoint rule), hence exact log-likelihoods
//! log p(x) = -E(x) - log Z, to compare training methods on densities whose truth is known.
use crate::models::EnergyNet;
use anyhow::bail;
use tch::{Device, Kind, Tensor};

/// log Z over the square [lo, hi]^2 with n x n cells.
pub fn grid_log_z(net: &EnergyNet, lo: f64, hi: f64, n: i64, device: Device) -> crate::Result<f64> {
    if net.cfg.input_shape != [2] {
        bail!("grid integration needs a 2-D model; this one takes {:?}", net.cfg.input_shape);
    }
    let h = (hi - lo) / n as f64;
    let axis = Tensor::arange(n, (Kind::Double, device)) * h + (lo + h / 2.0);
    let gx = axis.view([n, 1]).expand([n, n], false).reshape([-1]);
    let gy = axis.view([1, n]).expand([n, n], false).reshape([-1]);
    let pts = Tensor::stack(&[gx, gy], 1).to_kind(Kind::Float);
    let neg_e = tch::no_grad(|| -net.energy(&pts, false)).to_kind(Kind::Double);
    Ok(neg_e.logsumexp([0].as_slice(), false).double_value(&[]) + 2.0 * h.ln())
}

/// Mean exact log-likelihood of points [N, 2] given log Z.
pub fn mean_log_likelihood(net: &EnergyNet, points: &Tensor, log_z: f64) -> f64 {
    tch::no_grad(|| -net.energy(points, false)).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]) - log_z
}
