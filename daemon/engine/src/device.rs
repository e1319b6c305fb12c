//! Devices a model can be resident on, parsed from `cpu`, `cuda` or `cuda:N`.

use crate::error::{Error, Result};
use std::fmt;
use std::os::raw::{c_char, c_int};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl Device {
    /// `cuda:0` when libtorch sees a usable CUDA device, else the CPU.
    pub fn default_for_host() -> Device {
        if tch::Cuda::is_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }
    }

    /// Checks that the device exists on this host.
    pub fn check_available(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(index) => {
                let count = tch::Cuda::device_count();
                if (index as i64) < count {
                    Ok(())
                } else {
                    Err(Error::bad_input(format!("device cuda:{index} is not available: libtorch sees {count} CUDA device(s)")))
                }
            }
        }
    }

    /// Whether cuDNN convolutions may use TF32 (csrc/shim.cpp says why the daemon
    /// turns it off). Process-wide; a no-op without CUDA.
    pub fn set_cudnn_tf32(allow: bool) {
        extern "C" {
            fn layerlens_set_cudnn_tf32(allow: std::os::raw::c_int);
        }
        // SAFETY: sets one flag of libtorch's global context; no pointers.
        unsafe { layerlens_set_cudnn_tf32(std::os::raw::c_int::from(allow)) }
    }

    /// The memory of a CUDA device as libtorch sees it; `None` on the CPU. An error
    /// names what the driver said (no usable device, for one).
    pub fn memory(self) -> Result<Option<DeviceMemory>> {
        let Device::Cuda(index) = self else { return Ok(None) };
        extern "C" {
            fn layerlens_cuda_memory(index: c_int, free: *mut u64, total: *mut u64, cached: *mut u64, error: *mut *mut c_char) -> c_int;
        }
        let index = c_int::try_from(index).map_err(|_| Error::bad_input(format!("device index {index} is out of range")))?;
        let (mut free, mut total, mut cached) = (0u64, 0u64, 0u64);
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: the shim catches every C++ exception, writes only through the
        // pointers given, and sets a malloc'd message only when it fails, which
        // `take_error` copies and frees.
        let status = unsafe { layerlens_cuda_memory(index, &mut free, &mut total, &mut cached, &mut error) };
        if status != 0 {
            return Err(Error::internal(format!("reading the free memory of {self}: {}", crate::taps::take_error(error))));
        }
        Ok(Some(DeviceMemory { free, total, cached }))
    }

    pub(crate) fn to_tch(self) -> tch::Device {
        match self {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(index) => tch::Device::Cuda(index),
        }
    }
}

/// A CUDA device's memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Free on the device (the driver's count).
    pub free: u64,
    pub total: u64,
    /// Held by libtorch's caching allocator in this process but not in use: free to
    /// this process's passes, though the driver counts it as taken.
    pub cached: u64,
}

/// Working memory one forward/backward pass may use: attribution steps, samples and
/// perturbations are chunked to fit it (attribution/gradients.rs), and a pass that
/// runs out of memory anyway is halved and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassBudget {
    /// A fixed size (`--pass-budget-bytes`).
    Bytes(u64),
    /// Follows the device: on a GPU, what it has free when the request is planned
    /// (with libtorch's unused cache) less headroom, so a pass is as large as the
    /// device allows (integrated gradients in one pass where it fits); on the CPU,
    /// whose memory the model's weights and the other models share with the whole
    /// host, a fixed [`PassBudget::CPU_BYTES`].
    FromDevice,
}

impl PassBudget {
    /// The budget on the CPU when none is given.
    pub const CPU_BYTES: u64 = 1 << 30;
    /// The smallest budget taken from a nearly full GPU (a pass that still does not
    /// fit is halved down to one row).
    pub const MIN_DEVICE_BYTES: u64 = 256 << 20;

    /// The budget for a request planned now on `device`. A GPU whose memory cannot be
    /// read gets the CPU's fixed budget (and a warning in the log).
    pub fn bytes_on(self, device: Device) -> u64 {
        match self {
            PassBudget::Bytes(bytes) => bytes.max(1),
            PassBudget::FromDevice => match device.memory() {
                Ok(None) => PassBudget::CPU_BYTES,
                Ok(Some(memory)) => PassBudget::from_memory(memory),
                Err(error) => {
                    tracing::warn!(%device, %error, "sizing the pass budget from free device memory failed; using 1 GiB");
                    PassBudget::CPU_BYTES
                }
            },
        }
    }

    /// What a GPU with `memory` lends one pass: its free memory and libtorch's unused
    /// cache, less headroom for what the estimate of a row's working memory leaves out
    /// (cuDNN workspaces, the allocator's fragmentation, other processes and models on
    /// the device): a tenth of the device, at least 1 GiB.
    pub fn from_memory(memory: DeviceMemory) -> u64 {
        let headroom = (memory.total / 10).max(1 << 30);
        memory.free.saturating_add(memory.cached).saturating_sub(headroom).max(PassBudget::MIN_DEVICE_BYTES)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl FromStr for Device {
    type Err = Error;

    fn from_str(text: &str) -> Result<Device> {
        match text {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|index| index.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| Error::bad_input(format!("unknown device '{text}'; expected cpu, cuda or cuda:N"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Device, DeviceMemory, PassBudget};

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_gpu_lends_its_free_memory_and_unused_cache_less_a_tenth() {
        // An 80 GiB device with 70 GiB free and 2 GiB cached: 72 − 8.
        let memory = DeviceMemory { free: 70 * GIB, total: 80 * GIB, cached: 2 * GIB };
        assert_eq!(PassBudget::from_memory(memory), 64 * GIB);
        // A small device keeps at least 1 GiB of headroom.
        let small = DeviceMemory { free: 5 * GIB, total: 6 * GIB, cached: 0 };
        assert_eq!(PassBudget::from_memory(small), 4 * GIB);
        // A nearly full one still lends the minimum (the pass halves on out of memory).
        let full = DeviceMemory { free: GIB / 2, total: 80 * GIB, cached: 0 };
        assert_eq!(PassBudget::from_memory(full), PassBudget::MIN_DEVICE_BYTES);
    }

    #[test]
    fn the_cpu_budget_is_fixed_unless_given() {
        assert_eq!(PassBudget::FromDevice.bytes_on(Device::Cpu), PassBudget::CPU_BYTES);
        assert_eq!(PassBudget::Bytes(12345).bytes_on(Device::Cpu), 12345);
        assert_eq!(PassBudget::Bytes(0).bytes_on(Device::Cpu), 1);
    }

    #[test]
    fn reading_gpu_memory_answers_or_names_the_failure() {
        match Device::Cuda(0).memory() {
            Ok(memory) => {
                assert!(tch::Cuda::is_available(), "read memory of cuda:0 without a CUDA device: {memory:?}");
                let memory = memory.expect("cuda:0 has memory");
                assert!(memory.total > 0 && memory.free <= memory.total, "{memory:?}");
            }
            Err(error) => {
                assert!(!tch::Cuda::is_available(), "cuda:0 is available but its memory could not be read: {error}");
                assert!(error.to_string().contains("reading the free memory of cuda:0"), "{error}");
            }
        }
        assert_eq!(Device::Cpu.memory().expect("the CPU needs no query"), None);
    }

    #[test]
    fn parses_device_names() {
        let cases = [("cpu", Some(Device::Cpu)), ("cuda", Some(Device::Cuda(0))), ("cuda:3", Some(Device::Cuda(3))), ("gpu", None), ("cuda:x", None)];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Device>().ok(), expected, "{text}");
        }
    }
}
