//! The init of Ingot's bootable test image: PID 1 of an initramfs booted
//! from disk. It mounts /dev, /proc and /sys, loads the kernel modules listed
//! in `/lib/modules/load.list`, finds the `config-2` config drive on the
//! disks (ISO 9660 or VFAT labelled `config-2`, found by reading partition
//! tables and file systems itself, without partition device nodes or
//! mounts), and prints to the console:
//!
//! ```text
//! INGOT-TEST-IMAGE BOOTED FROM DISK
//! INGOT-TEST-IMAGE instance_uuid=<uuid of openstack/latest/meta_data.json>
//! ```
//!
//! or `INGOT-TEST-IMAGE no config drive: <reason>`, then stays up like an
//! OS would, reaping children.
//!
//! With `meta.ingot_probe` in meta_data.json (the isolation lab), it then
//! gives a NIC a static address and prints one `probe {…}` line per host it
//! tried to reach, then `probes done` (module `net`).
//!
//! Not as PID 1, `ingot-testimage-init --probe <disk or image>…` runs only
//! the config drive search on the given files and prints the same lines.

mod disk;
mod fat;
mod iso;
mod net;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use disk::{Config2, ReadAt};

/// Prefix of every line this init prints.
const TAG: &str = "INGOT-TEST-IMAGE";
/// The module list the image builder writes: module paths in load order.
const LOAD_LIST: &str = "/lib/modules/load.list";
/// How long to wait for the config drive's disk to appear.
const DISK_WAIT: Duration = Duration::from_secs(10);
/// The file holding the instance UUID.
const META_DATA: &str = "openstack/latest/meta_data.json";

/// Where lines go: the console, or stderr when it cannot be opened.
struct Console(Option<File>);

impl Console {
    fn open() -> Self {
        Console(File::options().write(true).open("/dev/console").ok())
    }

    fn line(&mut self, text: &str) {
        let line = format!("{TAG} {text}\n");
        let written = self
            .0
            .as_mut()
            .is_some_and(|f| f.write_all(line.as_bytes()).is_ok());
        if !written {
            eprint!("{line}");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::process::id() != 1 {
        if args.first().map(String::as_str) == Some("--probe") && args.len() > 1 {
            let mut c = Console(None);
            let disks: Vec<Disk> = args[1..]
                .iter()
                .map(|p| Disk {
                    name: p.clone(),
                    path: PathBuf::from(p),
                    sector: 512,
                })
                .collect();
            let ok = report(&mut c, search(&disks));
            std::process::exit(if ok { 0 } else { 1 });
        }
        eprintln!(
            "ingot-testimage-init is the init of the test image (PID 1).\n\
             usage: ingot-testimage-init --probe <disk or image>..."
        );
        std::process::exit(2);
    }
    pid1();
}

fn pid1() -> ! {
    let mounts = [
        ("devtmpfs", "/dev", "devtmpfs"),
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
    ];
    let mut failed = Vec::new();
    for (src, target, fstype) in mounts {
        if let Err(e) = mount(src, target, fstype) {
            failed.push(format!("{target}: {e}"));
        }
    }
    let mut c = Console::open();
    c.line("BOOTED FROM DISK");
    for f in failed {
        c.line(&format!("mount failed: {f}"));
    }
    load_modules(&mut c);
    let deadline = Instant::now() + DISK_WAIT;
    let result = loop {
        let disks = block_devices();
        let r = if disks.is_empty() {
            Err(format!("no block devices after {} s", DISK_WAIT.as_secs()))
        } else {
            search(&disks)
        };
        if r.is_ok() || Instant::now() >= deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let meta = result.as_ref().ok().map(|f| f.meta.clone());
    report(&mut c, result);
    if let Some(spec) = meta.as_ref().and_then(net::spec) {
        probe(&mut c, spec);
    }
    c.line("up; idling");
    reap_forever()
}

fn mount(src: &str, target: &str, fstype: &str) -> std::io::Result<()> {
    use std::ffi::CString;
    std::fs::create_dir_all(target).ok();
    let cs = |s: &str| CString::new(s).map_err(std::io::Error::other);
    let (src, tgt, fs) = (cs(src)?, cs(target)?, cs(fstype)?);
    // SAFETY: NUL-terminated strings that live across the call, no data.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    // devtmpfs may already be mounted by the kernel (CONFIG_DEVTMPFS_MOUNT).
    if e.raw_os_error() == Some(libc::EBUSY) {
        return Ok(());
    }
    Err(e)
}

/// Loads every module of the load list, in order; a module that fails is
/// reported and the rest are still tried.
fn load_modules(c: &mut Console) {
    let list = match std::fs::read_to_string(LOAD_LIST) {
        Ok(l) => l,
        Err(e) => {
            c.line(&format!("no module list {LOAD_LIST}: {e}"));
            return;
        }
    };
    let mut loaded = 0;
    for path in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match finit(Path::new(path)) {
            Ok(()) => loaded += 1,
            Err(e) => c.line(&format!("module {path}: {e}")),
        }
    }
    c.line(&format!("loaded {loaded} modules"));
}

/// Loads one module file through finit_module(2); already loaded is fine.
fn finit(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(path)?;
    // SAFETY: a valid open fd, an empty NUL-terminated parameter string, no flags.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        return Ok(());
    }
    Err(e)
}

/// A whole disk to search.
#[derive(Debug, Clone)]
struct Disk {
    /// Kernel name (`vda`, `nvme0n1`) or the path given to `--probe`.
    name: String,
    /// Its device node or file.
    path: PathBuf,
    /// Logical sector size.
    sector: u64,
}

/// The disks in /sys/block, without loop, RAM and zram devices.
fn block_devices() -> Vec<Disk> {
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return vec![];
    };
    let mut out: Vec<Disk> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p)) {
                return None;
            }
            let sector = std::fs::read_to_string(e.path().join("queue/logical_block_size"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(512);
            Some(Disk {
                path: PathBuf::from("/dev").join(&name),
                name,
                sector,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Where the config drive was found, its instance UUID and meta_data.json.
#[derive(Debug)]
struct Found {
    place: String,
    uuid: String,
    meta: serde_json::Value,
}

/// Searches the disks for a `config-2` file system, ISO 9660 or VFAT (whole
/// disk or partition), and reads the UUID from its meta_data.json.
fn search(disks: &[Disk]) -> Result<Found, String> {
    let mut notes = Vec::new();
    for d in disks {
        let dev = match File::open(&d.path) {
            Ok(f) => f,
            Err(e) => {
                notes.push(format!("{}: {e}", d.path.display()));
                continue;
            }
        };
        let parts = match disk::partitions(&dev, d.sector) {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("{}: reading the partition table: {e}", d.name));
                continue;
            }
        };
        let places = std::iter::once((0u64, format!("{} (whole disk)", d.name))).chain(
            parts.iter().map(|p| {
                (
                    p.offset,
                    format!(
                        "{} partition {} ({}) at byte {}",
                        d.name, p.number, p.table, p.offset
                    ),
                )
            }),
        );
        let mut seen = 0;
        for (offset, place) in places {
            seen += 1;
            if let Some(kind) = disk::config2_at(&dev, offset) {
                match read_meta(&dev, offset, kind) {
                    Ok((uuid, meta)) => return Ok(Found { place, uuid, meta }),
                    Err(e) => notes.push(format!("{place}: {e}")),
                }
            }
        }
        notes.push(format!("{}: {} places, no config-2", d.name, seen));
    }
    Err(notes.join("; "))
}

fn read_meta(
    dev: &dyn ReadAt,
    offset: u64,
    kind: Config2,
) -> Result<(String, serde_json::Value), String> {
    let data = match kind {
        Config2::Iso => iso::open(dev, offset)
            .map_err(|e| e.to_string())?
            .ok_or("not ISO 9660")?
            .read_file(dev, META_DATA),
        Config2::Vfat => fat::open(dev, offset)
            .map_err(|e| e.to_string())?
            .ok_or("not FAT")?
            .read_file(dev, META_DATA),
    }
    .map_err(|e| format!("reading {META_DATA}: {e}"))?
    .ok_or_else(|| format!("no {META_DATA}"))?;
    let meta: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| format!("{META_DATA}: {e}"))?;
    let uuid = meta
        .get("uuid")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("{META_DATA} has no \"uuid\""))?;
    Ok((uuid, meta))
}

/// Probe mode: the address, then every probe's line.
fn probe(c: &mut Console, spec: Result<net::Spec, String>) {
    let spec = match spec {
        Ok(s) => s,
        Err(e) => {
            c.line(&format!("probe spec: {e}"));
            return;
        }
    };
    match net::configure(&spec) {
        Ok(nic) => c.line(&format!(
            "probe address {}/{} on {nic} ({})",
            spec.address, spec.prefix, spec.mac
        )),
        Err(e) => {
            c.line(&format!("probe address: {e}"));
            return;
        }
    }
    for r in net::run(&spec) {
        c.line(&format!("probe {r}"));
    }
    c.line("probes done");
}

/// Prints the outcome; true if a UUID was found.
fn report(c: &mut Console, result: Result<Found, String>) -> bool {
    match result {
        Ok(f) => {
            c.line(&format!("config drive: {}", f.place));
            c.line(&format!("instance_uuid={}", f.uuid));
            true
        }
        Err(reason) => {
            c.line(&format!("no config drive: {reason}"));
            false
        }
    }
}

/// PID 1 never exits: it reaps whatever exits and sleeps.
fn reap_forever() -> ! {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer; -1 waits for any child.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r < 0 {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::iso::tests::{Names, config_drive};

    #[test]
    fn search_finds_the_uuid_in_an_appended_partition() {
        let dir = std::env::temp_dir().join(format!("testimage-init-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.img");
        let mut disk = vec![0u8; 4 << 20];
        disk[510] = 0x55;
        disk[511] = 0xaa;
        // Partition 1: a FAT boot partition; partition 2 at 3 MiB: the drive.
        disk[446 + 4] = 0x06;
        disk[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        disk[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
        disk[462 + 4] = 0x83;
        disk[462 + 8..462 + 12].copy_from_slice(&6144u32.to_le_bytes());
        disk[462 + 12..462 + 16].copy_from_slice(&2048u32.to_le_bytes());
        let meta = br#"{"hostname": "h", "uuid": "8d3a1e7a-5a4e-4c3e-9d6b-3f1f0e2b9c11"}"#;
        let iso = config_drive("config-2", meta, Names::CoordinatorWithJoliet);
        disk[3 << 20..(3 << 20) + iso.len()].copy_from_slice(&iso);
        std::fs::write(&path, &disk).unwrap();
        let d = Disk {
            name: "vda".into(),
            path: path.clone(),
            sector: 512,
        };
        let found = search(std::slice::from_ref(&d)).unwrap();
        assert_eq!(found.uuid, "8d3a1e7a-5a4e-4c3e-9d6b-3f1f0e2b9c11");
        assert_eq!(found.place, "vda partition 2 (dos) at byte 3145728");

        disk[3 << 20..(3 << 20) + iso.len()].fill(0);
        std::fs::write(&path, &disk).unwrap();
        let err = search(&[d]).unwrap_err();
        assert!(err.contains("vda: 3 places, no config-2"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
