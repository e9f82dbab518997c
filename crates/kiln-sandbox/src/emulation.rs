//! Running another architecture's binaries: which binfmt_misc handler (qemu-user-static) the
//! kernel will use for a target platform's ELF files, and whether it works inside a sandbox.
//!
//! A RUN step for a foreign platform needs nothing from the sandbox itself: the kernel sees
//! the ELF header of the executed file, finds a matching binfmt_misc entry and runs its
//! interpreter instead. The entry must carry the `F` (fix-binary) flag: the kernel then opens
//! the interpreter when the handler is registered, so it works in any mount namespace or
//! chroot. Without it the kernel looks the interpreter up by path inside the container's
//! root, where it does not exist, and every RUN fails with "no such file or directory".

use std::io;
use std::path::{Path, PathBuf};

use kiln_oci::Platform;

/// Where the kernel's binfmt_misc filesystem is mounted.
pub const DEFAULT_BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The first bytes of an ELF file that binfmt_misc handlers for executables match.
const ELF_HEADER_PREFIX_LEN: usize = 20;
/// `e_type` values a handler must match: static executables and PIEs.
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Whether a RUN step for `target` needs an emulator on `host` (see [`Platform::can_run`]).
pub fn needs_emulation(host: &Platform, target: &Platform) -> bool {
    !host.can_run(target)
}

/// A binfmt_misc handler that runs `target`'s executables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    /// The entry's name in the binfmt_misc directory (`qemu-aarch64`).
    pub name: String,
    /// The interpreter the kernel runs (`/usr/libexec/qemu-binfmt/aarch64-binfmt-P`).
    pub interpreter: PathBuf,
    /// Whether the entry has the `F` flag: the kernel opened the interpreter at registration,
    /// so it works inside a container's root. [`find_emulator`] only returns such entries.
    pub fix_binary: bool,
}

/// Why no emulator can run a platform's binaries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulationError {
    /// The directory is missing or is not a binfmt_misc mount (no `register` file).
    #[error(
        "binfmt_misc is not mounted at {dir}, so {platform} binaries cannot be emulated: mount \
         it with `mount -t binfmt_misc binfmt_misc {dir}` and install qemu-user-static \
         (`apt-get install qemu-user-static` registers its handlers with the F flag)"
    )]
    NotMounted {
        /// The platform to emulate.
        platform: Box<Platform>,
        /// The binfmt_misc directory.
        dir: PathBuf,
    },
    /// The directory or an entry could not be read.
    #[error(
        "cannot read {path} to find an emulator for {platform}: {source}; check that \
         binfmt_misc is mounted and readable (`mount -t binfmt_misc binfmt_misc {}`)",
        DEFAULT_BINFMT_DIR
    )]
    Unreadable {
        /// The platform to emulate.
        platform: Box<Platform>,
        /// The directory or entry.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// binfmt_misc as a whole (its `status` file) or the matching entry is disabled.
    #[error(
        "the binfmt_misc handler {path} for {platform} is disabled: enable it with \
         `echo 1 > {path}`"
    )]
    Disabled {
        /// The platform to emulate.
        platform: Box<Platform>,
        /// The `status` file or the entry.
        path: PathBuf,
    },
    /// No entry matches the platform's executables.
    #[error(
        "no binfmt_misc handler in {dir} runs {platform} binaries: install qemu-user-static \
         (`apt-get install qemu-user-static` on Debian/Ubuntu registers the handlers with the \
         F flag), or run `docker run --privileged tonistiigi/binfmt --install {arch}`",
        arch = platform.architecture
    )]
    NoHandler {
        /// The platform to emulate.
        platform: Box<Platform>,
        /// The binfmt_misc directory.
        dir: PathBuf,
    },
    /// The matching entry lacks the `F` flag, so its interpreter would be looked up inside
    /// the container's root.
    #[error(
        "the binfmt_misc handler {path} for {platform} lacks the F (fix-binary) flag, so the \
         kernel looks for its interpreter {} inside the container's root and every RUN fails: \
         re-register it with the F flag, e.g. `apt-get install --reinstall qemu-user-static`",
        interpreter.display()
    )]
    NoFixBinary {
        /// The platform to emulate.
        platform: Box<Platform>,
        /// The entry.
        path: PathBuf,
        /// Its interpreter.
        interpreter: PathBuf,
    },
    /// kiln knows no ELF header for the architecture, so it cannot tell which handler runs it.
    #[error(
        "cannot emulate {platform}: kiln knows no ELF header for architecture `{arch}` \
         (known: amd64, 386, arm64, arm, ppc64le, ppc64, s390x, riscv64, mips64le, mips64, \
         loong64); build for one of those or run on a {arch} host",
        arch = platform.architecture
    )]
    UnsupportedArchitecture {
        /// The platform to emulate.
        platform: Box<Platform>,
    },
}

/// Finds the enabled binfmt_misc entry in `binfmt_dir` ([`DEFAULT_BINFMT_DIR`]) that runs
/// `target`'s executables (static or PIE) and has the `F` flag. Entries are tried in name
/// order; `register` and `status` are not entries.
///
/// # Errors
///
/// [`EmulationError`] names the platform and the fix: binfmt_misc not mounted or unreadable,
/// disabled, no matching entry, a match without the `F` flag, an unknown architecture.
#[expect(
    clippy::disallowed_methods,
    reason = "EmulationError::Unreadable names the path and the platform itself"
)]
pub fn find_emulator(target: &Platform, binfmt_dir: &Path) -> Result<Emulator, EmulationError> {
    let target = Box::new(target.normalized());
    let headers = elf_headers(&target).ok_or_else(|| EmulationError::UnsupportedArchitecture {
        platform: target.clone(),
    })?;
    let unreadable = |path: &Path, source: io::Error| EmulationError::Unreadable {
        platform: target.clone(),
        path: path.to_owned(),
        source,
    };
    let read_dir = match std::fs::read_dir(binfmt_dir) {
        Ok(read_dir) => read_dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(EmulationError::NotMounted {
                platform: target,
                dir: binfmt_dir.to_owned(),
            });
        }
        Err(e) => return Err(unreadable(binfmt_dir, e)),
    };
    let mut names = Vec::new();
    for entry in read_dir {
        let entry = entry.map_err(|e| unreadable(binfmt_dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    if !names.iter().any(|name| name == "register") {
        return Err(EmulationError::NotMounted {
            platform: target,
            dir: binfmt_dir.to_owned(),
        });
    }
    let status = binfmt_dir.join("status");
    match std::fs::read_to_string(&status) {
        Ok(text) if text.trim() == "enabled" => {}
        Ok(_) => {
            return Err(EmulationError::Disabled {
                platform: target,
                path: status,
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(unreadable(&status, e)),
    }

    let mut disabled = None;
    let mut without_fix_binary = None;
    for name in names
        .iter()
        .filter(|n| !matches!(n.as_str(), "register" | "status"))
    {
        let path = binfmt_dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| unreadable(&path, e))?;
        let Some(entry) = BinfmtEntry::parse(&text) else {
            continue;
        };
        if !headers.iter().any(|header| entry.matches(header)) {
            continue;
        }
        if !entry.is_enabled {
            disabled.get_or_insert(path);
        } else if entry.flags.contains('F') {
            return Ok(Emulator {
                name: name.clone(),
                interpreter: entry.interpreter,
                fix_binary: true,
            });
        } else {
            without_fix_binary.get_or_insert((path, entry.interpreter));
        }
    }
    Err(match (without_fix_binary, disabled) {
        (Some((path, interpreter)), _) => EmulationError::NoFixBinary {
            platform: target,
            path,
            interpreter,
        },
        (None, Some(path)) => EmulationError::Disabled {
            platform: target,
            path,
        },
        (None, None) => EmulationError::NoHandler {
            platform: target,
            dir: binfmt_dir.to_owned(),
        },
    })
}

/// One entry as the kernel prints it (`fs/binfmt_misc.c`, `entry_status`).
#[derive(Debug)]
struct BinfmtEntry {
    is_enabled: bool,
    interpreter: PathBuf,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    /// Empty when the entry has no mask (every bit counts).
    mask: Vec<u8>,
}

impl BinfmtEntry {
    /// `None` for entries that match by file extension or that cannot be read as a magic.
    fn parse(text: &str) -> Option<Self> {
        let mut entry = Self {
            is_enabled: false,
            interpreter: PathBuf::new(),
            flags: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "enabled" => entry.is_enabled = true,
                "disabled" => entry.is_enabled = false,
                "interpreter" => entry.interpreter = PathBuf::from(value),
                "flags:" => value.clone_into(&mut entry.flags),
                "offset" => entry.offset = value.parse().ok()?,
                "magic" => entry.magic = decode_hex(value)?,
                "mask" => entry.mask = decode_hex(value)?,
                _ => {}
            }
        }
        (!entry.magic.is_empty()).then_some(entry)
    }

    /// The kernel's test (`check_file`): every masked bit of the magic equals the file's.
    fn matches(&self, header: &[u8]) -> bool {
        let Some(bytes) = self
            .offset
            .checked_add(self.magic.len())
            .and_then(|end| header.get(self.offset..end))
        else {
            return false;
        };
        bytes
            .iter()
            .zip(&self.magic)
            .enumerate()
            .all(|(i, (byte, magic))| {
                let mask = self.mask.get(i).copied().unwrap_or(0xff);
                (byte ^ magic) & mask == 0
            })
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The first [`ELF_HEADER_PREFIX_LEN`] bytes of an executable and of a PIE for `platform`'s
/// architecture, or `None` when kiln does not know it.
fn elf_headers(platform: &Platform) -> Option<[Vec<u8>; 2]> {
    const ELFCLASS32: u8 = 1;
    const ELFCLASS64: u8 = 2;
    // EM_* numbers from the ELF gABI / <elf.h>.
    let (class, is_big_endian, machine): (u8, bool, u16) = match platform.architecture.as_str() {
        "amd64" => (ELFCLASS64, false, 62),
        "386" => (ELFCLASS32, false, 3),
        "arm64" => (ELFCLASS64, false, 183),
        "arm" => (ELFCLASS32, false, 40),
        "ppc64le" => (ELFCLASS64, false, 21),
        "ppc64" => (ELFCLASS64, true, 21),
        "s390x" => (ELFCLASS64, true, 22),
        "riscv64" => (ELFCLASS64, false, 243),
        "mips64le" => (ELFCLASS64, false, 8),
        "mips64" => (ELFCLASS64, true, 8),
        "loong64" => (ELFCLASS64, false, 258),
        _ => return None,
    };
    let header = |e_type: u16| {
        let half = |value: u16| {
            if is_big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            }
        };
        let mut bytes = vec![0u8; ELF_HEADER_PREFIX_LEN];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = class;
        bytes[5] = if is_big_endian { 2 } else { 1 }; // EI_DATA: ELFDATA2MSB / ELFDATA2LSB
        bytes[6] = 1; // EI_VERSION: EV_CURRENT
        bytes[16..18].copy_from_slice(&half(e_type));
        bytes[18..20].copy_from_slice(&half(machine));
        bytes
    };
    Some([header(ET_EXEC), header(ET_DYN)])
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn binfmt_dir(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("register"), "").unwrap();
        fs_err::write(dir.path().join("status"), "enabled\n").unwrap();
        for (name, text) in entries {
            fs_err::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn arm64() -> Platform {
        Platform::new("linux", "arm64")
    }

    #[test]
    fn the_matching_enabled_entry_with_the_f_flag_is_the_emulator() {
        let dir = binfmt_dir(&[
            (
                "python3.11",
                "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n",
            ),
            ("qemu-aarch64", AARCH64),
            (
                "qemu-arm",
                &AARCH64
                    .replace(
                        "0201010000000000000000000200b700",
                        "01010100000000000000000002002800",
                    )
                    .replace("aarch64-binfmt", "arm-binfmt"),
            ),
        ]);
        let emulator = find_emulator(&arm64(), dir.path()).unwrap();
        assert_eq!(
            emulator,
            Emulator {
                name: "qemu-aarch64".to_owned(),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into(),
                fix_binary: true,
            }
        );
        let arm = find_emulator(&Platform::new("linux", "arm"), dir.path()).unwrap();
        assert_eq!(arm.name, "qemu-arm");
    }

    #[test]
    fn no_matching_entry_says_to_install_qemu() {
        let dir = binfmt_dir(&[("qemu-aarch64", AARCH64)]);
        let error = find_emulator(&Platform::new("linux", "s390x"), dir.path()).unwrap_err();
        assert!(
            matches!(error, EmulationError::NoHandler { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("linux/s390x"), "{message}");
        assert!(
            message.contains("apt-get install qemu-user-static"),
            "{message}"
        );
        assert!(message.contains("--install s390x"), "{message}");
    }

    #[test]
    fn a_disabled_entry_or_binfmt_misc_is_reported_with_its_path() {
        let dir = binfmt_dir(&[("qemu-aarch64", &AARCH64.replace("enabled", "disabled"))]);
        let error = find_emulator(&arm64(), dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, EmulationError::Disabled { .. }),
            "{error:?}"
        );
        assert!(
            message.contains("qemu-aarch64 for linux/arm64 is disabled"),
            "{message}"
        );
        assert!(message.contains("`echo 1 > "), "{message}");

        let dir = binfmt_dir(&[("qemu-aarch64", AARCH64)]);
        fs_err::write(dir.path().join("status"), "disabled\n").unwrap();
        match find_emulator(&arm64(), dir.path()).unwrap_err() {
            EmulationError::Disabled { path, .. } => assert!(path.ends_with("status")),
            other => panic!("expected Disabled, got {other:?}"),
        }
    }

    #[test]
    fn an_entry_without_the_f_flag_is_refused() {
        let dir = binfmt_dir(&[("qemu-aarch64", &AARCH64.replace("flags: POF", "flags: OC"))]);
        let error = find_emulator(&arm64(), dir.path()).unwrap_err();
        assert!(
            matches!(error, EmulationError::NoFixBinary { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("linux/arm64"), "{message}");
        assert!(message.contains("F (fix-binary) flag"), "{message}");
        assert!(
            message.contains("--reinstall qemu-user-static"),
            "{message}"
        );
    }

    #[test]
    fn an_empty_or_missing_dir_is_not_a_binfmt_misc_mount() {
        let empty = tempfile::tempdir().unwrap();
        for dir in [empty.path().to_owned(), empty.path().join("missing")] {
            let error = find_emulator(&arm64(), &dir).unwrap_err();
            assert!(
                matches!(error, EmulationError::NotMounted { .. }),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains(&format!(
                    "mount -t binfmt_misc binfmt_misc {}",
                    dir.display()
                )),
                "{message}"
            );
        }
    }

    #[test]
    fn an_unknown_architecture_is_named() {
        let dir = binfmt_dir(&[("qemu-aarch64", AARCH64)]);
        let error = find_emulator(&Platform::new("linux", "sparc64"), dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("architecture `sparc64`"),
            "{error}"
        );
    }

    /// The headers against the magic and mask Debian's qemu-user-static registers
    /// (`/usr/lib/binfmt.d/qemu-*.conf`), for executables and PIEs alike.
    #[test]
    fn elf_headers_match_debians_qemu_handlers_and_no_other() {
        let handlers = [
            (
                "arm64",
                "7f454c460201010000000000000000000200b700",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            (
                "arm",
                "7f454c4601010100000000000000000002002800",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            (
                "s390x",
                "7f454c4602020100000000000000000000020016",
                "fffffffffffffffcfffffffffffffffffffeffff",
            ),
            (
                "ppc64le",
                "7f454c4602010100000000000000000002001500",
                "fffffffffffffffcfffffffffffffffffeffff00",
            ),
            (
                "riscv64",
                "7f454c460201010000000000000000000200f300",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            (
                "mips64le",
                "7f454c4602010100000000000000000002000800",
                "ffffffffffffff00fefffffffffffffffeffffff",
            ),
            (
                "loong64",
                "7f454c4602010100000000000000000002000201",
                "fffffffffffffffc00fffffffffffffffeffffff",
            ),
            (
                "386",
                "7f454c4601010100000000000000000002000300",
                "fffffffffffefe00fffffffffffffffffeffffff",
            ),
            (
                "amd64",
                "7f454c4602010100000000000000000002003e00",
                "fffffffffffefe00fffffffffffffffffeffffff",
            ),
        ];
        let entries: Vec<(&str, BinfmtEntry)> = handlers
            .iter()
            .map(|(arch, magic, mask)| {
                let text = format!(
                    "enabled\ninterpreter /q\nflags: F\noffset 0\nmagic {magic}\nmask {mask}\n"
                );
                (*arch, BinfmtEntry::parse(&text).unwrap())
            })
            .collect();
        for (arch, _) in &entries {
            let headers = elf_headers(&Platform::new("linux", arch)).unwrap();
            for (other, entry) in &entries {
                for header in &headers {
                    assert_eq!(
                        entry.matches(header),
                        arch == other,
                        "{arch}'s header {header:02x?} against {other}'s handler"
                    );
                }
            }
        }
    }

    #[test]
    fn emulation_is_needed_for_a_foreign_architecture_only() {
        let amd64 = Platform::new("linux", "amd64");
        assert!(!needs_emulation(&amd64, &amd64));
        assert!(!needs_emulation(&amd64, &Platform::new("linux", "386")));
        assert!(needs_emulation(&amd64, &arm64()));
        assert!(!needs_emulation(&arm64(), &Platform::new("linux", "arm")));
    }

    /// The handlers `.ci/install-deps` registers: qemu-aarch64 runs linux/arm64 here.
    #[test]
    #[cfg_attr(kiln_no_emulation, ignore = "needs arm64 emulation (qemu-user-static)")]
    fn the_hosts_binfmt_misc_runs_arm64_through_qemu() {
        let host = Platform::host();
        if !needs_emulation(&host, &arm64()) {
            eprintln!("skipped: {host} runs linux/arm64 natively, no emulator is involved");
            return;
        }
        kiln_test::require(kiln_test::Requirement::Emulation);
        let emulator = find_emulator(&arm64(), Path::new(DEFAULT_BINFMT_DIR)).unwrap();
        assert_eq!(emulator.name, "qemu-aarch64");
        assert!(emulator.fix_binary);
        assert!(emulator.interpreter.is_absolute(), "{emulator:?}");
        // Every other qemu handler registered here is found for its platform by our header.
        for (arch, name) in [
            ("arm", "qemu-arm"),
            ("s390x", "qemu-s390x"),
            ("ppc64le", "qemu-ppc64le"),
            ("riscv64", "qemu-riscv64"),
            ("mips64le", "qemu-mips64el"),
            ("loong64", "qemu-loongarch64"),
        ] {
            if Path::new(DEFAULT_BINFMT_DIR).join(name).exists() {
                let platform = Platform::new("linux", arch);
                let found = find_emulator(&platform, Path::new(DEFAULT_BINFMT_DIR)).unwrap();
                assert_eq!(found.name, name, "{platform}");
            }
        }
    }
}
