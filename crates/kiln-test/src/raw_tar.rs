//! Test support for the malicious-tar corpus: a raw tar builder that writes what honest
//! writers refuse to (`..`, absolute links, bogus sizes), and a sentinel directory whose
//! listing proves that nothing outside the extraction root changed.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Builds raw tar streams, including ones no honest writer would produce.
#[derive(Debug, Default)]
pub struct RawTar {
    buf: Vec<u8>,
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
}

impl RawTar {
    pub fn header_with_size_field(
        &mut self,
        name: &[u8],
        typeflag: u8,
        size_field: &[u8; 12],
        link: &[u8],
        mode: u32,
        dev: (u64, u64),
    ) {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        h[124..136].copy_from_slice(size_field);
        octal(&mut h[136..148], 1_600_000_000);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], dev.0);
        octal(&mut h[337..345], dev.1);
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        octal(&mut h[148..155], sum);
        h[155] = b' ';
        self.buf.extend_from_slice(&h);
    }

    pub fn header(&mut self, name: &[u8], typeflag: u8, size: u64, link: &[u8], mode: u32) {
        let mut field = [0u8; 12];
        octal(&mut field, size);
        self.header_with_size_field(name, typeflag, &field, link, mode, (0, 0));
    }

    pub fn data(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0, pad));
    }

    #[must_use]
    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.file_mode(name, data, 0o644)
    }

    #[must_use]
    pub fn file_mode(mut self, name: &str, data: &[u8], mode: u32) -> Self {
        self.header(name.as_bytes(), b'0', data.len() as u64, b"", mode);
        self.data(data);
        self
    }

    #[must_use]
    pub fn dir(mut self, name: &str) -> Self {
        self.header(name.as_bytes(), b'5', 0, b"", 0o755);
        self
    }

    #[must_use]
    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.header(name.as_bytes(), b'2', 0, target.as_bytes(), 0o777);
        self
    }

    #[must_use]
    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.header(name.as_bytes(), b'1', 0, target.as_bytes(), 0o644);
        self
    }

    #[must_use]
    pub fn device(mut self, name: &str, major: u64, minor: u64) -> Self {
        let mut field = [0u8; 12];
        octal(&mut field, 0);
        self.header_with_size_field(name.as_bytes(), b'3', &field, b"", 0o666, (major, minor));
        self
    }

    #[must_use]
    pub fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let base = key.len() + value.len() + 3;
            let mut len = base + 1;
            while len != base + len.to_string().len() {
                len += 1;
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.header(b"PaxHeaders/x", b'x', data.len() as u64, b"", 0o644);
        self.data(&data);
        self
    }

    #[must_use]
    pub fn gnu_longname(mut self, name: &[u8]) -> Self {
        let mut data = name.to_vec();
        data.push(0);
        self.header(b"././@LongLink", b'L', data.len() as u64, b"", 0o644);
        self.data(&data);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0u8; 1024]);
        self.buf
    }
}

/// `<tmp>/root` is the extraction target; `<tmp>/outside` holds a secret; the listing of
/// `<tmp>` without `root` must not change.
#[derive(Debug)]
pub struct Sentinel {
    dir: tempfile::TempDir,
}

pub type Listing = BTreeMap<PathBuf, (u32, u64, u64, Vec<u8>, Option<PathBuf>)>;

impl Default for Sentinel {
    fn default() -> Self {
        Self::new()
    }
}

impl Sentinel {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir(dir.path().join("root")).unwrap();
        fs_err::create_dir(dir.path().join("outside")).unwrap();
        fs_err::write(dir.path().join("outside/secret"), b"do not touch").unwrap();
        fs_err::write(dir.path().join("beside-root"), b"sibling").unwrap();
        Self { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    pub fn listing(&self) -> Listing {
        let mut out = Listing::new();
        let base = self.dir.path().to_path_buf();
        let walker = walkdir::WalkDir::new(&base)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| e.path() != base.join("root"));
        for entry in walker {
            let entry = entry.unwrap();
            let rel = entry
                .path()
                .strip_prefix(self.dir.path())
                .unwrap()
                .to_path_buf();
            if rel.starts_with("root") {
                continue;
            }
            let meta = fs_err::symlink_metadata(entry.path()).unwrap();
            let content = if meta.is_file() {
                fs_err::read(entry.path()).unwrap()
            } else {
                Vec::new()
            };
            let link = fs_err::read_link(entry.path()).ok();
            out.insert(rel, (meta.mode(), meta.nlink(), meta.len(), content, link));
        }
        out
    }
}
