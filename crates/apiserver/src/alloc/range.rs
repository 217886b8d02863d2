//! The two ranges Services draw from, and how a free value is picked.
//!
//! [`IpRange`] is `--service-cluster-ip-range` (an IPv4 CIDR; the network
//! and broadcast addresses are never handed out) and [`PortRange`] is
//! `--service-node-port-range` (`30000-32767`). Both split into a small
//! lower band and the rest, as upstream does since KEP-3070 (IPs) and
//! KEP-3668 (node ports): dynamic allocation starts at a random point of the
//! upper band and falls back to the lower band only when the upper one is
//! full, so users who pick a static value from the lower band (and the
//! `kubernetes` Service, which takes the very first address) rarely collide
//! with a dynamically allocated one.

use std::fmt;
use std::net::Ipv4Addr;

/// Upstream's widest IPv4 service range is a /12 (20 host bits).
const MIN_IPV4_PREFIX: u8 = 12;

/// `--service-cluster-ip-range`: an IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: u32,
    prefix: u8,
}

impl IpRange {
    /// Parse `a.b.c.d/n`; host bits are masked off, as upstream's CIDR
    /// parsing does.
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let (addr, bits) = text
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR address: {text}"))?;
        if addr.contains(':') {
            return Err(format!(
                "{text}: only IPv4 service ranges are supported (IPv6 and dual-stack are not)"
            ));
        }
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("invalid CIDR address: {text}"))?;
        let prefix: u8 = bits
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("invalid CIDR address: {text}"))?;
        if prefix < MIN_IPV4_PREFIX {
            return Err(format!(
                "specified service cluster IP range {text} is too large; for 32-bit addresses, the mask must be >= {MIN_IPV4_PREFIX}"
            ));
        }
        if prefix > 30 {
            return Err(format!(
                "specified service cluster IP range {text} is too small: it has no address to allocate"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(IpRange {
            network: u32::from(addr) & mask,
            prefix,
        })
    }

    fn host_count(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// The first allocatable address (network + 1): the `kubernetes`
    /// Service's.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    fn last(&self) -> u32 {
        // The broadcast address is not allocatable.
        (u64::from(self.network) + self.host_count() - 2) as u32
    }

    /// How many addresses can be allocated.
    pub fn size(&self) -> u64 {
        self.host_count() - 2
    }

    /// Whether `ip` may be allocated (inside, and neither network nor
    /// broadcast address).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.network && ip <= self.last()
    }

    /// Upstream's `calculateRangeOffset`: min(max(16, size/16), 256) of the
    /// whole CIDR, or 0 for ranges of 16 addresses or fewer.
    fn lower_band(&self) -> u64 {
        banded(self.host_count(), 16, 16, 256)
    }

    /// A free address: `taken` says which are not, `random` chooses where
    /// to start looking. `None` when the range is full.
    pub fn pick(&self, taken: impl Fn(Ipv4Addr) -> bool, random: u64) -> Option<Ipv4Addr> {
        let first = u64::from(self.network) + 1;
        pick_offset(self.size(), self.lower_band(), random, |offset| {
            taken(Ipv4Addr::from((first + offset) as u32))
        })
        .map(|offset| Ipv4Addr::from((first + offset) as u32))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

impl Default for IpRange {
    fn default() -> Self {
        IpRange::parse("10.96.0.0/12").expect("the default range parses")
    }
}

impl std::str::FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IpRange::parse(s)
    }
}

/// `--service-node-port-range`: ports `base..=base+size-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    base: u16,
    size: u32,
}

impl PortRange {
    /// Parse `low-high`, `base+count` or a single port, as upstream's
    /// `ParsePortRange` does.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let bad = || format!("unable to parse port range: {text}");
        let port = |s: &str| s.trim().parse::<u16>().map_err(|_| bad());
        let (low, high) = if let Some((low, high)) = text.split_once('-') {
            (port(low)?, port(high)?)
        } else if let Some((base, count)) = text.split_once('+') {
            let base = port(base)?;
            let count = port(count)?;
            let high = base.checked_add(count).ok_or_else(bad)?;
            (base, high)
        } else {
            let single = port(text)?;
            (single, single)
        };
        if low == 0 || high < low {
            return Err(bad());
        }
        Ok(PortRange {
            base: low,
            size: u32::from(high - low) + 1,
        })
    }

    pub fn contains(&self, port: i64) -> bool {
        port >= i64::from(self.base) && port < i64::from(self.base) + i64::from(self.size)
    }

    /// Upstream's port `calculateRangeOffset`: min(max(16, size/32), 128),
    /// or 0 for ranges of 16 ports or fewer.
    fn lower_band(&self) -> u64 {
        banded(u64::from(self.size), 16, 32, 128)
    }

    /// A free port, chosen like [`IpRange::pick`].
    pub fn pick(&self, taken: impl Fn(u16) -> bool, random: u64) -> Option<u16> {
        let base = u64::from(self.base);
        pick_offset(u64::from(self.size), self.lower_band(), random, |offset| {
            taken((base + offset) as u16)
        })
        .map(|offset| (base + offset) as u16)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = u32::from(self.base) + self.size - 1;
        write!(f, "{}-{last}", self.base)
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange::parse("30000-32767").expect("the default range parses")
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortRange::parse(s)
    }
}

/// min(max(`min`, size/`step`), `max`), or 0 when `size <= min`.
fn banded(size: u64, min: u64, step: u64, max: u64) -> u64 {
    if size <= min {
        0
    } else {
        (size / step).clamp(min, max)
    }
}

/// The first free offset in `[lower, size)` starting at a random point and
/// wrapping, else the first free one in `[0, lower)` likewise.
fn pick_offset(size: u64, lower: u64, random: u64, taken: impl Fn(u64) -> bool) -> Option<u64> {
    let scan = |start: u64, len: u64| {
        (0..len)
            .map(|i| start + (random % len + i) % len)
            .find(|offset| !taken(*offset))
    };
    let upper = size.saturating_sub(lower);
    let found = if upper > 0 { scan(lower, upper) } else { None };
    found.or_else(|| if lower > 0 { scan(0, lower) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn cluster_ip_ranges_parse_like_upstream() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("10.96.0.0/12", Ok("10.96.0.0/12")),
            ("10.96.5.7/12", Ok("10.96.0.0/12")),
            ("192.168.0.0/24", Ok("192.168.0.0/24")),
            ("10.0.0.0/8", Err("too large")),
            ("10.0.0.0/31", Err("too small")),
            ("10.0.0.0", Err("invalid CIDR")),
            ("10.0.0.300/24", Err("invalid CIDR")),
            ("10.0.0.0/33", Err("invalid CIDR")),
            ("fd00::/108", Err("only IPv4")),
        ];
        for (text, want) in cases {
            match (IpRange::parse(text), want) {
                (Ok(range), Ok(shown)) => assert_eq!(range.to_string(), *shown, "{text}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn network_and_broadcast_addresses_are_not_allocatable() {
        let range = IpRange::parse("10.0.0.0/24").unwrap();
        assert_eq!(range.size(), 254);
        assert_eq!(range.first(), Ipv4Addr::new(10, 0, 0, 1));
        for (ip, inside) in [
            ("10.0.0.0", false),
            ("10.0.0.1", true),
            ("10.0.0.254", true),
            ("10.0.0.255", false),
            ("10.0.1.1", false),
        ] {
            assert_eq!(range.contains(ip.parse().unwrap()), inside, "{ip}");
        }
    }

    #[test]
    fn port_ranges_parse_every_upstream_form() {
        let cases: &[(&str, Option<&str>)] = &[
            ("30000-32767", Some("30000-32767")),
            ("30000+10", Some("30000-30010")),
            ("8080", Some("8080-8080")),
            ("32767-30000", None),
            ("0-10", None),
            ("a-b", None),
            ("30000-70000", None),
        ];
        for (text, want) in cases {
            let got = PortRange::parse(text).ok().map(|r| r.to_string());
            assert_eq!(got.as_deref(), *want, "{text}");
        }
        let range = PortRange::default();
        assert!(range.contains(30000) && range.contains(32767));
        assert!(!range.contains(29999) && !range.contains(32768) && !range.contains(-1));
    }

    #[test]
    fn lower_bands_follow_upstream_offsets() {
        assert_eq!(IpRange::default().lower_band(), 256);
        assert_eq!(IpRange::parse("10.0.0.0/24").unwrap().lower_band(), 16);
        assert_eq!(IpRange::parse("10.0.0.0/28").unwrap().lower_band(), 0);
        assert_eq!(PortRange::default().lower_band(), 86);
        assert_eq!(PortRange::parse("30000-30009").unwrap().lower_band(), 0);
    }

    #[test]
    fn dynamic_picks_prefer_the_upper_band_then_fall_back_to_the_lower() {
        let range = IpRange::parse("10.0.0.0/24").unwrap();
        // Any random start lands in the upper band (offset 16 and up).
        for random in [0, 1, 237, 238, u64::MAX] {
            let ip = range.pick(|_| false, random).unwrap();
            assert!(
                u32::from(ip) >= u32::from(Ipv4Addr::new(10, 0, 0, 17)),
                "{ip}"
            );
        }
        // With the upper band full, the lower band is used.
        let upper_full = |ip: Ipv4Addr| ip.octets()[3] >= 17;
        let ip = range.pick(upper_full, 5).unwrap();
        assert!((1..17).contains(&ip.octets()[3]), "{ip}");
        assert_eq!(range.pick(|_| true, 5), None, "a full range yields nothing");
    }

    #[test]
    fn every_free_port_is_eventually_picked_and_never_twice() {
        let range = PortRange::parse("30000-30099").unwrap();
        let mut taken = HashSet::new();
        for random in 0..100u64 {
            let port = range
                .pick(|p| taken.contains(&p), random.wrapping_mul(7919))
                .unwrap();
            assert!(range.contains(i64::from(port)));
            assert!(taken.insert(port), "{port} picked twice");
        }
        assert_eq!(range.pick(|p| taken.contains(&p), 3), None);
    }
}
