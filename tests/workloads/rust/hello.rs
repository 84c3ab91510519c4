//! A Rust WASI command for the tests of `enarx run`: prints its arguments,
//! GREETING, and optionally stdin's length (--stdin), the entries of /data
//! (--ls), then exits with --exit=N; --panic panics (a trap).
use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("hello from rust wasi, args={:?}", args);
    if let Ok(greeting) = std::env::var("GREETING") {
        println!("GREETING={}", greeting);
    }
    let mut code = 0;
    for arg in &args {
        if arg == "--stdin" {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input).expect("read stdin");
            println!("stdin bytes={}", input.len());
        } else if arg == "--ls" {
            let mut names: Vec<String> = std::fs::read_dir("/data")
                .expect("read /data")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                println!("entry {}", name);
            }
        } else if arg == "--panic" {
            panic!("asked to panic");
        } else if let Some(n) = arg.strip_prefix("--exit=") {
            code = n.parse().expect("exit code");
        }
    }
    std::process::exit(code);
}
