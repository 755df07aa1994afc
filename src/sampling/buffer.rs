//! The replay buffer of persistent SGLD chains (JEM, IGEBM): each draw continues chains stored in
//! the buffer, except a fraction (5% by default) restarted from uniform noise; the sampled
//! results are written back at the same slots. With per-class blocks, class y owns slots
//! [y * S/K, (y + 1) * S/K), for conditional sampling. It lives on the training device; its
//! randomness comes from libtorch's generator (reseeded per step by the trainer).
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
pub struct ReplayBuffer {
    /// The chains [S, ...example shape].
    pub data: Tensor,
    pub reinit_fraction: f64,
    /// Number of class blocks (None: one shared pool).
    pub classes: Option<i64>,
    /// Fresh chains are U(-init_range, init_range).
    pub init_range: f64,
}

/// A draw: starting points and the slots they came from.
pub struct Draw {
    pub x: Tensor,
    pub slots: Tensor,
}

impl ReplayBuffer {
    /// A buffer of `size` chains initialised from uniform noise.
    pub fn new(
        size: i64,
        shape: &[i64],
        reinit_fraction: f64,
        classes: Option<i64>,
        init_range: f64,
        device: Device,
    ) -> Self {
        let mut dims = vec![size];
        dims.extend_from_slice(shape);
        let data = uniform(&dims, init_range, device);
        ReplayBuffer { data, reinit_fraction, classes, init_range }
    }

    pub fn size(&self) -> i64 {
        self.data.size()[0]
    }

    /// Draws `n` starting points; with per-class blocks, `y` gives each chain's class.
    pub fn draw(&self, n: i64, y: Option<&Tensor>) -> Draw {
        let device = self.data.device();
        let size = self.size();
        let slots = match (self.classes, y) {
            (Some(k), Some(y)) => {
                let block = size / k;
                y.to_device(device) * block + Tensor::randint(block, [n], (Kind::Int64, device))
            }
            _ => Tensor::randint(size, [n], (Kind::Int64, device)),
        };
        let stored = self.data.index_select(0, &slots);
        let fresh = uniform(&stored.size(), self.init_range, device);
        let mut mask_shape = vec![n];
        mask_shape.extend(std::iter::repeat_n(1, stored.dim() - 1));
        let restart = Tensor::rand([n], (Kind::Float, device)).lt(self.reinit_fraction).view(mask_shape.as_slice());
        Draw { x: fresh.where_self(&restart, &stored), slots }
    }

    /// Writes chains back to their slots.
    pub fn store(&mut self, slots: &Tensor, x: &Tensor) {
        tch::no_grad(|| {
            let _ = self.data.index_put_(&[Some(slots.shallow_clone())], &x.detach().to_kind(self.data.kind()), false);
        });
    }
}

/// U(-r, r) of the given shape.
pub fn uniform(dims: &[i64], r: f64, device: Device) -> Tensor {
    Tensor::rand(dims, (Kind::Float, device)) * (2.0 * r) - r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_continue_chains_and_restart_the_configured_fraction() {
        tch::manual_seed(3);
        let mut b = ReplayBuffer::new(1000, &[2], 0.05, None, 1.0, Device::Cpu);
        // Mark every stored chain with the value 5, outside the noise range.
        b.data = Tensor::full([1000, 2], 5.0, (Kind::Float, Device::Cpu));
        let d = b.draw(20_000, None);
        let restarted = d.x.lt(2.0).all_dim(1, false).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!((restarted - 0.05).abs() < 0.006, "restart fraction {restarted}");
        let d = b.draw(10, None);
        b.store(&d.slots, &(d.x.zeros_like() - 7.0));
        let back = b.data.index_select(0, &d.slots);
        assert!(back.eq(-7.0).all().int64_value(&[]) == 1);
    }

    #[test]
    fn per_class_draws_stay_in_their_block() {
        tch::manual_seed(0);
        let b = ReplayBuffer::new(100, &[1], 0.0, Some(10), 1.0, Device::Cpu);
        let y = Tensor::from_slice(&[0i64, 3, 9, 9]);
        let d = b.draw(4, Some(&y));
        let slots: Vec<i64> = Vec::try_from(&d.slots).unwrap();
        for (s, c) in slots.iter().zip([0, 3, 9, 9]) {
            assert!(*s >= c * 10 && *s < (c + 1) * 10, "slot {s} for class {c}");
        }
    }
}
