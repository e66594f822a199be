//! Just enough ELF64 to tell whether a binary is static: no `PT_INTERP`
//! program header and no `DT_NEEDED` entry in its dynamic section.

use anyhow::{Context, Result, bail};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// What makes a binary dynamic, if anything.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Linkage {
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

fn bytes<const N: usize>(data: &[u8], at: u64) -> Result<[u8; N]> {
    let start = usize::try_from(at).context("offset out of range")?;
    data.get(start..start + N)
        .and_then(|s| s.try_into().ok())
        .with_context(|| format!("truncated ELF: {N} bytes at offset {at}"))
}

fn u16_at(d: &[u8], at: u64) -> Result<u16> {
    Ok(u16::from_le_bytes(bytes(d, at)?))
}

fn u32_at(d: &[u8], at: u64) -> Result<u32> {
    Ok(u32::from_le_bytes(bytes(d, at)?))
}

fn u64_at(d: &[u8], at: u64) -> Result<u64> {
    Ok(u64::from_le_bytes(bytes(d, at)?))
}

/// One program header: type, file offset, virtual address, file size.
struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Reads the linkage of a little-endian ELF64 image.
pub fn linkage(data: &[u8]) -> Result<Linkage> {
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        bail!("not an ELF file");
    }
    if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        bail!("not a little-endian ELF64 file");
    }
    let phoff = u64_at(data, 0x20)?;
    let phentsize = u64::from(u16_at(data, 0x36)?);
    let phnum = u64::from(u16_at(data, 0x38)?);
    if phentsize < 0x38 {
        bail!("bad program header size {phentsize}");
    }
    let mut phdrs = Vec::new();
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        phdrs.push(Phdr {
            kind: u32_at(data, at)?,
            offset: u64_at(data, at + 0x08)?,
            vaddr: u64_at(data, at + 0x10)?,
            filesz: u64_at(data, at + 0x20)?,
        });
    }
    let mut out = Linkage::default();
    for ph in &phdrs {
        if ph.kind == PT_INTERP {
            let start = usize::try_from(ph.offset)?;
            let end = start + usize::try_from(ph.filesz)?;
            let raw = data.get(start..end).context("truncated PT_INTERP")?;
            let s = raw.split(|&b| b == 0).next().unwrap_or(raw);
            out.interpreter = Some(String::from_utf8_lossy(s).into_owned());
        }
    }
    let Some(dynamic) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else {
        return Ok(out);
    };
    out.has_dynamic = true;
    let mut needed_offsets = Vec::new();
    let mut strtab_vaddr = None;
    let mut at = dynamic.offset;
    while at + 16 <= dynamic.offset + dynamic.filesz {
        let tag = u64_at(data, at)?;
        let val = u64_at(data, at + 8)?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed_offsets.push(val),
            DT_STRTAB => strtab_vaddr = Some(val),
            _ => {}
        }
        at += 16;
    }
    // DT_STRTAB is an address: map it to a file offset through the PT_LOAD segments.
    let strtab = strtab_vaddr.and_then(|v| {
        phdrs
            .iter()
            .find(|p| p.kind == PT_LOAD && v >= p.vaddr && v < p.vaddr + p.filesz)
            .map(|p| v - p.vaddr + p.offset)
    });
    for off in needed_offsets {
        let name = strtab
            .and_then(|s| usize::try_from(s + off).ok())
            .and_then(|start| data.get(start..))
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
        let l = linkage(&elf(&[(PT_LOAD, 0, 0, 0x100)], &[])).unwrap();
        assert!(l.is_static());
        assert!(!l.has_dynamic);
    }

    #[test]
    fn static_pie_and_needed_entries() {
        // Layout: header (0x40) + 2 phdrs (0x70) = 0xb0; strtab at 0xb0, dynamic at 0xc0.
        let strtab = b"\0libc.so\0\0\0\0\0\0\0\0";
        let mut dynamic = Vec::new();
        for (tag, val) in [(DT_STRTAB, 0xb0u64), (DT_NEEDED, 1), (DT_NULL, 0)] {
            dynamic.extend_from_slice(&tag.to_le_bytes());
            dynamic.extend_from_slice(&val.to_le_bytes());
        }
        let mut tail = strtab.to_vec();
        tail.extend_from_slice(&dynamic);
        let phdrs = [(PT_LOAD, 0, 0, 0x200), (PT_DYNAMIC, 0xc0, 0xc0, 48)];
        let l = linkage(&elf(&phdrs, &tail)).unwrap();
        assert_eq!(l.needed, vec!["libc.so".to_string()]);
        assert!(!l.is_static());

        // The same without DT_NEEDED: a static PIE.
        let mut tail = strtab.to_vec();
        for (tag, val) in [(DT_STRTAB, 0xb0u64), (DT_NULL, 0)] {
            tail.extend_from_slice(&tag.to_le_bytes());
            tail.extend_from_slice(&val.to_le_bytes());
        }
        let l = linkage(&elf(
            &[(PT_LOAD, 0, 0, 0x200), (PT_DYNAMIC, 0xc0, 0xc0, 32)],
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
    fn rejects_garbage() {
        assert!(linkage(b"#!/bin/sh\n").is_err());
        assert!(linkage(b"\x7fELF\x02\x01").is_err());
    }
}
