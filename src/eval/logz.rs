//! The exact log-partition function of a 2-D energy model by numerical integration on a grid,
//! log Z = log sum_cells exp(-E(c)) h^2 (midpoint rule), hence exact log-likelihoods
//! log p(x) = -E(x) - log Z, to compare training methods on densities whose truth is known.
//! The model's density is the one normalised over the grid's square.
use crate::models::EnergyNet;
use anyhow::bail;
use tch::{Device, Kind, Tensor};

/// A square grid [lo, hi]^2 of n x n cells, evaluated at the cell midpoints.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Grid {
    pub lo: f64,
    pub hi: f64,
    pub n: i64,
}

impl Grid {
    /// Cell side.
    pub fn h(&self) -> f64 {
        (self.hi - self.lo) / self.n as f64
    }

    /// Midpoint coordinate of cell `i` along an axis.
    pub fn mid(&self, i: i64) -> f64 {
        self.lo + (i as f64 + 0.5) * self.h()
    }

    /// The midpoints [n*n, 2] (float), the first coordinate varying slowest: cell (i, j) is row
    /// i * n + j, at (mid(i), mid(j)).
    pub fn points(&self, device: Device) -> Tensor {
        let (n, h) = (self.n, self.h());
        let axis = Tensor::arange(n, (Kind::Double, device)) * h + (self.lo + h / 2.0);
        let gx = axis.view([n, 1]).expand([n, n], false).reshape([-1]);
        let gy = axis.view([1, n]).expand([n, n], false).reshape([-1]);
        Tensor::stack(&[gx, gy], 1).to_kind(Kind::Float)
    }
}

/// The model's exact log-density at every cell midpoint ([n*n] double, laid out as
/// [`Grid::points`]) and its log Z over the grid. The energy is evaluated in chunks.
pub fn grid_log_density(net: &EnergyNet, grid: Grid, device: Device) -> crate::Result<(Tensor, f64)> {
    if net.cfg.input_shape != [2] {
        bail!("grid integration needs a 2-D model; this one takes {:?}", net.cfg.input_shape);
    }
    let pts = grid.points(device);
    let chunks: Vec<Tensor> =
        tch::no_grad(|| pts.split(65_536, 0).iter().map(|c| -net.energy(c, false).to_kind(Kind::Double)).collect());
    let neg_e = Tensor::cat(&chunks, 0);
    let log_z = neg_e.logsumexp([0].as_slice(), false).double_value(&[]) + 2.0 * grid.h().ln();
    Ok((neg_e - log_z, log_z))
}

/// log Z over the square [lo, hi]^2 with n x n cells.
pub fn grid_log_z(net: &EnergyNet, lo: f64, hi: f64, n: i64, device: Device) -> crate::Result<f64> {
    Ok(grid_log_density(net, Grid { lo, hi, n }, device)?.1)
}

/// Mean exact log-likelihood of points [N, 2] given log Z.
pub fn mean_log_likelihood(net: &EnergyNet, points: &Tensor, log_z: f64) -> f64 {
    tch::no_grad(|| -net.energy(points, false)).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]) - log_z
}

/// KL(p || q) = sum_c p(c) [log p(c) - log q(c)] h^2 over the grid's cells, from per-cell log
/// densities laid out alike; cells where p is 0 (log p = -inf) add nothing. Also returns p's mass
/// on the grid, sum_c p(c) h^2 (1 minus the mass outside, up to the midpoint rule's error).
pub fn grid_kl(log_p: &[f64], log_q: &[f64], h: f64) -> (f64, f64) {
    let (mut kl, mut mass) = (0.0, 0.0);
    for (&lp, &lq) in log_p.iter().zip(log_q) {
        if lp.is_finite() {
            let p = lp.exp();
            kl += p * (lp - lq);
            mass += p;
        }
    }
    (kl * h * h, mass * h * h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_kl_of_two_gaussians_is_the_closed_form() {
        // p = N(0, I), q = N((1, 0), 4 I): KL = log(4) + (2 + 1) / 8 - 1 in 2-D.
        let g = Grid { lo: -8.0, hi: 8.0, n: 400 };
        let pts = g.points(Device::Cpu);
        let v: Vec<f32> = Vec::try_from(&pts.flatten(0, -1)).unwrap();
        let two_pi = 2.0 * std::f64::consts::PI;
        let (mut lp, mut lq) = (Vec::new(), Vec::new());
        for c in v.chunks(2) {
            let (x, y) = (c[0] as f64, c[1] as f64);
            lp.push(-(x * x + y * y) / 2.0 - two_pi.ln());
            lq.push(-((x - 1.0).powi(2) + y * y) / 8.0 - (two_pi * 4.0).ln());
        }
        let (kl, mass) = grid_kl(&lp, &lq, g.h());
        let want = 4f64.ln() + 3.0 / 8.0 - 1.0;
        assert!((kl - want).abs() < 1e-4, "{kl} vs {want}");
        assert!((mass - 1.0).abs() < 1e-6, "{mass}");
        // Cell (i, j) is at (mid(i), mid(j)).
        assert_eq!(
            (v[2 * (3 * 400 + 7)] as f64, v[2 * (3 * 400 + 7) + 1] as f64),
            (g.mid(3) as f32 as f64, g.mid(7) as f32 as f64)
        );
    }
}
