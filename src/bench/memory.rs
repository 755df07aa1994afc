//! Peak memory: the process's resident set on Linux, and GPU memory through NVML, loaded at run time with `dlopen` (tch cannot read torch's CUDA
//! allocator statistics, and the binary must still run where there is no NVIDIA driver).
//!
//! What NVML reports is the memory in use on the whole device: this process's CUDA context and
//! the caching allocator's reserved blocks (not only live tensors), plus any other process on the
//! same GPU. [`PeakSampler`] reads it on a background thread every few milliseconds and keeps the
//! maximum, together with the reading taken before the measured work started.
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Peak resident set size (VmHWM) in MiB, on Linux.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Current resident set size (VmRSS) in MiB, on Linux.
pub fn rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The NVML library every NVIDIA driver installs.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

type NvmlDevice = *mut c_void;

/// nvmlMemory_t (v1): bytes.
#[repr(C)]
#[derive(Default)]
struct NvmlMemory {
    total: u64,
    free: u64,
    used: u64,
}

type InitFn = unsafe extern "C" fn() -> c_int;
type HandleFn = unsafe extern "C" fn(c_uint, *mut NvmlDevice) -> c_int;
type MemoryFn = unsafe extern "C" fn(NvmlDevice, *mut NvmlMemory) -> c_int;

/// An opened NVML and one device handle.
pub struct Nvml {
    lib: *mut c_void,
    device: NvmlDevice,
    memory_info: MemoryFn,
}

// The handle and the function pointers are plain addresses; NVML is thread-safe.
unsafe impl Send for Nvml {}
unsafe impl Sync for Nvml {}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a C string valid until the next dl* call on this thread.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown dlopen error".into()
        } else {
            CStr::from_ptr(e as *const c_char).to_string_lossy().into_owned()
        }
    }
}

impl Nvml {
    /// Opens NVML from the driver's library and gets GPU `index` (NVML's numbering, which is CUDA's
    /// when CUDA_VISIBLE_DEVICES is unset and there is one GPU).
    pub fn open(index: u32) -> Result<Nvml, String> {
        Nvml::open_library(NVML_LIBRARY, index)
    }

    /// [`Nvml::open`] from a named library (tests use names that are absent or lack the symbols).
    pub fn open_library(name: &str, index: u32) -> Result<Nvml, String> {
        let cname = CString::new(name).map_err(|_| format!("{name}: invalid library name"))?;
        // SAFETY: dlopen/dlsym with valid C strings; the symbols are cast to NVML's documented
        // signatures, and the library stays loaded for the life of the struct.
        unsafe {
            let lib = libc::dlopen(cname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if lib.is_null() {
                return Err(format!("{name} not loadable ({})", dl_error()));
            }
            let sym = |s: &str| -> Result<*mut c_void, String> {
                let cs = CString::new(s).expect("symbol name");
                let p = libc::dlsym(lib, cs.as_ptr());
                if p.is_null() {
                    Err(format!("{name} lacks {s}"))
                } else {
                    Ok(p)
                }
            };
            let found =
                (|| Ok((sym("nvmlInit_v2")?, sym("nvmlDeviceGetHandleByIndex_v2")?, sym("nvmlDeviceGetMemoryInfo")?)))(
                );
            let (init, handle, memory) = match found {
                Ok(f) => f,
                Err(e) => {
                    libc::dlclose(lib);
                    return Err(e);
                }
            };
            let init: InitFn = std::mem::transmute::<*mut c_void, InitFn>(init);
            let handle: HandleFn = std::mem::transmute::<*mut c_void, HandleFn>(handle);
            let memory_info: MemoryFn = std::mem::transmute::<*mut c_void, MemoryFn>(memory);
            let rc = init();
            if rc != 0 {
                libc::dlclose(lib);
                return Err(format!("nvmlInit_v2 failed (NVML error {rc})"));
            }
            let mut device: NvmlDevice = std::ptr::null_mut();
            let rc = handle(index, &mut device);
            if rc != 0 {
                libc::dlclose(lib);
                return Err(format!("nvmlDeviceGetHandleByIndex_v2({index}) failed (NVML error {rc})"));
            }
            Ok(Nvml { lib, device, memory_info })
        }
    }

    /// Bytes in use on the device now.
    pub fn used_bytes(&self) -> Result<u64, String> {
        let mut m = NvmlMemory::default();
        // SAFETY: a valid device handle and a properly sized out-parameter.
        let rc = unsafe { (self.memory_info)(self.device, &mut m) };
        if rc != 0 {
            return Err(format!("nvmlDeviceGetMemoryInfo failed (NVML error {rc})"));
        }
        Ok(m.used)
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // nvmlShutdown is left out on purpose: the driver reference-counts nvmlInit, and other
        // samplers of this process may still use it. Unloading the library is enough.
        // SAFETY: the handle came from dlopen.
        unsafe {
            libc::dlclose(self.lib);
        }
    }
}

/// Device memory over a measured stretch of work, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeakMemory {
    /// In use on the device before the work started (other processes, an earlier context).
    pub before_mib: f64,
    /// The highest reading during the work (includes the CUDA context and allocator caches).
    pub peak_mib: f64,
    pub samples: u64,
}

/// Samples the device's used memory on a background thread until [`PeakSampler::finish`].
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    before: u64,
    worker: Option<JoinHandle<()>>,
}

impl PeakSampler {
    /// Starts sampling GPU `index` every `every`; Err (with the reason) when NVML is unavailable.
    pub fn start(index: u32, every: Duration) -> Result<PeakSampler, String> {
        PeakSampler::start_with(Nvml::open(index)?, every)
    }

    fn start_with(nvml: Nvml, every: Duration) -> Result<PeakSampler, String> {
        let before = nvml.used_bytes()?;
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(before));
        let samples = Arc::new(AtomicU64::new(1));
        let (s, p, n) = (stop.clone(), peak.clone(), samples.clone());
        let worker = std::thread::spawn(move || loop {
            if let Ok(u) = nvml.used_bytes() {
                p.fetch_max(u, Ordering::Relaxed);
                n.fetch_add(1, Ordering::Relaxed);
            }
            if s.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(every);
        });
        Ok(PeakSampler { stop, peak, samples, before, worker: Some(worker) })
    }

    /// Stops sampling (after one last reading) and returns what was seen.
    pub fn finish(mut self) -> PeakMemory {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        PeakMemory {
            before_mib: mib(self.before),
            peak_mib: mib(self.peak.load(Ordering::Relaxed)),
            samples: self.samples.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_reported_not_read_as_zero() {
        let e = Nvml::open_library("libnvidia-ml-does-not-exist.so.1", 0).err().expect("no such library");
        assert!(e.contains("libnvidia-ml-does-not-exist.so.1 not loadable"), "{e}");
    }

    #[test]
    fn a_library_without_nvml_symbols_is_rejected_by_name() {
        // libc is loaded in every process and has no NVML entry points.
        let e = Nvml::open_library("libc.so.6", 0).err().expect("libc is not NVML");
        assert_eq!(e, "libc.so.6 lacks nvmlInit_v2");
    }

    #[test]
    fn the_sampler_reports_nvml_or_why_not() {
        match PeakSampler::start(0, Duration::from_millis(2)) {
            // A machine with an NVIDIA driver: a real, positive reading that never goes below
            // the starting one.
            Ok(s) => {
                std::thread::sleep(Duration::from_millis(20));
                let m = s.finish();
                assert!(m.before_mib > 0.0 && m.peak_mib >= m.before_mib && m.samples >= 2, "{m:?}");
            }
            // Without one (CI, CPU machines): the reason names the library or the failing call.
            Err(e) => assert!(e.contains(NVML_LIBRARY) || e.contains("nvml"), "{e}"),
        }
    }
}
