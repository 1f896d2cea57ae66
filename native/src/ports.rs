//! The netstack lets two sockets bind the same endpoint and then routes packets to whichever it
//! finds first; the device keeps its own table so a second bind fails with `ADDRESS_IN_USE`.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use crate::error::{Code, Failure, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The operation that claims a named endpoint (`claim`) or a free one (`claim_ephemeral`).
    const fn claiming(self, ephemeral: bool) -> &'static str {
        match (self, ephemeral) {
            (Protocol::Tcp, false) => "TCP listen",
            (Protocol::Tcp, true) => "TCP connect",
            (Protocol::Udp, _) => "UDP bind",
        }
    }
}

#[derive(Default)]
pub struct PortTable {
    bound: Mutex<HashSet<(Protocol, SocketAddr)>>,
}

/// Holds an endpoint until dropped.
pub struct PortLease {
    table: Arc<PortTable>,
    key: (Protocol, SocketAddr),
}

impl PortTable {
    pub fn claim(self: &Arc<Self>, protocol: Protocol, addr: SocketAddr) -> Result<PortLease> {
        let mut bound = self.bound.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !bound.insert((protocol, addr)) {
            return Err(Failure::new(
                Code::AddressInUse,
                protocol.claiming(false),
                format!("{addr} is already bound on this device"),
            ));
        }
        Ok(PortLease { table: Arc::clone(self), key: (protocol, addr) })
    }

    /// Claims a free port of the dynamic range on `ip`, starting the search at a random port.
    /// The crate picks a dial's local port at random without checking whether it is in use, so
    /// two of a thousand concurrent dials to one peer port would share an endpoint (the birthday
    /// bound: about 30 such pairs), and one of them would never connect.
    pub fn claim_ephemeral(self: &Arc<Self>, protocol: Protocol, ip: IpAddr) -> Result<PortLease> {
        const DYNAMIC: RangeInclusive<u16> = 49152..=u16::MAX;
        let size = u64::from(DYNAMIC.end() - DYNAMIC.start()) + 1;
        let start = std::collections::hash_map::RandomState::new().hash_one(ip) % size;
        for offset in 0..size {
            let port = DYNAMIC.start() + ((start + offset) % size) as u16;
            if let Ok(lease) = self.claim(protocol, SocketAddr::new(ip, port)) {
                return Ok(lease);
            }
        }
        Err(Failure::new(Code::AddressInUse, protocol.claiming(true), format!("no free port in 49152..65535 on {ip}")))
    }

    pub fn clear(&self) {
        self.bound.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

impl PortLease {
    pub fn addr(&self) -> SocketAddr {
        self.key.1
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.table.bound.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_claim_fails_until_released() {
        let table = Arc::new(PortTable::default());
        let addr: SocketAddr = "100.64.0.2:80".parse().unwrap();
        let lease = table.claim(Protocol::Tcp, addr).unwrap();
        assert_eq!(table.claim(Protocol::Tcp, addr).err().unwrap().code, Code::AddressInUse);
        let _udp = table.claim(Protocol::Udp, addr).unwrap();
        drop(lease);
        table.claim(Protocol::Tcp, addr).unwrap();
    }

    #[test]
    fn ephemeral_claims_never_share_a_port() {
        let table = Arc::new(PortTable::default());
        let ip: IpAddr = "100.64.0.2".parse().unwrap();
        let taken = table.claim(Protocol::Tcp, SocketAddr::new(ip, 50_000)).unwrap();
        let leases: Vec<_> = (0..5_000).map(|_| table.claim_ephemeral(Protocol::Tcp, ip).unwrap()).collect();
        let ports: HashSet<u16> = leases.iter().map(|lease| lease.key.1.port()).collect();
        assert_eq!(ports.len(), 5_000);
        assert!(!ports.contains(&50_000), "a port in use is never handed out");
        assert!(ports.iter().all(|port| *port >= 49_152));
        drop(taken);
    }
}
