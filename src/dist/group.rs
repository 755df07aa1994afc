//! [`Group`]: this process's place among the ranks of a data-parallel run, on c10d's TCPStore (the
//! rendezvous: rank 0 hosts it at MASTER_ADDR:MASTER_PORT) and ProcessGroupGloo or
//! ProcessGroupNCCL (the collectives; [`Backend`]).
//!
//! NCCL reduces only tensors on the rank's GPU: a collective given a tensor elsewhere (a host
//! scalar: a decision, a step number) runs on a copy on that GPU, copied back.
//!
//! Joining is checked through the store before Gloo's own rendezvous, so that a wrong world size
//! or a rank that never comes is one clear error, not a hang: every rank writes its world size
//! under `ebm/world/<rank>`; ranks > 0 compare theirs with rank 0's; rank 0 waits (up to the
//! timeout) for every other rank's key and names those missing.
//!
//! Every collective waits at most the timeout; a failure names the collective and the rank(s)
//! that stopped answering ([`Group::diagnose`]).
use super::ffi;
use super::Env;
use crate::config::Backend;
use anyhow::{anyhow, bail};
use std::ffi::{c_char, CStr, CString};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// The reductions [`Group::all_reduce`] offers (Gloo has no average: sum, then divide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum = 0,
    Max = 1,
    Min = 2,
}

/// One process's membership of the run's process group.
pub struct Group {
    ptr: *mut ffi::EbmGroup,
    pub rank: usize,
    pub world: usize,
    pub timeout: Duration,
    /// MASTER_ADDR:MASTER_PORT, for messages.
    pub addr: String,
    pub backend: Backend,
    /// Where the collectives run: NCCL's GPU (cuda:LOCAL_RANK); for Gloo, wherever the tensor is.
    device: Option<Device>,
}

// SAFETY: the c10d objects are thread-safe for use from one thread at a time; a Group is owned
// by one thread (moved, never shared).
unsafe impl Send for Group {}

/// A message the shim allocated, read and freed.
fn take_text(p: *mut c_char) -> String {
    if p.is_null() {
        return "unknown error".into();
    }
    // SAFETY: the shim gives a NUL-terminated malloc'd string, freed exactly once here.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    unsafe { ffi::ebm_free_error(p) };
    s
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl Group {
    /// Joins the run `env` describes: connects to (rank 0: hosts) the store, checks every rank
    /// agrees on the world size and has joined, then builds the `backend` group (NCCL: on
    /// `device`, which must be a CUDA device; see `crate::config::BackendChoice::resolve`).
    /// Errors name the address, the ranks and the fix.
    pub fn connect(env: &Env, timeout: Duration, backend: Backend, device: Device) -> crate::Result<Group> {
        let gpu = match (backend, device) {
            (Backend::Gloo, _) => None,
            (Backend::Nccl, Device::Cuda(i)) if ffi::NCCL => Some(i),
            (Backend::Nccl, _) => bail!(
                "rank {}: the NCCL backend needs a CUDA device and an ebm built with NCCL (here: {device:?}, NCCL built: {}): set dist.backend = \"gloo\"",
                env.rank,
                ffi::NCCL
            ),
        };
        if !ffi::AVAILABLE {
            bail!("this ebm was built without c10d (Gloo's headers were not found at build time): install them (apt-get install libgloo-dev, or GLOO_INCLUDE_DIR=...) and rebuild, to train with WORLD_SIZE = {}", env.world);
        }
        let addr = format!("{}:{}", env.master_addr, env.master_port);
        let host = CString::new(env.master_addr.clone()).map_err(|_| anyhow!("MASTER_ADDR contains a NUL byte"))?;
        let mut error = std::ptr::null_mut();
        // SAFETY: valid C string and out-pointer; the result is owned by the Group (freed in Drop).
        let ptr = unsafe {
            ffi::ebm_dist_connect(
                host.as_ptr(),
                env.master_port as i32,
                env.rank as i32,
                env.world as i32,
                millis(timeout),
                &mut error,
            )
        };
        if ptr.is_null() {
            let role = if env.rank == 0 { "cannot host" } else { "cannot reach" };
            bail!(
                "rank {}: {role} the rendezvous store at MASTER_ADDR:MASTER_PORT = {addr} within {:.0} s: {} (check MASTER_ADDR and MASTER_PORT: rank 0 must be able to listen on the port and every rank to reach it)",
                env.rank,
                timeout.as_secs_f64(),
                take_text(error)
            );
        }
        let g = Group { ptr, rank: env.rank, world: env.world, timeout, addr, backend, device: gpu.map(Device::Cuda) };
        g.check_membership()?;
        let (rank, world) = (g.rank as i32, g.world as i32);
        let mut error = std::ptr::null_mut();
        // SAFETY: live group, valid strings.
        let rc = unsafe {
            match gpu {
                None => ffi::ebm_dist_start_group(g.ptr, host.as_ptr(), rank, world, &mut error),
                Some(i) => ffi::ebm_dist_start_nccl(g.ptr, rank, world, i as i32, &mut error),
            }
        };
        if rc != 0 {
            bail!("rank {}: {}'s rendezvous over {} failed: {}", g.rank, backend.name(), g.addr, take_text(error));
        }
        Ok(g)
    }

    /// Every rank has joined with the same world size (see the module's comment).
    fn check_membership(&self) -> crate::Result<()> {
        self.set(&format!("ebm/world/{}", self.rank), &self.world.to_string())?;
        if self.rank > 0 {
            let theirs = self.get("ebm/world/0", self.timeout)?;
            if theirs != self.world.to_string() {
                bail!(
                    "rank {}: WORLD_SIZE = {} here but {theirs} on rank 0 (store {}): every rank must be started with the same WORLD_SIZE",
                    self.rank,
                    self.world,
                    self.addr
                );
            }
            return Ok(());
        }
        let deadline = std::time::Instant::now() + self.timeout;
        let mut missing: Vec<usize> = (1..self.world).collect();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                bail!(
                    "rank 0: rank(s) {missing:?} of WORLD_SIZE = {} did not join at {} within {:.0} s (dist.timeout): start them, or check their MASTER_ADDR, MASTER_PORT and WORLD_SIZE",
                    self.world,
                    self.addr,
                    self.timeout.as_secs_f64()
                );
            }
            let key = format!("ebm/world/{}", missing[0]);
            if !self.has(&key)? {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let (r, w) = (missing.remove(0), self.get(&key, left)?);
            if w != self.world.to_string() {
                bail!(
                    "rank 0: WORLD_SIZE = {} here but {w} on rank {r} (store {}): every rank must be started with the same WORLD_SIZE",
                    self.world,
                    self.addr
                );
            }
        }
        Ok(())
    }

    /// store[key] = value.
    pub fn set(&self, key: &str, value: &str) -> crate::Result<()> {
        let (k, v) = (CString::new(key)?, CString::new(value)?);
        let mut error = std::ptr::null_mut();
        // SAFETY: live group, valid strings and out-pointer.
        if unsafe { ffi::ebm_dist_store_set(self.ptr, k.as_ptr(), v.as_ptr(), &mut error) } != 0 {
            bail!("rank {}: the store at {} failed (set {key}): {}", self.rank, self.addr, take_text(error));
        }
        Ok(())
    }

    /// Whether store[key] is set, now.
    pub fn has(&self, key: &str) -> crate::Result<bool> {
        let k = CString::new(key)?;
        let (mut exists, mut error) = (0, std::ptr::null_mut());
        // SAFETY: live group, valid string and out-pointers.
        if unsafe { ffi::ebm_dist_store_check(self.ptr, k.as_ptr(), &mut exists, &mut error) } != 0 {
            bail!("rank {}: the store at {} failed (check {key}): {}", self.rank, self.addr, take_text(error));
        }
        Ok(exists != 0)
    }

    /// store[key], waiting up to `wait` for it to be set.
    pub fn get(&self, key: &str, wait: Duration) -> crate::Result<String> {
        let k = CString::new(key)?;
        let (mut value, mut error) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: live group, valid string and out-pointers.
        if unsafe { ffi::ebm_dist_store_get(self.ptr, k.as_ptr(), millis(wait), &mut value, &mut error) } != 0 {
            bail!("rank {}: the store at {} failed (get {key}): {}", self.rank, self.addr, take_text(error));
        }
        Ok(take_text(value))
    }

    /// `body` on `t` where the backend can take it: `t` itself, or (NCCL, `t` not on the rank's
    /// GPU) a copy there, copied back into `t` afterwards.
    fn on_device(&self, t: &Tensor, body: impl FnOnce(&Tensor) -> crate::Result<()>) -> crate::Result<()> {
        match self.device {
            Some(d) if t.device() != d => {
                let there = t.to_device(d);
                body(&there)?;
                t.shallow_clone().copy_(&there);
                Ok(())
            }
            _ => body(t),
        }
    }

    /// In place: `t` = the reduction over ranks of every rank's `t` (contiguous; Gloo: on the
    /// CPU or a GPU, NCCL: see the module's comment).
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> crate::Result<()> {
        self.on_device(t, |t| {
            let mut error = std::ptr::null_mut();
            // SAFETY: live group and tensor; the shim only writes into t's storage.
            let rc = unsafe { ffi::ebm_dist_all_reduce(self.ptr, t.as_ptr() as *mut _, op as i32, &mut error) };
            self.check(rc, error, "all-reduce")
        })
    }

    /// In place: `t` = rank `root`'s `t`.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> crate::Result<()> {
        self.on_device(t, |t| {
            let mut error = std::ptr::null_mut();
            // SAFETY: as all_reduce.
            let rc = unsafe { ffi::ebm_dist_broadcast(self.ptr, t.as_ptr() as *mut _, root as i32, &mut error) };
            self.check(rc, error, "broadcast")
        })
    }

    /// Every rank's `t`, stacked: [world, ...t's shape], row r from rank r, on the device of `t`
    /// (NCCL: gathered on the rank's GPU).
    pub fn all_gather(&self, t: &Tensor) -> crate::Result<Tensor> {
        let back = t.device();
        let t = match self.device {
            Some(d) => t.to_device(d).contiguous(),
            None => t.contiguous(),
        };
        let mut shape = vec![self.world as i64];
        shape.extend(t.size());
        let out = Tensor::empty(shape.as_slice(), (t.kind(), t.device()));
        let mut error = std::ptr::null_mut();
        // SAFETY: live group and tensors; the shim writes only into out's storage.
        let rc = unsafe { ffi::ebm_dist_all_gather(self.ptr, t.as_ptr(), out.as_ptr() as *mut _, &mut error) };
        self.check(rc, error, "all-gather")?;
        Ok(out.to_device(back))
    }

    /// Returns when every rank has called it.
    pub fn barrier(&self) -> crate::Result<()> {
        let mut error = std::ptr::null_mut();
        // SAFETY: live group, valid out-pointer.
        let rc = unsafe { ffi::ebm_dist_barrier(self.ptr, &mut error) };
        self.check(rc, error, "barrier")
    }

    /// Whether any rank says yes (a collective decision: every rank gets the same answer).
    pub fn any(&self, yes: bool) -> crate::Result<bool> {
        let t = Tensor::from_slice(&[yes as i64]);
        self.all_reduce(&t, ReduceOp::Max)?;
        Ok(t.int64_value(&[0]) != 0)
    }

    /// After a failed collective: which ranks stopped answering. Every rank that sees the failure
    /// leaves `ebm/failed/<rank>` in the store and waits (up to 5 s, or the timeout if shorter)
    /// for the others' marks; the ranks that leave none died or hung. Rank 0 hosts the store, so
    /// a store that does not answer means rank 0 is gone.
    pub fn diagnose(&self) -> String {
        if self.set(&format!("ebm/failed/{}", self.rank), "1").is_err() {
            return format!("rank 0 (which hosts the store at {}) is gone or not answering", self.addr);
        }
        let deadline = std::time::Instant::now() + self.timeout.min(Duration::from_secs(5));
        let silent: Vec<usize> = (0..self.world)
            .filter(|&r| r != self.rank)
            .filter(|&r| {
                let left = deadline.saturating_duration_since(std::time::Instant::now()).max(Duration::from_millis(10));
                self.get(&format!("ebm/failed/{r}"), left).is_err()
            })
            .collect();
        match silent.as_slice() {
            [] => "every rank saw the failure (a network fault?)".into(),
            [r] => format!("rank {r} died or hung (it does not answer)"),
            rs => format!("ranks {rs:?} died or hung (they do not answer)"),
        }
    }

    fn check(&self, rc: i32, error: *mut c_char, what: &str) -> crate::Result<()> {
        if rc == 0 {
            return Ok(());
        }
        Err(self.failed(what, &take_text(error)))
    }

    /// The error of a collective `what` that failed with `msg`, naming the ranks that stopped
    /// answering ([`Group::diagnose`]).
    pub fn failed(&self, what: &str, msg: &str) -> anyhow::Error {
        anyhow!(
            "rank {}: {what} across {} ranks failed or timed out (dist.timeout = {:.0} s): {}; {msg}",
            self.rank,
            self.world,
            self.timeout.as_secs_f64(),
            self.diagnose()
        )
    }

    /// DistributedDataParallel's gradient reducer over this group for `params` (the trainable
    /// parameters, in the same order on every rank), in buckets of about `bucket_bytes`: see
    /// [`GradReducer`].
    pub fn grad_reducer(&self, params: &[Tensor], bucket_bytes: usize) -> crate::Result<GradReducer> {
        // Gradients come roughly in the reverse of the forward order, which name order follows
        // more or less: the first bucket holds the last parameters.
        let mut order: Vec<i64> = Vec::new();
        let mut sizes: Vec<i64> = Vec::new();
        let mut bytes = 0;
        for i in (0..params.len()).rev() {
            let b = params[i].numel() * params[i].kind().elt_size_in_bytes();
            if sizes.is_empty() || (bytes + b > bucket_bytes && *sizes.last().expect("one") > 0) {
                sizes.push(0);
                bytes = 0;
            }
            order.push(i as i64);
            *sizes.last_mut().expect("one bucket") += 1;
            bytes += b;
        }
        let ptrs: Vec<*mut torch_sys::C_tensor> = params.iter().map(|p| p.as_ptr() as *mut _).collect();
        let mut error = std::ptr::null_mut();
        // SAFETY: live group and tensors; the shim copies the tensor handles (shared storage) and
        // reads the index arrays during the call only.
        let ptr = unsafe {
            ffi::ebm_dist_reducer_new(
                self.ptr,
                ptrs.as_ptr(),
                ptrs.len() as i32,
                order.as_ptr(),
                sizes.as_ptr(),
                sizes.len() as i32,
                bucket_bytes as i64,
                &mut error,
            )
        };
        if ptr.is_null() {
            bail!("rank {}: c10d's gradient reducer could not be built: {}", self.rank, take_text(error));
        }
        Ok(GradReducer { ptr, buckets: sizes.len() })
    }
}

/// c10d's Reducer, the engine of PyTorch's DistributedDataParallel: hooks on the parameters'
/// gradient accumulators put each gradient (divided by the world size) into its bucket and
/// all-reduce a bucket as soon as it is full, while the backward pass computes the rest; the pass
/// ends with every gradient averaged across ranks. Backward passes without [`GradReducer::prepare`]
/// (the sampler's input gradients) are left alone.
pub struct GradReducer {
    ptr: *mut ffi::EbmReducer,
    /// How many buckets the parameters were split into.
    pub buckets: usize,
}

impl GradReducer {
    /// Arms the reducer for the backward pass of `loss`, which must come next; the parameters
    /// `loss` does not reach are marked ready (and averaged as zeros) at once.
    pub fn prepare(&self, loss: &Tensor) -> Result<(), String> {
        let mut error = std::ptr::null_mut();
        // SAFETY: live reducer and tensor.
        let rc = unsafe { ffi::ebm_dist_reducer_prepare(self.ptr, loss.as_ptr(), &mut error) };
        if rc == 0 {
            Ok(())
        } else {
            Err(take_text(error))
        }
    }
}

impl Drop for GradReducer {
    fn drop(&mut self) {
        // SAFETY: the pointer came from ebm_dist_reducer_new and is freed once.
        unsafe { ffi::ebm_dist_reducer_free(self.ptr) }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the pointer came from ebm_dist_connect and is freed once.
        unsafe { ffi::ebm_dist_free(self.ptr) }
    }
}

/// A scalar all-reduced in float64, for sums of small host values.
pub fn reduce_scalar(g: &Group, v: f64, op: ReduceOp) -> crate::Result<f64> {
    let t = Tensor::from_slice(&[v]).to_kind(Kind::Double);
    g.all_reduce(&t, op)?;
    Ok(t.double_value(&[0]))
}
