//! The userspace backend, for nodes without nftables: the proxy itself
//! accepts connections on each ClusterIP:port (the ClusterIP is added to
//! `lo` as a /32 so the kernel delivers to it) and on `0.0.0.0:NodePort`,
//! and relays them to an endpoint.
//!
//! - Endpoints are chosen round-robin by [`Picker`], a pure state machine
//!   that also keeps ClientIP session affinity;
//! - a service port with no endpoints has no listener, so connections are
//!   refused, as the nftables backend's `reject` would;
//! - when an endpoint goes away new connections stop going to it, while
//!   connections already relayed run to their end (they are tasks of their
//!   own, not of the listener), so they drain rather than being cut;
//! - UDP keeps one upstream socket per client address, dropped after a
//!   minute without traffic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::rules::{DesiredRules, Protocol, ServicePortName};

/// How long connecting to one endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A UDP client's upstream socket is dropped after this long idle.
const UDP_IDLE: Duration = Duration::from_secs(60);

/// Round-robin endpoint choice with optional ClientIP affinity.
#[derive(Debug, Default)]
pub struct Picker {
    next: usize,
    affinity: HashMap<IpAddr, (SocketAddrV4, Instant)>,
}

impl Picker {
    /// The endpoint for a connection from `client` at `now`: the client's
    /// sticky endpoint while it exists and was used within `affinity`, else
    /// the next in turn. `None` when there are no endpoints.
    pub fn pick(
        &mut self,
        endpoints: &[SocketAddrV4],
        client: IpAddr,
        affinity: Option<Duration>,
        now: Instant,
    ) -> Option<SocketAddrV4> {
        if endpoints.is_empty() {
            return None;
        }
        if let Some(timeout) = affinity {
            self.affinity.retain(|_, (ep, last)| {
                now.duration_since(*last) < timeout && endpoints.contains(ep)
            });
            if let Some((ep, last)) = self.affinity.get_mut(&client) {
                *last = now;
                return Some(*ep);
            }
        }
        let ep = endpoints[self.next % endpoints.len()];
        self.next = (self.next + 1) % endpoints.len();
        if affinity.is_some() {
            self.affinity.insert(client, (ep, now));
        }
        Some(ep)
    }
}

/// What a listener serves, updated in place as endpoints change.
#[derive(Debug, Default)]
struct PortState {
    endpoints: Vec<SocketAddrV4>,
    affinity: Option<Duration>,
    picker: Picker,
}

type Shared = Arc<Mutex<PortState>>;

impl PortState {
    fn pick(shared: &Shared, client: IpAddr, skip: &[SocketAddrV4]) -> Option<SocketAddrV4> {
        let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        let usable: Vec<SocketAddrV4> = state
            .endpoints
            .iter()
            .filter(|e| !skip.contains(e))
            .copied()
            .collect();
        state
            .picker
            .pick(&usable, client, state.affinity, Instant::now())
    }
}

/// A listening address of one protocol.
type ListenKey = (SocketAddr, Protocol);

/// The running userspace proxy.
#[derive(Default)]
pub struct Userspace {
    ports: HashMap<ServicePortName, Shared>,
    listeners: BTreeMap<ListenKey, (ServicePortName, JoinHandle<()>)>,
    /// ClusterIPs we added to `lo` (and so may remove).
    addresses: BTreeSet<Ipv4Addr>,
}

impl Userspace {
    /// Brings listeners and `lo` addresses in line with `rules`; returns
    /// the number of listeners.
    pub async fn sync(&mut self, rules: &DesiredRules) -> usize {
        let wanted_ips: BTreeSet<Ipv4Addr> = rules.ports.values().map(|r| r.cluster_ip).collect();
        for ip in wanted_ips.difference(&self.addresses.clone()) {
            match ip_addr("add", *ip).await {
                Ok(()) => {
                    self.addresses.insert(*ip);
                }
                Err(e) => tracing::error!("adding {ip}/32 to lo: {e}"),
            }
        }

        let mut wanted: BTreeMap<ListenKey, ServicePortName> = BTreeMap::new();
        for (id, rule) in &rules.ports {
            let shared = self.ports.entry(id.clone()).or_default();
            {
                let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                state.endpoints = rule.endpoints.clone();
                state.affinity = rule.affinity_timeout.map(|t| Duration::from_secs(t.into()));
            }
            if rule.endpoints.is_empty() {
                continue;
            }
            wanted.insert(
                (
                    SocketAddr::new(rule.cluster_ip.into(), rule.port),
                    rule.protocol,
                ),
                id.clone(),
            );
            if let Some(np) = &rule.node_port {
                // The NodePort relays to the ClusterIP's endpoints; a
                // Local external policy is not honoured here.
                wanted.insert(
                    (
                        SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), np.node_port),
                        rule.protocol,
                    ),
                    id.clone(),
                );
            }
        }
        self.ports.retain(|id, _| rules.ports.contains_key(id));

        // Listeners that moved to another service or are no longer wanted
        // stop accepting; their connections carry on.
        let stale: Vec<ListenKey> = self
            .listeners
            .iter()
            .filter(|(key, (id, _))| wanted.get(*key) != Some(id))
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            if let Some((_, task)) = self.listeners.remove(&key) {
                task.abort();
                let _ = task.await;
            }
        }
        for (key, id) in wanted {
            if self.listeners.contains_key(&key) {
                continue;
            }
            let Some(shared) = self.ports.get(&id).cloned() else {
                continue;
            };
            match listen(key, shared).await {
                Ok(task) => {
                    self.listeners.insert(key, (id, task));
                }
                Err(e) => {
                    tracing::error!("service {id}: listening on {} {}: {e}", key.1.name(), key.0)
                }
            }
        }

        for ip in self.addresses.clone().difference(&wanted_ips) {
            if let Err(e) = ip_addr("del", *ip).await {
                tracing::warn!("removing {ip}/32 from lo: {e}");
            }
            self.addresses.remove(ip);
        }
        self.listeners.len()
    }

    /// Stops listening and removes the addresses we added (on shutdown).
    pub async fn cleanup(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut self.listeners) {
            task.abort();
        }
        for ip in std::mem::take(&mut self.addresses) {
            let _ = ip_addr("del", ip).await;
        }
    }
}

/// `ip addr add|del IP/32 dev lo`; adding an address already there is fine.
async fn ip_addr(op: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("ip")
        .args(["addr", op, &format!("{ip}/32"), "dev", "lo"])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || (op == "add" && stderr.contains("File exists")) {
        Ok(())
    } else {
        anyhow::bail!("{}", stderr.trim())
    }
}

async fn listen((addr, protocol): ListenKey, shared: Shared) -> std::io::Result<JoinHandle<()>> {
    match protocol {
        Protocol::Tcp => {
            let listener = TcpListener::bind(addr).await?;
            Ok(tokio::spawn(accept_loop(listener, shared)))
        }
        Protocol::Udp => {
            let socket = Arc::new(UdpSocket::bind(addr).await?);
            Ok(tokio::spawn(udp_loop(socket, shared)))
        }
        Protocol::Sctp => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "SCTP is not supported by the userspace proxy",
        )),
    }
}

async fn accept_loop(listener: TcpListener, shared: Shared) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        // A task of its own: it outlives the listener, so removing an
        // endpoint or service drains this connection rather than cutting it.
        tokio::spawn(async move {
            let mut tried = Vec::new();
            while let Some(ep) = PortState::pick(&shared, peer.ip(), &tried) {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(ep)).await {
                    Ok(Ok(mut upstream)) => {
                        let mut client = client;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        return;
                    }
                    _ => {
                        tracing::debug!("endpoint {ep} unreachable; trying another");
                        tried.push(ep);
                    }
                }
            }
        });
    }
}

async fn udp_loop(socket: Arc<UdpSocket>, shared: Shared) {
    let clients: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let existing = clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&peer)
            .cloned();
        let upstream = match existing {
            Some(u) => u,
            None => {
                let Some(ep) = PortState::pick(&shared, peer.ip(), &[]) else {
                    continue;
                };
                let Ok(up) = UdpSocket::bind("0.0.0.0:0").await else {
                    continue;
                };
                if up.connect(ep).await.is_err() {
                    continue;
                }
                let up = Arc::new(up);
                clients
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(peer, up.clone());
                let (socket, up2, clients) = (socket.clone(), up.clone(), clients.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65535];
                    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, up2.recv(&mut buf)).await {
                        let _ = socket.send_to(&buf[..n], peer).await;
                    }
                    clients
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&peer);
                });
                up
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(list: &[&str]) -> Vec<SocketAddrV4> {
        list.iter().map(|e| e.parse().unwrap()).collect()
    }

    /// (endpoints, client, affinity, time, expected endpoint, what).
    type Step<'a> = (
        &'a Vec<SocketAddrV4>,
        IpAddr,
        Option<Duration>,
        Instant,
        Option<&'static str>,
        &'static str,
    );

    #[test]
    fn picker_table() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let two = eps(&["10.0.0.1:80", "10.0.0.2:80"]);
        let one = eps(&["10.0.0.2:80"]);
        let none = vec![];
        let sticky = Some(Duration::from_secs(10));
        // (endpoints, client, affinity, time) → expected endpoint, in order
        // on one picker.
        let steps: Vec<Step> = vec![
            (
                &two,
                a,
                None,
                s(0),
                Some("10.0.0.1:80"),
                "round-robin starts at the first",
            ),
            (&two, a, None, s(0), Some("10.0.0.2:80"), "then the second"),
            (
                &two,
                b,
                None,
                s(0),
                Some("10.0.0.1:80"),
                "clients share the turn",
            ),
            (&none, a, None, s(0), None, "no endpoints: nothing"),
            (
                &two,
                a,
                sticky,
                s(1),
                Some("10.0.0.2:80"),
                "affinity records the pick in turn",
            ),
            (&two, a, sticky, s(5), Some("10.0.0.2:80"), "and keeps it"),
            (
                &two,
                b,
                sticky,
                s(5),
                Some("10.0.0.1:80"),
                "another client takes the next",
            ),
            (
                &two,
                a,
                sticky,
                s(14),
                Some("10.0.0.2:80"),
                "use refreshes the timeout",
            ),
            (
                &two,
                b,
                None,
                s(20),
                Some("10.0.0.2:80"),
                "without affinity: the turn",
            ),
            (
                &two,
                a,
                sticky,
                s(30),
                Some("10.0.0.1:80"),
                "expired: a new pick",
            ),
            (
                &one,
                b,
                sticky,
                s(31),
                Some("10.0.0.2:80"),
                "b's stickiness expired too",
            ),
            (
                &two,
                a,
                sticky,
                s(32),
                Some("10.0.0.1:80"),
                "a's endpoint kept (still present)",
            ),
        ];
        let mut picker = Picker::default();
        for (endpoints, client, affinity, now, want, what) in steps {
            let got = picker.pick(endpoints, client, affinity, now);
            assert_eq!(got, want.map(|w| w.parse().unwrap()), "{what}");
        }
    }

    #[test]
    fn a_removed_endpoint_loses_its_sticky_clients() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        let sticky = Some(Duration::from_secs(100));
        let mut picker = Picker::default();
        let first = picker.pick(&eps(&["10.0.0.1:80", "10.0.0.2:80"]), a, sticky, t0);
        assert_eq!(first, Some("10.0.0.1:80".parse().unwrap()));
        let after = picker.pick(&eps(&["10.0.0.2:80"]), a, sticky, t0);
        assert_eq!(after, Some("10.0.0.2:80".parse().unwrap()));
    }

    #[test]
    fn round_robin_spreads_evenly() {
        let mut picker = Picker::default();
        let all = eps(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        let client: IpAddr = "192.0.2.9".parse().unwrap();
        let mut counts: HashMap<SocketAddrV4, usize> = HashMap::new();
        for _ in 0..99 {
            *counts
                .entry(picker.pick(&all, client, None, Instant::now()).unwrap())
                .or_default() += 1;
        }
        assert!(counts.values().all(|c| *c == 33), "{counts:?}");
    }
}
