//! System vendor and firmware from `/sys/class/dmi/id`.

use std::path::Path;

use ingot_proto::inventory::{Firmware, SystemVendor};

use super::sysfs;

/// Reads the system vendor section; absent DMI gives all-null values.
pub fn read(root: &Path) -> SystemVendor {
    let dir = root.join("sys/class/dmi/id");
    let get = |name: &str| sysfs::read_trimmed(&dir.join(name));
    SystemVendor {
        product_name: get("product_name"),
        serial_number: get("product_serial"),
        manufacturer: get("sys_vendor"),
        firmware: Firmware {
            vendor: get("bios_vendor"),
            version: get("bios_version"),
            build_date: get("bios_date"),
        },
    }
}
