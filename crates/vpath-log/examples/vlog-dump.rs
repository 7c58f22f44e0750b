//! Prints a vpath binary log as text.
//! Usage: `cargo run -p vpath-log --example vlog-dump -- FILE`
//! Exit status: 0 clean, 1 no End trailer, 2 damaged or unreadable.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: vlog-dump FILE");
        return ExitCode::from(2);
    };
    let mut reader = match vpath_log::LogReader::open(&path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vlog-dump: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let res = vpath_log::dump(&mut reader, &mut out);
    let _ = out.flush();
    match res {
        Ok(s) if s.end.is_some() => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!(
                "vlog-dump: {}: no End trailer (truncated or recorder killed)",
                std::path::Path::new(&path).display()
            );
            ExitCode::from(1)
        }
        Err(vpath_log::DumpError::Log(e)) => {
            eprintln!("vlog-dump: {}", e.in_file(&path));
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("vlog-dump: {e}");
            ExitCode::from(2)
        }
    }
}
