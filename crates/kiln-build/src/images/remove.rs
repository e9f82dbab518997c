//! Removing from the local store: [`untag_images`] (`kiln rmi`: names only, the blobs stay)
//! and [`prune`] (garbage collection under the store's exclusive lock).

use kiln_oci::ImageRef;
use kiln_store::{GcOptions, GcReport, LockMode, Store};

use super::ImageError;

/// What [`untag_images`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Untagged {
    /// Names removed, in the order given.
    pub removed: Vec<ImageRef>,
    /// Names that were not in the store.
    pub missing: Vec<ImageRef>,
}

/// Removes `names` from the store (holding its shared lock), like `docker rmi`. The blobs
/// stay until [`prune`] finds nothing else uses them. A missing name is reported, not an
/// error.
pub fn untag_images(store: &Store, names: &[ImageRef]) -> Result<Untagged, ImageError> {
    let _lock = store.lock(LockMode::Shared)?;
    let mut outcome = Untagged::default();
    for name in names {
        if store.delete_ref(name)? {
            outcome.removed.push(name.clone());
        } else {
            outcome.missing.push(name.clone());
        }
    }
    Ok(outcome)
}

/// Garbage-collects the store with `options`; `on_wait` is called first when running builds
/// or imports hold the store (the collection waits for them). Named images and what running
/// builds use are never removed.
pub fn prune(
    store: &Store,
    options: &GcOptions,
    on_wait: impl FnOnce(),
) -> Result<GcReport, ImageError> {
    if store.try_lock(LockMode::Exclusive)?.is_none() {
        on_wait();
    }
    Ok(store.gc(options)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagging_reports_removed_and_missing_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let manifest = store.put_bytes(b"{}").unwrap();
        let kept = ImageRef::parse("app:1").unwrap();
        let gone = ImageRef::parse("app:2").unwrap();
        store.set_ref(&kept, &manifest).unwrap();
        let outcome = untag_images(&store, &[kept.clone(), gone.clone()]).unwrap();
        assert_eq!(outcome.removed, std::slice::from_ref(&kept));
        assert_eq!(outcome.missing, [gone]);
        assert_eq!(store.resolve_ref(&kept).unwrap(), None);
    }
}
