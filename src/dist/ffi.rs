//! The C functions of `csrc/dist.cpp` (c10d's TCPStore, ProcessGroupGloo and, with cfg `ebm_nccl`,
//! ProcessGroupNCCL), present when build.rs found Gloo's headers (cfg `ebm_c10d`). Without them, [`AVAILABLE`] is false and
//! [`super::Group::connect`] refuses before anything here is called.
use std::ffi::{c_char, c_int, c_longlong};
use torch_sys::C_tensor;

/// Opaque: the store and the process group of one process.
#[repr(C)]
pub struct EbmGroup {
    _private: [u8; 0],
}

/// Opaque: a c10d::Reducer (DistributedDataParallel's gradient reducer) and its process group.
#[repr(C)]
pub struct EbmReducer {
    _private: [u8; 0],
}

/// Whether this build has c10d's process groups.
pub const AVAILABLE: bool = cfg!(ebm_c10d);

/// Whether this build has ProcessGroupNCCL (build.rs found NCCL's and CUDA's headers; cfg
/// `ebm_nccl`, which implies `ebm_c10d`).
pub const NCCL: bool = cfg!(ebm_nccl);

#[cfg(ebm_c10d)]
extern "C" {
    pub fn ebm_dist_connect(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_longlong,
        error: *mut *mut c_char,
    ) -> *mut EbmGroup;
    pub fn ebm_dist_start_group(
        g: *mut EbmGroup,
        host: *const c_char,
        rank: c_int,
        world: c_int,
        error: *mut *mut c_char,
    ) -> c_int;
    pub fn ebm_dist_start_nccl(
        g: *mut EbmGroup,
        rank: c_int,
        world: c_int,
        device: c_int,
        error: *mut *mut c_char,
    ) -> c_int;
    pub fn ebm_dist_free(g: *mut EbmGroup);
    pub fn ebm_dist_store_set(
        g: *mut EbmGroup,
        key: *const c_char,
        value: *const c_char,
        error: *mut *mut c_char,
    ) -> c_int;
    pub fn ebm_dist_store_get(
        g: *mut EbmGroup,
        key: *const c_char,
        timeout_ms: c_longlong,
        value: *mut *mut c_char,
        error: *mut *mut c_char,
    ) -> c_int;
    pub fn ebm_dist_store_check(
        g: *mut EbmGroup,
        key: *const c_char,
        exists: *mut c_int,
        error: *mut *mut c_char,
    ) -> c_int;
    pub fn ebm_dist_all_reduce(g: *mut EbmGroup, t: *mut C_tensor, op: c_int, error: *mut *mut c_char) -> c_int;
    pub fn ebm_dist_broadcast(g: *mut EbmGroup, t: *mut C_tensor, root: c_int, error: *mut *mut c_char) -> c_int;
    pub fn ebm_dist_all_gather(
        g: *mut EbmGroup,
        input: *const C_tensor,
        out: *mut C_tensor,
        error: *mut *mut c_char,
    ) -> c_int;
    pub fn ebm_dist_barrier(g: *mut EbmGroup, error: *mut *mut c_char) -> c_int;
    pub fn ebm_dist_reducer_new(
        g: *mut EbmGroup,
        params: *const *mut C_tensor,
        n: c_int,
        order: *const c_longlong,
        sizes: *const c_longlong,
        buckets: c_int,
        bucket_bytes: c_longlong,
        error: *mut *mut c_char,
    ) -> *mut EbmReducer;
    pub fn ebm_dist_reducer_prepare(r: *mut EbmReducer, loss: *const C_tensor, error: *mut *mut c_char) -> c_int;
    pub fn ebm_dist_reducer_free(r: *mut EbmReducer);
}

extern "C" {
    pub fn ebm_free_error(error: *mut c_char);
}

/// Without c10d no group is ever connected, so these are never reached; they exist so that the
/// callers compile the same way in both builds.
#[cfg(not(ebm_c10d))]
mod absent {
    use super::*;
    fn never() -> ! {
        unreachable!("ebm::dist::Group::connect refuses when c10d is absent")
    }
    pub unsafe fn ebm_dist_connect(
        _: *const c_char,
        _: c_int,
        _: c_int,
        _: c_int,
        _: c_longlong,
        _: *mut *mut c_char,
    ) -> *mut EbmGroup {
        never()
    }
    pub unsafe fn ebm_dist_start_group(
        _: *mut EbmGroup,
        _: *const c_char,
        _: c_int,
        _: c_int,
        _: *mut *mut c_char,
    ) -> c_int {
        never()
    }
    pub unsafe fn ebm_dist_start_nccl(_: *mut EbmGroup, _: c_int, _: c_int, _: c_int, _: *mut *mut c_char) -> c_int {
        never()
    }
    pub unsafe fn ebm_dist_free(_: *mut EbmGroup) {}
    pub unsafe fn ebm_dist_store_set(
        _: *mut EbmGroup,
        _: *const c_char,
        _: *const c_char,
        _: *mut *mut c_char,
    ) -> c_int {
        never()
    }
    pub unsafe fn ebm_dist_store_get(
        _: *mut EbmGroup,
        _: *const c_char,
        _: c_longlong,
        _: *mut *mut c_char,
        _: *mut *mut c_char,
    ) -> c_int {
        never()
    }
    pub unsafe fn ebm_dist_store_check(
        _: *mut EbmGroup,
        _: *const c_char,
        _: *mut c_int,
        _: *mut *mut c_char,
    ) -> c_int {
        never()
    }
    pub unsafe fn ebm_dist_all_reduce(_: *mut EbmGroup, _: *mut C_tensor, _: c_int, _: *mut *mut c_char) -> c_int {
        never()
    }
    pub unsafe fn ebm_dist_broadcast(_: *mut EbmGroup, _: *mut C_tensor, _: c_int, _: *mut *mut c_char) -> c_int {
        never()
    }
    pub unsafe fn ebm_dist_all_gather(
        _: *mut EbmGroup,
        _: *const C_tensor,
        _: *mut C_tensor,
        _: *mut *mut c_char,
    ) -> c_int {
        never()
    }
    pub unsafe fn ebm_dist_barrier(_: *mut EbmGroup, _: *mut *mut c_char) -> c_int {
        never()
    }
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn ebm_dist_reducer_new(
        _: *mut EbmGroup,
        _: *const *mut C_tensor,
        _: c_int,
        _: *const c_longlong,
        _: *const c_longlong,
        _: c_int,
        _: c_longlong,
        _: *mut *mut c_char,
    ) -> *mut EbmReducer {
        never()
    }
    pub unsafe fn ebm_dist_reducer_prepare(_: *mut EbmReducer, _: *const C_tensor, _: *mut *mut c_char) -> c_int {
        never()
    }
    pub unsafe fn ebm_dist_reducer_free(_: *mut EbmReducer) {}
}
#[cfg(not(ebm_c10d))]
pub use absent::*;
