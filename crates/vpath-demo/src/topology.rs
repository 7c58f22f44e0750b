//! vApp's shape: tiers, who calls whom, and each tier's execution model.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// How a tier handles requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// A thread per connection reads the request, makes the calls and replies
    /// (the vPath paper's model).
    ThreadPerRequest,
    /// A reader thread per connection reads the request and hands it to a
    /// worker pool thread, which makes the calls and sends the reply.
    ThreadPool,
    /// One thread multiplexes every connection with poll(2), non-blocking
    /// downstream calls included.
    EventLoop,
}

impl Model {
    pub const ALL: [Model; 3] = [Model::ThreadPerRequest, Model::ThreadPool, Model::EventLoop];

    pub fn name(self) -> &'static str {
        match self {
            Model::ThreadPerRequest => "thread-per-request",
            Model::ThreadPool => "thread-pool",
            Model::EventLoop => "event-loop",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown execution model {got:?}: expected thread-per-request, thread-pool or event-loop")]
pub struct BadModel {
    pub got: String,
}

impl FromStr for Model {
    type Err = BadModel;
    fn from_str(s: &str) -> Result<Model, BadModel> {
        Model::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| BadModel { got: s.into() })
    }
}

/// One kind of downstream call a tier may make per request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallSpec {
    /// The callee tier.
    pub to: String,
    /// Chance (percent) that a request makes this call at all.
    pub pct: u8,
    /// The call is made between 1 and `max_times` times (uniformly).
    pub max_times: u8,
}

impl CallSpec {
    /// `name:pct:max` as on the tier command line.
    pub fn to_arg(&self) -> String {
        format!("{}:{}:{}", self.to, self.pct, self.max_times)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad call spec {got:?}: expected NAME:PERCENT:MAX_TIMES, e.g. storage:100:2 ({what})")]
pub struct BadCallSpec {
    pub got: String,
    pub what: &'static str,
}

impl FromStr for CallSpec {
    type Err = BadCallSpec;
    fn from_str(s: &str) -> Result<CallSpec, BadCallSpec> {
        let bad = |what| BadCallSpec {
            got: s.into(),
            what,
        };
        let mut it = s.split(':');
        let to = it
            .next()
            .filter(|t| !t.is_empty())
            .ok_or(bad("empty name"))?;
        let pct: u8 = it
            .next()
            .ok_or(bad("missing percent"))?
            .parse()
            .map_err(|_| bad("percent is not a number"))?;
        let max_times: u8 = it
            .next()
            .ok_or(bad("missing max times"))?
            .parse()
            .map_err(|_| bad("max times is not a number"))?;
        if it.next().is_some() {
            return Err(bad("too many fields"));
        }
        if pct > 100 {
            return Err(bad("percent above 100"));
        }
        if max_times == 0 {
            return Err(bad("max times must be at least 1"));
        }
        Ok(CallSpec {
            to: to.into(),
            pct,
            max_times,
        })
    }
}

/// One tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TierSpec {
    pub name: String,
    pub port: u16,
    /// Calls in the order they are made.
    pub calls: Vec<CallSpec>,
}

/// The application: tiers, and the one the client calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub entry: String,
    pub tiers: Vec<TierSpec>,
    /// Percent of messages larger than a socket buffer (> 256 KiB).
    pub large_pct: u8,
}

fn call(to: &str, pct: u8, max_times: u8) -> CallSpec {
    CallSpec {
        to: to.into(),
        pct,
        max_times,
    }
}

impl Default for Topology {
    /// front (8000) calls auth (8001), cache (8004), then catalog (8002) on a
    /// cache miss (two thirds of requests); catalog calls storage (8003) once
    /// or twice. Four tiers below front, depth 3.
    fn default() -> Self {
        Topology {
            entry: "front".into(),
            tiers: vec![
                TierSpec {
                    name: "front".into(),
                    port: 8000,
                    calls: vec![
                        call("auth", 100, 1),
                        call("cache", 100, 1),
                        call("catalog", 67, 1),
                    ],
                },
                TierSpec {
                    name: "auth".into(),
                    port: 8001,
                    calls: vec![],
                },
                TierSpec {
                    name: "catalog".into(),
                    port: 8002,
                    calls: vec![call("storage", 100, 2)],
                },
                TierSpec {
                    name: "storage".into(),
                    port: 8003,
                    calls: vec![],
                },
                TierSpec {
                    name: "cache".into(),
                    port: 8004,
                    calls: vec![],
                },
            ],
            large_pct: 3,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("tier {tier:?} calls {to:?}, which is not a tier")]
    UnknownCallee { tier: String, to: String },
    #[error("entry tier {entry:?} is not a tier")]
    UnknownEntry { entry: String },
    #[error("tier name {name:?} is used twice")]
    Duplicate { name: String },
    #[error("tier name {name:?} must be 1-8 characters of [a-z0-9]")]
    BadName { name: String },
    #[error("the calls starting at {tier:?} form a cycle")]
    Cycle { tier: String },
}

impl Topology {
    pub fn tier(&self, name: &str) -> Option<&TierSpec> {
        self.tiers.iter().find(|t| t.name == name)
    }

    /// Checks names, callees, and that calls form no cycle.
    pub fn validate(&self) -> Result<(), TopologyError> {
        for (i, t) in self.tiers.iter().enumerate() {
            let ok = !t.name.is_empty()
                && t.name.len() <= 8
                && t.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !ok || t.name == "client" {
                return Err(TopologyError::BadName {
                    name: t.name.clone(),
                });
            }
            if self.tiers[..i].iter().any(|u| u.name == t.name) {
                return Err(TopologyError::Duplicate {
                    name: t.name.clone(),
                });
            }
        }
        for t in &self.tiers {
            for c in &t.calls {
                if self.tier(&c.to).is_none() {
                    return Err(TopologyError::UnknownCallee {
                        tier: t.name.clone(),
                        to: c.to.clone(),
                    });
                }
            }
        }
        if self.tier(&self.entry).is_none() {
            return Err(TopologyError::UnknownEntry {
                entry: self.entry.clone(),
            });
        }
        // Depth-first search for a cycle.
        fn visit<'a>(
            top: &'a Topology,
            name: &'a str,
            stack: &mut Vec<&'a str>,
        ) -> Result<(), TopologyError> {
            if stack.contains(&name) {
                return Err(TopologyError::Cycle { tier: name.into() });
            }
            stack.push(name);
            if let Some(t) = top.tier(name) {
                for c in &t.calls {
                    visit(top, &c.to, stack)?;
                }
            }
            stack.pop();
            Ok(())
        }
        for t in &self.tiers {
            visit(self, &t.name, &mut Vec::new())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_topology_is_valid_and_models_parse() {
        let t = Topology::default();
        t.validate().unwrap();
        assert_eq!(t.tiers.len(), 5);
        for m in Model::ALL {
            assert_eq!(m.name().parse::<Model>().unwrap(), m);
        }
        assert!("threads".parse::<Model>().is_err());
    }

    #[test]
    fn call_specs_parse_and_reject() {
        let c: CallSpec = "storage:100:2".parse().unwrap();
        assert_eq!(c.to_arg(), "storage:100:2");
        for bad in [
            "", "x", "x:1", "x:101:1", "x:5:0", "x:a:1", "x:1:1:1", ":1:1",
        ] {
            assert!(bad.parse::<CallSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_finds_cycles_and_unknown_callees() {
        let mut t = Topology::default();
        t.tiers[3].calls.push(call("front", 10, 1));
        assert!(matches!(t.validate(), Err(TopologyError::Cycle { .. })));
        let mut t = Topology::default();
        t.tiers[1].calls.push(call("nope", 10, 1));
        assert!(matches!(
            t.validate(),
            Err(TopologyError::UnknownCallee { .. })
        ));
        let mut t = Topology::default();
        t.tiers[1].name = "front".into();
        assert!(matches!(t.validate(), Err(TopologyError::Duplicate { .. })));
    }
}
