//! Where the local store lives: an explicit directory (`--root DIR`), else `$KILN_ROOT`, else
//! `$XDG_DATA_HOME/kiln`, else `/var/lib/kiln` for root (uid 0), else `~/.local/share/kiln`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use kiln_store::Store;

use super::ImageError;

/// The store root: `explicit` when given, else from the environment in the documented order.
/// Unlike [`default_store_root`](crate::default_store_root), a user with no `HOME` gets an
/// error rather than the current directory.
pub fn resolve_store_root(explicit: Option<&Path>) -> Result<PathBuf, ImageError> {
    resolve_from(
        explicit,
        |name| std::env::var_os(name).filter(|v| !v.is_empty()),
        // kiln re-executed rootless is root of its user namespace, but its store is the
        // caller's (kiln-sandbox rootless.rs).
        rustix::process::geteuid().is_root() && !kiln_sandbox::is_rootless_reexec(),
    )
}

/// Opens (creating when missing) the store at [`resolve_store_root`]`(explicit)`.
pub fn open_store(explicit: Option<&Path>) -> Result<Store, ImageError> {
    let root = resolve_store_root(explicit)?;
    Store::open(&root).map_err(|source| ImageError::OpenStore {
        root,
        source: Box::new(source),
    })
}

fn resolve_from(
    explicit: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
    is_root: bool,
) -> Result<PathBuf, ImageError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    if let Some(dir) = env("KILN_ROOT") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env("XDG_DATA_HOME") {
        return Ok(PathBuf::from(dir).join("kiln"));
    }
    if is_root {
        return Ok(PathBuf::from("/var/lib/kiln"));
    }
    match env("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/kiln")),
        None => Err(ImageError::NoStoreRoot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn resolution_order() {
        let all = [("KILN_ROOT", "/k"), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")];
        let flag = Path::new("/flag");
        assert_eq!(resolve_from(Some(flag), env(&all), false).unwrap(), flag);
        assert_eq!(
            resolve_from(None, env(&all), false).unwrap(),
            Path::new("/k")
        );
        assert_eq!(
            resolve_from(None, env(&all[1..]), true).unwrap(),
            Path::new("/x/kiln")
        );
        assert_eq!(
            resolve_from(None, env(&all[2..]), true).unwrap(),
            Path::new("/var/lib/kiln")
        );
        assert_eq!(
            resolve_from(None, env(&all[2..]), false).unwrap(),
            Path::new("/h/.local/share/kiln")
        );
        assert!(matches!(
            resolve_from(None, env(&[]), false),
            Err(ImageError::NoStoreRoot)
        ));
    }
}
