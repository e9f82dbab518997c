//! Lexical cleaning of slash-separated paths, as Go's `path.Clean` does it: image paths
//! (WORKDIR, COPY destinations, tar member names, context paths) are cleaned the way
//! BuildKit and moby clean them, without touching a filesystem.
//!
//! `kiln-dockerfile`'s `.dockerignore` matcher has its own copy of [`clean_path`]: that crate
//! depends on nothing (DESIGN.md §3).

/// Go `path.Clean`: collapses `//`, drops `.` components, resolves `..` lexically (dropped at
/// the root of an absolute path, kept at the front of a relative one), drops a trailing `/`;
/// the empty path becomes `.`.
///
/// ```
/// assert_eq!(kiln_oci::clean_path("/a/./b/../c/"), "/a/c");
/// assert_eq!(kiln_oci::clean_path("/../x"), "/x");
/// assert_eq!(kiln_oci::clean_path("../x//y"), "../x/y");
/// assert_eq!(kiln_oci::clean_path(""), ".");
/// ```
pub fn clean_path(path: &str) -> String {
    let is_rooted = path.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => match segments.last() {
                Some(&last) if last != ".." => {
                    segments.pop();
                }
                _ if is_rooted => {}
                _ => segments.push(".."),
            },
            other => segments.push(other),
        }
    }
    let joined = segments.join("/");
    match (is_rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// A path cleaned relative to a root it cannot leave: a leading `/`, empty and `.`
/// components dropped, `..` resolved without ever climbing above the root (BuildKit confines
/// sources to the context this way). The root itself is the empty string.
///
/// ```
/// assert_eq!(kiln_oci::clean_rel("/a/./b/../c/"), "a/c");
/// assert_eq!(kiln_oci::clean_rel("../../etc/passwd"), "etc/passwd");
/// assert_eq!(kiln_oci::clean_rel("./"), "");
/// ```
pub fn clean_rel(path: &str) -> String {
    let rooted = clean_path(&format!("/{path}"));
    rooted[1..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's own table (`path/path_test.go`, `cleantests`).
    #[test]
    fn clean_path_follows_go() {
        let cases = [
            ("", "."),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("/abc/", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("///abc", "/abc"),
            ("//abc//", "/abc"),
            ("abc//", "abc"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_path(input), expected, "clean_path({input:?})");
        }
    }

    #[test]
    fn clean_rel_never_leaves_the_root() {
        let cases = [
            ("", ""),
            ("/", ""),
            (".", ""),
            ("..", ""),
            ("a/../..", ""),
            ("/a/b/", "a/b"),
            ("a//b/./c", "a/b/c"),
            ("../a/../../b", "b"),
            ("a/b/../c", "a/c"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_rel(input), expected, "clean_rel({input:?})");
        }
    }
}
