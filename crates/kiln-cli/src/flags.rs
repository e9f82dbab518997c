//! The flags `kiln build` and `kiln run` share: `--isolation`, and the parsers of docker's
//! `--add-host`, `--ulimit`, `--shm-size`; and `--platform` of the image commands (`run`,
//! `pull`, `inspect`, `save`).

use clap::ValueEnum;
use kiln_build::{IsolationMode, Ulimit};

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum IsolationArg {
    Auto,
    Namespaces,
    Chroot,
}

impl From<IsolationArg> for IsolationMode {
    fn from(arg: IsolationArg) -> Self {
        match arg {
            IsolationArg::Auto => Self::Auto,
            IsolationArg::Namespaces => Self::Namespaces,
            IsolationArg::Chroot => Self::Chroot,
        }
    }
}

/// `--add-host HOST:IP` or `HOST=IP` (buildx's forms; the first separator splits, so
/// `host:::1` is an IPv6 address).
pub(crate) fn parse_add_host(spec: &str) -> Result<(String, std::net::IpAddr), String> {
    let Some(at) = spec.find([':', '=']) else {
        return Err(format!("invalid --add-host `{spec}`: expected HOST:IP"));
    };
    let (host, address) = (&spec[..at], &spec[at + 1..]);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!(
            "invalid --add-host `{spec}`: the host name is empty or has spaces"
        ));
    }
    if address == "host-gateway" {
        return Err(format!(
            "--add-host `{spec}`: host-gateway is not supported (RUN uses the host's network;              give the address)"
        ));
    }
    let address = address
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("invalid --add-host `{spec}`: `{address}` is not an IP address"))?;
    Ok((host.to_owned(), address))
}

/// `--ulimit NAME=SOFT[:HARD]` as docker parses it: a known resource name, integers, `-1` for
/// unlimited, the soft limit not above the hard one.
pub(crate) fn parse_ulimit(spec: &str) -> Result<Ulimit, String> {
    let (name, values) = spec
        .split_once('=')
        .ok_or_else(|| format!("invalid --ulimit `{spec}`: expected NAME=SOFT[:HARD]"))?;
    if !Ulimit::NAMES.contains(&name) {
        return Err(format!(
            "invalid --ulimit `{spec}`: unknown resource `{name}` (one of {})",
            Ulimit::NAMES.join(", ")
        ));
    }
    let value = |text: &str| -> Result<Option<u64>, String> {
        match text.parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(n) if n >= 0 => Ok(u64::try_from(n).ok()),
            _ => Err(format!(
                "invalid --ulimit `{spec}`: `{text}` is not a number (or -1 for unlimited)"
            )),
        }
    };
    let (soft, hard) = if let Some((soft, hard)) = values.split_once(':') {
        (value(soft)?, value(hard)?)
    } else {
        let both = value(values)?;
        (both, both)
    };
    if let (Some(soft), Some(hard)) = (soft, hard)
        && soft > hard
    {
        return Err(format!(
            "invalid --ulimit `{spec}`: the soft limit {soft} is above the hard limit {hard}"
        ));
    }
    if soft.is_none() && hard.is_some() {
        return Err(format!(
            "invalid --ulimit `{spec}`: an unlimited soft limit needs an unlimited hard limit"
        ));
    }
    Ok(Ulimit {
        name: name.to_owned(),
        soft,
        hard,
    })
}

/// `--platform`: one `os/arch[/variant]` (a bad one is a usage error naming it).
pub(crate) fn parse_platform(spec: &str) -> Result<kiln_build::oci::Platform, String> {
    spec.parse()
        .map_err(|e: kiln_build::oci::PlatformError| e.to_string())
}

/// `--shm-size`: bytes, or a number with a `b`, `k`, `m` or `g` suffix (also `kb`, `mb`, `gb`;
/// powers of 1024), as docker reads it.
pub(crate) fn parse_shm_size(spec: &str) -> Result<u64, String> {
    let lower = spec.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match &lower[digits.len()..] {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        other => {
            return Err(format!(
                "invalid --shm-size `{spec}`: unknown unit `{other}` (b, k, m or g)"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| format!("invalid --shm-size `{spec}`: expected a positive size such as 64m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_takes_buildx_forms_and_refuses_the_rest() {
        let v6: std::net::IpAddr = "::1".parse().unwrap();
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".to_owned(), "10.0.0.5".parse().unwrap())
        );
        assert_eq!(parse_add_host("db=10.0.0.5").unwrap().0, "db");
        assert_eq!(parse_add_host("v6:::1").unwrap(), ("v6".to_owned(), v6));
        assert_eq!(parse_add_host("v6=[::1]").unwrap().1, v6);
        for bad in [
            "db",
            ":10.0.0.5",
            "db:nope",
            "db:host-gateway",
            "d b:1.2.3.4",
        ] {
            let err = parse_add_host(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn ulimits_parse_as_docker_does() {
        let nofile = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((nofile.soft, nofile.hard), (Some(1024), Some(2048)));
        let core = parse_ulimit("core=-1").unwrap();
        assert_eq!((core.soft, core.hard), (None, None));
        assert_eq!(parse_ulimit("nproc=64").unwrap().hard, Some(64));
        for (bad, says) in [
            ("files=1", "unknown resource `files`"),
            ("nofile", "expected NAME=SOFT[:HARD]"),
            ("nofile=2048:1024", "above the hard limit"),
            ("nofile=x", "not a number"),
            ("nofile=-1:10", "unlimited soft limit"),
        ] {
            let err = parse_ulimit(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn shm_sizes_take_docker_units() {
        assert_eq!(parse_shm_size("128m").unwrap(), 128 << 20);
        assert_eq!(parse_shm_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_shm_size("65536").unwrap(), 65536);
        assert_eq!(parse_shm_size("2kb").unwrap(), 2048);
        for bad in ["0", "12x", "m", "-1m", ""] {
            assert!(parse_shm_size(bad).is_err(), "{bad}");
        }
    }
}
