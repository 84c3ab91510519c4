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
//!   GET /bytes?N     200, N bytes of "x" (at most 32 MiB)
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
const MAX_BYTES: usize = 32 << 20;
/// Past this much output, it is sent before more pipelined requests are answered.
const OUT_FLUSH: usize = 64 << 10;

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

/// What a response carries after its head.
enum Body<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// N bytes of "x" (GET /bytes?N), appended without a copy of their own.
    Xs(usize),
    /// The reason phrase of the status.
    Reason,
}

/// Appends one response to `out`: its head, then (unless `head`) its body.
fn respond(out: &mut Vec<u8>, status: u16, body: Body, head: bool, closing: bool, ka10: bool) {
    let len = match body {
        Body::Bytes(bytes) => bytes.len(),
        Body::Xs(n) => n,
        Body::Reason => reason(status).len(),
    };
    let mut headers = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n",
        reason(status)
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
        match body {
            Body::Bytes(bytes) => out.extend_from_slice(bytes),
            Body::Xs(n) => out.resize(out.len() + n, b'x'),
            Body::Reason => out.extend_from_slice(reason(status).as_bytes()),
        }
    }
}

/// The N of GET /bytes?N, when it is a count within MAX_BYTES.
fn byte_count(query: Option<&[u8]>) -> Option<usize> {
    let n = std::str::from_utf8(query?).ok()?.parse::<usize>().ok()?;
    (n <= MAX_BYTES).then_some(n)
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
    let (status, body) = match path {
        _ if r.method != b"GET" && !head => (405, Body::Reason),
        b"/" if query.is_none() => (200, Body::Bytes(HELLO)),
        b"/echo" => (200, Body::Bytes(query.unwrap_or_default())),
        b"/bytes" => match byte_count(query) {
            Some(n) => (200, Body::Xs(n)),
            None => (404, Body::Reason),
        },
        _ => (404, Body::Reason),
    };
    if status >= 400 {
        bump(&stats.refused);
    }
    respond(out, status, body, head, closing, ka10);
    closing
}

/// What a connection does once `answer` has answered what it could.
enum Next {
    /// Send the output, then read more.
    Read,
    /// Send the output, then answer again: requests are waiting and the output was full.
    Answer,
    /// Send the output, then close.
    Close,
}

/// Answers the complete requests at the start of `input` (removing them)
/// while the output stays under OUT_FLUSH, so that a client pipelining many
/// large answers cannot make it grow without bound.
fn answer(input: &mut Vec<u8>, out: &mut Vec<u8>, stats: &Stats) -> Next {
    loop {
        if out.len() >= OUT_FLUSH {
            return Next::Answer;
        }
        let Some(end) = find(input, b"\r\n\r\n") else {
            if input.len() < IN_CAP {
                return Next::Read;
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
            return Next::Read; // the body is still coming
        }
        let closing = route(out, &request, stats);
        input.drain(..total);
        if closing {
            return Next::Close;
        }
    }
}

fn refuse(out: &mut Vec<u8>, status: u16, stats: &Stats) -> Next {
    bump(&stats.refused);
    respond(out, status, Body::Reason, false, true, false);
    Next::Close
}

/// Serves one connection until the peer leaves, a response closes it, or an I/O error.
async fn connection(mut stream: TcpStream, stats: &Stats) -> io::Result<()> {
    let mut input = Vec::with_capacity(IN_CAP);
    let mut out = Vec::new();
    let mut chunk = [0u8; IN_CAP];
    loop {
        let next = answer(&mut input, &mut out, stats);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        match next {
            Next::Close => return stream.shutdown().await,
            Next::Answer => continue,
            Next::Read => {}
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
