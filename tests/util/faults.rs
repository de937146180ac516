//! A fault-injecting HTTP proxy on 127.0.0.1 in front of Azurite. Each
//! request gets a sequence number; a script maps it to an action: forward,
//! answer 503 with `Retry-After`, answer 500, or forward but cut the
//! connection halfway through the response body. Bounded: one thread per
//! client connection, all ending when the proxy is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pass it through.
    Forward,
    /// 503 Server Busy with `Retry-After: 1`.
    Busy,
    /// 500 Internal Server Error.
    Error500,
    /// Forward, then cut the connection after half of the response.
    CutMidBody,
    /// Wait this many milliseconds, then forward.
    Delay(u64),
    /// Read the request, then say nothing for this many milliseconds and close.
    Stall(u64),
}

/// A running proxy.
pub struct FaultProxy {
    pub port: u16,
    pub faults: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream_port` with `script(seq, request_line)`.
    pub fn start(
        upstream_port: u16,
        script: impl Fn(usize, &str) -> Action + Send + Sync + 'static,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(AtomicUsize::new(0));
        let seq = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        {
            let stop = Arc::clone(&stop);
            let faults = Arc::clone(&faults);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(client) = conn else { continue };
                    let (seq, script, faults, stop) = (
                        Arc::clone(&seq),
                        Arc::clone(&script),
                        Arc::clone(&faults),
                        Arc::clone(&stop),
                    );
                    std::thread::spawn(move || {
                        let _ = serve(client, upstream_port, &seq, &*script, &faults, &stop);
                    });
                }
            });
        }
        FaultProxy { port, faults, stop }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    client: TcpStream,
    upstream: u16,
    seq: &AtomicUsize,
    script: &(dyn Fn(usize, &str) -> Action + Send + Sync),
    faults: &AtomicUsize,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    while !stop.load(Ordering::Relaxed) {
        // Request head.
        let mut head = Vec::new();
        let mut request_line = String::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if request_line.is_empty() {
                request_line = line.trim_end().to_string();
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") {
                continue;
            }
            if line == "\r\n" {
                head.extend_from_slice(b"Connection: close\r\n\r\n");
                break;
            }
            head.extend_from_slice(line.as_bytes());
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body)?;
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let action = script(n, &request_line);
        if !matches!(action, Action::Forward | Action::Delay(_)) {
            faults.fetch_add(1, Ordering::Relaxed);
        }
        if let Action::Delay(ms) = action {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if let Action::Stall(ms) = action {
            std::thread::sleep(Duration::from_millis(ms));
            return Ok(());
        }
        match action {
            Action::Busy => {
                client.write_all(b"HTTP/1.1 503 Server Busy\r\nRetry-After: 1\r\nx-ms-error-code: ServerBusy\r\nContent-Length: 0\r\n\r\n")?;
                continue;
            }
            Action::Error500 => {
                client.write_all(b"HTTP/1.1 500 Internal Server Error\r\nx-ms-error-code: InternalError\r\nContent-Length: 0\r\n\r\n")?;
                continue;
            }
            Action::Forward | Action::CutMidBody | Action::Delay(_) | Action::Stall(_) => {}
        }
        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
        up.write_all(&head)?;
        up.write_all(&body)?;
        let mut response = Vec::new();
        up.read_to_end(&mut response)?;
        if action == Action::CutMidBody {
            let header_end = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(response.len(), |p| p + 4);
            let cut = header_end + (response.len() - header_end) / 2;
            client.write_all(&response[..cut])?;
            client.shutdown(Shutdown::Both)?;
            return Ok(());
        }
        client.write_all(&response)?;
        // The upstream answered with Connection: close semantics; so do we.
        let _ = client.shutdown(Shutdown::Write);
        return Ok(());
    }
    Ok(())
}
