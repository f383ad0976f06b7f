//! Network addresses a user can aim Herald at: which ones are internal, the networks an operator
//! opens (`HERALD_WEBHOOK_ALLOWED_NETWORKS`), and the resolver port the check goes through.
//!
//! A destination is checked twice: when a user sets it (a literal address, or a name as it
//! resolves then) and when a connection is made (every address the name resolves to at that
//! moment), so a name that points inward later is refused too.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
    sync::Arc,
};

use async_trait::async_trait;

/// An IP network in CIDR form: `10.0.0.0/8`, `fd00::/8`, or a lone address (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` lies in this network (an IPv6 address that embeds an IPv4 one counts as that
    /// IPv4 address: see [`canonical`]).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.holds(ip) || self.holds(canonical(ip))
    }

    fn holds(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| format!("{s:?} is not a network like 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A comma-separated list of networks; empty means none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(pub Vec<Network>);

impl Networks {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

impl FromStr for Networks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::parse).collect::<Result<_, _>>().map(Self)
    }
}

impl fmt::Display for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// An IPv6 address that embeds an IPv4 one as that IPv4 address: IPv4-mapped
/// (`::ffff:127.0.0.1`), IPv4-translated (SIIT, `::ffff:0:127.0.0.1`), IPv4-compatible
/// (`::127.0.0.1`, but not `::` or `::1`) and NAT64 through the well-known prefix
/// (`64:ff9b::127.0.0.1`). Any other address as it is.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let [a, b, c, d, e, f, g, h] = v6.segments();
    let v4 = || IpAddr::V4(Ipv4Addr::from((u32::from(g) << 16) | u32::from(h)));
    match [a, b, c, d, e, f] {
        [0, 0, 0, 0, 0, 0xffff] | [0, 0, 0, 0, 0xffff, 0] | [0x64, 0xff9b, 0, 0, 0, 0] => v4(),
        [0, 0, 0, 0, 0, 0] if !v6.is_unspecified() && !v6.is_loopback() => v4(),
        _ => ip,
    }
}

/// Why an address is not one to connect to on a user's behalf, or `None` for a public one:
/// loopback, private, shared (CGNAT), link-local, unique-local, multicast, broadcast,
/// unspecified, documentation and other reserved ranges. An IPv6 address that embeds an IPv4 one
/// is that IPv4 address (see [`canonical`]); 6to4, Teredo and local-use NAT64 are refused whole.
pub fn internal_class(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        () if ip.is_unspecified() || a == 0 => "unspecified",
        () if ip.is_loopback() => "loopback",
        () if ip.is_private() => "private",
        () if a == 100 && (64..128).contains(&b) => "shared (carrier-grade NAT)",
        () if ip.is_link_local() => "link-local",
        () if ip.is_multicast() => "multicast",
        () if ip.is_broadcast() => "broadcast",
        () if ip.is_documentation() || (a == 192 && b == 0 && c == 0) || (a == 198 && (b == 18 || b == 19)) => {
            "reserved"
        }
        () if a >= 240 => "reserved",
        () => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let [first, second, third, ..] = ip.segments();
    Some(match () {
        () if ip.is_unspecified() => "unspecified",
        () if ip.is_loopback() => "loopback",
        () if ip.is_multicast() => "multicast",
        () if first & 0xfe00 == 0xfc00 => "unique-local",
        () if first & 0xffc0 == 0xfe80 => "link-local",
        () if first & 0xffc0 == 0xfec0 => "site-local",
        () if first == 0x2001 && second == 0x0db8 => "reserved",
        // They embed IPv4 addresses in ways that cannot be read off the address alone: 6to4
        // relays, Teredo (the client's address obfuscated) and local-use NAT64, whose IPv4 bits
        // sit where the network's prefix length (/48 to /96, unknown here) puts them. The
        // well-known NAT64 prefix is read as its IPv4 address; the rest of 64:ff9b::/32 is
        // unassigned.
        () if first == 0x2002 => "6to4",
        () if first == 0x2001 && second == 0 => "Teredo",
        () if first == 0x0064 && second == 0xff9b && third == 1 => "local-use NAT64",
        () if first == 0x0064 && second == 0xff9b => "reserved",
        // Discard-only.
        () if first == 0x0100 && ip.segments()[1..4] == [0, 0, 0] => "reserved",
        () => return None,
    })
}

/// Resolves host names: the port through which every outbound destination check looks names up,
/// so tests can make a name resolve differently later.
#[async_trait]
pub trait Resolve: Send + Sync + fmt::Debug + 'static {
    /// Every address `host` resolves to now.
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>>;
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{ip} is a {class} address, which Herald does not connect to for users")]
    Internal { ip: IpAddr, class: &'static str },
    #[error("the host name does not resolve")]
    Unresolved,
}

/// The outbound destinations users may aim Herald at: public addresses, plus the networks an
/// operator allows.
#[derive(Debug, Clone)]
pub struct Destinations {
    pub allowed: Networks,
    pub resolver: Arc<dyn Resolve>,
}

impl Destinations {
    pub fn new(allowed: Networks, resolver: Arc<dyn Resolve>) -> Self {
        Self { allowed, resolver }
    }

    /// Accepts a public address, or one in an allowed network.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        match internal_class(ip) {
            Some(class) if !self.allowed.contains(ip) => Err(Refusal::Internal { ip, class }),
            _ => Ok(()),
        }
    }

    /// Resolves `host` (a name, or a literal address with or without IPv6 brackets) and checks
    /// every address it names: one refused address refuses the host.
    pub async fn check_host(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.resolver.resolve(bare, port).await.map_err(|_| Refusal::Unresolved)?,
        };
        if addrs.is_empty() {
            return Err(Refusal::Unresolved);
        }
        for ip in &addrs {
            self.check_ip(*ip)?;
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn networks_parse_and_contain() {
        let n: Network = "10.0.0.0/8".parse().expect("net");
        assert!(n.contains(ip("10.1.2.3")) && !n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped");
        let one: Network = "127.0.0.1".parse().expect("net");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: Network = "0.0.0.0/0".parse().expect("net");
        assert!(all.contains(ip("8.8.8.8")));
        let v6: Network = "fd00::/8".parse().expect("net");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("nonsense".parse::<Network>().is_err());
        let list: Networks = " 10.0.0.0/8 , fd00::/8 ".parse().expect("list");
        assert_eq!(list.to_string(), "10.0.0.0/8,fd00::/8");
        assert_eq!("".parse::<Networks>(), Ok(Networks::default()));
    }

    #[test]
    fn internal_addresses_are_classified() {
        for (addr, class) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
        ] {
            assert_eq!(internal_class(ip(addr)), Some(class), "{addr}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert_eq!(internal_class(ip(public)), None, "{public}");
        }
    }

    /// Every IPv6 form that embeds an IPv4 address is that address: a public one is public, an
    /// internal one is refused as what it is.
    #[test]
    fn ipv6_forms_that_embed_an_ipv4_address_are_classified_by_it() {
        // Each form written as a prefix to the dotted IPv4 address.
        let embeddings = [
            ("IPv4-mapped", "::ffff:"),
            ("IPv4-translated (SIIT)", "::ffff:0:"),
            ("IPv4-compatible", "::"),
            ("NAT64 well-known prefix", "64:ff9b::"),
        ];
        let internal = [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("192.168.0.9", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("0.0.0.2", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("240.0.0.1", "reserved"),
        ];
        for (form, prefix) in embeddings {
            for (v4, class) in internal {
                let v6 = format!("{prefix}{v4}");
                assert_eq!(internal_class(ip(&v6)), Some(class), "{form} {v6}");
            }
            for v4 in ["93.184.216.34", "8.8.8.8"] {
                let v6 = format!("{prefix}{v4}");
                assert_eq!(internal_class(ip(&v6)), None, "{form} {v6}");
                assert!(Destinations::new(Networks::default(), Arc::new(Fixed(vec![]))).check_ip(ip(&v6)).is_ok());
            }
        }
        // An allowed network allows its addresses in every form.
        let allowed: Networks = "10.0.0.0/8".parse().expect("nets");
        for v6 in ["::ffff:10.1.2.3", "::ffff:0:10.1.2.3", "::10.1.2.3", "64:ff9b::10.1.2.3"] {
            assert!(allowed.contains(ip(v6)), "{v6}");
        }
        // And an IPv6 network keeps its own addresses, embedded ones included.
        let nat64: Networks = "64:ff9b::/96,64:ff9b:1::/48".parse().expect("nets");
        assert!(nat64.contains(ip("64:ff9b::10.1.2.3")) && nat64.contains(ip("64:ff9b:1::1")));
        assert!(!nat64.contains(ip("10.1.2.3")));
    }

    /// Forms whose IPv4 address cannot be read off the address alone are refused whatever they
    /// carry; `::` and `::1` stay unspecified and loopback.
    #[test]
    fn six_to_four_teredo_and_local_use_nat64_are_refused_whole() {
        for (addr, class) in [
            ("2002:5db8:d822::1", "6to4"),
            ("2002:7f00:1::1", "6to4"),
            ("2001:0:4136:e378:8000:63bf:a247:d8dd", "Teredo"),
            ("2001::1", "Teredo"),
            ("64:ff9b:1::5db8:d822", "local-use NAT64"),
            ("64:ff9b:1:5db8:d8:2200::", "local-use NAT64"),
            ("64:ff9b:1:7f00:0:100::", "local-use NAT64"),
            ("64:ff9b:0:0:1::5db8:d822", "reserved"),
            ("2001:db8::1", "reserved"),
            ("100::1", "reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
        ] {
            assert_eq!(internal_class(ip(addr)), Some(class), "{addr}");
        }
        // Neighbours of these ranges are public.
        for public in ["2001:4860:4860::8888", "2003::1", "64:ff9a::1"] {
            assert_eq!(internal_class(ip(public)), None, "{public}");
        }
    }

    #[derive(Debug)]
    struct Fixed(Vec<IpAddr>);

    #[async_trait]
    impl Resolve for Fixed {
        async fn resolve(&self, _host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn hosts_are_refused_when_any_address_is_internal_unless_allowed() {
        let mixed = Destinations::new(Networks::default(), Arc::new(Fixed(vec![ip("93.184.216.34"), ip("10.0.0.1")])));
        assert!(matches!(mixed.check_host("hook.example", 80).await, Err(Refusal::Internal { .. })));
        assert!(matches!(mixed.check_host("[::1]", 80).await, Err(Refusal::Internal { class: "loopback", .. })));
        assert_eq!(mixed.check_host("93.184.216.34", 80).await, Ok(vec![ip("93.184.216.34")]));
        let allowed = Destinations::new("10.0.0.0/8".parse().expect("nets"), mixed.resolver.clone());
        assert!(allowed.check_host("hook.example", 80).await.is_ok());
        let none = Destinations::new(Networks::default(), Arc::new(Fixed(vec![])));
        assert_eq!(none.check_host("nowhere.example", 80).await, Err(Refusal::Unresolved));
    }
}
