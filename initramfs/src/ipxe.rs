//! The iPXE script template written next to the ramdisk.
//!
//! The coordinator renders it per node; used as is, the `${…}` settings are
//! iPXE's own variables, so the script also works when chained by hand after
//! `set base-url …` and `set ingot-api …`.

/// The template. `BOOTIF` names the PXE interface so the agent runs DHCP on
/// it first (the same form pxelinux and Ironic use).
pub fn template() -> String {
    "#!ipxe\n\
     # Ingot provisioning ramdisk. Set base-url (where vmlinuz and initramfs.img are served)\n\
     # and ingot-api (the coordinator's URL) before chaining to this script.\n\
     kernel ${base-url}/vmlinuz initrd=initramfs.img ingot.api=${ingot-api} BOOTIF=01-${net0/mac:hexhyp} console=tty0 console=ttyS0,115200n8\n\
     initrd ${base-url}/initramfs.img\n\
     boot\n"
        .to_string()
}
