//! vpath's JSONL paths, read with this crate's own types (not vpath-core's), so that the checker depends on the
//! published contract only: `{"path": n, "complete": bool, "root": SPAN}` per line, a SPAN having `kind`,
//! `local`, `remote`, `issues`, `children` and the optional `protocol`, `name` and `attrs`.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::BufRead;

/// One line of `vpath analyze --format jsonl`.
#[derive(Clone, Debug, Deserialize)]
pub struct PathRec {
    pub path: u64,
    pub complete: bool,
    pub root: SpanRec,
}

/// One span of a path; unknown fields are ignored, absent optional ones default.
#[derive(Clone, Debug, Deserialize)]
pub struct SpanRec {
    pub kind: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub tid: Option<u32>,
    #[serde(default)]
    pub comm: Option<String>,
    #[serde(default)]
    pub process: Option<String>,
    pub local: String,
    pub remote: String,
    #[serde(default)]
    pub start_ns: u64,
    #[serde(default)]
    pub end_ns: u64,
    #[serde(default)]
    pub issues: Vec<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub attrs: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub children: Vec<SpanRec>,
}

/// The application protocol of a span, from its `protocol` field or, failing that, from the server's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Http,
    Fastcgi,
    Mysql,
    Memcached,
    Other,
}

impl Proto {
    pub fn parse(s: &str) -> Proto {
        match s.to_ascii_lowercase().as_str() {
            "http" | "http/1.0" | "http/1.1" | "https" => Proto::Http,
            "fastcgi" | "fcgi" => Proto::Fastcgi,
            "mysql" | "mariadb" => Proto::Mysql,
            "memcached" | "memcache" => Proto::Memcached,
            _ => Proto::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Fastcgi => "fastcgi",
            Proto::Mysql => "mysql",
            Proto::Memcached => "memcached",
            Proto::Other => "other",
        }
    }
}

/// Port of an endpoint written `ip:port` or `[ipv6]:port`.
pub fn port_of(endpoint: &str) -> Option<u16> {
    endpoint.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

impl SpanRec {
    /// The server side's endpoint: `local` for a server span, `remote` for origin and remote spans.
    pub fn server_endpoint(&self) -> &str {
        if self.kind == "server" {
            &self.local
        } else {
            &self.remote
        }
    }

    /// The client side's endpoint (the connection's other end).
    pub fn client_endpoint(&self) -> &str {
        if self.kind == "server" {
            &self.remote
        } else {
            &self.local
        }
    }

    pub fn proto(&self, ports: &BTreeMap<u16, Proto>) -> Proto {
        if let Some(p) = &self.protocol {
            let p = Proto::parse(p);
            if p != Proto::Other {
                return p;
            }
        }
        port_of(self.server_endpoint())
            .and_then(|p| ports.get(&p).copied())
            .unwrap_or(Proto::Other)
    }

    /// An attribute as text (strings as they are, anything else as JSON).
    pub fn attr(&self, key: &str) -> Option<String> {
        self.attrs.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The first of `keys` that is present.
    pub fn first_attr(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| self.attr(k))
    }

    /// Depth-first, parents before children, in order.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a SpanRec, usize)) {
        fn go<'a>(s: &'a SpanRec, d: usize, f: &mut impl FnMut(&'a SpanRec, usize)) {
            f(s, d);
            for c in &s.children {
                go(c, d + 1, f);
            }
        }
        go(self, 0, f)
    }
}

/// Reads JSONL paths; blank lines are skipped; an error names the line.
pub fn read_paths(r: impl BufRead) -> Result<Vec<PathRec>> {
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", i + 1))?;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if !t.starts_with('{') {
            bail!(
                "line {}: not a JSON object (is this `vpath analyze --format jsonl` output?)",
                i + 1
            );
        }
        let p: PathRec =
            serde_json::from_str(t).with_context(|| format!("line {}: not a vpath path", i + 1))?;
        out.push(p);
    }
    Ok(out)
}
