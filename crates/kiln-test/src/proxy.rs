//! A fault-injecting HTTP/1.1 proxy in front of the registry. Each request is forwarded on a
//! fresh upstream connection (`Connection: close`) unless a [`Rule`] matches it; rules drop
//! the connection, answer with a status (and `Retry-After`), truncate the body, flip a
//! byte of it, or wait before forwarding. Every request line (with its `Range`) is logged.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What to do to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Close the connection without answering.
    Drop,
    /// Answer with this status (and `Retry-After: secs`), not forwarding.
    Status(u16, Option<u64>),
    /// Answer with this status and JSON body (a registry's error document), not forwarding.
    Answer(u16, &'static str),
    /// Forward, but send only the first N body bytes, then close.
    Truncate(usize),
    /// Forward with the last body byte flipped.
    Corrupt,
    /// Forward after waiting this long (a slow registry).
    Delay(std::time::Duration),
}

/// Applies `fault` to the next `times` requests whose method is `method` and whose path
/// contains `path`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub path: String,
    pub times: usize,
    pub fault: Fault,
}

/// A running proxy; stops on drop.
#[derive(Debug)]
pub struct FaultProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let host = listener.local_addr().expect("addr").to_string();
        let rules = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, l, s, up) = (
            rules.clone(),
            log.clone(),
            stop.clone(),
            upstream.to_owned(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, l, up) = (r.clone(), l.clone(), up.clone());
                std::thread::spawn(move || serve(conn, &up, &r, &l));
            }
        });
        Self {
            host,
            rules,
            log,
            stop,
        }
    }

    pub fn add(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
    }

    /// Forgets every rule: requests are forwarded again.
    pub fn clear_rules(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// The request lines seen so far (`GET /v2/... range=bytes=5-`).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
    }
}

fn serve(client: TcpStream, upstream: &str, rules: &Mutex<Vec<Rule>>, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().expect("clone"));
    let mut client = client;
    {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let is_end = line == "\r\n";
            head.push(line);
            if is_end {
                break;
            }
        }
        let request_line = head[0].trim().to_owned();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let header = |name: &str| {
            head.iter().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        assert!(
            header("transfer-encoding").is_none(),
            "proxy supports Content-Length bodies only: {request_line}"
        );
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let range = header("range").unwrap_or_default();
        log.lock()
            .unwrap()
            .push(format!("{method} {path} range={range}"));
        let fault = {
            let mut rules = rules.lock().unwrap();
            rules
                .iter_mut()
                .find(|r| r.times > 0 && r.method == method && path.contains(&r.path))
                .map(|r| {
                    r.times -= 1;
                    r.fault.clone()
                })
        };
        match &fault {
            Some(Fault::Drop) => {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Some(Fault::Status(code, retry_after)) => {
                let extra = retry_after
                    .map(|s| format!("Retry-After: {s}\r\n"))
                    .unwrap_or_default();
                let _ = write!(
                    client,
                    "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\n{extra}Connection: close\r\n\r\n"
                );
                return;
            }
            Some(Fault::Answer(code, body)) => {
                let _ = write!(
                    client,
                    "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                return;
            }
            Some(Fault::Delay(wait)) => std::thread::sleep(*wait),
            _ => {}
        }
        let Ok(mut up) = TcpStream::connect(upstream) else {
            return;
        };
        let mut out = String::new();
        for line in &head[1..] {
            let name = line
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if name == "connection" || line == "\r\n" {
                continue;
            }
            out.push_str(line);
        }
        let _ = write!(up, "{request_line}\r\n{out}Connection: close\r\n\r\n");
        let _ = up.write_all(&body);
        let mut response = Vec::new();
        let _ = up.read_to_end(&mut response);
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |p| p + 4);
        match fault {
            Some(Fault::Truncate(n)) => {
                let end = (split + n).min(response.len());
                let _ = client.write_all(&response[..end]);
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Some(Fault::Corrupt) if response.len() > split => {
                let last = response.len() - 1;
                response[last] ^= 0xff;
            }
            _ => {}
        }
        let _ = client.write_all(&response);
    }
}
