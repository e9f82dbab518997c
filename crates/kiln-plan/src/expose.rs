//! `EXPOSE` port specs, parsed like BuildKit's `dispatchExpose` (`convert_expose.go`):
//! `8000` → `8000/tcp`, `53/UDP` → `53/udp`, a range `8000-8002` → one entry per port, and
//! the legacy `[ip:]host:container` forms keep only the container port.

/// Why an `EXPOSE` value is not a port spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port `{spec}` in EXPOSE: {why}")]
pub struct PortError {
    /// The value as written (after expansion).
    pub spec: String,
    /// What is wrong with it.
    pub why: String,
}

/// Normalizes port specs to `port/proto` entries (a range gives one entry per port).
pub(crate) fn parse_ports(specs: &[String]) -> Result<Vec<String>, PortError> {
    let mut out = Vec::new();
    for spec in specs {
        out.extend(parse_port(spec)?);
    }
    Ok(out)
}

fn parse_port(raw: &str) -> Result<Vec<String>, PortError> {
    let error = |why: String| PortError {
        spec: raw.to_owned(),
        why,
    };
    let parts: Vec<&str> = raw.split(':').collect();
    let (ip, host_port, container) = match parts.as_slice() {
        [container] => ("", "", *container),
        [host, container] => ("", *host, *container),
        [.., host, container] => {
            let ip_len = raw.len() - host.len() - container.len() - 2;
            (&raw[..ip_len], *host, *container)
        }
        [] => ("", "", ""),
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(error("no port specified".to_owned()));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_owned(),
        p @ ("tcp" | "udp" | "sctp") => p.to_owned(),
        _ => return Err(error(format!("invalid proto: {proto}"))),
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(error(format!("invalid IP address: {ip}")));
    }
    let (start, end) =
        parse_range(port).map_err(|why| error(format!("invalid containerPort: {port} ({why})")))?;
    if !host_port.is_empty() {
        let (host_start, host_end) = parse_range(host_port)
            .map_err(|why| error(format!("invalid hostPort: {host_port} ({why})")))?;
        if end - start != host_end - host_start && end != start {
            return Err(error(format!(
                "invalid ranges specified for container and host Ports: {port} and {host_port}"
            )));
        }
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Why a port or port range (`8000`, `8000-8002`) does not parse; the texts are BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum RangeError {
    #[error("empty string specified for ports")]
    Empty,
    #[error("`{0}` is not a port number")]
    NotANumber(String),
    #[error("value out of range (0–65535)")]
    OutOfRange,
    #[error("invalid port range: {0}")]
    Reversed(String),
}

fn parse_range(ports: &str) -> Result<(u32, u32), RangeError> {
    if ports.is_empty() {
        return Err(RangeError::Empty);
    }
    let (start, end) = match ports.split_once('-') {
        Some((start, end)) => (start, Some(end)),
        None => (ports, None),
    };
    let start_port = parse_number(start)?;
    match end {
        None => Ok((start_port, start_port)),
        Some(end) if end == start => Ok((start_port, start_port)),
        Some(end) => {
            let end_port = parse_number(end)?;
            if end_port < start_port {
                return Err(RangeError::Reversed(ports.to_owned()));
            }
            Ok((start_port, end_port))
        }
    }
}

fn parse_number(text: &str) -> Result<u32, RangeError> {
    const MAX_PORT: u32 = 65_535;
    let port: u32 = text
        .parse()
        .map_err(|_| RangeError::NotANumber(text.to_owned()))?;
    if port > MAX_PORT {
        return Err(RangeError::OutOfRange);
    }
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(specs: &[&str]) -> Result<Vec<String>, PortError> {
        parse_ports(&specs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn normalizes_like_buildkit() {
        assert_eq!(
            ports(&[
                "8000",
                "53/UDP",
                "9000-9002/tcp",
                "127.0.0.1:80:8080",
                "1:2/sctp"
            ])
            .unwrap(),
            [
                "8000/tcp", "53/udp", "9000/tcp", "9001/tcp", "9002/tcp", "8080/tcp", "2/sctp"
            ]
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "/tcp", "80/http", "abc", "70000", "9-1", "x.y:1:2"] {
            assert!(ports(&[bad]).is_err(), "{bad:?} must be rejected");
        }
    }
}
