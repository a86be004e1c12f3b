//! Node binding: a node's records must come from that node's own address.
//!
//! MUNGE proves who made a credential (root or `slurm_user`) and, in the credential, the address
//! of the host whose munged encoded it. Without binding, root on any compute node may send
//! records that claim to be any node's, of any cluster (the trust model in the README). With
//! `[collector] node_binding = "address"`, `collector serve` refuses a batch unless the credential's
//! origin address is an address of every node the batch names (its sender and each item's node),
//! as Slurm would reach that node: `[collector] node_addresses` (slurm.conf's `NodeAddr`, keyed
//! `NODE` or `CLUSTER/NODE`), else the node name resolved with getaddrinfo, as Slurm does when a
//! node has no `NodeAddr`. A refusal is counted in the `rejections` table under its reason.
//!
//! `"off"` (the default) accepts what a valid credential signs, as before: on a one-host test
//! cluster every node shares one address, and a site whose munged origin addresses are not its
//! nodes' (NAT, a management network) must map them first.

use crate::daemon::auth::Reject;
use runledger_record::Batch;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a resolved node address is reused (DNS is asked at most this often per node).
const CACHE_FOR: Duration = Duration::from_secs(300);

/// Resolves a node name to its addresses (getaddrinfo; a fake in tests).
pub type Resolver = Box<dyn Fn(&str) -> Result<Vec<IpAddr>, String> + Send + Sync>;

/// `[collector] node_binding` and what it needs.
pub struct Binding {
    mode: Mode,
    /// `node_addresses`: `NODE` or `CLUSTER/NODE` to its addresses.
    fixed: HashMap<String, Vec<IpAddr>>,
    resolve: Resolver,
    cache: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Off,
    Address,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding").field("mode", &self.mode).field("fixed", &self.fixed).finish_non_exhaustive()
    }
}

/// getaddrinfo, as Slurm resolves a node name without `NodeAddr`.
pub fn getaddrinfo(node: &str) -> Result<Vec<IpAddr>, String> {
    let addrs: Vec<IpAddr> = (node, 0).to_socket_addrs().map_err(|e| e.to_string())?.map(|a| a.ip()).collect();
    if addrs.is_empty() {
        Err("no address".into())
    } else {
        Ok(addrs)
    }
}

impl Binding {
    /// Off: every validly signed batch is accepted.
    pub fn off() -> Binding {
        Binding { mode: Mode::Off, fixed: HashMap::new(), resolve: Box::new(getaddrinfo), cache: Mutex::default() }
    }

    /// From the configuration: `mode` is "off" or "address"; `addresses` maps `NODE` or
    /// `CLUSTER/NODE` to one address or several, comma-separated.
    pub fn from_config(mode: &str, addresses: &BTreeMap<String, String>, resolve: Resolver) -> Result<Binding, String> {
        let mode = match mode.trim() {
            "off" | "" => Mode::Off,
            "address" => Mode::Address,
            other => return Err(format!("collector.node_binding = \"{other}\": expected \"off\" or \"address\"")),
        };
        let mut fixed = HashMap::new();
        for (node, value) in addresses {
            let parsed: Result<Vec<IpAddr>, _> = value.split(',').map(|a| a.trim().parse::<IpAddr>()).collect();
            match parsed {
                Ok(v) if !v.is_empty() && !node.trim().is_empty() => {
                    fixed.insert(node.trim().to_string(), v);
                }
                _ => {
                    return Err(format!(
                        "collector.node_addresses: \"{node}\" = \"{value}\": expected a node name and IP addresses \
                         (e.g. \"cn001\" = \"10.1.0.1\")"
                    ))
                }
            }
        }
        Ok(Binding { mode, fixed, resolve, cache: Mutex::default() })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// For the startup log.
    pub fn describe(&self) -> String {
        match self.mode {
            Mode::Off => "node binding off: any node's credential may carry any node's records".into(),
            Mode::Address => format!(
                "node binding by address: a node's records only from its own address ({} fixed in \
                 collector.node_addresses, others resolved by name)",
                self.fixed.len()
            ),
        }
    }

    /// The addresses of `node` of `cluster`, as Slurm would reach it.
    fn addresses(&self, cluster: &str, node: &str) -> Result<Vec<IpAddr>, String> {
        if let Some(v) = self.fixed.get(&format!("{cluster}/{node}")).or_else(|| self.fixed.get(node)) {
            return Ok(v.clone());
        }
        let now = Instant::now();
        if let Some((at, v)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(node) {
            if now.duration_since(*at) < CACHE_FOR {
                return Ok(v.clone());
            }
        }
        // Resolved outside the lock: a slow DNS answer delays this request only.
        let v = (self.resolve)(node)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.clear(); // nodes are a few thousand; more names than that are not nodes
        }
        cache.insert(node.to_string(), (now, v.clone()));
        Ok(v)
    }

    /// Whether a batch signed by a credential from `origin` may be stored.
    pub fn check(&self, batch: &Batch, origin: Option<Ipv4Addr>) -> Result<(), Reject> {
        if self.mode == Mode::Off {
            return Ok(());
        }
        let origin = origin.ok_or(Reject::NoOrigin)?;
        // Each (cluster, node) once: a batch is one node's, so this is one lookup in practice.
        let mut named: Vec<(&str, &str)> = batch.items.iter().map(|i| (i.cluster(), i.node())).collect();
        named.sort_unstable();
        named.dedup();
        let sender_cluster = named.first().map(|(c, _)| *c).unwrap_or("");
        if !named.iter().any(|(_, n)| *n == batch.sender) {
            named.push((sender_cluster, batch.sender.as_str()));
        }
        for (cluster, node) in named {
            let addrs = self
                .addresses(cluster, node)
                .map_err(|error| Reject::NodeUnresolved { node: node.to_string(), error })?;
            let matches = addrs.iter().any(|a| match a {
                IpAddr::V4(v4) => *v4 == origin,
                IpAddr::V6(v6) => v6.to_ipv4_mapped() == Some(origin),
            });
            if !matches {
                return Err(Reject::NodeAddress { node: node.to_string(), origin, expected: addrs });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
