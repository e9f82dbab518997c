//! Path and signal rules shared by the Dockerfile dispatcher and the `--change` config edits
//! (BuildKit's `system.NormalizePath`, `pathRelativeToWorkingDir`, Go's `path.Clean` from the
//! root, moby's `signal.ParseSignal`).

/// Go `path.Clean` of `path` taken from the root: `..` never climbs above `/`, and a
/// relative path (a base image's relative `WorkingDir`) becomes absolute.
pub(crate) fn clean(path: &str) -> String {
    kiln_oci::clean_path(&format!("/{path}"))
}

/// BuildKit `system.NormalizePath`: an absolute path is kept as written, a relative one is
/// joined to `parent` and cleaned; with `keep_slash` a trailing `/` (or `/.`) survives.
pub(crate) fn normalize_path(parent: &str, path: &str, keep_slash: bool) -> String {
    let parent = if parent.is_empty() { "/" } else { parent };
    let parent = if parent.starts_with('/') {
        parent.to_owned()
    } else {
        clean(&format!("/{parent}"))
    };
    let mut out = if path.is_empty() {
        parent.clone()
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        clean(&format!("{parent}/{path}"))
    };
    if keep_slash {
        if path.ends_with('/') && !out.ends_with('/') {
            out.push('/');
        } else if path.ends_with("/.") {
            if out != "/" {
                out.push('/');
            }
            out.push('.');
        }
    }
    out
}

/// BuildKit `pathRelativeToWorkingDir`: the absolute destination of a COPY/ADD.
pub(crate) fn path_relative_to_workdir(workdir: &str, dest: &str) -> String {
    if dest.starts_with('/') {
        return normalize_path("/", dest, true);
    }
    let dest = if dest == "." || dest.is_empty() {
        "./"
    } else {
        dest
    };
    normalize_path(workdir, dest, true)
}

/// moby `signal.ParseSignal`: a number, or a Linux signal name with or without `SIG`.
pub(crate) fn is_valid_signal(signal: &str) -> bool {
    const NAMES: [&str; 34] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
    ];
    const MAX_SIGNAL: u32 = 64;
    if let Ok(n) = signal.parse::<u32>() {
        return n != 0 && n <= MAX_SIGNAL;
    }
    let upper = signal.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if NAMES.contains(&name) || name == "XFSZ" {
        return true;
    }
    for base in ["RTMIN", "RTMAX"] {
        if let Some(rest) = name.strip_prefix(base) {
            if rest.is_empty() {
                return true;
            }
            if let Some(n) = rest.strip_prefix('+').or_else(|| rest.strip_prefix('-')) {
                return n.parse::<u32>().is_ok_and(|n| n <= 15);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_like_buildkit() {
        assert_eq!(normalize_path("/app", "src", false), "/app/src");
        assert_eq!(normalize_path("/app", "../x/./y", false), "/x/y");
        assert_eq!(normalize_path("/app", "/abs/../x", false), "/abs/../x");
        assert_eq!(normalize_path("", "rel", false), "/rel");
        assert_eq!(path_relative_to_workdir("/app", "."), "/app/");
        assert_eq!(path_relative_to_workdir("/app", "sub/"), "/app/sub/");
        assert_eq!(path_relative_to_workdir("/app", "file"), "/app/file");
        assert_eq!(path_relative_to_workdir("/app", "/dst/"), "/dst/");
        assert_eq!(path_relative_to_workdir("/", "x/."), "/x/.");
        assert_eq!(clean("/a//b/../c/."), "/a/c");
        assert_eq!(clean("/.."), "/");
        assert_eq!(clean("app/../../x"), "/x");
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "sigusr1"] {
            assert!(is_valid_signal(ok), "{ok}");
        }
        for bad in ["", "SIGFOO", "0", "99", "RTMIN+99"] {
            assert!(!is_valid_signal(bad), "{bad}");
        }
    }
}
