//! Go modules from the build info the Go linker embeds in executables, read as Go's own
//! `debug/buildinfo` reads it (src/debug/buildinfo/buildinfo.go):
//!
//! - the blob starts with the 14-byte magic `\xff Go buildinf:`, 16-byte aligned, at the
//!   start of the ELF section `.go.buildinfo` or, without section headers, somewhere in the
//!   first writable, non-executable `PT_LOAD` segment;
//! - byte 14 is the pointer size, byte 15 flags: bit 1 (`2`) set means Go ≥ 1.18's inline
//!   format, where the 32-byte header is followed by two uvarint-length-prefixed strings
//!   (the Go version and the module info); otherwise bit 0 is big-endian and two pointers
//!   at bytes 16 and 16+ptrsize point to Go string headers (data pointer, length) of those
//!   strings, virtual addresses mapped to the file through the `PT_LOAD` segments;
//! - the module info is framed by 16-byte sentinels, and has tab-separated lines: `path`,
//!   `mod` (main module), `dep` (a dependency), `=>` (replaces the preceding `dep`), `build`.
//!
//! Only the ELF header, the program and section headers, the section name table and the
//! build info are read, never the whole file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

use super::purl::Purl;
use super::{Package, PackageKind};

/// The build info magic.
const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// The build info header: magic, pointer size, flags, two pointers (padded to 32 bytes).
const HEADER_LEN: usize = 32;
/// The build info blob is aligned to this in its section or segment.
const ALIGN: usize = 16;
/// The module info's framing sentinels are this long each.
const SENTINEL_LEN: usize = 16;
/// How much of `.go.buildinfo`, or of the data segment without it, is read: the module info
/// of large programs is tens of KiB.
const MAX_BLOB_BYTES: u64 = 4 << 20;
/// The most bytes read for one string of the pointer format.
const MAX_STRING_BYTES: u64 = 4 << 20;
/// Limits on the header tables read (ELF allows 65535 entries of each).
const MAX_HEADER_TABLE_BYTES: u64 = 4 << 20;
/// The most of the section name table read.
const MAX_SHSTRTAB_BYTES: u64 = 1 << 20;
/// The version Go gives code built from a directory rather than a module download.
const DEVEL: &str = "(devel)";
/// `PT_LOAD`: a loadable segment.
const PT_LOAD: u32 = 1;
/// `PF_X`, `PF_W`: segment flags.
const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// What an executable's build info says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BuildInfo {
    /// The Go version, e.g. `go1.21.5`.
    pub(super) go_version: String,
    /// The main module (`mod` line), absent for a binary built outside module mode.
    pub(super) main: Option<Module>,
    /// The dependencies (`dep` lines, replacements applied).
    pub(super) deps: Vec<Module>,
}

/// A module of the build info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Module {
    /// Its path, e.g. `golang.org/x/text`.
    pub(super) path: String,
    /// Its version, e.g. `v0.14.0` or `(devel)`.
    pub(super) version: String,
}

/// The packages an executable's build info lists: the main module, its dependencies and
/// the standard library (`stdlib`, versioned by the Go release, as syft lists it).
pub(super) fn packages(info: &BuildInfo, source: &str) -> Vec<Package> {
    let module = |module: &Module| {
        let (namespace, name) = module.path.rsplit_once('/').unwrap_or(("", &module.path));
        Package {
            kind: PackageKind::Go,
            name: module.path.clone(),
            version: module.version.clone(),
            purl: Purl {
                kind: "golang",
                namespace,
                name,
                version: &module.version,
                ..Purl::default()
            }
            .render(),
            license: None,
            supplier: None,
            source: source.to_owned(),
        }
    };
    let mut packages: Vec<Package> = info.main.iter().chain(&info.deps).map(module).collect();
    // `go1.21.5`, `go1.22.0 X:boringcrypto`, `devel go1.23-abcdef …`: syft's stdlib version
    // is the first `go…` word, its purl version without the `go`.
    let release = info
        .go_version
        .split_whitespace()
        .find(|w| w.starts_with("go"))
        .unwrap_or(&info.go_version);
    packages.push(Package {
        kind: PackageKind::Go,
        name: "stdlib".to_owned(),
        version: release.to_owned(),
        purl: Purl {
            kind: "golang",
            name: "stdlib",
            version: release.strip_prefix("go").unwrap_or(release),
            ..Purl::default()
        }
        .render(),
        // The Go project's licence, as syft declares it for stdlib.
        license: Some("BSD-3-Clause".to_owned()),
        supplier: None,
        source: source.to_owned(),
    });
    packages
}

/// The byte order and word size of an ELF file.
#[derive(Debug, Clone, Copy)]
struct Elf {
    is_64: bool,
    is_big_endian: bool,
}

impl Elf {
    fn u16(self, b: &[u8], at: usize) -> Option<u64> {
        let bytes: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(u64::from(if self.is_big_endian {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        }))
    }

    fn u32(self, b: &[u8], at: usize) -> Option<u64> {
        let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(if self.is_big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }))
    }

    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let bytes: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.is_big_endian {
            u64::from_be_bytes(bytes)
        } else {
            u64::from_le_bytes(bytes)
        })
    }

    /// An address or offset: 8 bytes in ELF64, 4 in ELF32.
    fn word(self, b: &[u8], at: usize) -> Option<u64> {
        if self.is_64 {
            self.u64(b, at)
        } else {
            self.u32(b, at)
        }
    }
}

/// A loadable segment: virtual addresses `vaddr..vaddr+filesz` are file bytes at `offset`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    vaddr: u64,
    offset: u64,
    filesz: u64,
    flags: u32,
}

/// A section header's location.
#[derive(Debug, Clone, Copy)]
struct Section {
    name: u64,
    addr: u64,
    offset: u64,
    size: u64,
}

/// Reads at most `max` bytes at `offset` (fewer at the end of the file).
fn read_at(file: &File, offset: u64, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(max).unwrap_or(usize::MAX)];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The build info of the ELF file `file`, or `None` when it is no Go executable (or its
/// headers are not well-formed enough to find one). Only I/O errors fail.
pub(super) fn read_elf_build_info(file: &File) -> io::Result<Option<BuildInfo>> {
    let header = read_at(file, 0, 64)?;
    if header.len() < 52 || &header[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let elf = Elf {
        is_64: match header[4] {
            1 => false,
            2 => true,
            _ => return Ok(None),
        },
        is_big_endian: match header[5] {
            1 => false,
            2 => true,
            _ => return Ok(None),
        },
    };
    let Some(segments) = read_segments(file, elf, &header)? else {
        return Ok(None);
    };
    let sections = read_sections(file, elf, &header)?;
    // Go: `.go.buildinfo` if there is one, else the first writable, non-executable segment.
    let (blob_addr, blob_size) = match sections.iter().find(|(name, _)| name == ".go.buildinfo") {
        Some((_, section)) => (section.addr, section.size),
        None => match segments.iter().find(|s| s.flags & (PF_X | PF_W) == PF_W) {
            Some(segment) => (segment.vaddr, segment.filesz),
            None => return Ok(None),
        },
    };
    let reader = Memory {
        file,
        segments: &segments,
        sections: &sections,
    };
    let data = reader.read(blob_addr, blob_size.min(MAX_BLOB_BYTES))?;
    decode_blob(&data, |addr, len| reader.read(addr, len)).transpose()
}

/// The `PT_LOAD` segments (`None` when the program header table is malformed).
fn read_segments(file: &File, elf: Elf, header: &[u8]) -> io::Result<Option<Vec<Segment>>> {
    let (phoff, entsize, count) = if elf.is_64 {
        (
            elf.u64(header, 0x20),
            elf.u16(header, 0x36),
            elf.u16(header, 0x38),
        )
    } else {
        (
            elf.u32(header, 0x1c),
            elf.u16(header, 0x2a),
            elf.u16(header, 0x2c),
        )
    };
    let (Some(phoff), Some(entsize), Some(count)) = (phoff, entsize, count) else {
        return Ok(None);
    };
    let min_entsize = if elf.is_64 { 0x38 } else { 0x20 };
    if entsize < min_entsize || entsize * count > MAX_HEADER_TABLE_BYTES {
        return Ok(Some(Vec::new()));
    }
    let table = read_at(file, phoff, entsize * count)?;
    let mut segments = Vec::new();
    for entry in table.chunks_exact(usize::try_from(entsize).unwrap_or(usize::MAX)) {
        let parsed = if elf.is_64 {
            (
                elf.u32(entry, 0),
                elf.u32(entry, 4),
                elf.u64(entry, 8),
                elf.u64(entry, 0x10),
                elf.u64(entry, 0x20),
            )
        } else {
            (
                elf.u32(entry, 0),
                elf.u32(entry, 0x18),
                elf.u32(entry, 4),
                elf.u32(entry, 8),
                elf.u32(entry, 0x10),
            )
        };
        if let (Some(kind), Some(flags), Some(offset), Some(vaddr), Some(filesz)) = parsed
            && kind == u64::from(PT_LOAD)
        {
            segments.push(Segment {
                vaddr,
                offset,
                filesz,
                flags: u32::try_from(flags).unwrap_or(0),
            });
        }
    }
    Ok(Some(segments))
}

/// The sections with their names (empty when there is no usable section header table).
fn read_sections(file: &File, elf: Elf, header: &[u8]) -> io::Result<Vec<(String, Section)>> {
    let (shoff, entsize, count, names_index) = if elf.is_64 {
        (
            elf.u64(header, 0x28),
            elf.u16(header, 0x3a),
            elf.u16(header, 0x3c),
            elf.u16(header, 0x3e),
        )
    } else {
        (
            elf.u32(header, 0x20),
            elf.u16(header, 0x2e),
            elf.u16(header, 0x30),
            elf.u16(header, 0x32),
        )
    };
    let (Some(shoff), Some(entsize), Some(count), Some(names_index)) =
        (shoff, entsize, count, names_index)
    else {
        return Ok(Vec::new());
    };
    let min_entsize = if elf.is_64 { 0x40 } else { 0x28 };
    if shoff == 0 || entsize < min_entsize || entsize * count > MAX_HEADER_TABLE_BYTES {
        return Ok(Vec::new());
    }
    let table = read_at(file, shoff, entsize * count)?;
    let sections: Vec<Section> = table
        .chunks_exact(usize::try_from(entsize).unwrap_or(usize::MAX))
        .filter_map(|entry| {
            Some(Section {
                name: elf.u32(entry, 0)?,
                addr: elf.word(entry, if elf.is_64 { 0x10 } else { 0x0c })?,
                offset: elf.word(entry, if elf.is_64 { 0x18 } else { 0x10 })?,
                size: elf.word(entry, if elf.is_64 { 0x20 } else { 0x14 })?,
            })
        })
        .collect();
    let Some(names) = usize::try_from(names_index)
        .ok()
        .and_then(|i| sections.get(i))
    else {
        return Ok(Vec::new());
    };
    let names = read_at(file, names.offset, names.size.min(MAX_SHSTRTAB_BYTES))?;
    Ok(sections
        .into_iter()
        .map(|section| {
            let start = usize::try_from(section.name).unwrap_or(usize::MAX);
            let name = names
                .get(start..)
                .and_then(|rest| rest.split(|b| *b == 0).next())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            (name, section)
        })
        .collect())
}

/// The file's bytes at virtual addresses.
struct Memory<'a> {
    file: &'a File,
    segments: &'a [Segment],
    sections: &'a [(String, Section)],
}

impl Memory<'_> {
    /// At most `len` bytes at virtual address `addr` (fewer at the end of the segment or
    /// section holding it; none when none holds it). Segments first, then sections (for
    /// files without program headers).
    fn read(&self, addr: u64, len: u64) -> io::Result<Vec<u8>> {
        let ranges = self
            .segments
            .iter()
            .map(|s| (s.vaddr, s.filesz, s.offset))
            .chain(
                self.sections
                    .iter()
                    .map(|(_, s)| (s.addr, s.size, s.offset)),
            );
        for (start, size, offset) in ranges {
            if start != 0 && addr >= start && addr - start < size {
                let available = size - (addr - start);
                return read_at(self.file, offset + (addr - start), len.min(available));
            }
        }
        Ok(Vec::new())
    }
}

/// Decodes the build info blob at the start of `data` (searching for the aligned magic);
/// `read_mem(addr, len)` reads the pointer format's strings. `None` when there is none.
fn decode_blob(
    data: &[u8],
    read_mem: impl Fn(u64, u64) -> io::Result<Vec<u8>>,
) -> Option<io::Result<BuildInfo>> {
    let mut at = 0;
    let blob = loop {
        let found = find(&data[at..], MAGIC)? + at;
        if found % ALIGN == 0 && data.len() - found >= HEADER_LEN {
            break &data[found..];
        }
        at = (found + ALIGN) & !(ALIGN - 1);
        if at >= data.len() {
            return None;
        }
    };
    let pointer_size = usize::from(blob[14]);
    let flags = blob[15];
    let (version, modinfo) = if flags & 2 != 0 {
        let (version, rest) = decode_uvarint_string(&blob[HEADER_LEN..])?;
        let (modinfo, _) = decode_uvarint_string(rest)?;
        (version.to_vec(), modinfo.to_vec())
    } else {
        if pointer_size != 4 && pointer_size != 8 {
            return None;
        }
        let elf = Elf {
            is_64: pointer_size == 8,
            is_big_endian: flags & 1 != 0,
        };
        let read_string = |pointer_at: usize| -> io::Result<Vec<u8>> {
            let Some(addr) = elf.word(blob, pointer_at) else {
                return Ok(Vec::new());
            };
            let header = read_mem(addr, 2 * pointer_size as u64)?;
            let (Some(data), Some(len)) = (elf.word(&header, 0), elf.word(&header, pointer_size))
            else {
                return Ok(Vec::new());
            };
            if len > MAX_STRING_BYTES {
                return Ok(Vec::new());
            }
            let bytes = read_mem(data, len)?;
            Ok(if bytes.len() as u64 == len {
                bytes
            } else {
                Vec::new()
            })
        };
        let version = match read_string(16) {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        let modinfo = match read_string(16 + pointer_size) {
            Ok(m) => m,
            Err(e) => return Some(Err(e)),
        };
        (version, modinfo)
    };
    if version.is_empty() {
        return None;
    }
    // Strip the sentinels framing the module info (cmd/go modload infoStart/infoEnd).
    let modinfo =
        if modinfo.len() > 2 * SENTINEL_LEN && modinfo[modinfo.len() - SENTINEL_LEN - 1] == b'\n' {
            &modinfo[SENTINEL_LEN..modinfo.len() - SENTINEL_LEN]
        } else {
            &[][..]
        };
    let mut info = parse_modinfo(&String::from_utf8_lossy(modinfo));
    info.go_version = String::from_utf8_lossy(&version).into_owned();
    Some(Ok(info))
}

/// The first index of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A uvarint-length-prefixed string at the start of `data`, and what follows it.
fn decode_uvarint_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len: u64 = 0;
    let mut shift = 0;
    let mut used = 0;
    loop {
        let byte = *data.get(used)?;
        used += 1;
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    let rest = &data[used..];
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Parses the module info text (without its sentinels); the Go version is left empty.
pub(super) fn parse_modinfo(text: &str) -> BuildInfo {
    let mut info = BuildInfo {
        go_version: String::new(),
        main: None,
        deps: Vec::new(),
    };
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (Some(key), Some(path)) = (fields.next(), fields.next()) else {
            continue;
        };
        let module = Module {
            path: path.to_owned(),
            version: fields.next().unwrap_or_default().to_owned(),
        };
        match key {
            "mod" => info.main = Some(module),
            "dep" => info.deps.push(module),
            // A replacement of the preceding dep: the code that was built is the replacement
            // (syft lists it). A local directory (`=> ../fork`) names no module, so the
            // module keeps its path, versioned `(devel)` as Go versions local code.
            "=>" => {
                if let Some(last) = info.deps.last_mut() {
                    if module.path.starts_with(['.', '/']) {
                        DEVEL.clone_into(&mut last.version);
                    } else {
                        *last = module;
                    }
                }
            }
            _ => {}
        }
    }
    info
}

#[cfg(test)]
pub(super) mod tests;
