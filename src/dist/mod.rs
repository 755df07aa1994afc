//! Data-parallel training across processes on PyTorch's own c10d (the engine under
//! torch.distributed): a TCPStore for the rendezvous and Gloo or NCCL for the collectives
//! (`dist.backend`), reached through the small C++ shim `csrc/dist.cpp`.
//!
//! The semantics (README, "Data-parallel training"): W ranks, each on its own device; rank r builds
//! only rows [rB, (r+1)B) of every global batch of W x B examples (the loader's batches are a pure
//! function of (seed, epoch, index), each row of its own stream); each rank keeps its own slice of the replay buffer
//! ([`shard`]) and runs the sampler on its own chains; gradients are averaged by all-reduce in
//! buckets (`crate::train::all_reduce`); parameters and persistent buffers start identical (broadcast from rank
//! 0); the optimiser step is then the same everywhere. Decisions that must agree (the divergence
//! guard's verdict, a stop signal) are all-reduced.
//!
//! How a worker learns its place: torchrun's environment ([`Env`]), set by `torchrun`, SLURM
//! wrappers, or `ebm train --nproc-per-node N` ([`launch`]).
pub mod env;
mod ffi;
pub mod group;
pub mod launch;
pub mod shard;

pub use env::Env;
pub use group::{GradReducer, Group, ReduceOp};

/// Whether this build can join other processes (c10d was compiled in).
pub const AVAILABLE: bool = ffi::AVAILABLE;

/// Whether this build has the NCCL backend (`dist.backend`; see `crate::config::BackendChoice`).
pub const NCCL: bool = ffi::NCCL;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backend;
    use std::time::Duration;
    use tch::{Device, Kind, Tensor};

    /// A free TCP port on 127.0.0.1 (bound, then released).
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// Two ranks (threads of this process, each with its own store client and Gloo group, over
    /// 127.0.0.1): all-reduce, broadcast, all-gather and barrier give what the closed forms say.
    #[test]
    fn two_ranks_all_reduce_broadcast_and_gather() {
        assert!(
            std::hint::black_box(AVAILABLE),
            "built without c10d: install Gloo's headers (libgloo-dev) and rebuild"
        );
        let port = free_port();
        let rank = move |r: usize| {
            std::thread::spawn(move || {
                let env = Env::loopback(r, 2, port);
                let g = Group::connect(&env, Duration::from_secs(20), Backend::Gloo, Device::Cpu).unwrap();
                let x = Tensor::from_slice(&[1.0f32 + r as f32, 10.0 * (r as f32 + 1.0)]);
                g.all_reduce(&x, ReduceOp::Sum).unwrap();
                let m = Tensor::from_slice(&[r as i64 * 7 - 3]);
                g.all_reduce(&m, ReduceOp::Max).unwrap();
                let b = Tensor::full([3], r as f64 + 5.0, (Kind::Double, Device::Cpu));
                g.broadcast(&b, 1).unwrap();
                let all = g.all_gather(&Tensor::from_slice(&[r as i64, 100 + r as i64])).unwrap();
                g.barrier().unwrap();
                let agreed = g.any(r == 1).unwrap();
                (Vec::<f32>::try_from(&x).unwrap(), m.int64_value(&[0]), Vec::<f64>::try_from(&b).unwrap(), all, agreed)
            })
        };
        let (h0, h1) = (rank(0), rank(1));
        for (x, m, b, all, agreed) in [h0.join().unwrap(), h1.join().unwrap()] {
            assert_eq!(x, vec![3.0, 30.0]);
            assert_eq!(m, 4);
            assert_eq!(b, vec![6.0; 3]);
            assert!(all.equal(&Tensor::from_slice(&[0i64, 100, 1, 101]).view([2, 2])));
            assert!(agreed);
        }
    }

    /// A second rank that claims another world size is told so, naming both sizes.
    #[test]
    fn a_mismatched_world_size_is_one_clear_error() {
        let port = free_port();
        let env = |rank, world| Env::loopback(rank, world, port);
        let e0 = env(0, 2);
        let host = std::thread::spawn(move || {
            Group::connect(&e0, Duration::from_secs(3), Backend::Gloo, Device::Cpu).err().map(|e| format!("{e:#}"))
        });
        let err = Group::connect(&env(1, 3), Duration::from_secs(10), Backend::Gloo, Device::Cpu)
            .err()
            .expect("mismatch refused");
        assert!(format!("{err:#}").contains("WORLD_SIZE = 3 here but 2 on rank 0"), "{err:#}");
        let host_err = host.join().unwrap().expect("rank 0 refuses too");
        assert!(host_err.contains("WORLD_SIZE = 2 here but 3 on rank 1"), "{host_err}");
    }
}
