//! UEFI variables through efivarfs (`/sys/firmware/efi/efivars`): each file
//! is named `<Name>-<vendor GUID>` and holds a 4-byte attribute word then
//! the data; a write must be a single `write(2)` of both. Variables the
//! kernel does not know to be safe are immutable (`chattr +i`) and need the
//! flag cleared before they can be changed or removed.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// EFI_GLOBAL_VARIABLE: the vendor GUID of `Boot####` and `BootOrder`.
pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
pub const ATTRS_NV_BS_RT: u32 = 0x7;
/// Largest variable read (firmware stores are a few hundred KiB at most).
const MAX_VAR_BYTES: u64 = 64 << 10;
/// efivarfs's file system magic.
const EFIVARFS_MAGIC: i64 = 0xde5e_81e4;
/// `FS_IOC_GETFLAGS` / `FS_IOC_SETFLAGS` (`_IOR/_IOW('f', 1/2, long)`, the
/// same on x86_64 and aarch64) and `FS_IMMUTABLE_FL`.
const FS_IOC_GETFLAGS: u64 = 0x8008_6601;
const FS_IOC_SETFLAGS: u64 = 0x4008_6602;
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// A directory of UEFI variables: efivarfs, or (in tests) a plain directory
/// standing in for it.
#[derive(Debug, Clone)]
pub struct EfiVars {
    dir: PathBuf,
    efivarfs: bool,
}

fn is_efivarfs(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct of the right type and reads
    // a NUL-terminated path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == EFIVARFS_MAGIC
    }
}

impl EfiVars {
    /// Variables in `dir` (efivarfs or a stand-in directory).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let efivarfs = is_efivarfs(&dir);
        Self { dir, efivarfs }
    }

    /// The firmware's variables under `root` when the machine booted UEFI
    /// (`<root>/sys/firmware/efi` exists): `<root>/sys/firmware/efi/efivars`,
    /// mounting efivarfs there first if `root` is `/` and it is not mounted.
    /// `None` on a BIOS boot, and when there are no variables to reach (on
    /// `/`: efivarfs could not be mounted; elsewhere, a test root: no
    /// `efivars` directory).
    pub fn open(root: &Path) -> Option<Self> {
        let efi = root.join("sys/firmware/efi");
        if !efi.is_dir() {
            return None;
        }
        let dir = efi.join("efivars");
        if root == Path::new("/") {
            if !is_efivarfs(&dir) {
                match mount_efivarfs(&dir) {
                    Ok(()) => tracing::info!(dir = %dir.display(), "efivarfs mounted"),
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "mounting efivarfs failed: no UEFI variables");
                        return None;
                    }
                }
            }
        } else if !dir.is_dir() {
            tracing::warn!(dir = %dir.display(), "no UEFI variables");
            return None;
        }
        Some(Self::new(dir))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-{GLOBAL_GUID}"))
    }

    /// Reads a global variable: its attributes and data, `None` if absent.
    pub fn read(&self, name: &str) -> io::Result<Option<(u32, Vec<u8>)>> {
        let f = match File::open(self.path(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut raw = Vec::new();
        f.take(MAX_VAR_BYTES).read_to_end(&mut raw)?;
        if raw.len() < 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("variable {name} shorter than its attributes"),
            ));
        }
        let attrs = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        Ok(Some((attrs, raw.split_off(4))))
    }

    /// Writes a global variable in one `write(2)` (attributes then data).
    pub fn write(&self, name: &str, attrs: u32, data: &[u8]) -> io::Result<()> {
        let path = self.path(name);
        if path.exists() {
            self.clear_immutable(&path);
        }
        let mut buf = Vec::with_capacity(data.len() + 4);
        buf.extend_from_slice(&attrs.to_le_bytes());
        buf.extend_from_slice(data);
        // efivarfs replaces the variable on each write; a plain file needs
        // truncating.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(!self.efivarfs)
            .open(&path)?;
        let n = f.write(&buf)?;
        if n != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("variable {name}: short write ({n} of {})", buf.len()),
            ));
        }
        Ok(())
    }

    /// Removes a global variable (absent is fine).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let path = self.path(name);
        if !path.exists() {
            return Ok(());
        }
        self.clear_immutable(&path);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The numbers of the `Boot####` variables present, sorted.
    pub fn boot_numbers(&self) -> io::Result<Vec<u16>> {
        let suffix = format!("-{GLOBAL_GUID}");
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let name = e?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(var) = name.strip_suffix(&suffix) else {
                continue;
            };
            let Some(hex) = var.strip_prefix("Boot") else {
                continue;
            };
            if hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                if let Ok(n) = u16::from_str_radix(hex, 16) {
                    out.push(n);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// `BootOrder` (empty if absent).
    pub fn boot_order(&self) -> io::Result<Vec<u16>> {
        Ok(self
            .read("BootOrder")?
            .map(|(_, d)| {
                d.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Writes `BootOrder`.
    pub fn set_boot_order(&self, order: &[u16]) -> io::Result<()> {
        let data: Vec<u8> = order.iter().flat_map(|n| n.to_le_bytes()).collect();
        self.write("BootOrder", ATTRS_NV_BS_RT, &data)
    }

    /// Clears the immutable flag of a variable on efivarfs (best effort:
    /// a failure shows up as the write's error).
    fn clear_immutable(&self, path: &Path) {
        if !self.efivarfs {
            return;
        }
        let Ok(f) = File::open(path) else { return };
        let mut flags: libc::c_long = 0;
        // SAFETY: the ioctls read and write one long through a valid pointer
        // on an open descriptor.
        unsafe {
            if libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS as _, &mut flags) != 0 {
                return;
            }
            if flags & FS_IMMUTABLE_FL != 0 {
                flags &= !FS_IMMUTABLE_FL;
                if libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS as _, &flags) != 0 {
                    tracing::warn!(path = %path.display(), error = %io::Error::last_os_error(), "clearing the immutable flag failed");
                }
            }
        }
    }
}

fn mount_efivarfs(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: NUL-terminated strings and no data argument.
    let rc = unsafe {
        libc::mount(
            c"efivarfs".as_ptr(),
            target.as_ptr(),
            c"efivarfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
