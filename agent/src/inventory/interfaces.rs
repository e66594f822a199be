//! Network interfaces from `/sys/class/net`: physical ones only (those with a
//! `device` link), as IPA lists them.

use std::path::Path;

use ingot_proto::inventory::Interface;

use super::{addresses, sysfs};

/// Lists physical interfaces, sorted by name. `live` reads addresses with
/// `getifaddrs`; otherwise from the procfs files of the tree.
pub fn list(root: &Path, live: bool) -> Vec<Interface> {
    let addrs = addresses::by_interface(root, live);
    let class = root.join("sys/class/net");
    sysfs::sorted_entries(&class)
        .into_iter()
        .filter(|n| n != "lo")
        .filter_map(|name| {
            let link = class.join(&name);
            let real = sysfs::resolve(&link).unwrap_or(link);
            let device = sysfs::resolve(&real.join("device"))?;
            let (v4, v6) = addrs.get(&name).cloned().unwrap_or_default();
            let speed = sysfs::read_trimmed(&real.join("speed"))
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s > 0)
                .and_then(|s| u32::try_from(s).ok());
            Some(Interface {
                mac_address: sysfs::read_trimmed(&real.join("address"))
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                ipv4_address: v4,
                ipv6_address: v6,
                has_carrier: sysfs::read_u64(&real.join("carrier")) == Some(1),
                lldp: None,
                vendor: sysfs::read_trimmed(&device.join("vendor")),
                product: sysfs::read_trimmed(&device.join("device")),
                client_id: None,
                biosdevname: None,
                speed_mbps: speed,
                pci_address: sysfs::pci_ancestor(&device),
                driver: sysfs::link_name(&device.join("driver")),
                name,
            })
        })
        .collect()
}
