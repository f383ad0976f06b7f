//! Connections per client address (`HERALD_HTTP_MAX_CONNECTIONS_PER_ADDRESS`), so one address
//! cannot take every connection slot of the server.
//!
//! - A client connecting directly is counted from accept to close, by its TCP peer address (an
//!   IPv6 address by its /64, as the password-check limits count it). Over the cap, the
//!   connection is closed at once, before a byte is read.
//! - A trusted reverse proxy (`HERALD_TRUSTED_PROXIES`) is not counted itself: its connections
//!   carry many clients. Each of its requests is counted instead, by the client its
//!   `X-Forwarded-For` names, from the request head until the answer's last byte; over the cap
//!   the request gets `429 too_many_requests` (the proxy's connection stays open for others).
//! - A connection upgraded to a real-time session gives its slot back (sessions have their
//!   per-user cap).
//!
//! An address is in the map only while it holds a slot: the map never outgrows the connections.

use std::net::IpAddr;

use herald_core::{
    slots::{KeyedSlots, Slot},
    throttle::client_key,
};

/// The connections (or proxied requests) each client address holds.
#[derive(Debug, Clone)]
pub struct PerAddress(KeyedSlots<IpAddr>);

/// One slot of one address, given back when dropped.
pub type AddressSlot = Slot<IpAddr>;

impl PerAddress {
    /// At most `cap` slots per address (zero is taken as one).
    pub fn new(cap: usize) -> Self {
        Self(KeyedSlots::new(cap.max(1)))
    }

    /// A slot for `address`, or `None` when it holds as many as allowed.
    pub fn take(&self, address: IpAddr) -> Option<AddressSlot> {
        self.0.try_take(client_key(address))
    }

    /// Addresses holding a slot now.
    pub fn addresses(&self) -> usize {
        self.0.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn each_address_gets_its_cap_and_leaves_the_map_when_done() {
        let slots = PerAddress::new(2);
        let a = [slots.take(ip("192.0.2.1")).expect("1st"), slots.take(ip("192.0.2.1")).expect("2nd")];
        assert!(slots.take(ip("192.0.2.1")).is_none(), "over the cap");
        assert!(slots.take(ip("::ffff:192.0.2.1")).is_none(), "the same address, mapped");
        let other = slots.take(ip("192.0.2.2")).expect("another address");
        let v6 = [slots.take(ip("2001:db8::1")).expect("1st"), slots.take(ip("2001:db8::2:1")).expect("2nd")];
        assert!(slots.take(ip("2001:db8::ffff")).is_none(), "one /64 is one client");
        assert!(slots.take(ip("2001:db8:0:1::1")).is_some(), "another /64");
        assert_eq!(slots.addresses(), 3);
        drop(a);
        assert!(slots.take(ip("192.0.2.1")).is_some(), "a slot given back is free again");
        drop((other, v6));
        assert_eq!(slots.addresses(), 0, "no address is remembered without a slot");
    }
}
