//! Where the local store lives: `--root DIR`, else `$KILN_ROOT`, else `$XDG_DATA_HOME/kiln`,
//! else `/var/lib/kiln` for root (uid 0), else `~/.local/share/kiln`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use kiln_store::Store;

/// The store root from the flag and the environment, in the documented order.
pub(crate) fn resolve_root(flag: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    resolve_root_from(
        flag,
        |name| std::env::var_os(name).filter(|v| !v.is_empty()),
        rustix::process::geteuid().is_root(),
    )
}

fn resolve_root_from(
    flag: Option<&std::path::Path>,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    is_root: bool,
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
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
        None => {
            bail!("cannot find a place for the kiln store: set KILN_ROOT or HOME, or pass --root")
        }
    }
}

/// Opens the store at the resolved root.
pub(crate) fn open_store(flag: Option<&std::path::Path>) -> anyhow::Result<Store> {
    let root = resolve_root(flag)?;
    Store::open(&root).with_context(|| format!("opening the kiln store at {}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::path::Path;

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
        assert_eq!(
            resolve_root_from(Some(flag), env(&all), false).unwrap(),
            flag
        );
        assert_eq!(
            resolve_root_from(None, env(&all), false).unwrap(),
            Path::new("/k")
        );
        assert_eq!(
            resolve_root_from(None, env(&all[1..]), true).unwrap(),
            Path::new("/x/kiln")
        );
        assert_eq!(
            resolve_root_from(None, env(&all[2..]), true).unwrap(),
            Path::new("/var/lib/kiln")
        );
        assert_eq!(
            resolve_root_from(None, env(&all[2..]), false).unwrap(),
            Path::new("/h/.local/share/kiln")
        );
        assert!(resolve_root_from(None, env(&[]), false).is_err());
    }
}
