//! tcp_echo: Rust's std::net on listeners that Enarx.toml (or --listen) gives
//! the guest, found by name in FD_NAMES as Enarx workloads do. A non-blocking
//! accept on IDLE, where nobody connects, must say WouldBlock; then N
//! connections to NAME are accepted in non-blocking mode (sleeping between
//! tries) and echoed to end of stream, one after the other.
//! Usage: tcp_echo-rs.wasm NAME N IDLE
use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::wasi::io::FromRawFd;
use std::time::Duration;

fn listener(name: &str) -> TcpListener {
    let names = std::env::var("FD_NAMES").expect("FD_NAMES");
    let fd = names.split(':').position(|n| n == name).expect("no such name") as i32;
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(true).expect("set_nonblocking");
    listener
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args[2].parse().expect("a count");
    match listener(&args[3]).accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => println!("idle: WouldBlock"),
        other => panic!("expected WouldBlock, got {:?}", other.map(|_| ())),
    }
    let serving = listener(&args[1]);
    for _ in 0..count {
        let mut conn = loop {
            match serving.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {}", e),
            }
        };
        conn.set_nonblocking(false).expect("set_nonblocking");
        let mut buf = [0u8; 8192];
        loop {
            let n = conn.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            conn.write_all(&buf[..n]).expect("write");
        }
    }
    println!("rust served {}", count);
}
