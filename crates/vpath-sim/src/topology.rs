//! Random topologies: services in a DAG, placed on hosts and network
//! namespaces, with synthetic addresses (data only, never used on a network).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::config::SimConfig;
use crate::rng::Rng;

/// The initial network namespace's inode number (the same on every host).
pub const INIT_NETNS: u32 = 4_026_531_840;

const NAMES: [&str; 8] = [
    "web", "app", "auth", "db", "cache", "search", "queue", "blob",
];

#[derive(Clone, Debug, PartialEq)]
pub struct HostSpec {
    pub name: Arc<str>,
    /// Whether the host's stream is given to the analyzer.
    pub observed: bool,
    /// Added to the global clock to give this host's timestamps.
    pub offset_ns: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerModel {
    /// A fixed pool of worker threads; the main thread accepts.
    Pool { workers: u32 },
    /// The main process accepts and forks one process per connection.
    PerConnection,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSpec {
    pub name: Arc<str>,
    pub host: usize,
    pub netns: u32,
    /// In a pod (its own netns): callers in the same pod use loopback.
    pub pod: bool,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    /// Reached over IPv6.
    pub ipv6: bool,
    pub port: u16,
    pub model: ServerModel,
    /// Services this one may call (higher indices only: a DAG).
    pub callees: Vec<usize>,
    /// Load generators call it directly.
    pub entry: bool,
}

impl ServiceSpec {
    pub fn ip(&self) -> IpAddr {
        if self.ipv6 {
            IpAddr::V6(self.v6)
        } else {
            IpAddr::V4(self.v4)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClientSpec {
    pub host: usize,
    pub netns: u32,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    pub threads: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    pub hosts: Vec<HostSpec>,
    pub services: Vec<ServiceSpec>,
    pub client: ClientSpec,
    /// Callers in a host's initial netns reach services of the same host and
    /// netns over loopback.
    pub loopback: bool,
}

fn v4(host: usize, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, (host + 1) as u8, n as u8)
}

fn v6(host: usize, n: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (host + 1) as u16, n as u16)
}

impl Topology {
    /// Draws a topology. `cfg` must be valid.
    pub fn generate(cfg: &SimConfig, r: &mut Rng) -> Topology {
        let n = cfg.services;
        let mut hosts: Vec<HostSpec> = (0..cfg.hosts)
            .map(|h| HostSpec {
                name: Arc::from(format!("host{h}")),
                observed: true,
                offset_ns: 0,
            })
            .collect();
        // Every host gets a service when there are enough services.
        let mut perm: Vec<usize> = (0..cfg.hosts).collect();
        for i in (1..perm.len()).rev() {
            perm.swap(i, r.index(i + 1));
        }
        let mut services: Vec<ServiceSpec> = (0..n)
            .map(|i| {
                let host = if i < perm.len() {
                    perm[i]
                } else {
                    r.index(cfg.hosts)
                };
                let name = if i < NAMES.len() {
                    NAMES[i].to_string()
                } else {
                    format!("svc{i}")
                };
                ServiceSpec {
                    name: Arc::from(name),
                    host,
                    netns: INIT_NETNS,
                    pod: false,
                    v4: v4(host, i + 1),
                    v6: v6(host, i + 1),
                    ipv6: cfg.ipv6 && r.chance(0.4),
                    port: 0,
                    model: if cfg.per_connection && r.chance(0.3) {
                        ServerModel::PerConnection
                    } else {
                        ServerModel::Pool {
                            workers: r.range(1, 4) as u32,
                        }
                    },
                    callees: Vec::new(),
                    entry: i == 0,
                }
            })
            .collect();
        // The DAG: edges from lower to higher indices; every service but the
        // first has a caller, so all are reachable from service 0.
        for j in 1..n {
            for caller in services.iter_mut().take(j) {
                if r.chance(0.4) {
                    caller.callees.push(j);
                }
            }
            if !(0..j).any(|i| services[i].callees.contains(&j)) {
                let i = r.index(j);
                services[i].callees.push(j);
            }
        }
        for s in services.iter_mut().skip(1) {
            s.entry = r.chance(0.25);
        }
        // Pods: two netns on one host, each with a caller -> callee pair over
        // loopback, with identical addresses and ports.
        let mut in_pod = vec![false; n];
        if cfg.containers && n >= 4 {
            let mut pick: Vec<usize> = Vec::new();
            while pick.len() < 4 {
                let k = r.index(n);
                if !pick.contains(&k) {
                    pick.push(k);
                }
            }
            pick.sort_unstable();
            let host = services[pick[0]].host;
            let fam_caller = services[pick[0]].ipv6;
            let fam_callee = services[pick[1]].ipv6;
            for (k, &s) in pick.iter().enumerate() {
                let svc = &mut services[s];
                svc.host = host;
                svc.v4 = v4(host, s + 1);
                svc.v6 = v6(host, s + 1);
                svc.netns = INIT_NETNS + 1000 + (k as u32 / 2) + 1;
                svc.pod = true;
                svc.ipv6 = if k % 2 == 0 { fam_caller } else { fam_callee };
                in_pod[s] = true;
            }
            for pair in [(pick[0], pick[1]), (pick[2], pick[3])] {
                if !services[pair.0].callees.contains(&pair.1) {
                    services[pair.0].callees.push(pair.1);
                }
            }
        }
        // One unobserved leaf backend on its own host.
        if cfg.unobserved_backend {
            let cands: Vec<usize> = (0..n)
                .filter(|&i| services[i].callees.is_empty() && !services[i].entry && !in_pod[i])
                .collect();
            if !cands.is_empty() {
                let s = cands[r.index(cands.len())];
                let h = hosts.len();
                hosts.push(HostSpec {
                    name: Arc::from(format!("host{h}")),
                    observed: false,
                    offset_ns: 0,
                });
                let svc = &mut services[s];
                svc.host = h;
                svc.v4 = v4(h, s + 1);
                svc.v6 = v6(h, s + 1);
            }
        }
        // Ports: per netns and host, in index order, from 8080.
        for i in 0..n {
            let same = (0..i).filter(|&k| {
                services[k].host == services[i].host && services[k].netns == services[i].netns
            });
            services[i].port = 8080 + same.count() as u16;
        }
        // The load generators.
        let client_host = if cfg.unobserved_clients {
            let h = hosts.len();
            hosts.push(HostSpec {
                name: Arc::from(format!("clients{h}")),
                observed: false,
                offset_ns: 0,
            });
            h
        } else if r.chance(0.3) {
            r.index(cfg.hosts)
        } else {
            let h = hosts.len();
            hosts.push(HostSpec {
                name: Arc::from(format!("clients{h}")),
                observed: true,
                offset_ns: 0,
            });
            h
        };
        let client = ClientSpec {
            host: client_host,
            netns: INIT_NETNS,
            v4: v4(client_host, 250),
            v6: v6(client_host, 250),
            threads: cfg.client_threads as u32,
        };
        let skew = cfg.skew_ns as i64;
        for h in hosts.iter_mut() {
            h.offset_ns = r.range_i64(-skew, skew);
        }
        for s in services.iter_mut() {
            s.callees.sort_unstable();
        }
        let mut t = Topology {
            hosts,
            services,
            client,
            loopback: r.chance(0.5),
        };
        t.drop_empty_hosts();
        t
    }

    /// Removes hosts that run nothing (pods and the unobserved backend move
    /// services away from where they were placed). Names are kept.
    fn drop_empty_hosts(&mut self) {
        let used: Vec<bool> = (0..self.hosts.len())
            .map(|h| self.client.host == h || self.services.iter().any(|s| s.host == h))
            .collect();
        let mut new_index = vec![0; self.hosts.len()];
        let mut k = 0;
        for (h, &u) in used.iter().enumerate() {
            new_index[h] = k;
            k += u as usize;
        }
        let mut h = 0;
        self.hosts.retain(|_| {
            h += 1;
            used[h - 1]
        });
        for s in self.services.iter_mut() {
            s.host = new_index[s.host];
        }
        self.client.host = new_index[self.client.host];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies_are_dags_with_reachable_services_and_unique_listeners() {
        for seed in 0..300 {
            let cfg = SimConfig::random(seed, false);
            let t = Topology::generate(&cfg, &mut Rng::new(seed));
            for (i, s) in t.services.iter().enumerate() {
                assert!(s.callees.iter().all(|&c| c > i), "seed {seed}: not a DAG");
                if i > 0 {
                    assert!(
                        t.services.iter().any(|p| p.callees.contains(&i)),
                        "seed {seed}: {i} unreachable"
                    );
                }
                if !t.hosts[s.host].observed {
                    assert!(
                        s.callees.is_empty() && !s.entry,
                        "seed {seed}: unobserved service must be a leaf"
                    );
                }
                for (k, o) in t.services.iter().enumerate() {
                    if k != i && o.host == s.host && o.netns == s.netns {
                        assert_ne!(o.port, s.port, "seed {seed}: two listeners on one port");
                    }
                }
            }
            for h in 0..t.hosts.len() {
                assert!(
                    t.client.host == h || t.services.iter().any(|s| s.host == h),
                    "seed {seed}: host {h} runs nothing"
                );
            }
            if cfg.containers {
                let pods: Vec<&ServiceSpec> = t.services.iter().filter(|s| s.pod).collect();
                assert_eq!(pods.len(), 4);
                assert!(pods.iter().all(|s| s.host == pods[0].host));
            }
        }
    }
}
