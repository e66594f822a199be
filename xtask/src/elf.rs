//! Just enough ELF64 to tell whether a binary is static: no `PT_INTERP`
//! program header and no `DT_NEEDED` entry in its dynamic section; and which
//! machine it is for (`e_machine`).

use anyhow::{Context, Result};

use object::Endianness;
use object::elf::{DT_NEEDED, DT_NULL, DT_STRSZ, DT_STRTAB, PT_DYNAMIC, PT_INTERP, PT_LOAD};
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};

/// What makes a binary dynamic, if anything.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Linkage {
    /// The ELF header's `e_machine` (`EM_X86_64`, `EM_AARCH64`, ...).
    pub machine: u16,
    /// The program interpreter (`PT_INTERP`), e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<String>,
    /// The shared libraries it needs (`DT_NEEDED`), by name when it can be read.
    pub needed: Vec<String>,
    /// Whether it has a dynamic section at all (a static PIE has one, with no `DT_NEEDED`).
    pub has_dynamic: bool,
}

impl Linkage {
    /// True for a binary the kernel runs without a loader or shared libraries.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }
}

/// Reads the linkage of an ELF64 image (the `object` crate parses it; the
/// program headers are enough, so stripped section headers do not matter).
pub fn linkage(data: &[u8]) -> Result<Linkage> {
    let file = ElfFile64::<Endianness>::parse(data).context("not an ELF64 file")?;
    let endian = file.endian();
    let phdrs = file.elf_program_headers();
    let mut out = Linkage {
        machine: file.elf_header().e_machine(endian),
        ..Linkage::default()
    };
    let mut needed_offsets = Vec::new();
    let (mut strtab, mut strsz) = (None, 0u64);
    for ph in phdrs {
        match ph.p_type(endian) {
            PT_INTERP => {
                let raw = ph
                    .interpreter(endian, data)
                    .ok()
                    .flatten()
                    .context("truncated PT_INTERP")?;
                out.interpreter = Some(String::from_utf8_lossy(raw).into_owned());
            }
            PT_DYNAMIC => {
                out.has_dynamic = true;
                let dyns = ph
                    .dynamic(endian, data)
                    .ok()
                    .flatten()
                    .context("truncated PT_DYNAMIC")?;
                for d in dyns {
                    let tag = d.d_tag(endian);
                    let val = d.d_val(endian);
                    match u32::try_from(tag).unwrap_or(u32::MAX) {
                        DT_NULL => break,
                        DT_NEEDED => needed_offsets.push(val),
                        DT_STRTAB => strtab = Some(val),
                        DT_STRSZ => strsz = val,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // DT_STRTAB is an address: the PT_LOAD segment holding it gives the bytes.
    let table = strtab.and_then(|addr| {
        phdrs
            .iter()
            .filter(|p| p.p_type(endian) == PT_LOAD)
            .find_map(|p| {
                p.data_range(endian, data, addr, strsz.max(1))
                    .ok()
                    .flatten()
            })
    });
    for off in needed_offsets {
        let name = table
            .and_then(|t| usize::try_from(off).ok().and_then(|o| t.get(o..)))
            .and_then(|rest| rest.split(|&b| b == 0).next())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_else(|| format!("<string at {off}>"));
        out.needed.push(name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given program headers: (type, offset, vaddr, filesz).
    fn elf(phdrs: &[(u32, u64, u64, u64)], tail: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 0x40];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[6] = 1;
        d[0x12..0x14].copy_from_slice(&object::elf::EM_AARCH64.to_le_bytes());
        d[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for &(kind, offset, vaddr, filesz) in phdrs {
            let mut p = [0u8; 0x38];
            p[..4].copy_from_slice(&kind.to_le_bytes());
            p[8..16].copy_from_slice(&offset.to_le_bytes());
            p[16..24].copy_from_slice(&vaddr.to_le_bytes());
            p[32..40].copy_from_slice(&filesz.to_le_bytes());
            d.extend_from_slice(&p);
        }
        d.extend_from_slice(tail);
        d
    }

    #[test]
    fn static_without_dynamic_section() {
        let l = linkage(&elf(&[(PT_LOAD, 0, 0, 0xb0)], &[])).unwrap();
        assert!(l.is_static());
        assert!(!l.has_dynamic);
        assert_eq!(l.machine, object::elf::EM_AARCH64);
    }

    #[test]
    fn static_pie_and_needed_entries() {
        // Layout: header (0x40) + 2 phdrs (0x70) = 0xb0; strtab at 0xb0, dynamic at 0xc0.
        let strtab = b"\0libc.so\0\0\0\0\0\0\0\0";
        let mut dynamic = Vec::new();
        for (tag, val) in [
            (DT_STRTAB, 0xb0u64),
            (DT_STRSZ, 16),
            (DT_NEEDED, 1),
            (DT_NULL, 0),
        ] {
            dynamic.extend_from_slice(&u64::from(tag).to_le_bytes());
            dynamic.extend_from_slice(&val.to_le_bytes());
        }
        let mut tail = strtab.to_vec();
        tail.extend_from_slice(&dynamic);
        let phdrs = [(PT_LOAD, 0, 0, 0xf0), (PT_DYNAMIC, 0xc0, 0xc0, 64)];
        let l = linkage(&elf(&phdrs, &tail)).unwrap();
        assert_eq!(l.needed, vec!["libc.so".to_string()]);
        assert!(!l.is_static());

        // The same without DT_NEEDED: a static PIE.
        let mut tail = strtab.to_vec();
        for (tag, val) in [(DT_STRTAB, 0xb0u64), (DT_STRSZ, 16), (DT_NULL, 0)] {
            tail.extend_from_slice(&u64::from(tag).to_le_bytes());
            tail.extend_from_slice(&val.to_le_bytes());
        }
        let l = linkage(&elf(
            &[(PT_LOAD, 0, 0, 0xf0), (PT_DYNAMIC, 0xc0, 0xc0, 48)],
            &tail,
        ))
        .unwrap();
        assert!(l.has_dynamic);
        assert!(l.is_static());
    }

    #[test]
    fn this_test_binary_is_dynamic() {
        // Built for the host (glibc): it has an interpreter and needs libc.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let l = linkage(&me).unwrap();
        assert!(l.interpreter.is_some(), "{l:?}");
        assert!(l.needed.iter().any(|n| n.starts_with("libc.so")), "{l:?}");
    }

    #[test]
    fn the_built_agents_when_present() {
        // The musl agents `cargo xtask test` / `cargo xtask agent` build:
        // static, no interpreter, for their own machine.
        for arch in crate::util::Arch::ALL {
            let path = crate::util::agent_path_for(arch);
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            let l = linkage(&data).unwrap();
            assert!(l.is_static(), "{}: {l:?}", path.display());
            assert_eq!(l.machine, arch.elf_machine(), "{}", path.display());
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(linkage(b"#!/bin/sh\n").is_err());
        assert!(linkage(b"\x7fELF\x02\x01").is_err());
    }
}
