//! GPUs via NVML (the `gpu` feature, on by default). A machine without the NVIDIA driver has
//! "no GPUs", which is not an error; a driver that is present but fails is reported as a
//! collector error. NVML calls block and run on the collectors' blocking thread.

use nerve_schemas::{GpuDevice, GpuSample};

#[cfg(feature = "gpu")]
mod nvml {
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    use nvml_wrapper::error::NvmlError;
    use nvml_wrapper::{Device, Nvml};

    use super::{GpuDevice, GpuSample};

    pub struct Backend {
        nvml: Nvml,
    }

    /// `Ok(None)`: no NVIDIA driver on this machine.
    pub fn open() -> Result<Option<Backend>, String> {
        match Nvml::init() {
            Ok(nvml) => Ok(Some(Backend { nvml })),
            Err(NvmlError::LibloadingError(_)) | Err(NvmlError::DriverNotLoaded) => Ok(None),
            Err(e) => Err(format!("NVML init: {e}")),
        }
    }

    impl Backend {
        pub fn inventory(&self) -> Result<Vec<GpuDevice>, String> {
            let n = &self.nvml;
            let driver = n.sys_driver_version().unwrap_or_default();
            let cuda = n
                .sys_cuda_driver_version()
                .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10))
                .unwrap_or_default();
            self.each_device(|index, d| GpuDevice {
                index: index as i32,
                uuid: d.uuid().unwrap_or_default(),
                name: d.name().unwrap_or_default(),
                pci_bus_id: d.pci_info().map(|p| p.bus_id).unwrap_or_default(),
                memory_total_bytes: d.memory_info().map(|m| m.total as i64).unwrap_or(0),
                driver_version: driver.clone(),
                cuda_version: cuda.clone(),
            })
        }

        pub fn sample(&self) -> Result<Vec<GpuSample>, String> {
            self.each_device(|index, d| {
                let util = d.utilization_rates().ok();
                let mem = d.memory_info().ok();
                GpuSample {
                    index: index as i32,
                    uuid: d.uuid().unwrap_or_default(),
                    util_pct: util.as_ref().map_or(0.0, |u| u.gpu as f32),
                    mem_util_pct: util.as_ref().map_or(0.0, |u| u.memory as f32),
                    mem_used_bytes: mem.as_ref().map_or(0, |m| m.used as i64),
                    mem_total_bytes: mem.as_ref().map_or(0, |m| m.total as i64),
                    temperature_c: d
                        .temperature(TemperatureSensor::Gpu)
                        .map_or(0.0, |t| t as f32),
                    power_w: d.power_usage().map_or(0.0, |mw| mw as f32 / 1000.0),
                }
            })
        }

        /// `f` over every GPU, in index order; any device NVML cannot open is an error.
        fn each_device<T>(&self, mut f: impl FnMut(u32, &Device) -> T) -> Result<Vec<T>, String> {
            let count = self
                .nvml
                .device_count()
                .map_err(|e| format!("device count: {e}"))?;
            (0..count)
                .map(|index| {
                    let d = self
                        .nvml
                        .device_by_index(index)
                        .map_err(|e| format!("GPU {index}: {e}"))?;
                    Ok(f(index, &d))
                })
                .collect()
        }
    }
}

/// GPU inventory and samples for this machine.
pub struct GpuCollector {
    #[cfg(feature = "gpu")]
    backend: Option<nvml::Backend>,
    init_error: Option<String>,
}

impl GpuCollector {
    /// Opens NVML if `enabled` and the feature is built; otherwise the machine has no GPUs.
    pub fn new(enabled: bool) -> Self {
        #[cfg(feature = "gpu")]
        {
            if !enabled {
                return Self {
                    backend: None,
                    init_error: None,
                };
            }
            match nvml::open() {
                Ok(backend) => {
                    if backend.is_none() {
                        tracing::info!("no NVIDIA driver found: reporting no GPUs");
                    }
                    Self {
                        backend,
                        init_error: None,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "NVML present but failing");
                    Self {
                        backend: None,
                        init_error: Some(e),
                    }
                }
            }
        }
        #[cfg(not(feature = "gpu"))]
        {
            let _ = enabled;
            Self { init_error: None }
        }
    }

    /// The GPUs, or why they could not be read.
    pub fn inventory(&self) -> Result<Vec<GpuDevice>, String> {
        if let Some(e) = &self.init_error {
            return Err(e.clone());
        }
        #[cfg(feature = "gpu")]
        if let Some(b) = &self.backend {
            return b.inventory();
        }
        Ok(Vec::new())
    }

    /// One sample per GPU.
    pub fn sample(&self) -> Result<Vec<GpuSample>, String> {
        #[cfg(feature = "gpu")]
        if let Some(b) = &self.backend {
            return b.sample();
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These machines have no NVIDIA driver: that must read as "no GPUs", not an error.
    #[test]
    fn a_machine_without_nvidia_driver_has_no_gpus() {
        if std::path::Path::new("/proc/driver/nvidia").exists() {
            return; // a GPU machine: covered by the NVML fixture run instead
        }
        let c = GpuCollector::new(true);
        assert_eq!(c.inventory(), Ok(vec![]));
        assert_eq!(c.sample(), Ok(vec![]));
        assert_eq!(GpuCollector::new(false).inventory(), Ok(vec![]));
    }
}
