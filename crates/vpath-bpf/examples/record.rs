//! Minimal recorder: prints every record for a few seconds.
//! Run as root: cargo run -p vpath-bpf --example record -- [SECONDS] [PORT...]

use std::time::{Duration, Instant};

use vpath_bpf::{Filters, Recorder, RecorderOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let ports: Vec<u16> = args.filter_map(|a| a.parse().ok()).collect();
    let filters = Filters {
        ports,
        ..Default::default()
    };
    let mut rec = match Recorder::start(&filters, RecorderOptions::default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vpath-bpf: {e}");
            std::process::exit(1);
        }
    };
    println!("clock offset: {:?}", rec.clock_offset());
    let end = Instant::now() + Duration::from_secs(secs);
    let mut print = |r| println!("{r:?}");
    while Instant::now() < end {
        if let Err(e) = rec.poll(&mut print) {
            eprintln!("vpath-bpf: {e}");
            std::process::exit(1);
        }
    }
    match rec.stop(&mut print) {
        Ok(c) => println!("{c:?}"),
        Err(e) => eprintln!("vpath-bpf: {e}"),
    }
}
