//! Device selection (`auto|cpu|cuda|cuda:N`) and what `ebm info` reports about libtorch.
//!
//! The versions are read, not written down: libtorch's from the library loaded at run time (its
//! build settings, through `csrc/ops.cpp`), tch's as Cargo resolved it (Cargo.lock, by build.rs).
use anyhow::{bail, Context};
use serde::Serialize;
use std::ffi::{c_char, CStr};
use tch::{Cuda, Device, Tensor};

extern "C" {
    fn ebm_libtorch_version() -> *mut c_char;
    fn ebm_free_error(s: *mut c_char);
}

/// The version of the libtorch this process runs on (e.g. "2.11.0"), from the library itself:
/// the TORCH_VERSION of its build settings (`torch.__config__.show()`), else that of the headers
/// `csrc/ops.cpp` was compiled against.
pub fn libtorch_version() -> String {
    // SAFETY: the shim returns null or a NUL-terminated string it allocated; we free it once.
    unsafe {
        let p = ebm_libtorch_version();
        if p.is_null() {
            return "unknown".into();
        }
        let v = CStr::from_ptr(p).to_string_lossy().into_owned();
        ebm_free_error(p);
        v
    }
}

/// The version of the `tch` crate this binary was built with, as Cargo resolved it (Cargo.lock).
pub const TCH_VERSION: &str = env!("EBM_TCH_VERSION");

/// Checks the syntax of a device name without asking libtorch what is present.
pub fn parse_device_syntax(name: &str) -> crate::Result<Device> {
    let name = name.trim();
    Ok(match name {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match name.strip_prefix("cuda:") {
            Some(n) => {
                let n: usize = n.parse().with_context(|| format!("device `{name}`: `{n}` is not a GPU index"))?;
                Device::Cuda(n)
            }
            None => bail!("unknown device `{name}` (expected auto, cpu, cuda or cuda:N)"),
        },
    })
}

/// Parses a device name as the CLI and configs write it, and checks that it is present.
pub fn parse_device(name: &str) -> crate::Result<Device> {
    let device = parse_device_syntax(name)?;
    if let Device::Cuda(n) = device {
        let count = Cuda::device_count() as usize;
        if count == 0 {
            bail!("device `{}`: CUDA is not available here (libtorch sees no GPU)", name.trim());
        }
        if n >= count {
            bail!("device `{}`: only {count} CUDA device(s) present", name.trim());
        }
    }
    Ok(device)
}

/// Moves a host tensor to `device`. For CUDA the copy is asynchronous (`non_blocking`), which
/// overlaps with queued GPU work when the source is in pinned memory (the loader pins batches for
/// CUDA runs); on the CPU it is a no-op.
pub fn to_device_async(t: &Tensor, device: Device) -> Tensor {
    if t.device() == device {
        t.shallow_clone()
    } else {
        t.to_device_(device, t.kind(), device.is_cuda(), false)
    }
}

/// The name of a device as the CLI writes it.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Versions and capabilities of the linked libtorch.
#[derive(Debug, Serialize)]
pub struct Info {
    pub ebm_version: &'static str,
    pub tch_version: &'static str,
    pub libtorch_version: String,
    pub cuda_available: bool,
    pub cuda_device_count: i64,
    pub cudnn_available: bool,
    pub cudnn_version: Option<i64>,
    pub cuda_runtime_version: Option<i64>,
    pub threads: i32,
    pub interop_threads: i32,
    pub mkl: bool,
    pub openmp: bool,
}

/// Gathers [`Info`] from libtorch.
pub fn info() -> Info {
    let cuda = Cuda::is_available();
    Info {
        ebm_version: env!("CARGO_PKG_VERSION"),
        tch_version: TCH_VERSION,
        libtorch_version: libtorch_version(),
        cuda_available: cuda,
        cuda_device_count: Cuda::device_count(),
        cudnn_available: Cuda::cudnn_is_available(),
        cudnn_version: cuda.then(tch::utils::version_cudnn),
        cuda_runtime_version: cuda.then(tch::utils::version_cudart),
        threads: tch::get_num_threads(),
        interop_threads: tch::get_num_interop_threads(),
        mkl: tch::utils::has_mkl(),
        openmp: tch::utils::has_openmp(),
    }
}
