//! Prints the label of each message file: `cargo run -p vpath-proto --example label -- FILE...`.
//! A file whose name contains `-resp` is read as a reply (to a request of the protocol of the
//! last request file given before it, if any), any other as a request. `--raw` keeps literals.

use vpath_proto::{parse_request, parse_response, Protocol, Redact};

fn main() {
    let mut redact = Redact::Literals;
    let mut last: Option<Protocol> = None;
    for arg in std::env::args().skip(1) {
        if arg == "--raw" {
            redact = Redact::None;
            continue;
        }
        let bytes = match std::fs::read(&arg) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{arg}: {e}");
                std::process::exit(2);
            }
        };
        let label = if arg.contains("-resp") {
            parse_response(&bytes, last)
        } else {
            let l = parse_request(&bytes, redact);
            last = l.as_ref().map(|l| l.protocol);
            l
        };
        match label {
            None => println!("{arg}: ({} bytes) not recognized", bytes.len()),
            Some(l) => {
                let cut = if l.truncated { " (truncated)" } else { "" };
                println!("{arg}: {} {:?}{cut}", l.protocol, l.name);
                for (k, v) in &l.attrs {
                    println!("    {k} = {v:?}");
                }
            }
        }
    }
}
