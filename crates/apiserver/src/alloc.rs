//! Service cluster IPs and node ports: allocated, checked and released in
//! the same storage transaction as the Service itself.
//!
//! Upstream keeps allocations in objects beside the Services (one
//! `IPAddress` per cluster IP since 1.33's default allocator; a
//! `RangeAllocation` bitmap for node ports) and repairs drift with
//! background controllers. Here every allocated value is a *claim key* in
//! storage — `/registry/tugboat.io/serviceips/<ip>` and
//! `/registry/tugboat.io/servicenodeports/<port>` — whose value names the
//! owning Service (namespace, name, uid), and each claim is created or
//! deleted by [`storage::Storage::transact`] together with the Service write
//! that takes or gives it up:
//!
//! - a create is `[create service, create claim...]`: if another writer took
//!   a value first, its claim key exists and the whole transaction fails
//!   with nothing written; a statically requested value then answers 422
//!   (`provided IP is already allocated`), a dynamically picked one is
//!   picked again;
//! - an update adds the claims the new spec needs and deletes those it no
//!   longer holds, guarded by the Service's revision (a type change
//!   NodePort→ClusterIP releases node ports, ClusterIP→NodePort takes them);
//! - the final delete of a Service deletes its claims with it.
//!
//! So the allocation state *is* what is stored: no in-memory bitmap to lose
//! on restart or to disagree between API servers sharing one store, no
//! duplicates under concurrency (storage decides who creates a key first),
//! and nothing left allocated by a failed or dry-run write. A dynamic cluster
//! IP is first looked for by probing a few random addresses; when they are
//! taken, and for node ports (a small range), the claim keys of the kind are
//! listed and the search starts at a random point (see [`range`]). [`ServiceAllocator::repair`] runs at start to adopt
//! Services stored before claims existed and to drop claims whose owner is
//! gone. Dry runs check static values and pick free dynamic ones without
//! claiming them (upstream's dry-run allocator does not claim either).

pub mod range;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage::{DynStorage, KeyValue, ListOptions, Revision, TxnOp, TxnResult};

use crate::error::{ApiError, Cause};
pub use range::{IpRange, PortRange};
use spec::{Holdings, PortSlot};

/// Where claims of cluster IPs live; the watch cache ignores this prefix.
pub const IP_CLAIMS: &str = "/registry/tugboat.io/serviceips/";
/// Where claims of node ports live.
pub const PORT_CLAIMS: &str = "/registry/tugboat.io/servicenodeports/";

/// How often a write re-picks after losing dynamic values to concurrent
/// writers (each loss means another Service got the value, so this only
/// runs out when the range is nearly full and contended).
const MAX_ATTEMPTS: usize = 64;

fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_CLAIMS}{ip}")
}

fn port_key(port: u16) -> String {
    format!("{PORT_CLAIMS}{port}")
}

/// The value of a claim key: who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    namespace: String,
    name: String,
    uid: String,
}

impl Claim {
    fn of(service: &Value) -> Claim {
        let meta = |field| {
            api::meta::meta_str(service, field)
                .unwrap_or("")
                .to_string()
        };
        Claim {
            namespace: meta("namespace"),
            name: meta("name"),
            uid: meta("uid"),
        }
    }

    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(raw: &[u8]) -> Option<Claim> {
        serde_json::from_slice(raw).ok()
    }
}

/// Why a Service write failed: storage (the registry maps conflicts and
/// missing keys as for any kind) or a ready API error (422, 500).
#[derive(Debug)]
pub enum WriteError {
    Storage(storage::Error),
    Api(ApiError),
}

impl From<storage::Error> for WriteError {
    fn from(e: storage::Error) -> Self {
        WriteError::Storage(e)
    }
}

impl From<ApiError> for WriteError {
    fn from(e: ApiError) -> Self {
        WriteError::Api(e)
    }
}

/// A claim a write needs, and the 422 cause if a static one is taken.
#[derive(Debug, Clone)]
struct NewClaim {
    key: String,
    /// `Some` for a value the user asked for (its "already allocated"
    /// error); `None` for one picked here (lost races are re-picked).
    taken: Option<Cause>,
}

fn invalid(name: &str, causes: Vec<Cause>) -> ApiError {
    let services = api::resources::find("", "v1", "services").expect("in table");
    ApiError::invalid("Service", crate::registry::subject(services, name), causes)
}

fn ip_cause(ip: &str, detail: &str) -> Cause {
    Cause::invalid_raw(
        "spec.clusterIPs",
        &format!("[]string{{\"{ip}\"}}"),
        &format!("failed to allocate IP {ip}: {detail}"),
    )
}

/// The two ranges a cluster hands Services values from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceRanges {
    pub cluster_ip: IpRange,
    pub node_port: PortRange,
}

/// Allocates Service values in storage; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct ServiceAllocator {
    pub ranges: ServiceRanges,
}

impl ServiceAllocator {
    pub fn new(ranges: ServiceRanges) -> Self {
        ServiceAllocator { ranges }
    }

    async fn claimed_ips(&self, storage: &DynStorage) -> Result<HashSet<Ipv4Addr>, WriteError> {
        let listed = storage.list(IP_CLAIMS, ListOptions::default()).await?;
        Ok(listed
            .items
            .iter()
            .filter_map(|kv| kv.key[IP_CLAIMS.len()..].parse().ok())
            .collect())
    }

    async fn claimed_ports(&self, storage: &DynStorage) -> Result<HashSet<u16>, WriteError> {
        let listed = storage.list(PORT_CLAIMS, ListOptions::default()).await?;
        Ok(listed
            .items
            .iter()
            .filter_map(|kv| kv.key[PORT_CLAIMS.len()..].parse().ok())
            .collect())
    }

    /// A few random addresses of the upper band looked up one by one: in a
    /// range of a million addresses one is almost always free, and this
    /// keeps a create from listing every claim. `None` sends the caller to
    /// the exhaustive search.
    async fn probe_ip(&self, storage: &DynStorage) -> Result<Option<Ipv4Addr>, WriteError> {
        const PROBES: usize = 4;
        for _ in 0..PROBES {
            let Some(ip) = self.ranges.cluster_ip.pick(|_| false, rand::random()) else {
                return Ok(None);
            };
            if storage.get(&ip_key(ip)).await?.is_none() {
                return Ok(Some(ip));
            }
        }
        Ok(None)
    }

    /// Fill the dynamic values of `obj` and list the claims it needs beyond
    /// `held` (what the stored object already holds). Static values outside
    /// the ranges fail here with upstream's 422.
    async fn assign(
        &self,
        storage: &DynStorage,
        obj: &mut Value,
        held: &Holdings,
    ) -> Result<Vec<NewClaim>, WriteError> {
        let name = api::meta::name(obj).unwrap_or("").to_string();
        let wants = spec::wants(obj);
        let mut claims = Vec::new();
        match wants.ip {
            None => {}
            Some(Some(ip)) => {
                let v4 = match ip {
                    IpAddr::V4(v4)
                        if held.ip == Some(v4) || self.ranges.cluster_ip.contains(v4) =>
                    {
                        v4
                    }
                    _ => {
                        // The wording tools parse to learn the service range
                        // (".*valid IPs is (.*)$").
                        let detail = format!(
                            "provided IP is not in the valid range. The range of valid IPs is {}",
                            self.ranges.cluster_ip
                        );
                        return Err(invalid(&name, vec![ip_cause(&ip.to_string(), &detail)]).into());
                    }
                };
                spec::set_cluster_ip(obj, v4);
                if held.ip != Some(v4) {
                    claims.push(NewClaim {
                        key: ip_key(v4),
                        taken: Some(ip_cause(
                            &v4.to_string(),
                            "provided IP is already allocated",
                        )),
                    });
                }
            }
            Some(None) => {
                let ip = match self.probe_ip(storage).await? {
                    Some(ip) => ip,
                    None => {
                        let taken = self.claimed_ips(storage).await?;
                        self.ranges
                            .cluster_ip
                            .pick(|ip| taken.contains(&ip), rand::random())
                            .ok_or_else(|| {
                                ApiError::internal("failed to allocate a serviceIP: range is full")
                            })?
                    }
                };
                spec::set_cluster_ip(obj, ip);
                claims.push(NewClaim {
                    key: ip_key(ip),
                    taken: None,
                });
            }
        }
        let mut taken: Option<HashSet<u16>> = None;
        let mut mine: HashSet<u16> = HashSet::new();
        for (slot, want) in wants.ports {
            match want {
                Some(port) => {
                    let Ok(port16) = u16::try_from(port) else {
                        return Err(self.port_not_in_range(&name, slot, port).into());
                    };
                    if !held.ports.contains(&port16) && !self.ranges.node_port.contains(port) {
                        return Err(self.port_not_in_range(&name, slot, port).into());
                    }
                    // One claim per port per Service (TCP and UDP may share).
                    if mine.insert(port16) && !held.ports.contains(&port16) {
                        claims.push(NewClaim {
                            key: port_key(port16),
                            taken: Some(Cause::invalid_raw(
                                &slot.field(),
                                &port.to_string(),
                                "provided port is already allocated",
                            )),
                        });
                    }
                }
                None => {
                    if taken.is_none() {
                        taken = Some(self.claimed_ports(storage).await?);
                    }
                    let taken = taken.as_ref().expect("listed above");
                    let port = self
                        .ranges
                        .node_port
                        .pick(|p| taken.contains(&p) || mine.contains(&p), rand::random())
                        .ok_or_else(|| {
                            ApiError::internal("failed to allocate a nodePort: range is full")
                        })?;
                    mine.insert(port);
                    spec::set_node_port(obj, slot, port);
                    claims.push(NewClaim {
                        key: port_key(port),
                        taken: None,
                    });
                }
            }
        }
        Ok(claims)
    }

    fn port_not_in_range(&self, name: &str, slot: PortSlot, port: i64) -> ApiError {
        invalid(
            name,
            vec![Cause::invalid_raw(
                &slot.field(),
                &port.to_string(),
                &format!(
                    "provided port is not in the valid range. The range of valid ports is {}",
                    self.ranges.node_port
                ),
            )],
        )
    }

    /// A dry run claims nothing, but a static value someone holds is still
    /// refused.
    async fn check_free(
        &self,
        storage: &DynStorage,
        name: &str,
        claims: &[NewClaim],
    ) -> Result<(), WriteError> {
        for claim in claims {
            if let Some(cause) = &claim.taken {
                if storage.get(&claim.key).await?.is_some() {
                    return Err(invalid(name, vec![cause.clone()]).into());
                }
            }
        }
        Ok(())
    }

    /// The claim keys (with revisions) that `owner` holds among `values`;
    /// claims held by another Service are left alone.
    async fn owned(
        &self,
        storage: &DynStorage,
        owner: &Value,
        values: &Holdings,
    ) -> Result<Vec<(String, Revision)>, storage::Error> {
        let uid = api::meta::meta_str(owner, "uid").unwrap_or("");
        let keys = values
            .ip
            .map(ip_key)
            .into_iter()
            .chain(values.ports.iter().map(|p| port_key(*p)));
        let mut owned = Vec::new();
        for key in keys {
            if let Some(kv) = storage.get(&key).await? {
                if Claim::decode(&kv.value).is_some_and(|c| c.uid == uid) {
                    owned.push((key, kv.mod_revision));
                }
            }
        }
        Ok(owned)
    }

    /// Create a Service with its allocations. `Ok(None)` for a dry run
    /// (`obj` then shows plausible values).
    pub async fn create(
        &self,
        storage: &DynStorage,
        key: &str,
        obj: &mut Value,
        dry_run: bool,
    ) -> Result<Option<KeyValue>, WriteError> {
        spec::normalize(obj);
        let name = api::meta::name(obj).unwrap_or("").to_string();
        let claim = Claim::of(obj).encode();
        let pristine = obj.clone();
        for _ in 0..MAX_ATTEMPTS {
            *obj = pristine.clone();
            let claims = self.assign(storage, obj, &Holdings::default()).await?;
            if dry_run {
                self.check_free(storage, &name, &claims).await?;
                return Ok(None);
            }
            // The Service first: an existing name answers 409 before any
            // allocation question.
            let mut ops = vec![TxnOp::Create {
                key: key.to_string(),
                value: crate::registry::encode_for_storage(obj)?,
            }];
            ops.extend(claims.iter().map(|c| TxnOp::Create {
                key: c.key.clone(),
                value: claim.clone(),
            }));
            match storage.transact(ops).await {
                Ok(results) => return Ok(Some(first_put(results)?)),
                Err(storage::Error::AlreadyExists(taken)) if taken != key => {
                    match claims.iter().find(|c| c.key == taken) {
                        Some(NewClaim {
                            taken: Some(cause), ..
                        }) => return Err(invalid(&name, vec![cause.clone()]).into()),
                        _ => continue,
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::internal("failed to allocate Service values: too much contention").into())
    }

    /// Replace a stored Service (`current`, at revision `expected`) by
    /// `new`, taking and releasing claims as its spec changes. Conflicts on
    /// the Service key come back as storage errors for the caller's retry.
    pub async fn update(
        &self,
        storage: &DynStorage,
        key: &str,
        current: &Value,
        new: &mut Value,
        expected: Revision,
        dry_run: bool,
    ) -> Result<Option<KeyValue>, WriteError> {
        spec::normalize(new);
        let name = api::meta::name(new).unwrap_or("").to_string();
        let held = spec::holdings(current);
        let claim = Claim::of(current).encode();
        let pristine = new.clone();
        for _ in 0..MAX_ATTEMPTS {
            *new = pristine.clone();
            let claims = self.assign(storage, new, &held).await?;
            if dry_run {
                self.check_free(storage, &name, &claims).await?;
                return Ok(None);
            }
            let kept = spec::holdings(new);
            let gone = Holdings {
                ip: held.ip.filter(|ip| kept.ip != Some(*ip)),
                ports: held.ports.difference(&kept.ports).copied().collect(),
            };
            let released = self.owned(storage, current, &gone).await?;
            let mut ops = vec![TxnOp::Update {
                key: key.to_string(),
                value: crate::registry::encode_for_storage(new)?,
                expected: Some(expected),
            }];
            ops.extend(claims.iter().map(|c| TxnOp::Create {
                key: c.key.clone(),
                value: claim.clone(),
            }));
            ops.extend(released.into_iter().map(|(key, rev)| TxnOp::Delete {
                key,
                expected: Some(rev),
            }));
            match storage.transact(ops).await {
                Ok(results) => return Ok(Some(first_put(results)?)),
                Err(storage::Error::AlreadyExists(taken)) => {
                    match claims.iter().find(|c| c.key == taken) {
                        Some(NewClaim {
                            taken: Some(cause), ..
                        }) => return Err(invalid(&name, vec![cause.clone()]).into()),
                        _ => continue,
                    }
                }
                // A claim being released changed under us: look again.
                Err(storage::Error::Conflict { key: k, .. } | storage::Error::NotFound(k))
                    if k != key =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::internal("failed to allocate Service values: too much contention").into())
    }

    /// Delete a stored Service (`current`, at revision `expected`) and
    /// release everything it holds.
    pub async fn delete(
        &self,
        storage: &DynStorage,
        key: &str,
        current: &Value,
        expected: Revision,
    ) -> Result<(KeyValue, Revision), storage::Error> {
        let held = spec::holdings(current);
        for _ in 0..MAX_ATTEMPTS {
            let released = self.owned(storage, current, &held).await?;
            let mut ops = vec![TxnOp::Delete {
                key: key.to_string(),
                expected: Some(expected),
            }];
            ops.extend(released.into_iter().map(|(key, rev)| TxnOp::Delete {
                key,
                expected: Some(rev),
            }));
            match storage.transact(ops).await {
                Ok(mut results) if !results.is_empty() => match results.swap_remove(0) {
                    TxnResult::Deleted(kv, rev) => return Ok((kv, rev)),
                    TxnResult::Put(_) => {
                        return Err(storage::Error::Io(
                            "internal: a delete answered a put".into(),
                        ))
                    }
                },
                Ok(_) => return Err(storage::Error::Io("internal: no answer".into())),
                Err(storage::Error::Conflict { key: k, .. } | storage::Error::NotFound(k))
                    if k != key =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        Err(storage::Error::Io(
            "could not release the Service's allocations: they keep changing".into(),
        ))
    }

    /// Bring claims in line with the stored Services: claim what Services
    /// hold without a claim (data from before claims existed) and delete
    /// claims whose owner is gone or no longer holds the value. Both lists
    /// are read at one revision and every write is guarded, so this is safe
    /// while other API servers serve.
    pub async fn repair(&self, storage: &DynStorage) -> Result<(), storage::Error> {
        let revision = storage.current_revision();
        let at = |prefix: &'static str| {
            storage.list(
                prefix,
                ListOptions {
                    revision: Some(revision),
                    ..ListOptions::default()
                },
            )
        };
        let services = at("/registry/core/services/").await?;
        let mut claims: HashMap<String, KeyValue> = HashMap::new();
        for prefix in [IP_CLAIMS, PORT_CLAIMS] {
            for kv in at(prefix).await?.items {
                claims.insert(kv.key.clone(), kv);
            }
        }
        // Every Service holding a value (two only in data from before
        // claims, when nothing prevented duplicates).
        let mut wanted: HashMap<String, Vec<Claim>> = HashMap::new();
        for kv in &services.items {
            let Ok(service) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            let held = spec::holdings(&service);
            let keys = held
                .ip
                .filter(|ip| self.ranges.cluster_ip.contains(*ip))
                .map(ip_key)
                .into_iter()
                .chain(
                    held.ports
                        .iter()
                        .filter(|p| self.ranges.node_port.contains(i64::from(**p)))
                        .map(|p| port_key(*p)),
                );
            for key in keys {
                wanted.entry(key).or_default().push(Claim::of(&service));
            }
        }
        for (key, kv) in &claims {
            let stale = match (Claim::decode(&kv.value), wanted.get(key)) {
                (Some(have), Some(holders)) => !holders.iter().any(|h| h.uid == have.uid),
                _ => true,
            };
            if stale {
                tracing::info!(claim = %key, "releasing a Service allocation nobody holds");
                if let Err(error) = storage.delete(key, Some(kv.mod_revision)).await {
                    tracing::warn!(%error, claim = %key, "could not release an allocation");
                }
            }
        }
        for (key, holders) in wanted {
            let held_already = claims
                .get(&key)
                .and_then(|kv| Claim::decode(&kv.value))
                .is_some_and(|have| holders.iter().any(|h| h.uid == have.uid));
            if held_already {
                continue;
            }
            let claim = &holders[0];
            tracing::info!(claim = %key, service = %claim.name, "recording an allocation");
            match storage.create(&key, claim.encode()).await {
                Ok(_) | Err(storage::Error::AlreadyExists(_)) => {}
                Err(error) => tracing::warn!(%error, claim = %key, "could not record"),
            }
        }
        Ok(())
    }
}

fn first_put(results: Vec<TxnResult>) -> Result<KeyValue, WriteError> {
    match results.into_iter().next() {
        Some(TxnResult::Put(kv)) => Ok(kv),
        _ => Err(ApiError::internal("internal: a Service write got no answer").into()),
    }
}
