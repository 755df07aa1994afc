//! Langevin dynamics on an MLP energy in one call into the C++ shim (`csrc/mlp_langevin.cpp`):
//! the input gradient of E(x) = -(a_L . w + c), a_l = act(W_l a_{l-1} + b_l), written by hand
//! (backpropagation: delta_l = dE/da_l * act'(z_l), dE/da_{l-1} = delta_l W_l), the swish
//! derivative act'(z) = s (1 + z (1 - s)) from the forward's s = sigmoid(z), all buffers allocated
//! once per run, and the points in tiles that stay in cache through a step. The update is the
//! Langevin forms of [`super::Langevin`] operation for operation, with the noise drawn by one
//! `normal_` per step on a tensor of the chains' shape from libtorch's default generator, so the
//! random stream is the autograd path's. No autograd graph is built, so nothing reaches the
//! parameters' gradients.
//!
//! The arithmetic differs from autograd's only in rounding (the order of the matrix products'
//! sums, z s for ATen's z / (1 + e^-z)); `tests` bound the difference.
use crate::config::{Activation, SgldVariant};
use crate::models::fused::take;
use crate::models::mlp::MlpWeights;
use std::ffi::{c_char, c_double, c_int};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn ebm_mlp_energy_grad(
        x: *const C_tensor,
        w: *const *const C_tensor,
        b: *const *const C_tensor,
        layers: i64,
        head_w: *const C_tensor,
        head_b: *const C_tensor,
        act: c_int,
        tile: i64,
        energy: *mut *mut C_tensor,
        error: *mut *mut c_char,
    ) -> *mut C_tensor;
    fn ebm_mlp_avx512(dim: i64, hidden: i64) -> c_int;
    fn ebm_mlp_threads_used() -> c_int;
    fn ebm_mlp_langevin(
        x: *const C_tensor,
        w: *const *const C_tensor,
        b: *const *const C_tensor,
        layers: i64,
        head_w: *const C_tensor,
        head_b: *const C_tensor,
        act: c_int,
        variant: c_int,
        step: c_double,
        noise: c_double,
        clip: c_double,
        clamp: c_int,
        lo: c_double,
        hi: c_double,
        steps: i64,
        tile: i64,
        error: *mut *mut c_char,
    ) -> *mut C_tensor;
}

/// Whether an MLP energy of input width `dim` and hidden width `hidden` (every layer) runs its
/// matrix products on the shim's AVX-512 kernels (`csrc/mlp_avx512.cpp`: an x86-64 CPU with
/// AVX-512F, `dim` <= 4, `hidden` a multiple of 32) rather than on libtorch's sgemm.
pub fn avx512_products(dim: usize, hidden: usize) -> bool {
    // SAFETY: a pure function of two integers and the CPU's features.
    unsafe { ebm_mlp_avx512(dim as i64, hidden as i64) != 0 }
}

/// The most threads that have computed tiles at once, in any fused call of this process, since
/// the previous call of this function (which resets it): how a test sees the tiles really shared.
pub fn threads_used() -> usize {
    // SAFETY: reads and resets an atomic counter.
    unsafe { ebm_mlp_threads_used() as usize }
}

/// Points per tile: 128 points x 128 hidden units x 4 bytes = 64 KiB per buffer; a tile's five
/// buffers of a 3-layer mlp-2d fit the 512 KiB L2 of the CPU it was measured on.
pub const TILE: i64 = 128;

/// The MLP weights as the shim takes them: raw handles of tensors that outlive the call.
struct Handles<'a> {
    w: Vec<*const C_tensor>,
    b: Vec<*const C_tensor>,
    m: &'a MlpWeights,
}

impl<'a> Handles<'a> {
    fn new(m: &'a MlpWeights) -> Self {
        Handles {
            w: m.layers.iter().map(|(w, _)| w.as_ptr()).collect(),
            b: m.layers.iter().map(|(_, b)| b.as_ptr()).collect(),
            m,
        }
    }

    fn act(&self) -> c_int {
        match self.m.act {
            Activation::Swish => 0,
            Activation::LeakyRelu => 1,
        }
    }
}

/// Whether the fused sampler runs chains `x` of this network: float32 points [N, D] on the CPU
/// with D the first layer's input size.
pub fn supports(m: &MlpWeights, x: &Tensor) -> bool {
    let d = m.layers[0].0.size()[1];
    x.device() == Device::Cpu && x.kind() == Kind::Float && x.dim() == 2 && x.size()[1] == d
}

/// The weights the fused sampler runs chains `x0` of `energy` with: a network that is an MLP
/// energy ([`crate::models::EnergyNet::mlp_weights`]) on chains it [`supports`]; None for anything
/// else (other networks, conditional energies, closures), which samplers run through autograd.
pub fn fused_weights(energy: super::Energy<'_>, x0: &Tensor) -> Option<MlpWeights> {
    match energy {
        super::Energy::Net(net) => net.mlp_weights().filter(|m| supports(m, x0)),
        super::Energy::Fn(_) => None,
    }
}

/// (E(x) [N], dE/dx [N, D]) by the hand-written backward pass, in tiles of `tile` points.
pub fn energy_grad(m: &MlpWeights, x: &Tensor, tile: i64) -> (Tensor, Tensor) {
    let h = Handles::new(m);
    let mut error = std::ptr::null_mut();
    let mut energy = std::ptr::null_mut();
    // SAFETY: every handle is a live tensor for the duration of the call; the out-pointers are valid.
    let g = unsafe {
        ebm_mlp_energy_grad(
            x.as_ptr(),
            h.w.as_ptr(),
            h.b.as_ptr(),
            h.w.len() as i64,
            m.head.0.as_ptr(),
            m.head.1.as_ptr(),
            h.act(),
            tile,
            &mut energy,
            &mut error,
        )
    };
    let g = take(g, error, "mlp_energy_grad");
    // SAFETY: on success the shim set `energy` to a heap tensor it gave up.
    (unsafe { Tensor::from_ptr(energy) }, g)
}

/// `steps` updates of the Langevin form `s` from `x0` (a new tensor), in tiles of `tile` points.
pub fn run(m: &MlpWeights, s: &super::Langevin, x0: &Tensor, steps: usize, tile: i64) -> Tensor {
    let h = Handles::new(m);
    let variant = match s.variant {
        SgldVariant::Jem => 0,
        SgldVariant::Igebm => 1,
        SgldVariant::Textbook => 2,
    };
    let (lo, hi) = s.clamp.unwrap_or((0.0, 0.0));
    let mut error = std::ptr::null_mut();
    // SAFETY: every handle is a live tensor for the duration of the call; `error` is a valid out-pointer.
    let x = unsafe {
        ebm_mlp_langevin(
            x0.as_ptr(),
            h.w.as_ptr(),
            h.b.as_ptr(),
            h.w.len() as i64,
            m.head.0.as_ptr(),
            m.head.1.as_ptr(),
            h.act(),
            variant,
            s.step_size,
            s.noise,
            s.grad_clip,
            s.clamp.is_some() as c_int,
            lo,
            hi,
            steps as i64,
            tile,
            &mut error,
        )
    };
    take(x, error, "mlp_langevin")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::models::EnergyNet;
    use crate::sampling::energy_grad as autograd_energy_grad;
    use tch::nn;

    fn mlp(layers: usize, hidden: usize, dim: usize, act: Activation, spectral: bool) -> (nn::VarStore, EnergyNet) {
        let mut cfg = ModelConfig::from_preset("mlp-2d").unwrap();
        (cfg.layers, cfg.hidden, cfg.input_shape, cfg.activation, cfg.spectral_norm) =
            (layers, hidden, vec![dim], act, spectral);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EnergyNet::new(&vs.root(), &cfg);
        (vs, net)
    }

    /// |a - b|_2 / |b|_2.
    fn rel(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).norm().double_value(&[]) / b.norm().double_value(&[])
    }

    /// The hand-written backward pass against autograd on random MLPs (1-3 layers, 1-3 inputs, odd
    /// widths, both activations, spectral norm on and off, tiles that do not divide the batch).
    /// float32 rounds each product and sum with relative error u = 2^-24 = 6e-8; a dot product of
    /// n terms errs by at most n u relative to the sum of |terms|, and the gradient goes through
    /// 2L such products of n <= 128 terms (forward and back): 6 * 128 * 6e-8 = 4.6e-5 in the
    /// worst case, so 5e-5 on the relative Euclidean error bounds an implementation that computes
    /// the same function in another order, while a wrong derivative (e.g. silu' = s) errs by O(1).
    #[test]
    fn hand_gradient_equals_autograd_on_random_mlps() {
        tch::manual_seed(7);
        let cases = [
            (3, 128, 2, Activation::Swish, false, 128),
            (1, 5, 1, Activation::Swish, false, 7),
            (2, 37, 3, Activation::LeakyRelu, false, 16),
            (3, 64, 2, Activation::LeakyRelu, true, 1000),
            (2, 33, 2, Activation::Swish, true, 50),
            (1, 32, 2, Activation::Swish, false, 64),
            (2, 96, 4, Activation::Swish, false, 203),
        ];
        for (layers, hidden, dim, act, spectral, tile) in cases {
            let (_vs, net) = mlp(layers, hidden, dim, act, spectral);
            let x = Tensor::randn([203, dim as i64], (Kind::Float, Device::Cpu)) * 2.0;
            let m = net.mlp_weights().expect("an MLP energy");
            let (e, g) = energy_grad(&m, &x, tile);
            let (e_auto, g_auto) = autograd_energy_grad(&|x: &Tensor| net.energy(x, false), &x);
            let what = format!("{layers} x {hidden}, D {dim}, {act:?}, sn {spectral}, tile {tile}");
            assert!(rel(&e, &e_auto) < 5e-5, "energy {what}: {}", rel(&e, &e_auto));
            assert!(rel(&g, &g_auto) < 5e-5, "gradient {what}: {}", rel(&g, &g_auto));
            assert!(g_auto.norm().double_value(&[]) > 1e-3, "a gradient worth comparing ({what})");
        }
    }

    /// A shape the network cannot take reaches the caller as a panic with the shim's message.
    #[test]
    fn a_bad_input_is_a_clear_error() {
        let (_vs, net) = mlp(1, 8, 2, Activation::Swish, false);
        let m = net.mlp_weights().unwrap();
        let bad = Tensor::rand([5, 3], (Kind::Float, Device::Cpu));
        let e = std::panic::catch_unwind(|| energy_grad(&m, &bad, TILE)).err().unwrap();
        let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.starts_with("mlp_energy_grad:") && msg.contains("[N, 2]"), "{msg}");
    }
}
