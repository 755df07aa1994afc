//! Fused ATen operators and global switches that tch 0.24 does not expose, called through
//! the small C++ shim in `csrc/ops.cpp` (compiled by build.rs against libtorch's own headers).
//! Each is the very kernel PyTorch runs for the same Python call, autograd included.
use std::ffi::{c_char, c_double, c_int, CStr};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn ebm_leaky_relu(x: *const C_tensor, slope: c_double, error: *mut *mut c_char) -> *mut C_tensor;
    fn ebm_free_error(error: *mut c_char);
    fn ebm_set_deterministic(on: c_int);
    fn ebm_deterministic() -> c_int;
}

/// Turns libtorch's deterministic algorithms (and cuDNN's deterministic mode) on or off for the
/// process: `torch.use_deterministic_algorithms(on)` and `torch.backends.cudnn.deterministic = on`.
pub fn set_deterministic(on: bool) {
    // SAFETY: a plain call into libtorch's global context.
    unsafe { ebm_set_deterministic(on as c_int) }
}

/// Whether [`set_deterministic`] is on.
pub fn deterministic() -> bool {
    // SAFETY: a plain read of libtorch's global context.
    unsafe { ebm_deterministic() != 0 }
}

/// Turns the shim's (result, error) pair into a tensor, panicking with libtorch's message as tch's
/// own infallible wrappers do.
pub(crate) fn take(result: *mut C_tensor, error: *mut c_char, op: &str) -> Tensor {
    if result.is_null() {
        let msg = if error.is_null() {
            "unknown error".to_string()
        } else {
            // SAFETY: the shim sets `error` to a NUL-terminated string it allocated; we free it once.
            let m = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
            unsafe { ebm_free_error(error) };
            m
        };
        panic!("{op}: {msg}");
    }
    // SAFETY: a non-null result is a heap at::Tensor the shim gave up ownership of.
    unsafe { Tensor::from_ptr(result) }
}

/// LeakyReLU, x > 0 ? x : slope * x (`torch.nn.functional.leaky_relu(x, slope)`): one fused
/// kernel forward and one backward.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Tensor {
    let mut error = std::ptr::null_mut();
    // SAFETY: `x` is a live tensor for the duration of the call; `error` is a valid out-pointer.
    let r = unsafe { ebm_leaky_relu(x.as_ptr(), slope, &mut error) };
    take(r, error, "leaky_relu")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The fused kernel equals max(x, slope x) in value and gradient, except exactly at 0.
    #[test]
    fn leaky_relu_matches_its_definition_with_gradients() {
        tch::manual_seed(0);
        let x = (Tensor::randn([1000], (Kind::Float, Device::Cpu)) * 3.0).set_requires_grad(true);
        let y = leaky_relu(&x, 0.2);
        let want = x.maximum(&(&x * 0.2));
        assert!(y.equal(&want));
        let w = Tensor::randn([1000], (Kind::Float, Device::Cpu));
        let g = Tensor::run_backward(&[(&y * &w).sum(Kind::Float)], &[&x], false, false).pop().unwrap();
        let g_want = Tensor::run_backward(&[(&want * &w).sum(Kind::Float)], &[&x], false, false).pop().unwrap();
        assert!(g.equal(&g_want));
        // A wrong input reaches the caller as a panic with libtorch's message, not a crash.
        let bad = Tensor::from_slice(&[1i64, -2]);
        let e = std::panic::catch_unwind(|| leaky_relu(&bad, 0.2)).err().unwrap();
        let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.starts_with("leaky_relu:"), "{msg}");
    }

    #[test]
    fn the_deterministic_switch_reads_back() {
        set_deterministic(true);
        assert!(deterministic());
        set_deterministic(false);
        assert!(!deterministic());
    }
}
