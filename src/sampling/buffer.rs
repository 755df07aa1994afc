//! The replay buffer of persistent SGLD chains (JEM, IGEBM): each draw continues chains stored in
//! the buffer, except a fraction (5% by default) restarted from the fresh-chain distribution
//! ([`ChainInit`]: uniform noise, or JEM++'s class Gaussians); the sampled
//! results are written back at the same slots. With per-class blocks, class y owns slots
//! [y * S/K, (y + 1) * S/K), for conditional sampling. It lives on the training device; its
//! randomness comes from libtorch's generator (reseeded per step by the trainer).
//!
//! Slots are drawn without replacement within a draw (JEM draws with replacement): no two chains
//! of a batch continue, and then overwrite, the same stored chain, and the write-back is the same
//! at any thread count. Only when a draw asks for more chains than there are slots (of its class)
//! do slots repeat; the write-back then keeps the last of them in batch order, also at any
//! thread count.
pub use super::init::uniform;
use super::init::ChainInit;
use std::rc::Rc;
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
pub struct ReplayBuffer {
    /// The chains [S, ...example shape].
    pub data: Tensor,
    pub reinit_fraction: f64,
    /// Number of class blocks (None: one shared pool).
    pub classes: Option<i64>,
    /// Where fresh chains (the first fill and the restarts) are drawn from.
    pub init: Rc<ChainInit>,
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
        ReplayBuffer { data, reinit_fraction, classes, init: Rc::new(ChainInit::Uniform { range: init_range }) }
    }

    /// Draws fresh chains from `init` from now on, and refills every slot from it (slot s of a
    /// per-class buffer from its block's class; otherwise classes in equal runs, as JEM++ fills).
    pub fn refill(&mut self, init: Rc<ChainInit>) {
        self.init = init;
        self.reset();
    }

    /// Every slot restarted from the fresh-chain distribution (the guard's `reset_buffer`).
    pub fn reset(&mut self) {
        self.data = self.init.sample(&self.data.size(), Some(&self.slot_classes()), self.data.device());
    }

    /// The class of every slot: its block's with per-class blocks, else equal runs of the
    /// init's classes.
    fn slot_classes(&self) -> Tensor {
        let size = self.size();
        let k = match (self.classes, self.init.as_ref()) {
            (Some(k), _) => k,
            (None, ChainInit::ClassGaussians(g)) => g.classes(),
            (None, ChainInit::Uniform { .. }) => 1,
        };
        (Tensor::arange(size, (Kind::Int64, self.data.device())) * k).floor_divide_scalar(size)
    }

    pub fn size(&self) -> i64 {
        self.data.size()[0]
    }

    /// Draws `n` starting points; with per-class blocks, `y` gives each chain's class.
    pub fn draw(&self, n: i64, y: Option<&Tensor>) -> Draw {
        let device = self.data.device();
        let size = self.size();
        let slots = match (self.classes, y) {
            (Some(k), Some(y)) => class_slots(&y.to_device(device), k, size / k),
            _ => distinct_slots(size, n, device),
        };
        let stored = self.data.index_select(0, &slots);
        // Restarts of a per-class block start in their class; others in a random class.
        let fresh = self.init.sample(&stored.size(), y.filter(|_| self.classes.is_some()), device);
        let mut mask_shape = vec![n];
        mask_shape.extend(std::iter::repeat_n(1, stored.dim() - 1));
        let restart = Tensor::rand([n], (Kind::Float, device)).lt(self.reinit_fraction).view(mask_shape.as_slice());
        Draw { x: fresh.where_self(&restart, &stored), slots }
    }

    /// Writes chains back to their slots; where slots repeat, every copy writes the chain that
    /// comes last in `slots`, so the result does not depend on the order the writes land in.
    pub fn store(&mut self, slots: &Tensor, x: &Tensor) {
        tch::no_grad(|| {
            // For each chain, the last position in the batch with the same slot (n x n: n is a batch).
            let n = slots.size()[0];
            let positions = Tensor::arange(n, (Kind::Int64, slots.device())).view([1, n]).expand([n, n], false);
            let same = slots.view([n, 1]).eq_tensor(&slots.view([1, n]));
            let last = positions.where_self(&same, &positions.full_like(-1)).amax([1].as_slice(), false);
            let x = x.detach().to_kind(self.data.kind()).index_select(0, &last);
            let _ = self.data.index_put_(&[Some(slots.shallow_clone())], &x, false);
        });
    }
}

/// `n` slots of 0..size drawn uniformly without replacement (when n > size: every slot once per
/// round, in fresh random orders).
fn distinct_slots(size: i64, n: i64, device: Device) -> Tensor {
    let rounds = (n + size - 1) / size;
    let perms: Vec<Tensor> = (0..rounds).map(|_| Tensor::randperm(size, (Kind::Int64, device))).collect();
    Tensor::cat(&perms, 0).narrow(0, 0, n)
}

/// Slots in the class blocks of `block` slots: the chains of class c take distinct slots of block
/// c in a random order (the r-th chain of class c in batch order takes the r-th slot of a random
/// permutation of the block; past `block` chains of one class the permutation repeats).
fn class_slots(y: &Tensor, classes: i64, block: i64) -> Tensor {
    let device = y.device();
    let n = y.size()[0];
    let order = y.argsort_stable(true, 0, false);
    let counts = y.bincount(None::<Tensor>, classes);
    let starts = counts.cumsum(0, Kind::Int64) - &counts;
    let rank_sorted = Tensor::arange(n, (Kind::Int64, device)) - starts.index_select(0, &y.index_select(0, &order));
    let rank = rank_sorted.zeros_like().index_put_(&[Some(order)], &rank_sorted, false);
    let perm = Tensor::rand([classes, block], (Kind::Float, device)).argsort_stable(true, 1, false);
    let within = perm.view([-1]).index_select(0, &(y * block + rank.remainder(block)));
    y * block + within
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

    /// No slot repeats within a draw (unconditional or per class), and a draw larger than the
    /// buffer writes back the last chain of each repeated slot.
    #[test]
    fn draws_take_distinct_slots_and_repeated_slots_keep_the_last_chain() {
        tch::manual_seed(5);
        let distinct = |t: &Tensor| {
            let mut v: Vec<i64> = Vec::try_from(t).unwrap();
            let n = v.len();
            v.sort();
            v.dedup();
            v.len() == n
        };
        let mut b = ReplayBuffer::new(100, &[1], 0.0, None, 1.0, Device::Cpu);
        for _ in 0..20 {
            assert!(distinct(&b.draw(100, None).slots));
        }
        let c = ReplayBuffer::new(40, &[1], 0.0, Some(4), 1.0, Device::Cpu);
        let y = Tensor::from_slice(&[3i64, 0, 3, 3, 1, 0, 3, 2, 3, 3]);
        for _ in 0..20 {
            let s = c.draw(10, Some(&y)).slots;
            assert!(distinct(&s));
            let blocks: Vec<i64> = Vec::try_from(&(s / 10)).unwrap();
            assert_eq!(blocks, Vec::<i64>::try_from(&y).unwrap());
        }
        let slots = Tensor::from_slice(&[4i64, 7, 4, 4, 7]);
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0]).view([5, 1]);
        b.store(&slots, &x);
        let back: Vec<f32> =
            Vec::try_from(&b.data.index_select(0, &Tensor::from_slice(&[4i64, 7])).view([-1])).unwrap();
        assert_eq!(back, vec![4.0, 5.0]);
    }

    /// JEM++'s fill: each block of a per-class buffer starts in its class's Gaussian, and its
    /// restarts come from there too (two classes far apart, told apart by sign).
    #[test]
    fn a_class_gaussian_fill_puts_each_class_in_its_block() {
        use crate::data::{Dataset, Pixels};
        let pts = vec![-0.8f32, -0.7, -0.75, 0.8, 0.7, 0.75];
        let classes = vec!["a".into(), "b".into()];
        let ds = Dataset::new("pts", Pixels::F32(pts), vec![1], Some(vec![0, 0, 0, 1, 1, 1]), classes).unwrap();
        let g = super::super::ClassGaussians::fit(&ds, &[0, 1, 2, 3, 4, 5], Some(2), 1e-4, 1.0, Device::Cpu).unwrap();
        tch::manual_seed(2);
        let mut b = ReplayBuffer::new(10, &[1], 1.0, Some(2), 1.0, Device::Cpu);
        b.refill(Rc::new(ChainInit::ClassGaussians(g)));
        let signs: Vec<f32> = Vec::try_from(&b.data.sign().view([-1])).unwrap();
        assert_eq!(signs, vec![-1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        // Every chain restarts (fraction 1): from its class, whatever was stored.
        let y = Tensor::from_slice(&[1i64, 0, 1]);
        let d = b.draw(3, Some(&y));
        let signs: Vec<f32> = Vec::try_from(&d.x.sign().view([-1])).unwrap();
        assert_eq!(signs, vec![1.0, -1.0, 1.0]);
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
