//! The netstack lets two sockets bind the same endpoint and then routes packets to whichever it
//! finds first; the device keeps its own table so a second bind fails with `ADDRESS_IN_USE`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// The dynamic port range (RFC 6335) that dials take their local ports from.
const DYNAMIC: RangeInclusive<u16> = 49152..=u16::MAX;
/// How many ports `DYNAMIC` holds.
const DYNAMIC_SIZE: u64 = (*DYNAMIC.end() - *DYNAMIC.start()) as u64 + 1;

/// How long a dial's local endpoint rests after its stream is closed. The netstack keeps a
/// closed connection's socket until it reaches CLOSED: through FIN-WAIT and smoltcp's 10 s
/// TIME-WAIT, longer while the peer is slow to answer. A new dial from that endpoint to the same
/// peer port meanwhile has its SYN-ACK taken by the old socket and waits out SYN retransmissions
/// (1 + 2 + 4 + 8 s). 60 s is Linux's TIME-WAIT.
const DIAL_ENDPOINT_REST: Duration = Duration::from_secs(60);

type Key = (Protocol, SocketAddr);

pub struct PortTable {
    state: Mutex<TableState>,
}

struct TableState {
    bound: HashSet<Key>,
    /// Released dial endpoints by when they were released, oldest first in `resting_order`.
    resting: HashMap<Key, Instant>,
    resting_order: VecDeque<(Key, Instant)>,
    /// Where the next search for a free dial port starts: past the last one handed out, so a
    /// released port comes back only after the rest of the range.
    next_ephemeral: u64,
}

impl Default for PortTable {
    fn default() -> Self {
        let start = std::collections::hash_map::RandomState::new().hash_one(0u8) % DYNAMIC_SIZE;
        PortTable {
            state: Mutex::new(TableState {
                bound: HashSet::new(),
                resting: HashMap::new(),
                resting_order: VecDeque::new(),
                next_ephemeral: start,
            }),
        }
    }
}

/// Holds an endpoint until dropped.
pub struct PortLease {
    table: Arc<PortTable>,
    key: Key,
    /// A dial's endpoint: it rests after release (`DIAL_ENDPOINT_REST`).
    ephemeral: bool,
}

impl PortTable {
    fn state(&self) -> MutexGuard<'_, TableState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn claim(self: &Arc<Self>, protocol: Protocol, addr: SocketAddr) -> Result<PortLease> {
        if !self.state().bound.insert((protocol, addr)) {
            return Err(Failure::new(
                Code::AddressInUse,
                protocol.claiming(false),
                format!("{addr} is already bound on this device"),
            ));
        }
        Ok(PortLease { table: Arc::clone(self), key: (protocol, addr), ephemeral: false })
    }

    /// Claims a free port of the dynamic range on `ip` for a dial. The crate picks a dial's local
    /// port at random without checking whether it is in use, so two of a thousand concurrent
    /// dials to one peer port would share an endpoint (the birthday bound: about 30 such pairs),
    /// and one of them would never connect. Ports are handed out in turn from a random start, and
    /// one released within `DIAL_ENDPOINT_REST` is taken only when no other is free.
    pub fn claim_ephemeral(self: &Arc<Self>, protocol: Protocol, ip: IpAddr) -> Result<PortLease> {
        self.claim_ephemeral_at(protocol, ip, Instant::now())
    }

    fn claim_ephemeral_at(self: &Arc<Self>, protocol: Protocol, ip: IpAddr, now: Instant) -> Result<PortLease> {
        let key_at = |position: u64| (protocol, SocketAddr::new(ip, DYNAMIC.start() + position as u16));
        let mut state = self.state();
        state.forget_rested(now);
        let start = state.next_ephemeral;
        // The endpoint that has rested longest, should every free one be resting.
        let mut resting_fallback: Option<(Instant, u64)> = None;
        for offset in 0..DYNAMIC_SIZE {
            let position = (start + offset) % DYNAMIC_SIZE;
            let key = key_at(position);
            if state.bound.contains(&key) {
                continue;
            }
            if let Some(&released) = state.resting.get(&key) {
                if resting_fallback.is_none_or(|(oldest, _)| released < oldest) {
                    resting_fallback = Some((released, position));
                }
                continue;
            }
            return Ok(state.lease_ephemeral(self, key, position));
        }
        if let Some((_, position)) = resting_fallback {
            return Ok(state.lease_ephemeral(self, key_at(position), position));
        }
        Err(Failure::new(Code::AddressInUse, protocol.claiming(true), format!("no free port in 49152..65535 on {ip}")))
    }

    pub fn clear(&self) {
        let mut state = self.state();
        state.bound.clear();
        state.resting.clear();
        state.resting_order.clear();
    }

    fn release(&self, key: Key, ephemeral: bool, now: Instant) {
        let mut state = self.state();
        state.bound.remove(&key);
        if ephemeral {
            state.resting.insert(key, now);
            state.resting_order.push_back((key, now));
        }
    }
}

impl TableState {
    fn lease_ephemeral(&mut self, table: &Arc<PortTable>, key: Key, position: u64) -> PortLease {
        self.bound.insert(key);
        self.resting.remove(&key);
        self.next_ephemeral = position + 1;
        PortLease { table: Arc::clone(table), key, ephemeral: true }
    }

    /// Drops the endpoints that have rested long enough.
    fn forget_rested(&mut self, now: Instant) {
        while let Some(&(key, released)) = self.resting_order.front() {
            if now.saturating_duration_since(released) < DIAL_ENDPOINT_REST {
                break;
            }
            self.resting_order.pop_front();
            // A later release of the same endpoint has its own, younger entry.
            if self.resting.get(&key) == Some(&released) {
                self.resting.remove(&key);
            }
        }
    }
}

impl PortLease {
    pub fn addr(&self) -> SocketAddr {
        self.key.1
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.table.release(self.key, self.ephemeral, Instant::now());
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

    #[test]
    fn a_released_dial_port_is_handed_out_again_only_when_no_other_is_free() {
        let table = Arc::new(PortTable::default());
        let ip: IpAddr = "100.64.0.2".parse().unwrap();
        let listener = table.claim(Protocol::Tcp, SocketAddr::new(ip, 50_000)).unwrap();
        let mut dials: Vec<_> = (0..16_383).map(|_| table.claim_ephemeral(Protocol::Tcp, ip).unwrap()).collect();
        let older = dials.pop().unwrap();
        let younger = dials.pop().unwrap();
        let (older_port, younger_port) = (older.addr().port(), younger.addr().port());
        drop(older);
        drop(younger);
        drop(listener);

        let first = table.claim_ephemeral(Protocol::Tcp, ip).unwrap();
        assert_eq!(first.addr().port(), 50_000, "a free port that is not resting comes first");
        let second = table.claim_ephemeral(Protocol::Tcp, ip).unwrap();
        assert_eq!(second.addr().port(), older_port, "then the endpoint that has rested longest");
        let third = table.claim_ephemeral(Protocol::Tcp, ip).unwrap();
        assert_eq!(third.addr().port(), younger_port);
        assert_eq!(table.claim_ephemeral(Protocol::Tcp, ip).err().unwrap().code, Code::AddressInUse);
    }

    #[test]
    fn a_released_dial_port_rests_for_a_while_then_is_free_like_any_other() {
        let table = Arc::new(PortTable::default());
        let ip: IpAddr = "100.64.0.2".parse().unwrap();
        drop(table.claim_ephemeral(Protocol::Tcp, ip).unwrap());
        assert_eq!(table.state().resting.len(), 1);
        let later = Instant::now() + DIAL_ENDPOINT_REST + Duration::from_secs(1);
        let _next = table.claim_ephemeral_at(Protocol::Tcp, ip, later).unwrap();
        assert!(table.state().resting.is_empty());
        assert!(table.state().resting_order.is_empty());
    }
}
