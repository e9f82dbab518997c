//! Go build info: hand-built ELF files in both build info formats, and a real `go build`.

use std::io::Write as _;

use super::*;

/// The virtual address the test ELF files are loaded at (file offset 0).
const BASE: u64 = 0x40_0000;
/// Where the payload (the build info blob and, for the pointer format, its strings) starts.
const PAYLOAD_OFFSET: usize = 0x100;

/// Writes `value` as `size` bytes at `at`, growing `buf` as needed.
fn put(buf: &mut Vec<u8>, at: usize, value: u64, size: usize, big_endian: bool) {
    if buf.len() < at + size {
        buf.resize(at + size, 0);
    }
    let bytes = if big_endian {
        value.to_be_bytes()[8 - size..].to_vec()
    } else {
        value.to_le_bytes()[..size].to_vec()
    };
    buf[at..at + size].copy_from_slice(&bytes);
}

/// An ELF executable whose single writable `PT_LOAD` segment maps the whole file at
/// [`BASE`], with `payload` at [`PAYLOAD_OFFSET`] and, with `with_section`, a
/// `.go.buildinfo` section header for it.
pub(in crate::attest::sbom) fn elf(
    is_64: bool,
    big_endian: bool,
    payload: &[u8],
    with_section: bool,
) -> Vec<u8> {
    let word = if is_64 { 8 } else { 4 };
    let mut f = vec![0u8; PAYLOAD_OFFSET];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = if is_64 { 2 } else { 1 };
    f[5] = if big_endian { 2 } else { 1 };
    f[6] = 1;
    let be = big_endian;
    put(&mut f, 0x10, 2, 2, be); // ET_EXEC
    put(&mut f, 0x12, 62, 2, be); // EM_X86_64
    put(&mut f, 0x14, 1, 4, be);
    let (phoff_at, shoff_at, sizes_at) = if is_64 {
        (0x20, 0x28, 0x34)
    } else {
        (0x1c, 0x20, 0x28)
    };
    put(&mut f, phoff_at, 0x40, word, be);
    let (ehsize, phentsize, shentsize) = if is_64 { (64, 56, 64) } else { (52, 32, 40) };
    put(&mut f, sizes_at, ehsize, 2, be);
    put(&mut f, sizes_at + 2, phentsize, 2, be);
    put(&mut f, sizes_at + 4, 1, 2, be);
    put(&mut f, sizes_at + 6, shentsize, 2, be);

    f.extend_from_slice(payload);
    if with_section {
        while !f.len().is_multiple_of(8) {
            f.push(0);
        }
        let names_at = f.len();
        f.extend_from_slice(b"\0.shstrtab\0.go.buildinfo\0");
        while !f.len().is_multiple_of(8) {
            f.push(0);
        }
        let table_at = f.len();
        let shentsize = usize::try_from(shentsize).unwrap();
        f.resize(table_at + 3 * shentsize, 0);
        let (addr_at, offset_at, size_at) = if is_64 {
            (0x10, 0x18, 0x20)
        } else {
            (0x0c, 0x10, 0x14)
        };
        // [0] null; [1] .shstrtab; [2] .go.buildinfo
        let sh = table_at + shentsize;
        put(&mut f, sh, 1, 4, be);
        put(&mut f, sh + 4, 3, 4, be); // SHT_STRTAB
        put(&mut f, sh + offset_at, names_at as u64, word, be);
        put(&mut f, sh + size_at, 25, word, be);
        let sh = table_at + 2 * shentsize;
        put(&mut f, sh, 11, 4, be);
        put(&mut f, sh + 4, 1, 4, be); // SHT_PROGBITS
        put(&mut f, sh + addr_at, BASE + PAYLOAD_OFFSET as u64, word, be);
        put(&mut f, sh + offset_at, PAYLOAD_OFFSET as u64, word, be);
        put(&mut f, sh + size_at, payload.len() as u64, word, be);
        put(&mut f, shoff_at, table_at as u64, word, be);
        put(&mut f, sizes_at + 8, 3, 2, be); // e_shnum
        put(&mut f, sizes_at + 10, 1, 2, be); // e_shstrndx
    }
    // The PT_LOAD program header at 0x40, mapping the whole file, read + write.
    let total = f.len() as u64;
    let ph = 0x40;
    put(&mut f, ph, u64::from(PT_LOAD), 4, be);
    if is_64 {
        put(&mut f, ph + 4, 6, 4, be);
        put(&mut f, ph + 0x10, BASE, 8, be);
        put(&mut f, ph + 0x18, BASE, 8, be);
        put(&mut f, ph + 0x20, total, 8, be);
        put(&mut f, ph + 0x28, total, 8, be);
    } else {
        put(&mut f, ph + 8, BASE, 4, be);
        put(&mut f, ph + 0xc, BASE, 4, be);
        put(&mut f, ph + 0x10, total, 4, be);
        put(&mut f, ph + 0x14, total, 4, be);
        put(&mut f, ph + 0x18, 6, 4, be);
    }
    f
}

/// Module info as cmd/go embeds it: framed by two 16-byte sentinels.
pub(in crate::attest::sbom) fn framed(modinfo: &str) -> Vec<u8> {
    let mut out = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
    out.extend_from_slice(modinfo.as_bytes());
    out.extend_from_slice(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
    out
}

/// A uvarint.
fn uvarint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = u8::try_from(n & 0x7f).unwrap();
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A Go ≥ 1.18 build info blob: header with flags 2, then the two strings inline.
pub(in crate::attest::sbom) fn inline_blob(version: &str, modinfo: &[u8]) -> Vec<u8> {
    let mut blob = MAGIC.to_vec();
    blob.extend_from_slice(&[8, 2]);
    blob.resize(HEADER_LEN, 0);
    blob.extend(uvarint(version.len()));
    blob.extend_from_slice(version.as_bytes());
    blob.extend(uvarint(modinfo.len()));
    blob.extend_from_slice(modinfo);
    blob
}

/// A Go < 1.18 build info blob placed at [`PAYLOAD_OFFSET`]: two pointers to Go string
/// headers, which point to the string bytes, all after the header.
fn pointer_blob(is_64: bool, big_endian: bool, version: &str, modinfo: &[u8]) -> Vec<u8> {
    let word = if is_64 { 8 } else { 4 };
    let addr = |offset: usize| BASE + (PAYLOAD_OFFSET + offset) as u64;
    let mut blob = MAGIC.to_vec();
    blob.extend_from_slice(&[u8::try_from(word).unwrap(), u8::from(big_endian)]);
    let headers_at = HEADER_LEN;
    let version_at = headers_at + 4 * word;
    let modinfo_at = version_at + version.len();
    put(&mut blob, 16, addr(headers_at), word, big_endian);
    put(
        &mut blob,
        16 + word,
        addr(headers_at + 2 * word),
        word,
        big_endian,
    );
    blob.resize(HEADER_LEN, 0);
    put(&mut blob, headers_at, addr(version_at), word, big_endian);
    put(
        &mut blob,
        headers_at + word,
        version.len() as u64,
        word,
        big_endian,
    );
    put(
        &mut blob,
        headers_at + 2 * word,
        addr(modinfo_at),
        word,
        big_endian,
    );
    put(
        &mut blob,
        headers_at + 3 * word,
        modinfo.len() as u64,
        word,
        big_endian,
    );
    blob.extend_from_slice(version.as_bytes());
    blob.extend_from_slice(modinfo);
    blob
}

/// The module info of the test binaries.
const MODINFO: &str = "path\texample.com/app/cmd/app\n\
mod\texample.com/app\t(devel)\t\n\
dep\tgithub.com/google/uuid\tv1.3.0\th1:t6JiXgmwXMjEs8VusXIJk2BXHsn+wx8BZdTaoZ5fu7I=\n\
dep\tgolang.org/x/text\tv0.3.0\th1:abc=\n\
=>\tgolang.org/x/text\tv0.14.0\th1:def=\n\
dep\texample.com/local\tv0.0.0-00010101000000-000000000000\t\n\
=>\t./local\t\t\n\
build\t-compiler=gc\n\
build\tGOOS=linux\n";

/// Reads the build info of `bytes` written to a temp file.
fn build_info_of(bytes: &[u8]) -> Option<BuildInfo> {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(bytes).unwrap();
    read_elf_build_info(&file).unwrap()
}

fn expected(go_version: &str) -> BuildInfo {
    BuildInfo {
        go_version: go_version.to_owned(),
        main: Some(Module {
            path: "example.com/app".into(),
            version: "(devel)".into(),
        }),
        deps: vec![
            Module {
                path: "github.com/google/uuid".into(),
                version: "v1.3.0".into(),
            },
            Module {
                path: "golang.org/x/text".into(),
                version: "v0.14.0".into(),
            },
            Module {
                path: "example.com/local".into(),
                version: "(devel)".into(),
            },
        ],
    }
}

#[test]
fn inline_build_info_from_the_go_buildinfo_section() {
    let blob = inline_blob("go1.21.5", &framed(MODINFO));
    let info = build_info_of(&elf(true, false, &blob, true)).expect("a Go binary");
    assert_eq!(info, expected("go1.21.5"));
}

#[test]
fn inline_build_info_found_in_the_data_segment_without_sections() {
    // No section headers (as after `strip --strip-section-headers`): the blob is found by
    // its 16-byte aligned magic in the writable segment, after a misaligned decoy.
    let mut payload = vec![0u8; 32];
    payload[3..17].copy_from_slice(MAGIC);
    payload.extend(inline_blob("go1.22.0 X:boringcrypto", &framed(MODINFO)));
    let info = build_info_of(&elf(true, false, &payload, false)).expect("a Go binary");
    assert_eq!(info, expected("go1.22.0 X:boringcrypto"));
    let packages = packages(&info, "/app");
    let stdlib = packages.iter().find(|p| p.name == "stdlib").unwrap();
    assert_eq!(stdlib.version, "go1.22.0");
    assert_eq!(stdlib.purl, "pkg:golang/stdlib@1.22.0");
}

#[test]
fn pointer_format_build_info_64_bit_little_endian() {
    let blob = pointer_blob(true, false, "go1.16.15", &framed(MODINFO));
    let info = build_info_of(&elf(true, false, &blob, true)).expect("a Go binary");
    assert_eq!(info, expected("go1.16.15"));
    // And found through the segment when there is no section.
    let info = build_info_of(&elf(true, false, &blob, false)).expect("a Go binary");
    assert_eq!(info, expected("go1.16.15"));
}

#[test]
fn pointer_format_build_info_32_bit_big_endian() {
    let blob = pointer_blob(false, true, "go1.17.13", &framed(MODINFO));
    let info = build_info_of(&elf(false, true, &blob, true)).expect("a Go binary");
    assert_eq!(info, expected("go1.17.13"));
}

#[test]
fn module_info_without_framing_or_module_mode_lists_only_the_toolchain() {
    let blob = inline_blob("go1.20", b"");
    let info = build_info_of(&elf(true, false, &blob, true)).expect("a Go binary");
    assert_eq!(info.main, None);
    assert!(info.deps.is_empty());
    let packages = packages(&info, "/usr/bin/tool");
    assert_eq!(packages.len(), 1);
    assert_eq!(packages[0].purl, "pkg:golang/stdlib@1.20");
}

#[test]
fn non_go_and_malformed_elf_files_have_no_build_info() {
    let plain = elf(true, false, b"just data, no magic here", true);
    assert_eq!(build_info_of(&plain), None);
    // Truncated headers and a wrong class.
    assert_eq!(build_info_of(b"\x7fELF\x02\x01\x01"), None);
    let mut wrong_class = elf(true, false, b"", false);
    wrong_class[4] = 9;
    assert_eq!(build_info_of(&wrong_class), None);
    // A pointer format blob whose pointers lead nowhere.
    let mut blob = MAGIC.to_vec();
    blob.extend_from_slice(&[8, 0]);
    blob.extend_from_slice(&0xdead_beef_u64.to_le_bytes());
    blob.extend_from_slice(&0xdead_beef_u64.to_le_bytes());
    assert_eq!(build_info_of(&elf(true, false, &blob, true)), None);
    // An inline blob whose length runs past the end.
    let mut blob = MAGIC.to_vec();
    blob.extend_from_slice(&[8, 2]);
    blob.resize(HEADER_LEN, 0);
    blob.push(0x7f);
    assert_eq!(build_info_of(&elf(true, false, &blob, true)), None);
}

#[test]
fn go_packages_have_module_purls() {
    let packages = packages(&expected("go1.21.5"), "/usr/local/bin/app");
    let purls: Vec<&str> = packages.iter().map(|p| p.purl.as_str()).collect();
    assert_eq!(
        purls,
        [
            "pkg:golang/example.com/app@%28devel%29",
            "pkg:golang/github.com/google/uuid@v1.3.0",
            "pkg:golang/golang.org/x/text@v0.14.0",
            "pkg:golang/example.com/local@%28devel%29",
            "pkg:golang/stdlib@1.21.5",
        ]
    );
    assert!(packages.iter().all(|p| p.source == "/usr/local/bin/app"));
}

/// A real binary from `go build`: a main module with one dependency, replaced by a local
/// directory so that no network is needed.
#[test]
#[cfg_attr(kiln_no_go, ignore = "needs go (golang-go)")]
fn real_go_binary_build_info() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
    };
    write(
        "app/go.mod",
        "module example.com/app\n\ngo 1.18\n\nrequire example.com/greet v1.2.3\n\nreplace example.com/greet => ../greet\n",
    );
    write(
        "app/main.go",
        "package main\n\nimport \"example.com/greet\"\n\nfunc main() { println(greet.Hello()) }\n",
    );
    write("greet/go.mod", "module example.com/greet\n\ngo 1.18\n");
    write(
        "greet/greet.go",
        "package greet\n\nfunc Hello() string { return \"hello\" }\n",
    );
    let cache = std::env::temp_dir().join("kiln-sbom-test-gocache");
    let output = std::process::Command::new("go")
        .args([
            "build",
            "-trimpath",
            "-buildvcs=false",
            "-o",
            "../app.bin",
            ".",
        ])
        .current_dir(root.join("app"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOCACHE", &cache)
        .env("GOPATH", root.join("gopath"))
        .env("CGO_ENABLED", "0")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let version = std::process::Command::new("go")
        .args(["env", "GOVERSION"])
        .env("GOCACHE", &cache)
        .env("GOPATH", root.join("gopath"))
        .output()
        .unwrap();
    let go_version = String::from_utf8(version.stdout).unwrap().trim().to_owned();
    let file = fs_err::File::open(root.join("app.bin")).unwrap();
    let info = read_elf_build_info(file.file())
        .unwrap()
        .expect("a Go binary");
    assert_eq!(info.go_version, go_version);
    assert_eq!(
        info.main,
        Some(Module {
            path: "example.com/app".into(),
            version: "(devel)".into()
        })
    );
    // The dependency, replaced by a local directory: its module path, versioned (devel).
    assert_eq!(
        info.deps,
        [Module {
            path: "example.com/greet".into(),
            version: "(devel)".into()
        }]
    );
}
