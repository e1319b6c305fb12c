//! Devices a model can be resident on, parsed from `cpu`, `cuda` or `cuda:N`.

use crate::error::{Error, Result};
use std::fmt;
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

    pub(crate) fn to_tch(self) -> tch::Device {
        match self {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(index) => tch::Device::Cuda(index),
        }
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
    use super::Device;

    #[test]
    fn parses_device_names() {
        let cases = [("cpu", Some(Device::Cpu)), ("cuda", Some(Device::Cuda(0))), ("cuda:3", Some(Device::Cuda(3))), ("gpu", None), ("cuda:x", None)];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Device>().ok(), expected, "{text}");
        }
    }
}
