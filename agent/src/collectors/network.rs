//! Network interfaces from sysfs (`class/net/*`: MAC, MTU, operational state, link speed,
//! driver) with their IPv4/IPv6 addresses (sysinfo, i.e. getifaddrs).

use std::collections::HashMap;
use std::path::Path;

use nerve_schemas::NetInterface;
use sysinfo::Networks;

use super::read_trimmed;

/// Interfaces under `<sysfs>/class/net`; `addresses` maps an interface to its `addr/prefix` list.
pub fn interfaces(
    sysfs: &Path,
    addresses: &HashMap<String, Vec<String>>,
) -> Result<Vec<NetInterface>, String> {
    let dir = sysfs.join("class/net");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let p = dir.join(&name);
        let attr = |f: &str| read_trimmed(&p.join(f));
        out.push(NetInterface {
            mac: attr("address").unwrap_or_default(),
            addresses: addresses.get(&name).cloned().unwrap_or_default(),
            mtu: attr("mtu").and_then(|m| m.parse().ok()).unwrap_or(0),
            // Reading `speed` fails (EINVAL) on a down or virtual link; -1 means unknown too.
            speed_mbps: attr("speed")
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|&s| s > 0),
            state: attr("operstate").unwrap_or_else(|| "unknown".into()),
            driver: std::fs::read_link(p.join("device/driver"))
                .ok()
                .and_then(|l| l.file_name().map(|f| f.to_string_lossy().into_owned()))
                .unwrap_or_default(),
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every interface's addresses with prefix length, sorted.
pub fn addresses() -> HashMap<String, Vec<String>> {
    Networks::new_with_refreshed_list()
        .iter()
        .map(|(name, data)| {
            let mut a: Vec<String> = data
                .ip_networks()
                .iter()
                .map(|n| format!("{}/{}", n.addr, n.prefix))
                .collect();
            a.sort();
            (name.clone(), a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_interfaces_carry_speed_state_and_driver() {
        let dir = tempfile::tempdir().expect("tmp");
        let iface = |name: &str, files: &[(&str, &str)], driver: Option<&str>| {
            let p = dir.path().join("class/net").join(name);
            std::fs::create_dir_all(p.join("device")).expect("mkdir");
            for (f, v) in files {
                std::fs::write(p.join(f), format!("{v}\n")).expect("w");
            }
            if let Some(d) = driver {
                let target = dir.path().join("bus/pci/drivers").join(d);
                std::fs::create_dir_all(&target).expect("mkdir");
                std::os::unix::fs::symlink(&target, p.join("device/driver")).expect("link");
            }
        };
        iface(
            "ib0",
            &[
                ("address", "00:00:10:87:fe:80"),
                ("mtu", "4092"),
                ("operstate", "up"),
                ("speed", "400000"),
            ],
            Some("mlx5_core"),
        );
        iface(
            "eth1",
            &[
                ("address", "52:54:00:aa:bb:cc"),
                ("mtu", "1500"),
                ("operstate", "down"),
                ("speed", "-1"),
            ],
            None,
        );
        let addrs = HashMap::from([("ib0".to_owned(), vec!["10.1.0.7/16".to_owned()])]);
        let got = interfaces(dir.path(), &addrs).expect("net");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "eth1");
        assert_eq!((got[0].speed_mbps, got[0].state.as_str()), (None, "down"));
        assert_eq!(got[1].speed_mbps, Some(400_000));
        assert_eq!(got[1].driver, "mlx5_core");
        assert_eq!(got[1].mtu, 4092);
        assert_eq!(got[1].addresses, ["10.1.0.7/16"]);
    }

    #[test]
    fn this_machine_lists_its_interfaces() {
        let got = interfaces(Path::new("/sys"), &addresses()).expect("net");
        assert!(got.iter().any(|i| i.name == "lo"), "{got:?}");
        assert!(got.iter().any(|i| !i.addresses.is_empty()));
    }
}
