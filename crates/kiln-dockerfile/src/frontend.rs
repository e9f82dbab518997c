//! What kiln does with a `# syntax=` directive: it has one built-in frontend, so a directive
//! naming some other frontend image (or a newer or labs channel) earns a warning.
//!
//! BuildKit runs the image a `# syntax=` names as the frontend (`dockerui.DetectSyntax`,
//! the first word of the value). kiln never runs frontend images: the Dockerfile is always
//! read by this crate, which implements the stable `docker/dockerfile` syntax up to
//! [`BUILTIN_SYNTAX`].

use crate::directive::detect_syntax;

/// The `docker/dockerfile` syntax the built-in frontend implements: the newest minimum version
/// of an option it supports (`COPY --parents`, stable since 1.20; `ADD --unpack` 1.17,
/// `--exclude` 1.19), labs features excluded.
pub const BUILTIN_SYNTAX: &str = "docker/dockerfile:1.20";

/// Minor version of [`BUILTIN_SYNTAX`].
const BUILTIN_MINOR: u32 = 20;

/// The frontend images whose stable channel the built-in frontend stands for.
const OFFICIAL_FRONTENDS: [&str; 2] = ["docker/dockerfile", "docker/dockerfile-upstream"];

/// The warning for `src`'s `# syntax=` directive, when it names a frontend kiln does not
/// stand in for: another image, a `-labs` tag, or a version newer than [`BUILTIN_SYNTAX`].
/// `docker/dockerfile:1`, `:1.4`, `docker.io/docker/dockerfile:1`, a `@sha256:` pin and
/// `docker/dockerfile-upstream:1.x` are silent.
///
/// ```
/// use kiln_dockerfile::syntax_warning;
/// assert_eq!(syntax_warning("# syntax=docker/dockerfile:1.4\nFROM a\n"), None);
/// let w = syntax_warning("# syntax=example.com/my/frontend\nFROM a\n").unwrap();
/// assert!(w.contains("built-in frontend"), "{w}");
/// ```
pub fn syntax_warning(src: &str) -> Option<String> {
    let value = detect_syntax(src)?;
    let image = value.split_whitespace().next().unwrap_or_default();
    if image.is_empty() || is_builtin_syntax(image) {
        return None;
    }
    Some(format!(
        "# syntax={image}: kiln does not run frontend images; it reads the Dockerfile with \
         its built-in frontend, which implements {BUILTIN_SYNTAX} (no labs features)"
    ))
}

/// Whether `image` (a `# syntax=` frontend reference) asks for no more than the built-in
/// frontend implements.
fn is_builtin_syntax(image: &str) -> bool {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    let image = image.strip_prefix("docker.io/").unwrap_or(image);
    // A `:` after the last `/` starts the tag (a registry port comes before a `/`).
    let (name, tag) = match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => {
            (&image[..colon], Some(&image[colon + 1..]))
        }
        _ => (image, None),
    };
    if !OFFICIAL_FRONTENDS.contains(&name) {
        return false;
    }
    let Some(tag) = tag else {
        return true;
    };
    if tag == "latest" {
        return true;
    }
    let mut parts = tag.split('.');
    let numbers: Vec<Option<u32>> = parts.by_ref().map(|p| p.parse().ok()).collect();
    match numbers.as_slice() {
        [Some(1)] => true,
        [Some(1), Some(minor)] | [Some(1), Some(minor), Some(_)] => *minor <= BUILTIN_MINOR,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_stable_channels_are_silent() {
        for image in [
            "docker/dockerfile:1",
            "docker/dockerfile:1.4",
            "docker/dockerfile:1.20.0",
            "docker/dockerfile",
            "docker.io/docker/dockerfile:1",
            "docker/dockerfile:1@sha256:ac85f380a63b13dfcefa89046420e1781752bab202122f8f50032edf31be0021",
            "docker/dockerfile-upstream:1.7",
        ] {
            assert!(is_builtin_syntax(image), "{image}");
        }
    }

    #[test]
    fn other_frontends_labs_and_newer_versions_warn() {
        for image in [
            "docker/dockerfile:1-labs",
            "docker/dockerfile:1.7-labs",
            "docker/dockerfile:1.21",
            "docker/dockerfile:2",
            "docker/dockerfile-upstream:master",
            "tonistiigi/dockerfile:latest",
            "localhost:5000/docker/dockerfile:1",
        ] {
            assert!(!is_builtin_syntax(image), "{image}");
        }
        let warning = syntax_warning("# syntax = docker/dockerfile:1-labs\nFROM a\n").unwrap();
        assert_eq!(
            warning,
            "# syntax=docker/dockerfile:1-labs: kiln does not run frontend images; it reads the \
             Dockerfile with its built-in frontend, which implements docker/dockerfile:1.20 \
             (no labs features)"
        );
        assert_eq!(syntax_warning("FROM a\n"), None);
    }
}
