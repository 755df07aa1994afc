//! Gradient averaging across ranks: g <- (1/W) sum_r g_r, by all-reduce on flat buckets of about
//! `dist.bucket_mb` MiB (the gradients of consecutive parameters, in name order, concatenated), as
//! PyTorch's DistributedDataParallel does (Li et al. 2020, "PyTorch Distributed: Experiences on
//! Accelerating Data Parallel Training", VLDB). With every rank's loss a mean over its own B
//! examples, the average of the W gradients is the gradient of the mean over all W x B examples.
//!
//! Two ways (`dist.overlap`):
//! - overlapped (the default): c10d's own Reducer, the engine of DistributedDataParallel, hooks
//!   the parameters' gradient accumulators and all-reduces each bucket as soon as its gradients
//!   are in, while the backward pass computes the rest ([`crate::dist::GradReducer`]);
//! - after the pass: the buckets here, one after another, timed (for `ebm bench`).
//!
//! Both give the same average (to float rounding: the Reducer divides before summing).
use super::trainer::GradientReducer;
use crate::dist::{GradReducer, Group, ReduceOp};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;
use tch::Tensor;

/// What a failed all-reduce left for the run loop to report (the trait cannot return it).
pub type Failure = Rc<RefCell<Option<anyhow::Error>>>;

/// The [`GradientReducer`] of a data-parallel run.
pub struct AllReduce {
    group: Rc<Group>,
    bucket_bytes: usize,
    /// Overlap the all-reduce with the backward pass (built at the first backward pass).
    overlap: bool,
    reducer: Option<GradReducer>,
    /// Seconds spent in all-reduce so far (for `ebm bench` and the run's summary).
    pub seconds: Rc<Cell<f64>>,
    /// The first failure; later steps reduce nothing.
    pub failure: Failure,
}

impl AllReduce {
    pub fn new(group: Rc<Group>, bucket_mb: f64, overlap: bool) -> Self {
        let bucket_bytes = ((bucket_mb * 1024.0 * 1024.0) as usize).max(1);
        AllReduce { group, bucket_bytes, overlap, reducer: None, seconds: Rc::default(), failure: Rc::default() }
    }

    /// The backward pass with c10d's Reducer armed: the averages are in `.grad()` when it returns.
    fn overlapped_backward(&mut self, loss: &Tensor, params: &[(String, Tensor)]) -> crate::Result<()> {
        if self.reducer.is_none() {
            let ps: Vec<Tensor> = params.iter().map(|(_, p)| p.shallow_clone()).collect();
            self.reducer = Some(self.group.grad_reducer(&ps, self.bucket_bytes)?);
        }
        let reducer = self.reducer.as_ref().expect("built above");
        reducer.prepare(loss).map_err(|e| self.group.failed("arming the gradient reducer", &e))?;
        loss.f_backward().map_err(|e| self.group.failed("the overlapped gradient all-reduce", &e.to_string()))
    }

    /// The parameters' indices in buckets of about `bucket_bytes` (at least one parameter each).
    fn buckets(&self, grads: &[Tensor]) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = vec![Vec::new()];
        let mut bytes = 0;
        for (i, g) in grads.iter().enumerate() {
            let b = g.numel() * g.kind().elt_size_in_bytes();
            if bytes + b > self.bucket_bytes && !out.last().is_some_and(Vec::is_empty) {
                out.push(Vec::new());
                bytes = 0;
            }
            out.last_mut().expect("one bucket").push(i);
            bytes += b;
        }
        out
    }

    /// One bucket: concatenated, summed across ranks, divided by W, copied back.
    fn reduce_bucket(&self, grads: &[Tensor], idx: &[usize]) -> crate::Result<()> {
        let mut flat = Tensor::cat(&idx.iter().map(|&i| grads[i].reshape([-1])).collect::<Vec<_>>(), 0);
        self.group.all_reduce(&flat, ReduceOp::Sum)?;
        let _ = flat.g_div_scalar_(self.group.world as f64);
        let mut at = 0;
        for &i in idx {
            let n = grads[i].numel() as i64;
            grads[i].shallow_clone().copy_(&flat.narrow(0, at, n).view_as(&grads[i]));
            at += n;
        }
        Ok(())
    }
}

impl GradientReducer for AllReduce {
    fn backward(&mut self, loss: &Tensor, params: &[(String, Tensor)]) {
        if !self.overlap || self.failure.borrow().is_some() {
            return loss.backward();
        }
        if let Err(e) = self.overlapped_backward(loss, params) {
            *self.failure.borrow_mut() = Some(e);
        }
    }

    fn reduce(&mut self, params: &[(String, Tensor)]) {
        if self.overlap || self.failure.borrow().is_some() {
            return;
        }
        let start = Instant::now();
        let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        let result = tch::no_grad(|| self.buckets(&grads).iter().try_for_each(|b| self.reduce_bucket(&grads, b)));
        self.seconds.set(self.seconds.get() + start.elapsed().as_secs_f64());
        if let Err(e) = result {
            *self.failure.borrow_mut() = Some(e);
        }
    }

    fn any_diverged(&mut self, here: bool) -> bool {
        if self.failure.borrow().is_some() {
            return here;
        }
        self.group.any(here).unwrap_or_else(|e| {
            *self.failure.borrow_mut() = Some(e);
            here
        })
    }
}
