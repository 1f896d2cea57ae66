//! The netstack lets two sockets bind the same endpoint and then routes packets to whichever it
//! finds first; the device keeps its own table so a second bind fails with `ADDRESS_IN_USE`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::error::{Code, Failure, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
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
            let name = match protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
            };
            return Err(Failure::new(Code::AddressInUse, format!("{name} {addr} is already bound on this device")));
        }
        Ok(PortLease { table: Arc::clone(self), key: (protocol, addr) })
    }

    pub fn clear(&self) {
        self.bound.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
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
}
