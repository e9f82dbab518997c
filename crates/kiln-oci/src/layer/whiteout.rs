//! Whiteouts: how a layer says "this path of the layers below is gone".
//!
//! In a layer tar (OCI image-spec layer.md, the AUFS convention): an empty file `.wh.NAME`
//! deletes `NAME` from the lower layers; `DIR/.wh..wh..opq` makes `DIR` opaque (its lower
//! contents are hidden, its entries from this layer stay). In an overlayfs upperdir: a 0/0
//! character device (or, on newer kernels, a file with the `overlay.whiteout` xattr) is a
//! whiteout, and a directory with xattr `trusted.overlay.opaque=y` (`user.overlay.opaque=y`
//! when mounted with `userxattr` in a user namespace) is opaque.

/// The prefix of a whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Names starting with this are AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`), not whiteouts.
pub(crate) const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// overlayfs' xattr namespaces: `trusted.` as root, `user.` with the `userxattr` option.
const OVERLAY_XATTR_PREFIXES: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// What a tar entry's name means for whiteout processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhiteoutName<'a> {
    /// An ordinary entry.
    None,
    /// `.wh.NAME`: delete `NAME` in the same directory.
    Delete(&'a [u8]),
    /// `.wh..wh..opq`: the directory is opaque.
    Opaque,
    /// `.wh..wh.*` other than the opaque marker: AUFS bookkeeping, skipped.
    AufsMeta,
}

/// Classifies the last component of a tar entry path.
pub(crate) fn classify(name: &[u8]) -> WhiteoutName<'_> {
    if name == OPAQUE_MARKER.as_bytes() {
        WhiteoutName::Opaque
    } else if name.starts_with(AUFS_META_PREFIX) {
        WhiteoutName::AufsMeta
    } else if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        WhiteoutName::Delete(target)
    } else {
        WhiteoutName::None
    }
}

/// Whether an xattr name belongs to overlayfs itself (never copied into a layer or out of one).
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    OVERLAY_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The overlay-specific meaning of an xattr found in an upperdir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverlayXattr {
    /// `overlay.opaque` = `y`.
    Opaque,
    /// `overlay.whiteout` (a regular-file whiteout, Linux ≥ 6.7).
    Whiteout,
    /// `overlay.redirect` / `overlay.metacopy`: data lives in the lower layers.
    Unsupported,
    /// Anything else overlayfs keeps (`origin`, `impure`, `nlink`, opaque=`x`…): ignored.
    Ignored,
}

/// Interprets an overlay xattr (name with its `trusted.`/`user.` prefix, and value).
pub(crate) fn overlay_xattr(name: &[u8], value: &[u8]) -> Option<OverlayXattr> {
    let suffix = OVERLAY_XATTR_PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(*p))?;
    Some(match suffix {
        b"opaque" if value == b"y" => OverlayXattr::Opaque,
        b"whiteout" => OverlayXattr::Whiteout,
        b"redirect" | b"metacopy" => OverlayXattr::Unsupported,
        _ => OverlayXattr::Ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names() {
        assert_eq!(classify(b"file"), WhiteoutName::None);
        assert_eq!(classify(b".wh.file"), WhiteoutName::Delete(b"file"));
        assert_eq!(classify(b".wh..wh..opq"), WhiteoutName::Opaque);
        assert_eq!(classify(b".wh..wh.plnk"), WhiteoutName::AufsMeta);
        assert_eq!(classify(b".whfile"), WhiteoutName::None);
    }

    #[test]
    fn overlay_xattrs() {
        for (name, value, expected) in [
            ("trusted.overlay.opaque", "y", Some(OverlayXattr::Opaque)),
            ("user.overlay.opaque", "y", Some(OverlayXattr::Opaque)),
            ("trusted.overlay.opaque", "x", Some(OverlayXattr::Ignored)),
            (
                "trusted.overlay.redirect",
                "/a",
                Some(OverlayXattr::Unsupported),
            ),
            ("security.capability", "", None),
        ] {
            let got = overlay_xattr(name.as_bytes(), value.as_bytes());
            assert_eq!(got, expected, "{name}={value}");
        }
        assert!(is_overlay_xattr(b"user.overlay.origin"));
        assert!(!is_overlay_xattr(b"user.mime_type"));
    }
}
