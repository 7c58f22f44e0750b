//! `dump FILE [seed|strace]`: imports FILE (format sniffed unless given)
//! and prints one line per record (see `vpath_import::text`), errors to
//! stderr, and a summary at the end.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::process::ExitCode;

use vpath_import::{
    sniff, text::fmt_record, Format, ImportError, Record, SeedImporter, StraceImporter,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: dump FILE [seed|strace]");
        return ExitCode::from(2);
    };
    let open = || File::open(path).map(BufReader::new);
    let format = match args.get(1).map(String::as_str) {
        Some("seed") => Some(Format::Seed),
        Some("strace") => Some(Format::Strace),
        Some(other) => {
            eprintln!("dump: unknown format {other:?}");
            return ExitCode::from(2);
        }
        None => {
            let mut head = Vec::new();
            match open().and_then(|f| f.take(8192).read_to_end(&mut head)) {
                Ok(_) => sniff(&head),
                Err(e) => {
                    eprintln!("dump: {path}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let f = match open() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("dump: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (n, errors, skipped) = match format {
        Some(Format::Seed) => {
            let mut imp = SeedImporter::new(f);
            let (n, e) = print(&mut imp, path);
            (n, e, imp.skipped())
        }
        Some(Format::Strace) => {
            let mut imp = StraceImporter::new(f);
            let (n, e) = print(&mut imp, path);
            (n, e, imp.skipped())
        }
        None => {
            eprintln!("dump: {path}: neither a seed log nor strace output");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("dump: {path}: {n} records, {errors} errors, {skipped} lines skipped");
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print<I: Iterator<Item = Result<Record, ImportError>>>(
    it: &mut I,
    path: &str,
) -> (usize, usize) {
    let (mut n, mut errors) = (0, 0);
    let mut out = std::io::stdout().lock();
    for r in it {
        match r {
            Ok(r) => {
                n += 1;
                if writeln!(out, "{}", fmt_record(&r)).is_err() {
                    break; // stdout closed (a pipe to head)
                }
            }
            Err(e) => {
                errors += 1;
                eprintln!("dump: {path}: {e}");
            }
        }
    }
    (n, errors)
}
