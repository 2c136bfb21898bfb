//! What the machine is: virtualisation (CPU `hypervisor` flag, DMI and Xen sysfs), container
//! runtime (marker files, PID 1's cgroups, the Kubernetes environment), and DMI system, board
//! and BIOS identity (`class/dmi/id`, readable without root; absent on many ARM boards and VMs).

use std::path::Path;

use nerve_schemas::SystemInfo;

use super::read_trimmed;

/// Names a hypervisor from DMI vendor/product strings (as systemd-detect-virt does).
pub fn hypervisor_from_dmi(vendor: &str, product: &str, bios_vendor: &str) -> Option<&'static str> {
    let all = format!("{vendor} {product} {bios_vendor}").to_ascii_lowercase();
    [
        ("amazon ec2", "amazon"),
        ("google", "google"),
        ("microsoft corporation virtual", "microsoft"),
        ("vmware", "vmware"),
        ("virtualbox", "oracle"),
        ("innotek", "oracle"),
        ("qemu", "qemu"),
        ("kvm", "kvm"),
        ("xen", "xen"),
        ("bochs", "bochs"),
        ("parallels", "parallels"),
        ("openstack", "kvm"),
    ]
    .iter()
    .find(|(needle, _)| all.contains(needle))
    .map(|(_, name)| *name)
}

/// Names a container runtime from PID 1's cgroup file.
pub fn container_from_cgroup(cgroup: &str) -> Option<&'static str> {
    [
        ("kubepods", "kubernetes"),
        ("docker", "docker"),
        ("libpod", "podman"),
        ("containerd", "containerd"),
        ("lxc", "lxc"),
    ]
    .iter()
    .find(|(needle, _)| cgroup.contains(needle))
    .map(|(_, name)| *name)
}

/// The system identity; never an error (what is unreadable is empty or `unknown`).
pub fn collect(procfs: &Path, sysfs: &Path, rootfs: &Path, hypervisor_flag: bool) -> SystemInfo {
    let dmi = |f: &str| {
        read_trimmed(&sysfs.join("class/dmi/id").join(f))
            .filter(|v| !matches!(v.as_str(), "" | "To Be Filled By O.E.M." | "Default string"))
            .unwrap_or_default()
    };
    let system_vendor = dmi("sys_vendor");
    let product_name = dmi("product_name");
    let bios_vendor = dmi("bios_vendor");
    let virtualization = hypervisor_from_dmi(&system_vendor, &product_name, &bios_vendor)
        .map(str::to_owned)
        .or_else(|| read_trimmed(&sysfs.join("hypervisor/type")).filter(|t| !t.is_empty()))
        .unwrap_or_else(|| {
            if hypervisor_flag {
                "vm".to_owned() // the CPU says so, the firmware does not say which
            } else {
                "none".to_owned()
            }
        });
    let container = if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        "kubernetes"
    } else if rootfs.join(".dockerenv").exists() {
        "docker"
    } else if rootfs.join("run/.containerenv").exists() {
        "podman"
    } else {
        read_trimmed(&procfs.join("1/cgroup"))
            .and_then(|c| container_from_cgroup(&c))
            .unwrap_or("none")
    };
    SystemInfo {
        virtualization,
        container: container.to_owned(),
        system_vendor,
        product_name,
        board_vendor: dmi("board_vendor"),
        board_name: dmi("board_name"),
        bios_vendor,
        bios_version: dmi("bios_version"),
        bios_date: dmi("bios_date"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypervisors_are_named_from_dmi() {
        assert_eq!(
            hypervisor_from_dmi("QEMU", "Standard PC (Q35 + ICH9, 2009)", "SeaBIOS"),
            Some("qemu")
        );
        assert_eq!(
            hypervisor_from_dmi("Amazon EC2", "p5.48xlarge", "Amazon EC2"),
            Some("amazon")
        );
        assert_eq!(
            hypervisor_from_dmi("VMware, Inc.", "VMware7,1", ""),
            Some("vmware")
        );
        assert_eq!(
            hypervisor_from_dmi("Supermicro", "SYS-821GE-TNHR", "American Megatrends"),
            None
        );
    }

    #[test]
    fn containers_are_named_from_cgroups() {
        assert_eq!(
            container_from_cgroup("0::/kubepods/burstable/pod1/abc"),
            Some("kubernetes")
        );
        assert_eq!(
            container_from_cgroup("12:pids:/docker/0123abcd"),
            Some("docker")
        );
        assert_eq!(container_from_cgroup("0::/init.scope"), None);
    }

    #[test]
    fn dmi_identity_and_bare_metal() {
        let dir = tempfile::tempdir().expect("tmp");
        let id = dir.path().join("class/dmi/id");
        std::fs::create_dir_all(&id).expect("mkdir");
        for (f, v) in [
            ("sys_vendor", "Supermicro"),
            ("product_name", "SYS-821GE-TNHR"),
            ("board_vendor", "Supermicro"),
            ("board_name", "X13DEG-OAD"),
            ("bios_vendor", "American Megatrends International, LLC."),
            ("bios_version", "2.1"),
            ("bios_date", "03/14/2024"),
        ] {
            std::fs::write(id.join(f), format!("{v}\n")).expect("w");
        }
        let s = collect(dir.path(), dir.path(), dir.path(), false);
        assert_eq!(s.virtualization, "none");
        assert_eq!(s.board_name, "X13DEG-OAD");
        assert_eq!(s.bios_date, "03/14/2024");
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            assert_eq!(s.container, "none");
        }
        let vm = collect(dir.path(), &dir.path().join("nothing"), dir.path(), true);
        assert_eq!(
            (vm.virtualization.as_str(), vm.system_vendor.as_str()),
            ("vm", "")
        );
    }
}
