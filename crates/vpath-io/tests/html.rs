//! The HTML report: structure checks in Rust, and a real render in headless
//! Chromium driven over the DevTools protocol (topology, path table,
//! waterfall and CDF in the DOM; no console error; no network request; a
//! screenshot).
//!
//! Chromium: `VPATH_CHROMIUM` or `chromium` / `chromium-browser` on PATH.
//! Outside CI a missing Chromium skips the browser test (it says why); with
//! `CI` set it fails. The screenshot goes to `VPATH_HTML_SCREENSHOT`, else
//! to `html-report.png` in Cargo's test temp dir (printed).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vpath_core::{Path, SpanKind};
use vpath_io::export::html::graph::group;
use vpath_io::export::{HtmlReport, Topology};
use vpath_io::sink::tier;
use vpath_io::{RunInfo, Sink, SourceInfo};
use vpath_sim::config::Handoff;
use vpath_sim::{analyze, generate, Scenario, SimConfig};

/// Wall clock of the simulated hosts: 2025-11-26 08:00 UTC.
const WALL: i64 = 1_764_144_000_000_000_000;

/// A multi-host run through the real analyzer: several domains, IPv6, an
/// unobserved backend, and pool threads that hand requests off and go back
/// to work, so that some paths are incomplete (`hand-off`) and say why.
fn scenario(seed: u64, requests: usize) -> Scenario {
    let cfg = SimConfig {
        seed,
        services: 6,
        hosts: 3,
        client_threads: 8,
        requests,
        ipv6: true,
        handoff: Handoff::Reuse,
        unobserved_backend: true,
        ..SimConfig::default()
    };
    generate(&cfg).expect("simulated run")
}

fn run(s: &Scenario) -> (Vec<Path>, RunInfo) {
    let (paths, stats) = analyze(s);
    let sources = s
        .hosts
        .iter()
        .map(|h| SourceInfo {
            file: format!("sim/{}.vlog", h.name),
            format: "vlog".into(),
            host: h.name.to_string(),
            clock: "monotonic".into(),
            wall_minus_mono_ns: WALL,
            checkpointed: h.checkpointed,
            records: h.records.len() as u64,
            clean_end: Some(true),
            skipped: 0,
            errors: 0,
        })
        .collect();
    (paths, RunInfo { sources, stats })
}

fn render(report: HtmlReport, paths: &[Path], info: &RunInfo) -> String {
    let mut out = Vec::new();
    {
        let mut sink = report.sink(&mut out);
        for p in paths {
            sink.path(p).unwrap();
        }
        sink.finish(info).unwrap();
    }
    String::from_utf8(out).unwrap()
}

fn data(html: &str) -> Value {
    let start = html
        .find("<script type=\"application/json\" id=\"vpath-data\">")
        .expect("embedded data");
    let rest = &html[start..];
    let body = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str(body).expect("the embedded data is JSON")
}

/// What the page must show, from the paths alone (the topology through the
/// DOT exporter's aggregation, an independent implementation).
struct Expected {
    nodes: usize,
    edges: usize,
    calls: u64,
    /// (duration, id, spans) of the slowest path.
    slowest: (u64, u64, usize),
}

fn expected(paths: &[Path]) -> Expected {
    let mut topo = Topology::default();
    let mut nodes: BTreeSet<(String, String)> = BTreeSet::new();
    let mut slowest = (0, u64::MAX, 0);
    for p in paths {
        topo.add(p);
        nodes.insert((group(&p.root, None), tier(&p.root)));
        let d = p.root.end_ns - p.root.start_ns;
        if d > slowest.0 || (d == slowest.0 && p.path < slowest.1) {
            slowest = (d, p.path, p.root.count());
        }
    }
    let edges = topo.edge_counts();
    for (a, b, _) in &edges {
        nodes.insert((*a).clone());
        nodes.insert((*b).clone());
    }
    Expected {
        nodes: nodes.len(),
        edges: edges.len(),
        calls: edges.iter().map(|e| e.2).sum(),
        slowest,
    }
}

#[test]
fn report_is_self_contained_and_embeds_every_path() {
    let s = scenario(7, 300);
    let (paths, info) = run(&s);
    assert!(
        paths.iter().any(|p| !p.complete),
        "want incomplete paths too"
    );
    assert!(paths.iter().any(|p| p.complete));
    let html = render(HtmlReport::new(), &paths, &info);
    // Nothing is loaded from anywhere: no external script, style, image or
    // font, and a policy that forbids any request.
    for bad in [
        "<link",
        " src=",
        "@import",
        "url(http",
        "href=\"http",
        "href=\"//",
    ] {
        assert!(!html.contains(bad), "the page references {bad:?}");
    }
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none';"));
    let d = data(&html);
    let dp = d["paths"].as_array().unwrap();
    assert_eq!(dp.len(), paths.len());
    let spans: usize = paths.iter().map(|p| p.root.count()).sum();
    let got: usize = dp.iter().map(|p| p[4].as_array().unwrap().len()).sum();
    assert_eq!(got, spans);
    // Ids, completeness and wall-clock starts survive.
    for (p, j) in paths.iter().zip(dp) {
        assert_eq!(j[0], p.path);
        assert_eq!(j[1], p.complete as u8);
        let ms = j[2].as_f64().unwrap();
        let want = (p.root.start_ns as i64 + WALL) as f64 / 1e6;
        assert!((ms - want).abs() < 0.01, "{ms} vs {want}");
    }
    let e = expected(&paths);
    assert_eq!(d["nodes"].as_array().unwrap().len(), e.nodes);
    assert_eq!(html.matches("<g class=\"edge\"").count(), e.edges);
    assert_eq!(
        html.matches("<g class=\"node").count(),
        e.nodes,
        "one SVG node per tier"
    );
    assert!(!html.contains("id=\"sample-note\""), "nothing was left out");
    // Health: drops and the issues that made paths incomplete.
    assert!(html.contains("Why paths are incomplete"));
    assert!(html.contains("<span class=\"pill bad\">hand-off</span>"));
}

#[test]
fn beyond_the_cap_the_slowest_are_kept_and_the_page_says_so() {
    let s = scenario(11, 400);
    let (paths, info) = run(&s);
    let cap = 50;
    let html = render(HtmlReport::new().max_paths(cap), &paths, &info);
    let d = data(&html);
    let kept: Vec<u64> = d["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_u64().unwrap())
        .collect();
    assert_eq!(kept.len(), cap);
    assert!(kept.windows(2).all(|w| w[0] < w[1]), "in path order");
    let mut by_dur: Vec<(u64, u64)> = paths
        .iter()
        .map(|p| (p.root.end_ns - p.root.start_ns, p.path))
        .collect();
    by_dur.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, id) in by_dur.iter().take(cap / 5) {
        assert!(kept.contains(id), "slow path {id} dropped");
    }
    let n = paths.len();
    assert!(
        html.contains(&format!(
            "Showing 50 of {} paths: the 10 slowest, and a uniform random sample of 40 of the other {}.",
            fmt(n as u64),
            fmt(n as u64 - 10)
        )),
        "the sample note"
    );
    // The aggregates still count every path.
    assert!(html.contains(&format!("<div class=\"v\">{}</div>", fmt(n as u64))));
}

/// The page's thousands separator.
fn fmt(n: u64) -> String {
    // Groups of three digits from the right, joined by a narrow space.
    let digits: Vec<char> = n.to_string().chars().collect();
    let mut groups: Vec<String> = Vec::new();
    let mut end = digits.len();
    while end > 3 {
        groups.push(digits[end - 3..end].iter().collect());
        end -= 3;
    }
    groups.push(digits[..end].iter().collect());
    groups.reverse();
    groups.join("\u{202f}")
}

#[test]
fn accuracy_and_overhead_sections_appear_when_given() {
    use vpath_io::export::html::{AccuracyRow, CdfSeries, LoadRow, OverheadSection};
    let s = scenario(3, 60);
    let (paths, info) = run(&s);
    let report = HtmlReport::new()
        .accuracy(
            vec![AccuracyRow {
                model: "thread-per-request".into(),
                paths: 60,
                exact: 60,
                ..Default::default()
            }],
            None,
        )
        .overhead(OverheadSection {
            description: "test".into(),
            untraced: LoadRow {
                label: "untraced".into(),
                throughput: 1000.0,
                ..Default::default()
            },
            traced: LoadRow {
                label: "traced".into(),
                throughput: 900.0,
                ..Default::default()
            },
            cdf: vec![
                CdfSeries::from_samples("untraced", "#4e79a7", &[1000, 2000, 3000]),
                CdfSeries::from_samples("traced", "#e15759", &[1500, 2500, 3500]),
            ],
            ..Default::default()
        });
    let html = render(report, &paths, &info);
    assert!(html.contains("id=\"accuracy\""));
    assert!(html.contains("<b>thread-per-request</b>"));
    assert!(html.contains("id=\"overhead\""));
    assert!(html.contains("-10.0%"), "throughput change");
    assert_eq!(
        html.matches("class=\"cdf-line\"").count(),
        2 + html
            .split("id=\"tier-cdf\"")
            .nth(1)
            .unwrap()
            .split("</svg>")
            .next()
            .unwrap()
            .matches("class=\"cdf-line\"")
            .count()
    );
}

// ---- headless Chromium over the DevTools protocol ----------------------

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VPATH_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A Chromium process and its user-data dir, both gone on drop.
struct Browser {
    child: Child,
    dir: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Cdp {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
    session: Option<String>,
    /// Events of the page's session, in order.
    events: Vec<Value>,
}

impl Cdp {
    fn send(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("CDP send");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let m = self
                .read()
                .unwrap_or_else(|| panic!("no answer to {method}"));
            if m["id"] == id {
                if let Some(e) = m.get("error") {
                    panic!("{method}: {e}");
                }
                return m["result"].clone();
            }
            if m.get("method").is_some() {
                self.events.push(m);
            }
        }
    }

    /// The next message, or None after a quiet second.
    fn read(&mut self) -> Option<Value> {
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("CDP JSON"));
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("CDP read: {e}"),
            }
        }
    }

    fn wait_event(&mut self, method: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let seen = self.events.len();
        loop {
            if let Some(e) = self.events[seen..].iter().find(|e| e["method"] == method) {
                return e.clone();
            }
            assert!(Instant::now() < deadline, "no {method} event");
            if let Some(m) = self.read() {
                if m.get("method").is_some() {
                    self.events.push(m);
                }
            }
        }
    }

    /// Evaluates `expr` in the page; its value (JSON-able).
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.send(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("evaluating {expr}: {ex}");
        }
        r["result"]["value"].clone()
    }
}

fn launch(exe: &FsPath) -> (Browser, Cdp) {
    let dir = std::env::temp_dir().join(format!("vpath-html-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
        ])
        .arg(format!("--user-data-dir={}", dir.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(k) = line.find("ws://") {
                let _ = tx.send(line[k..].trim().to_string());
            }
        }
    });
    let browser = Browser { child, dir };
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("Chromium printed no DevTools URL within 60 s");
    let hostport = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let stream = TcpStream::connect(&hostport).expect("connecting to DevTools");
    let (ws, _) = tungstenite::client(url.as_str(), stream).expect("DevTools handshake");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    (
        browser,
        Cdp {
            ws,
            next: 0,
            session: None,
            events: Vec::new(),
        },
    )
}

/// What a page did while loading and being clicked.
struct Visit {
    load_ms: f64,
    requests: Vec<String>,
    errors: Vec<String>,
}

/// Opens `file` in a fresh tab; returns when the report's script is done.
fn open(cdp: &mut Cdp, file: &FsPath, width: u32) -> (String, Instant) {
    cdp.session = None;
    let t = cdp.send("Target.createTarget", json!({"url": "about:blank"}));
    let target = t["targetId"].as_str().unwrap().to_string();
    let a = cdp.send(
        "Target.attachToTarget",
        json!({"targetId": target, "flatten": true}),
    );
    cdp.session = Some(a["sessionId"].as_str().unwrap().to_string());
    cdp.events.clear();
    for m in [
        "Page.enable",
        "Runtime.enable",
        "Log.enable",
        "Network.enable",
    ] {
        cdp.send(m, json!({}));
    }
    cdp.send(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    );
    let url = format!("file://{}", file.display());
    let t0 = Instant::now();
    cdp.send("Page.navigate", json!({"url": url}));
    cdp.wait_event("Page.loadEventFired", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    while cdp.eval("document.documentElement.dataset.ready || ''") != "1" {
        assert!(
            Instant::now() < deadline,
            "the report's script never finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (url, t0)
}

/// Opens a file that is not a report (no ready flag to wait for).
fn open_plain(cdp: &mut Cdp, file: &FsPath) {
    cdp.send(
        "Page.navigate",
        json!({"url": format!("file://{}", file.display())}),
    );
    cdp.wait_event("Page.loadEventFired", Duration::from_secs(60));
}

fn visit_report(cdp: &mut Cdp, url: &str) -> Visit {
    // Drain what is pending, then judge every event of the session.
    while let Some(m) = cdp.read() {
        if m.get("method").is_some() {
            cdp.events.push(m);
        }
    }
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    for e in &cdp.events {
        let p = &e["params"];
        match e["method"].as_str().unwrap_or("") {
            "Network.requestWillBeSent" => {
                let u = p["request"]["url"].as_str().unwrap_or("").to_string();
                if u != url {
                    requests.push(u);
                }
            }
            "Runtime.consoleAPICalled"
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                errors.push(format!("console.{}: {}", p["type"], p["args"]))
            }
            "Runtime.exceptionThrown" => {
                errors.push(format!("exception: {}", p["exceptionDetails"]))
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                errors.push(format!("log: {}", p["entry"]["text"]))
            }
            _ => {}
        }
    }
    let load_ms = cdp
        .eval("performance.getEntriesByType('navigation')[0].loadEventEnd")
        .as_f64()
        .unwrap_or(0.0);
    Visit {
        load_ms,
        requests,
        errors,
    }
}

fn screenshot(cdp: &mut Cdp, width: u32, to: &FsPath) {
    let m = cdp.send("Page.getLayoutMetrics", json!({}));
    let h = m["cssContentSize"]["height"]
        .as_f64()
        .unwrap_or(1000.0)
        .ceil() as u32;
    cdp.send(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": h.min(16000), "deviceScaleFactor": 1, "mobile": false}),
    );
    let shot = cdp.send(
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true}),
    );
    let png = decode_base64(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(to, png).unwrap();
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    out
}

#[test]
fn report_renders_in_headless_chromium_without_network_or_errors() {
    let Some(exe) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set and no Chromium was found (install Debian's `chromium`, or set VPATH_CHROMIUM)");
        }
        eprintln!("skipping the browser test: no chromium on PATH (apt-get install chromium, or set VPATH_CHROMIUM)");
        return;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("html-test");
    std::fs::create_dir_all(&dir).unwrap();

    // A realistic report: every path kept.
    let s = scenario(7, 300);
    let (paths, info) = run(&s);
    let e = expected(&paths);
    let html = render(
        HtmlReport::new().title("vpath report: simulated run"),
        &paths,
        &info,
    );
    let file = dir.join("report.html");
    std::fs::write(&file, &html).unwrap();

    let (_browser, mut cdp) = launch(&exe);
    let width = 1440;
    let (url, _) = open(&mut cdp, &file, width);
    let dom = cdp.eval(
        r#"JSON.stringify({
            nodes: document.querySelectorAll('svg.topology g.node').length,
            edges: document.querySelectorAll('svg.topology g.edge').length,
            edgePaths: document.querySelectorAll('svg.topology g.edge path').length,
            calls: [...document.querySelectorAll('svg.topology g.edge')].reduce((a, g) => a + +g.dataset.calls, 0),
            cdfLines: document.querySelectorAll('#tier-cdf svg.cdf polyline.cdf-line').length,
            cdfLegend: document.querySelectorAll('table.legend[data-chart=tier-cdf] tbody tr').length,
            rows: document.querySelectorAll('#path-table tbody tr').length,
            count: document.getElementById('path-count').textContent,
            bars: document.querySelectorAll('#waterfall .wf-bar').length,
            graphWidth: document.querySelector('svg.topology').getBoundingClientRect().width,
            nodeBoxes: [...document.querySelectorAll('svg.topology g.node rect.nbox')].map(r => { const b = r.getBBox(); return [b.x, b.y, b.width, b.height]; }),
        })"#,
    );
    let dom: Value = serde_json::from_str(dom.as_str().unwrap()).unwrap();
    println!("DOM: {dom}");
    assert_eq!(dom["nodes"], e.nodes, "topology nodes");
    assert_eq!(dom["edges"], e.edges, "topology edges");
    assert_eq!(dom["edgePaths"], e.edges, "every edge drawn");
    assert_eq!(dom["calls"], e.calls, "calls on the edges");
    let tiers = e.nodes.min(vpath_io::export::html::MAX_CDF_LINES);
    assert_eq!(dom["cdfLines"], tiers, "one CDF line per tier");
    assert_eq!(dom["cdfLegend"], tiers);
    assert_eq!(dom["rows"], paths.len().min(100), "first page of the table");
    assert_eq!(
        dom["count"],
        format!("{} paths", paths.len()),
        "the count line"
    );
    assert!(dom["graphWidth"].as_f64().unwrap() > 200.0);
    // Node boxes do not overlap.
    let boxes: Vec<Vec<f64>> = serde_json::from_value(dom["nodeBoxes"].clone()).unwrap();
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let apart = a[0] + a[2] <= b[0]
                || b[0] + b[2] <= a[0]
                || a[1] + a[3] <= b[1]
                || b[1] + b[3] <= a[1];
            assert!(apart, "node boxes overlap: {a:?} {b:?}");
        }
    }

    // Sort by duration (slowest first), click the first row: its waterfall
    // has a bar per span.
    let click = cdp.eval(
        r#"(() => {
            document.querySelector('#path-table th[data-key=dur]').click();
            const tr = document.querySelector('#path-table tbody tr');
            tr.click();
            const wf = document.getElementById('waterfall');
            return JSON.stringify({
                first: +tr.children[0].textContent,
                path: +wf.dataset.path,
                spans: +wf.dataset.spans,
                bars: wf.querySelectorAll('.wf-bar').length,
                rows: wf.querySelectorAll('.wf-row:not(.axis)').length,
                selected: document.querySelectorAll('#path-table tbody tr.sel').length,
                widths: [...wf.querySelectorAll('.wf-bar')].map(b => b.getBoundingClientRect().width),
            });
        })()"#,
    );
    let click: Value = serde_json::from_str(click.as_str().unwrap()).unwrap();
    println!("slowest path: {click}");
    assert_eq!(click["first"], e.slowest.1, "the slowest path sorts first");
    assert_eq!(click["path"], e.slowest.1, "its waterfall is shown");
    assert_eq!(click["bars"], e.slowest.2, "a bar per span");
    assert_eq!(click["rows"], e.slowest.2);
    assert_eq!(click["selected"], 1);
    let widths: Vec<f64> = serde_json::from_value(click["widths"].clone()).unwrap();
    assert!(
        widths[0] > 100.0,
        "the root bar spans the track: {widths:?}"
    );

    // Search narrows the table; an unknown word empties it.
    let search = cdp.eval(
        r#"(() => {
            const q = document.getElementById('path-search');
            const counts = [];
            for (const v of ['incomplete', 'zzz-no-such-tier', '']) {
                q.value = v; q.dispatchEvent(new Event('input'));
                counts.push(document.querySelectorAll('#path-table tbody tr').length);
            }
            return counts;
        })()"#,
    );
    let incomplete = paths.iter().filter(|p| !p.complete).count();
    assert_eq!(search[0], incomplete.min(100), "search: incomplete");
    assert_eq!(search[1], 0);
    assert_eq!(search[2], paths.len().min(100));

    let shot = std::env::var_os("VPATH_HTML_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("html-report.png"));
    // Back to the slowest path for the picture.
    cdp.eval("document.getElementById('slowest').click()");
    screenshot(&mut cdp, width, &shot);
    println!("screenshot: {}", shot.display());
    let v = visit_report(&mut cdp, &url);
    assert!(v.requests.is_empty(), "network requests: {:?}", v.requests);
    assert!(v.errors.is_empty(), "console errors: {:?}", v.errors);
    println!(
        "{} paths, {} spans: {} bytes, loaded and drawn in {:.0} ms",
        paths.len(),
        paths.iter().map(|p| p.root.count()).sum::<usize>(),
        html.len(),
        v.load_ms
    );

    // The demo's standalone CDF plot is a well-formed SVG file.
    let svg = vpath_io::export::html::cdf_svg_file(
        "response time",
        &[
            vpath_io::export::html::CdfSeries::from_samples(
                "untraced",
                "#4e79a7",
                &[1000, 2000, 9000],
            ),
            vpath_io::export::html::CdfSeries::from_samples(
                "traced",
                "#e15759",
                &[1500, 2500, 9900],
            ),
        ],
        "response time (log scale)",
    )
    .unwrap();
    let svg_file = dir.join("latency-cdf.svg");
    std::fs::write(&svg_file, &svg).unwrap();
    open_plain(&mut cdp, &svg_file);
    let lines = cdp.eval(
        "document.querySelector('parsererror') ? -1 : document.querySelectorAll('polyline.cdf-line').length",
    );
    assert_eq!(lines, 2, "the SVG file parses, with its two lines");

    // At scale: past the cap, the page keeps 5000 paths and stays quick.
    let big = scenario(21, 12_000);
    let (bpaths, binfo) = run(&big);
    let t = Instant::now();
    let bhtml = render(HtmlReport::new(), &bpaths, &binfo);
    let gen_ms = t.elapsed().as_secs_f64() * 1e3;
    let bfile = dir.join("report-big.html");
    std::fs::write(&bfile, &bhtml).unwrap();
    let (burl, t0) = open(&mut cdp, &bfile, width);
    let ready_ms = t0.elapsed().as_secs_f64() * 1e3;
    let rows = cdp.eval("document.querySelectorAll('#path-table tbody tr').length");
    assert_eq!(rows, 100);
    let kept = data(&bhtml)["paths"].as_array().unwrap().len();
    assert_eq!(kept, bpaths.len().min(5000));
    if bpaths.len() > 5000 {
        assert!(bhtml.contains("id=\"sample-note\""));
    }
    let t = Instant::now();
    let n = cdp.eval(
        "(() => { const q = document.getElementById('path-search'); q.value = 'remote'; q.dispatchEvent(new Event('input')); return document.getElementById('path-count').textContent; })()",
    );
    let search_ms = t.elapsed().as_secs_f64() * 1e3;
    let v = visit_report(&mut cdp, &burl);
    assert!(v.requests.is_empty(), "network requests: {:?}", v.requests);
    assert!(v.errors.is_empty(), "console errors: {:?}", v.errors);
    let mut by: BTreeMap<&str, String> = BTreeMap::new();
    by.insert("paths", bpaths.len().to_string());
    by.insert("kept", kept.to_string());
    by.insert("bytes", bhtml.len().to_string());
    by.insert("generate_ms", format!("{gen_ms:.0}"));
    by.insert("load_event_ms", format!("{:.0}", v.load_ms));
    by.insert("navigate_to_ready_ms", format!("{ready_ms:.0}"));
    by.insert("first_search_ms", format!("{search_ms:.0}"));
    println!("at scale: {by:?} (search 'remote': {n})");
    // The unobserved backend shows as a remote tier.
    assert!(bpaths.iter().any(|p| {
        let mut r = false;
        p.root.walk(&mut |s, _| r |= s.kind == SpanKind::Remote);
        r
    }));
}
