//! One image lookup for every command that names a local image (`run`, `history`,
//! `inspect`): a name first, then an image ID (config digest) prefix, as docker looks
//! images up.

use kiln_oci::{Digest, ImageRef};
use kiln_store::Store;

use super::ImageError;

/// The shortest image ID prefix accepted (docker's short ID).
const MIN_ID_PREFIX: usize = 12;
/// Hex digits of a full SHA-256 image ID.
const FULL_ID_LEN: usize = 64;

/// Parses an image name, naming the text in the error.
pub fn parse_image_name(text: &str) -> Result<ImageRef, ImageError> {
    ImageRef::parse(text).map_err(|source| ImageError::InvalidName {
        text: text.to_owned(),
        source,
    })
}

/// The manifest (or index) digest of the local image named `text`, or whose image ID (config
/// digest) starts with `text` (`sha256:` optional, at least 12 hex digits); `None` when there
/// is none. Two different images matching an ID prefix is an error.
pub fn find_image(store: &Store, text: &str) -> Result<Option<Digest>, ImageError> {
    if let Ok(reference) = ImageRef::parse(text)
        && let Some(digest) = store.resolve_ref(&reference)?
    {
        return Ok(Some(digest));
    }
    let Some(prefix) = id_prefix(text) else {
        return Ok(None);
    };
    let mut found: Option<(Digest, Digest)> = None;
    for entry in store.list_refs()? {
        // A broken image cannot be the one asked for; `kiln store verify` reports it.
        let Ok(image) = store.resolve_image(&entry.digest, None) else {
            continue;
        };
        let id = image.config.digest();
        if !id.hex().starts_with(prefix) {
            continue;
        }
        match &found {
            Some((first, _)) if first != id => {
                return Err(ImageError::AmbiguousId {
                    prefix: text.to_owned(),
                    first: first.clone(),
                    second: id.clone(),
                });
            }
            Some(_) => {}
            None => found = Some((id.clone(), entry.digest)),
        }
    }
    Ok(found.map(|(_, digest)| digest))
}

/// Like [`find_image`], but a missing image is an error: [`ImageError::InvalidName`] when
/// `text` is not a name, [`ImageError::NotFound`] otherwise.
pub fn require_image(store: &Store, text: &str) -> Result<Digest, ImageError> {
    if let Some(digest) = find_image(store, text)? {
        return Ok(digest);
    }
    let reference = parse_image_name(text)?;
    Err(ImageError::NotFound {
        name: reference.to_string(),
    })
}

/// The hex digits of `text` when it reads as an image ID prefix.
fn id_prefix(text: &str) -> Option<&str> {
    let prefix = text.strip_prefix("sha256:").unwrap_or(text);
    let is_id = (MIN_ID_PREFIX..=FULL_ID_LEN).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    is_id.then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_prefixes_need_twelve_lowercase_hex_digits() {
        assert_eq!(id_prefix("0123456789ab"), Some("0123456789ab"));
        assert_eq!(id_prefix("sha256:0123456789abcd"), Some("0123456789abcd"));
        assert_eq!(id_prefix("0123456789a"), None);
        assert_eq!(id_prefix("0123456789AB"), None);
        assert_eq!(id_prefix("busybox:latest"), None);
        assert_eq!(id_prefix(&"a".repeat(65)), None);
    }

    #[test]
    fn missing_images_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        assert_eq!(find_image(&store, "busybox").unwrap(), None);
        assert_eq!(find_image(&store, "0123456789abcdef").unwrap(), None);
        let err = require_image(&store, "busybox:1").unwrap_err();
        assert!(
            err.to_string()
                .contains("docker.io/library/busybox:1` not found in the local store"),
            "{err}"
        );
        let err = require_image(&store, "Bad:Name").unwrap_err();
        assert!(matches!(err, ImageError::InvalidName { .. }), "{err:?}");
        assert!(err.to_string().contains("Bad:Name"), "{err}");
    }
}
