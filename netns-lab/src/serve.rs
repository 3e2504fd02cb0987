//! The built-in stand-ins for container images: `serve-http` answers HTTP like nginx's
//! default page; `http-get` fetches a URL (no curl needed inside the lab).

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

const PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n<body><h1>Welcome to nginx!</h1><p>served by podnet-lab's nginx stand-in</p></body></html>\n";

/// Listens on `0.0.0.0:port` and answers every request with the welcome page. Fails like a
/// server would when the port is taken ("Address in use").
pub fn serve_http(port: u16) -> Result<()> {
    let listener =
        TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("bind 0.0.0.0:{port}"))?;
    serve_on(listener);
    Ok(())
}

/// Answers every connection on `listener`, one thread each; returns only if accepting ends.
fn serve_on(listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        std::thread::spawn(move || {
            // Read the whole request head first: closing with unread bytes makes the kernel
            // answer with a reset, which can throw away the reply before the client reads it.
            if read_request_head(&mut s).is_err() {
                return;
            }
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let body = PAGE.replace("stand-in", &format!("stand-in in pod {}", host.trim()));
            let reply = format!("HTTP/1.1 200 OK\r\nServer: nginx (podnet-lab)\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = s.write_all(reply.as_bytes());
        });
    }
}

/// Reads until the blank line that ends an HTTP request head (or EOF), at most 64 KiB.
fn read_request_head(s: &mut TcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// `http://HOST:PORT/PATH` -> the response text.
pub fn http_get(url: &str) -> Result<String> {
    let rest = url.strip_prefix("http://").context("only http:// URLs")?;
    let (hostport, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut s = TcpStream::connect(&addr).with_context(|| format!("connect to {addr}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    // One write, so the server sees the whole request head at once.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.starts_with("HTTP/1.") {
        bail!("not an HTTP answer from {addr}");
    }
    Ok(out)
}

/// Accepts one TCP connection on `port`, reads it to the end, prints the byte count.
pub fn sink(port: u16) -> Result<()> {
    let listener =
        TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("bind 0.0.0.0:{port}"))?;
    // Said once bound, so a caller can wait for this line instead of guessing a delay.
    println!("listening on 0.0.0.0:{port}");
    std::io::stdout().flush()?;
    let (mut conn, from) = listener.accept()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    println!("received {total} bytes from {from}");
    Ok(())
}

/// Sends `bytes` bytes to `addr` over TCP.
pub fn send(addr: &str, bytes: u64) -> Result<()> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    let chunk = vec![0x5au8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    println!("sent {bytes} bytes to {addr}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve_on(listener));
        addr
    }

    #[test]
    fn http_get_fetches_the_welcome_page() {
        let addr = server();
        let out = http_get(&format!("http://{addr}/")).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.contains("Welcome to nginx!"), "{out}");
    }

    /// A server that answers after its first read and closes with request bytes unread makes
    /// the kernel send a reset, and the client may lose the answer to it.
    #[test]
    fn a_request_head_bigger_than_one_read_gets_a_whole_answer() {
        let addr = server();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let cookie = "c".repeat(16 * 1024);
        let head =
            format!("GET / HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut out = String::new();
        s.read_to_string(&mut out).expect("the answer, not a reset");
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("</html>\n"), "{out}");
    }
}
