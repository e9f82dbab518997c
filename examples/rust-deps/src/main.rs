//! A tiny HTTP/1.0 server on the standard library: answers every request with a greeting and
//! an RFC 9110 `Date` header formatted by the `httpdate` crate. `PORT` sets the port (8080).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::SystemTime;

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = TcpListener::bind(("0.0.0.0", port.parse().expect("PORT is a number")))?;
    eprintln!("rust-deps listening on :{port}");
    for stream in listener.incoming() {
        if let Err(e) = answer(stream?) {
            eprintln!("rust-deps: {e}");
        }
    }
    Ok(())
}

fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut request_line = String::new();
    BufReader::new(&stream).read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let body = format!(
        "hello from rust-deps {} ({path})\n",
        env!("CARGO_PKG_VERSION")
    );
    write!(
        stream,
        "HTTP/1.0 200 OK\r\nDate: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        httpdate::fmt_http_date(SystemTime::now()),
        body.len()
    )
}
