//! tokio_http: an HTTP/1.1 server on tokio's current-thread runtime, for the
//! listen socket that Enarx.toml (or `enarx run --listen`) gives a workload.
//! The listener is found by name in FD_NAMES, taken with
//! std::net::TcpListener::from_raw_fd, made non-blocking and handed to
//! tokio::net::TcpListener::from_std, as a tokio program targeting
//! wasm32-wasip1 does: every connection is a task, and tokio's reactor (mio)
//! waits on all of them with one poll_oneoff.
//!
//!   tokio_http LISTENER [N]
//!
//! With N, the server stops accepting after N connections, waits for them to
//! end and prints what it served; without, it runs until killed.
//!
//!   GET /            200, "hello from the keep\n"
//!   GET /echo?TEXT   200, TEXT as it came (no decoding)
//!   GET /bytes?N     200, N bytes of "x" (at most 64 MiB)
//!   HEAD             the same without the body
//!   other paths      404; other methods 405; bodies (Content-Length) are read
//!                    and ignored; Transfer-Encoding 501; a malformed request
//!                    400, headers over 8 KiB 431 (these close the connection)
//!
//! A connection that fails (a peer that reset it, a write to a peer that
//! left) ends with one line on stderr naming the error; the server goes on.
use std::cell::Cell;
use std::io;
use std::os::wasi::io::FromRawFd;
use std::process::ExitCode;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinSet, LocalSet};

const HELLO: &[u8] = b"hello from the keep\n";
const IN_CAP: usize = 8192;
const MAX_BYTES: usize = 64 << 20;

/// What the server counts; printed at the end when it was given N.
#[derive(Default)]
struct Stats {
    requests: Cell<u64>,
    refused: Cell<u64>,
    connections: Cell<u64>,
    open: Cell<u64>,
    peak: Cell<u64>,
    failed: Cell<u64>,
}

fn bump(cell: &Cell<u64>) {
    cell.set(cell.get() + 1);
}

/// The fd named NAME in FD_NAMES, as a non-blocking tokio listener.
fn open_listener(name: &str) -> Result<TcpListener, String> {
    let names = std::env::var("FD_NAMES").map_err(|_| "FD_NAMES is not set".to_string())?;
    let fd = names
        .split(':')
        .position(|n| n == name)
        .ok_or_else(|| format!("no socket named \"{name}\" in FD_NAMES ({names})"))?;
    // SAFETY: the fd is the runtime's listen socket, owned by nothing else here.
    let std_listener = unsafe { std::net::TcpListener::from_raw_fd(fd as i32) };
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("set_nonblocking on fd {fd}: {e}"))?;
    TcpListener::from_std(std_listener).map_err(|e| format!("tokio cannot take fd {fd}: {e}"))
}

/// One parsed request head.
struct Request<'a> {
    method: &'a [u8],
    target: &'a [u8],
    head_len: usize,
    content_length: usize,
    http10: bool,
    close: bool,
    keep_alive: bool,
    chunked: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .to_ascii_lowercase()
        .windows(token.len())
        .any(|w| w == token.as_bytes())
}

/// Parses the request line of `head` (which ends before its blank line).
fn request_line(line: &[u8]) -> Result<(&[u8], &[u8], bool), u16> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if method.is_empty() || !target.starts_with(b"/") {
        return Err(400);
    }
    match version {
        b"HTTP/1.0" => Ok((method, target, true)),
        b"HTTP/1.1" => Ok((method, target, false)),
        v if v.starts_with(b"HTTP/") => Err(505),
        _ => Err(400),
    }
}

/// Parses a request head (`buf[..end]`, `end` at its "\r\n\r\n"); Err is a status.
fn parse(buf: &[u8], end: usize) -> Result<Request<'_>, u16> {
    let mut lines = buf[..end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let (method, target, http10) = request_line(lines.next().unwrap_or_default())?;
    let mut r = Request {
        method,
        target,
        head_len: end + 4,
        content_length: 0,
        http10,
        close: false,
        keep_alive: false,
        chunked: false,
    };
    for line in lines {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .filter(|&c| c > 0)
            .ok_or(400u16)?;
        let (name, value) = (line[..colon].to_ascii_lowercase(), &line[colon + 1..]);
        match name.as_slice() {
            b"connection" => {
                r.close |= has_token(value, "close");
                r.keep_alive |= has_token(value, "keep-alive");
            }
            b"transfer-encoding" => r.chunked = true,
            b"content-length" => {
                let text = std::str::from_utf8(value).map_err(|_| 400u16)?.trim();
                r.content_length = text.parse().map_err(|_| 400u16)?;
            }
            _ => {}
        }
    }
    Ok(r)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        _ => "HTTP Version Not Supported",
    }
}

/// Appends one response to `out`; `None` for the body sends the reason phrase.
fn respond(
    out: &mut Vec<u8>,
    status: u16,
    body: Option<&[u8]>,
    head: bool,
    closing: bool,
    ka10: bool,
) {
    let body = body.unwrap_or(reason(status).as_bytes());
    let mut headers = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    if closing {
        headers.push_str("Connection: close\r\n");
    } else if ka10 {
        headers.push_str("Connection: keep-alive\r\n");
    }
    if status == 405 {
        headers.push_str("Allow: GET, HEAD\r\n");
    }
    headers.push_str("\r\n");
    out.extend_from_slice(headers.as_bytes());
    if !head {
        out.extend_from_slice(body);
    }
}

/// Answers one well-formed request; returns whether the connection closes after it.
fn route(out: &mut Vec<u8>, r: &Request, stats: &Stats) -> bool {
    let head = r.method == b"HEAD";
    let closing = r.close || (r.http10 && !r.keep_alive);
    let ka10 = r.http10 && r.keep_alive;
    bump(&stats.requests);
    let (path, query) = match r.target.iter().position(|&b| b == b'?') {
        Some(q) => (&r.target[..q], Some(&r.target[q + 1..])),
        None => (r.target, None),
    };
    let bytes;
    let (status, body): (u16, Option<&[u8]>) = match path {
        _ if r.method != b"GET" && !head => (405, None),
        b"/" if query.is_none() => (200, Some(HELLO)),
        b"/echo" => (200, Some(query.unwrap_or_default())),
        b"/bytes" => match std::str::from_utf8(query.unwrap_or_default())
            .ok()
            .and_then(|q| q.parse::<usize>().ok())
        {
            Some(n) if n <= MAX_BYTES => {
                bytes = vec![b'x'; n];
                (200, Some(bytes.as_slice()))
            }
            _ => (404, None),
        },
        _ => (404, None),
    };
    if status >= 400 {
        bump(&stats.refused);
    }
    respond(out, status, body, head, closing, ka10);
    closing
}

/// Answers every complete request at the start of `input` (removing them);
/// returns whether the connection is to be closed once `out` is sent.
fn answer(input: &mut Vec<u8>, out: &mut Vec<u8>, stats: &Stats) -> bool {
    loop {
        let Some(end) = find(input, b"\r\n\r\n") else {
            if input.len() < IN_CAP {
                return false;
            }
            return refuse(out, 431, stats);
        };
        let request = match parse(input, end) {
            Ok(r) if r.chunked => return refuse(out, 501, stats),
            Ok(r) if r.content_length > IN_CAP - r.head_len => return refuse(out, 413, stats),
            Ok(r) => r,
            Err(status) => return refuse(out, status, stats),
        };
        let total = request.head_len + request.content_length;
        if input.len() < total {
            return false; // the body is still coming
        }
        let closing = route(out, &request, stats);
        input.drain(..total);
        if closing {
            return true;
        }
    }
}

fn refuse(out: &mut Vec<u8>, status: u16, stats: &Stats) -> bool {
    bump(&stats.refused);
    respond(out, status, None, false, true, false);
    true
}

/// Serves one connection until the peer leaves, a response closes it, or an I/O error.
async fn connection(mut stream: TcpStream, stats: &Stats) -> io::Result<()> {
    let mut input = Vec::with_capacity(IN_CAP);
    let mut out = Vec::new();
    let mut chunk = [0u8; IN_CAP];
    loop {
        let closing = answer(&mut input, &mut out, stats);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if closing {
            return stream.shutdown().await;
        }
        let room = IN_CAP - input.len();
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(()); // the peer left, perhaps mid-request
        }
        input.extend_from_slice(&chunk[..n]);
    }
}

/// Runs one connection as a task, counting it and reporting how it failed.
fn spawn_connection(tasks: &mut JoinSet<()>, stream: TcpStream, stats: &Rc<Stats>, id: u64) {
    let stats = Rc::clone(stats);
    bump(&stats.open);
    stats.peak.set(stats.peak.get().max(stats.open.get()));
    tasks.spawn_local(async move {
        if let Err(error) = connection(stream, &stats).await {
            bump(&stats.failed);
            eprintln!(
                "tokio_http: connection {id} ended by an error: {error} ({:?})",
                error.kind()
            );
        }
        stats.open.set(stats.open.get() - 1);
        bump(&stats.connections);
    });
}

/// Accepts connections (all of them, or `limit`) and serves each in its own
/// task; the tasks that have ended are reaped at each accept.
async fn serve(listener: TcpListener, limit: u64, stats: Rc<Stats>) -> Result<(), String> {
    let mut tasks = JoinSet::new();
    let mut accepted = 0u64;
    let mut failures = 0u32;
    while limit == 0 || accepted < limit {
        match listener.accept().await {
            Ok((stream, _)) => {
                failures = 0;
                accepted += 1;
                while tasks.try_join_next().is_some() {}
                spawn_connection(&mut tasks, stream, &stats, accepted);
            }
            Err(error) => {
                failures += 1;
                eprintln!("tokio_http: accept: {error} ({:?})", error.kind());
                if failures >= 100 {
                    return Err(format!("accept failed {failures} times in a row: {error}"));
                }
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 || args.len() > 3 {
        eprintln!("usage: tokio_http LISTENER [N]");
        return ExitCode::from(64);
    }
    let Ok(limit) = args.get(2).map_or(Ok(0), |n| n.parse::<u64>()) else {
        eprintln!(
            "tokio_http: N must be a count of connections, not \"{}\"",
            args[2]
        );
        return ExitCode::from(64);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tokio_http: cannot start tokio: {error}");
            return ExitCode::from(70);
        }
    };
    let stats = Rc::new(Stats::default());
    let served = LocalSet::new().block_on(&runtime, async {
        let listener = open_listener(&args[1])?;
        serve(listener, limit, Rc::clone(&stats)).await
    });
    if let Err(error) = served {
        eprintln!("tokio_http: {error}");
        return ExitCode::from(69);
    }
    println!(
        "served {} requests on {} connections, at most {} at once, {} refused, {} failed",
        stats.requests.get(),
        stats.connections.get(),
        stats.peak.get(),
        stats.refused.get(),
        stats.failed.get()
    );
    ExitCode::SUCCESS
}
