//! Several input files, one per host, through the real sources and the
//! merge loop: each simulated host is written to its own binary log with a
//! clock offset of its own, and the paths found from the files must be
//! exactly the simulator's expected paths.

use std::path::PathBuf;

use vpath_core::{Config, Path};
use vpath_io::{analyze, RunInfo, Sink};
use vpath_log::{header_flags, Clock, EndStats, Header, LogWriter};
use vpath_sim::{diff_paths, generate, SimConfig};

struct Collect(Vec<Path>);

impl Sink for Collect {
    fn path(&mut self, p: &Path) -> std::io::Result<()> {
        self.0.push(p.clone());
        Ok(())
    }
    fn finish(&mut self, _info: &RunInfo) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_logs(seed: u64, dir: &std::path::Path) -> (Vec<PathBuf>, Vec<Path>) {
    let cfg = SimConfig {
        seed,
        hosts: 3,
        services: 5,
        client_threads: 6,
        requests: 120,
        ..SimConfig::random(seed, false)
    };
    let s = generate(&cfg).unwrap();
    let mut files = Vec::new();
    for (i, h) in s.hosts.iter().enumerate() {
        let f = dir.join(format!("{}.vlog", h.name));
        let header = Header {
            host: h.name.to_string(),
            // The simulated hosts share one clock (with a few ms of skew,
            // which the analysis must not care about); each log carries its
            // offset to wall-clock time, as a recorder's would.
            wall_minus_mono_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000_000,
            clock: Clock::Monotonic,
            flags: if h.checkpointed {
                header_flags::CHECKPOINTED
            } else {
                0
            },
            recorder: "vpath-sim".into(),
            start_unix_ns: 0,
            raw_layout: String::new(),
        };
        let mut w = LogWriter::new(std::fs::File::create(&f).unwrap(), &header).unwrap();
        for r in &h.records {
            w.write(r).unwrap();
        }
        let n = w.events_written();
        w.finish(EndStats {
            events_emitted: n,
            events_written: n,
            events_lost: 0,
        })
        .unwrap();
        files.push(f);
    }
    (files, s.expected)
}

#[test]
fn one_log_per_host_gives_the_expected_paths() {
    for seed in [3, 17, 42] {
        let dir = std::env::temp_dir().join(format!("vpath-multi-{}-{seed}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (files, expected) = write_logs(seed, &dir);
        assert!(files.len() >= 2, "seed {seed}: a multi-host scenario");
        let sources = files.iter().map(|f| vpath_io::open(f).unwrap()).collect();
        let mut sink = Collect(Vec::new());
        let mut errors = Vec::new();
        let info = analyze(sources, Config::default(), &mut sink, &mut |e| {
            errors.push(e.to_string())
        })
        .unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(info.sources.iter().all(|s| s.clean_end == Some(true)));
        let d = diff_paths(&expected, &sink.0);
        assert!(d.is_empty(), "seed {seed}: {}", d.render(3));
        assert!(sink.0.iter().all(|p| p.complete));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
