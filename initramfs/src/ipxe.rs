//! The iPXE script template written next to the ramdisk.
//!
//! The coordinator renders it per node; used as is, the `${…}` settings are
//! iPXE's own variables, so the script also works when chained by hand after
//! `set base-url …` and `set ingot-api …`.

use crate::Arch;

/// The serial console of `arch`'s usual server: the 16550 `ttyS0` on x86_64,
/// the PL011 `ttyAMA0` on aarch64 (QEMU's `virt`, most Arm servers).
pub fn serial_console(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "ttyS0",
        Arch::Aarch64 => "ttyAMA0",
    }
}

/// The template. `BOOTIF` names the PXE interface so the agent runs DHCP on
/// it first (the same form pxelinux and Ironic use).
pub fn template(arch: Arch) -> String {
    format!(
        "#!ipxe\n\
         # Ingot provisioning ramdisk. Set base-url (where vmlinuz and initramfs.img are served)\n\
         # and ingot-api (the coordinator's URL) before chaining to this script.\n\
         kernel ${{base-url}}/vmlinuz initrd=initramfs.img ingot.api=${{ingot-api}} BOOTIF=01-${{net0/mac:hexhyp}} console=tty0 console={},115200n8\n\
         initrd ${{base-url}}/initramfs.img\n\
         boot\n",
        serial_console(arch)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_follows_the_architecture() {
        let x86 = template(Arch::X86_64);
        assert!(x86.contains(" console=ttyS0,115200n8\n"), "{x86}");
        assert!(x86.contains("BOOTIF=01-${net0/mac:hexhyp} "), "{x86}");
        let arm = template(Arch::Aarch64);
        assert!(arm.contains(" console=ttyAMA0,115200n8\n"), "{arm}");
        assert_eq!(x86.replace("ttyS0", "ttyAMA0"), arm);
    }
}
