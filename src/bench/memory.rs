//! Peak memory: the process's resident set on Linux, and GPU memory through NVML (the
//! `nvml-wrapper` crate, which loads the driver's library at run time: tch cannot read torch's CUDA
//! allocator statistics, and the binary must still run where there is no NVIDIA driver).
//!
//! What NVML reports is the memory in use on the whole device: this process's CUDA context and
//! the caching allocator's reserved blocks (not only live tensors), plus any other process on the
//! same GPU. [`PeakSampler`] reads it on a background thread every few milliseconds and keeps the
//! maximum, together with the reading taken before the measured work started.
use std::ffi::OsStr;
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

/// The NVML library every NVIDIA driver installs (the unversioned `libnvidia-ml.so` that
/// nvml-wrapper looks for by default comes only with development packages).
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// An initialised NVML and the index of one GPU.
pub struct Nvml {
    nvml: nvml_wrapper::Nvml,
    index: u32,
}

impl Nvml {
    /// Opens NVML from the driver's library and checks GPU `index` (NVML's numbering, which is
    /// CUDA's when CUDA_VISIBLE_DEVICES is unset and there is one GPU).
    pub fn open(index: u32) -> Result<Nvml, String> {
        Nvml::open_library(NVML_LIBRARY, index)
    }

    /// [`Nvml::open`] from a named library (tests use names that are absent or lack the symbols).
    pub fn open_library(name: &str, index: u32) -> Result<Nvml, String> {
        let nvml = nvml_wrapper::Nvml::builder()
            .lib_path(OsStr::new(name))
            .init()
            .map_err(|e| format!("{name}: NVML not usable ({e})"))?;
        let nvml = Nvml { nvml, index };
        nvml.used_bytes()?;
        Ok(nvml)
    }

    /// Bytes in use on the device now.
    pub fn used_bytes(&self) -> Result<u64, String> {
        let device = self.nvml.device_by_index(self.index).map_err(|e| format!("NVML device {}: {e}", self.index))?;
        let memory = device.memory_info().map_err(|e| format!("NVML device {} memory: {e}", self.index))?;
        Ok(memory.used)
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
        assert!(e.starts_with("libnvidia-ml-does-not-exist.so.1: NVML not usable ("), "{e}");
    }

    #[test]
    fn a_library_without_nvml_symbols_is_rejected_by_name() {
        // libc is loaded in every process and has no NVML entry points.
        let e = Nvml::open_library("libc.so.6", 0).err().expect("libc is not NVML");
        assert!(e.starts_with("libc.so.6: NVML not usable (") && e.contains("nvmlInit_v2"), "{e}");
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
