//! `kiln tag SRC DST`: another name for an image of the local store, like `docker tag`.

use kiln_oci::{Digest, ImageRef};
use kiln_store::{LockMode, Store};

use super::{ImageError, require_image};

/// Names the local image `source` (a name or an image ID prefix, as
/// [`find_image`](super::find_image) looks it up) `target` too, holding the store's shared
/// lock; an existing `target` is moved, as `docker tag` does. Returns the manifest (or
/// index) digest both names now point to.
pub fn tag_image(store: &Store, source: &str, target: &ImageRef) -> Result<Digest, ImageError> {
    let _lock = store.lock(LockMode::Shared)?;
    let digest = require_image(store, source)?;
    // A pulled image's new name keeps its origin: an index's platforms not pulled yet are
    // still fetched from where it came.
    let origin = match ImageRef::parse(source) {
        Ok(name) => store
            .ref_entry(&name)?
            .filter(|entry| entry.digest == digest)
            .and_then(|entry| entry.origin),
        Err(_) => None,
    };
    let current = store.ref_entry(target)?;
    if current.is_none_or(|c| c.digest != digest || c.origin != origin) {
        store.set_ref_with_origin(target, &digest, origin.as_ref())?;
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_points_to_the_source_and_a_missing_source_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let manifest = store.put_bytes(b"{}").unwrap();
        let source = ImageRef::parse("app:1").unwrap();
        store.set_ref(&source, &manifest).unwrap();
        let target = ImageRef::parse("other/app:2").unwrap();
        assert_eq!(tag_image(&store, "app:1", &target).unwrap(), manifest);
        assert_eq!(store.resolve_ref(&target).unwrap(), Some(manifest.clone()));
        let pulled = ImageRef::parse("localhost:5000/app:1").unwrap();
        store
            .set_ref_with_origin(&source, &manifest, Some(&pulled))
            .unwrap();
        tag_image(&store, "app:1", &target).unwrap();
        let entry = store.ref_entry(&target).unwrap().unwrap();
        assert_eq!(entry.origin, Some(pulled), "a new name keeps the origin");
        let err = tag_image(&store, "nothere:1", &target).unwrap_err();
        assert!(err.to_string().contains("nothere:1"), "{err}");
    }
}
