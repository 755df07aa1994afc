//! The numeric precision a network computes in: float32, or the fast mode's bf16 "autocast" done by
//! hand (tch 0.24 has no bf16 autocast setter).
//!
//! In bf16 mode the master weights stay float32 in the VarStore; conv and linear layers cast their
//! (spectrally normalised) weight, their bias and their input to BFloat16 for the convolution or
//! matrix product. `to_kind` is differentiable, so gradients reach the float32 masters in float32.
//! Norm layers, the spectral-norm power iteration, pooling, the head's output, logsumexp, the
//! energy and every loss run in float32: [`Precision::float`] casts back at those places. The
//! input of the network (data, SGLD chains, the replay buffer) stays float32; the cast happens
//! inside the network, and the input gradient comes back in float32.
//!
//! With `channels_last`, the bf16 copies of 4-D inputs and conv weights are laid out NHWC in
//! memory while keeping their NCHW shape (tch has no memory-format API; the permute-contiguous-
//! permute trick gives the same strides as PyTorch's `channels_last`). cuDNN convolutions keep
//! that layout for their outputs, so only the first layer's input is converted. The float32
//! masters are untouched, so checkpoints stay contiguous. float32 does the same on the CPU by
//! default (`train.channels_last`): oneDNN then convolves NHWC directly instead of reordering
//! every NCHW input, output and gradient to and from its blocked layout.
use crate::config::FastMode;
use tch::{Device, Kind, Tensor};

/// How conv and linear layers compute.
/// How far a network computed in some precision may lie from the same network in float32, as
/// relative errors |a - b| / |b| in the Euclidean norm over a batch: of the energies, and of the
/// gradients (the input gradient dE/dx, all parameter gradients together). Defined here once;
/// `bench --agreement` and tests/fast_mode.rs both check against [`Precision::tolerance`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Tolerance {
    pub energy: f64,
    pub grad: f64,
}

/// float32 on two devices: the same arithmetic in another order (reductions, cuDNN algorithms).
pub const FLOAT32_TOLERANCE: Tolerance = Tolerance { energy: 1e-3, grad: 1e-3 };

/// bf16 against float32. bf16 keeps 8 significant bits, so each conv/linear rounds its inputs and
/// weights with relative error up to 2^-8 = 3.9e-3; errors of successive layers add, over the
/// network's depth L (WRN-16: 13 conv/linear layers). The energy sees one pass: a random walk of
/// L steps of 2^-8, sqrt(13) * 3.9e-3 = 1.4e-2, under 2e-2. Gradients flow back through the same
/// layers in bf16 after the forward pass, 2L roundings, added up to 2 * 13 * 3.9e-3 = 1.0e-1 when
/// they line up; at initialisation dE/dx = -sum_k softmax_k df_k/dx nearly cancels, which brings
/// its relative error close to that bound (measured on the CPU: energies 2e-5, input gradients
/// 5e-2 to 7e-2, parameter gradients 9e-3 to 2e-2). So 2e-2 on energies and 1e-1 on gradients.
pub const BF16_TOLERANCE: Tolerance = Tolerance { energy: 2e-2, grad: 1e-1 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Everything in float32; optionally NHWC (channels-last) copies for the convolutions.
    Float32 { channels_last: bool },
    /// Conv/linear in bf16 on float32 master weights; optionally NHWC (channels-last) layout.
    Bf16 { channels_last: bool },
}

impl Default for Precision {
    fn default() -> Self {
        Precision::FLOAT32
    }
}

impl Precision {
    /// float32 in the masters' own (NCHW) layout: the reference every other precision is checked against.
    pub const FLOAT32: Precision = Precision::Float32 { channels_last: false };

    /// The agreement with float32 this precision promises: [`FLOAT32_TOLERANCE`] or
    /// [`BF16_TOLERANCE`].
    pub fn tolerance(self) -> Tolerance {
        match self {
            Precision::Float32 { .. } => FLOAT32_TOLERANCE,
            Precision::Bf16 { .. } => BF16_TOLERANCE,
        }
    }

    /// The fast mode's precision on `device`: bf16 everywhere, channels-last only on CUDA, where
    /// cuDNN's tensor-core kernels want NHWC. On the CPU the layout change is left out in bf16
    /// (not measured to help there).
    pub fn fast(device: Device) -> Self {
        Precision::Bf16 { channels_last: device.is_cuda() }
    }

    /// The precision of `train.fast` (resolved) and `train.channels_last` on `device`. The
    /// layout's `auto`: NHWC in float32 on the CPU (oneDNN's NHWC convolutions skip the reorders
    /// to and from its blocked layouts: the JEM step on WRN-10-2 took 0.75-0.93x the NCHW time in
    /// alternating runs, BENCHMARKS.md), and in bf16 on CUDA; NCHW otherwise.
    pub fn new(fast: bool, channels_last: FastMode, device: Device) -> Self {
        if fast {
            Precision::Bf16 { channels_last: channels_last.or(device.is_cuda()) }
        } else {
            Precision::Float32 { channels_last: channels_last.or(!device.is_cuda()) }
        }
    }

    /// Whether convolutions run on NHWC copies.
    pub fn channels_last(self) -> bool {
        match self {
            Precision::Float32 { channels_last } | Precision::Bf16 { channels_last } => channels_last,
        }
    }

    pub fn is_fast(self) -> bool {
        matches!(self, Precision::Bf16 { .. })
    }

    /// The kind conv/linear layers compute in.
    pub fn compute_kind(self) -> Kind {
        match self {
            Precision::Float32 { .. } => Kind::Float,
            Precision::Bf16 { .. } => Kind::BFloat16,
        }
    }

    /// The input of a conv or linear layer in the compute kind (and layout).
    pub fn input(self, x: &Tensor) -> Tensor {
        let x = match self {
            Precision::Float32 { .. } => x.shallow_clone(),
            Precision::Bf16 { .. } => x.to_kind(Kind::BFloat16),
        };
        if self.channels_last() && x.dim() == 4 && !is_channels_last(&x) {
            to_channels_last(&x)
        } else {
            x
        }
    }

    /// A layer's weight (float32 master, possibly normalised) in the compute kind and layout.
    pub fn weight(self, w: &Tensor) -> Tensor {
        let w = match self {
            Precision::Float32 { .. } => w.shallow_clone(),
            Precision::Bf16 { .. } => w.to_kind(Kind::BFloat16),
        };
        if self.channels_last() && w.dim() == 4 {
            to_channels_last(&w)
        } else {
            w
        }
    }

    /// A bias in the compute kind.
    pub fn bias(self, b: &Tensor) -> Tensor {
        match self {
            Precision::Float32 { .. } => b.shallow_clone(),
            Precision::Bf16 { .. } => b.to_kind(Kind::BFloat16),
        }
    }

    /// Back to float32 (for norms, pooling, the head's output, losses); free when already float32.
    pub fn float(x: &Tensor) -> Tensor {
        if x.kind() == Kind::Float {
            x.shallow_clone()
        } else {
            x.to_kind(Kind::Float)
        }
    }
}

/// The same NCHW tensor with NHWC strides (PyTorch's `channels_last`), via a differentiable copy.
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether a 4-D tensor is laid out NHWC: stride 1 on channels, then W, H, N.
pub fn is_channels_last(x: &Tensor) -> bool {
    if x.dim() != 4 {
        return false;
    }
    let (s, d) = (x.stride(), x.size());
    s[1] == 1 && s[3] == d[1] && s[2] == d[1] * d[3] && s[0] == d[1] * d[2] * d[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_keeps_shape_and_values_and_changes_strides() {
        let x = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        assert!(!is_channels_last(&x));
        let y = to_channels_last(&x);
        assert_eq!(y.size(), x.size());
        assert_eq!(y.stride(), vec![60, 1, 15, 3]);
        assert!(is_channels_last(&y));
        assert!(y.equal(&x));
        // The bf16 copy of the input keeps the layout when asked for it, and only then.
        let p = Precision::Bf16 { channels_last: true };
        let xb = p.input(&x);
        assert_eq!(xb.kind(), Kind::BFloat16);
        assert!(is_channels_last(&xb));
        assert!(!is_channels_last(&Precision::Bf16 { channels_last: false }.input(&x)));
        assert!(is_channels_last(&p.weight(&x)));
        // A convolution on NHWC bf16 operands gives the same numbers as on NCHW ones.
        let w = Tensor::randn([6, 3, 3, 3], (Kind::Float, Device::Cpu));
        let nchw = Precision::Bf16 { channels_last: false };
        let a = nchw.input(&x).conv2d(&nchw.weight(&w), None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        let b = p.input(&x).conv2d(&p.weight(&w), None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        let err = (Precision::float(&a) - Precision::float(&b)).abs().max().double_value(&[]);
        assert!(err < 0.05, "{err}");
    }

    #[test]
    fn casts_are_differentiable_back_to_float32_masters() {
        let w = Tensor::randn([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let x = Tensor::randn([5, 3], (Kind::Float, Device::Cpu));
        let p = Precision::Bf16 { channels_last: false };
        let y = p.input(&x).linear(&p.weight(&w), None::<Tensor>);
        assert_eq!(y.kind(), Kind::BFloat16);
        Precision::float(&y).sum(Kind::Float).backward();
        let g = w.grad();
        assert_eq!(g.kind(), Kind::Float);
        // d sum(x W^T) / dW = column sums of x, to bf16 accuracy.
        let expect = x.sum_dim_intlist([0].as_slice(), false, Kind::Float).unsqueeze(0).expand([4, 3], false);
        let rel = ((&g - &expect).abs().max() / expect.abs().max()).double_value(&[]);
        assert!(rel < 2e-2, "{rel}");
        assert_eq!(Precision::FLOAT32.weight(&w).kind(), Kind::Float);
        assert_eq!(Precision::fast(Device::Cpu), Precision::Bf16 { channels_last: false });
        assert_eq!(Precision::fast(Device::Cuda(0)), Precision::Bf16 { channels_last: true });
    }
}
