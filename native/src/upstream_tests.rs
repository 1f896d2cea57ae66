//! Tests of our patches to the crates under `tailscale` (`docs/upstream.md`), where a test through
//! a whole device cannot see the failure: what a stopped actor leaves allocated, and what the
//! network monitor reports when it starts.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use kameo::actor::{Actor, ActorRef, Spawn, WeakActorRef};
use ts_netstack_smoltcp::netcore::smoltcp;

/// Supervises one child whose args hold a ref back to it, as `ts_runtime`'s actors hold their
/// env and their supervisor.
struct Parent;

struct Child;

impl Actor for Parent {
    type Args = Arc<()>;
    type Error = Infallible;

    async fn on_start(owned: Arc<()>, slf: ActorRef<Self>) -> Result<Self, Self::Error> {
        Child::supervise(&slf, (owned, slf.downgrade())).spawn().await;
        Ok(Parent)
    }
}

impl Actor for Child {
    type Args = (Arc<()>, WeakActorRef<Parent>);
    type Error = Infallible;

    async fn on_start(_: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Child)
    }
}

async fn released(owned: &Weak<()>) -> bool {
    for _ in 0..100 {
        if owned.strong_count() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// `kameo/03`: a stopped supervisor drops its children's specs. Their factories own the
/// children's args, here a ref back to the supervisor whose links hold the specs: without the
/// patch that cycle kept every shut-down device's mailboxes and args allocated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_supervisor_frees_what_its_children_were_built_from() {
    let owned = Arc::new(());
    let watch = Arc::downgrade(&owned);
    let parent = Parent::spawn(owned);
    parent.wait_for_startup().await;
    parent.stop_gracefully().await.expect("the parent takes the stop");
    parent.wait_for_shutdown().await;
    drop(parent);
    assert!(released(&watch).await, "the child's args outlived both actors");
}

/// The monitor's first events must list this host's addresses (loopback's at least): the
/// device advertises its direct endpoints from them. Its link, address and route dumps shared
/// one netlink socket, and the kernel answered the second and third with EBUSY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_monitor_starts_with_the_hosts_addresses() {
    use futures_util::StreamExt;
    use ts_netmon::{Event, Netmon};

    for start in 0..10 {
        let monitor = ts_netmon::platform_mon().expect("a network monitor on this platform");
        let mut events = monitor.event_stream().expect("netlink is available");
        let mut addresses = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
            match event {
                Ok(Event::AddrUpsert(_, address)) => addresses.push(address),
                Ok(_) => {}
                Err(error) => panic!("start {start}: the monitor failed: {error}"),
            }
            if addresses.iter().any(|address| address.addr().is_loopback()) {
                break;
            }
        }
        assert!(
            addresses.iter().any(|address| address.addr().is_loopback()),
            "start {start}: no loopback address among the first events ({addresses:?})"
        );
    }
}

/// Each event's message and the spans it was logged in, outermost first.
type Logged = Vec<(String, Vec<&'static str>)>;

/// What every event was logged in, for a test on its own thread.
#[derive(Clone, Default)]
struct SpansOfEvents(Arc<std::sync::Mutex<Logged>>);

impl<S> tracing_subscriber::Layer<S> for SpansOfEvents
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let spans = ctx.event_scope(event).map(|scope| scope.from_root().map(|span| span.name()).collect());
        let mut message = String::new();
        event.record(&mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
            if field.name() == "message" {
                message = format!("{value:?}");
            }
        });
        self.0.lock().unwrap().push((message, spans.unwrap_or_default()));
    }
}

impl SpansOfEvents {
    fn of(&self, message: &str) -> Option<Vec<&'static str>> {
        self.0.lock().unwrap().iter().find(|(m, _)| m == message).map(|(_, spans)| spans.clone())
    }
}

/// `ts_runtime/10` and `kameo/04`: a `Task` (the netstack's and dataplane's loops) and a stream
/// attached to an actor run in the span they were started in. Without the patches both log in no
/// span, and the addon cannot tell which device a record belongs to.
#[tokio::test]
async fn tasks_and_attached_streams_log_in_their_starters_span() {
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    struct Listener;
    impl Actor for Listener {
        type Args = ();
        type Error = Infallible;
        async fn on_start((): (), _: ActorRef<Self>) -> Result<Self, Self::Error> {
            Ok(Listener)
        }
    }
    impl kameo::message::Message<kameo::message::StreamMessage<u8, (), ()>> for Listener {
        type Reply = ();
        async fn handle(
            &mut self,
            _: kameo::message::StreamMessage<u8, (), ()>,
            _: &mut kameo::message::Context<Self, ()>,
        ) {
        }
    }

    let events = SpansOfEvents::default();
    // The test's own thread (current-thread runtime): every task runs where this default holds.
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    let started = async {
        let task = ts_runtime::Task::spawn(async { tracing::error!("from the task") });
        let listener = Listener::spawn(());
        let polled = Box::pin(futures_util::stream::once(async {
            tracing::error!("from the stream");
            1
        }));
        let stream = listener.attach_stream(polled, (), ());
        task.wait_for_shutdown().await;
        let _ = stream.await;
    };
    started.instrument(tracing::error_span!("device")).await;
    for message in ["from the task", "from the stream"] {
        let spans = events.of(message).unwrap_or_else(|| panic!("{message}: not logged"));
        assert_eq!(spans.first(), Some(&"device"), "{message}: logged in {spans:?}");
    }
}

/// `ts_dataplane/01`: a STUN binding response arriving on the direct socket is told apart
/// from WireGuard, so it reaches the runtime's STUN handler (the device's own mapped address
/// and port). `PacketIdent::identify` never returned `StunBinding`: the answer went to
/// WireGuard and was dropped.
#[test]
fn a_stun_binding_response_is_told_from_wireguard() {
    use ts_dataplane::{PacketIdent, PacketType};

    // Binding success response: type 0x0101, length 12, magic cookie, transaction id, then
    // XOR-MAPPED-ADDRESS (0x0020) for 192.0.2.1:32853 (RFC 5769's IPv4 example).
    let mut response = vec![0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    response.extend_from_slice(&[0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae]);
    response.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]);
    assert_eq!(PacketIdent::identify(&response).ty, PacketType::StunBinding);

    // A binding request (0x0001) is nobody's business here, and a WireGuard data message
    // (type 4, three zero bytes) stays WireGuard.
    let mut request = response.clone();
    request[1] = 0x01;
    request[0] = 0x00;
    assert_ne!(PacketIdent::identify(&request).ty, PacketType::StunBinding);
    let mut wireguard = vec![4, 0, 0, 0];
    wireguard.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    wireguard.resize(32, 0);
    assert_eq!(PacketIdent::identify(&wireguard).ty, PacketType::Wireguard);
}

/// Our `ts_control` patch 03: the map stream keeps what the crate dropped, the owner of each node
/// (`Node.User`), the user profiles and the packet filter's app-capability grants (`CapGrant`).
#[tokio::test]
async fn a_map_response_keeps_its_users_and_app_grants() {
    use futures_util::StreamExt;

    let response = serde_json::json!({
        "Peers": [{
            "ID": 5, "StableID": "n5", "Name": "alice-laptop.tail.example.", "User": 77,
            "Key": format!("nodekey:{}", "11".repeat(32)),
            "Addresses": ["100.64.0.5/32", "fd7a:115c:a1e0::5/128"],
            "AllowedIPs": ["100.64.0.5/32", "fd7a:115c:a1e0::5/128"],
        }],
        "UserProfiles": [{ "ID": 77, "LoginName": "alice@example.com", "DisplayName": "Alice" }],
        "PacketFilter": [
            { "SrcIPs": ["*"], "DstPorts": [{ "IP": "*", "Ports": { "First": 0, "Last": 65535 } }] },
            { "SrcIPs": ["100.64.0.5"], "CapGrant": [{
                "Dsts": ["100.64.0.1/32"],
                "CapMap": { "example.com/cap/files": [{ "shares": ["docs"] }] },
            }] },
        ],
    });
    let body = serde_json::to_vec(&response).unwrap();
    let mut framed = (body.len() as u32).to_le_bytes().to_vec();
    framed.extend(body);
    let stream = ts_control::client::map_stream(std::io::Cursor::new(framed));
    let update = std::pin::pin!(stream).next().await.expect("one update");

    let Some(ts_control::PeerUpdate::Full(peers)) = &update.peer_update else { panic!("a full peer list") };
    assert_eq!(peers[0].user, 77);
    assert_eq!(update.user_profiles.len(), 1);
    assert_eq!(update.user_profiles[0].login_name, "alice@example.com");
    assert_eq!(update.user_profiles[0].display_name.as_deref(), Some("Alice"));
    let (Some(base), named) = update.app_grants.as_ref().expect("app grants") else { panic!("base grants") };
    assert!(named.is_empty());
    assert_eq!(base.len(), 1, "the network rule grants no app capability");
    assert_eq!(base[0].src_prefixes, vec!["100.64.0.5/32".parse::<ipnet::IpNet>().unwrap()]);
    assert_eq!(base[0].dsts, vec!["100.64.0.1/32".parse::<ipnet::IpNet>().unwrap()]);
    let values = &base[0].caps["example.com/cap/files"];
    let value: serde_json::Value = serde_json::from_str(&values[0]).unwrap();
    assert_eq!(value, serde_json::json!({ "shares": ["docs"] }));
}

/// `smoltcp/01`: a TCP socket's window limit bounds how much its peer sends per round trip (the
/// receive window it advertises), and lifting it lets the next bursts grow. The receiver has
/// 256 KiB buffers, reads nothing, and the sender has 200 KiB queued.
#[test]
fn a_window_limit_bounds_each_burst_and_follows_changes() {
    const LIMIT: usize = 16 * 1024;
    assert!(largest_bursts(None).0 > LIMIT, "without a limit the first burst is larger");
    let (limited, _) = largest_bursts(Some(LIMIT));
    assert!(limited <= LIMIT, "limited: a burst of {limited}");
    let (before, after) = largest_bursts_lifting(LIMIT);
    assert!(before <= LIMIT && after > LIMIT, "lifted: {before}, then {after}");
}

/// The largest number of bytes that reached the receiver in one poll, before and after the
/// midpoint of the transfer (every byte must arrive).
fn largest_bursts(limit: Option<usize>) -> (usize, usize) {
    window_bursts(limit, |_| {})
}

fn largest_bursts_lifting(limit: usize) -> (usize, usize) {
    window_bursts(Some(limit), |socket| socket.set_window_limit(None))
}

fn window_bursts(limit: Option<usize>, at_midpoint: impl FnOnce(&mut smoltcp::socket::tcp::Socket)) -> (usize, usize) {
    const SENT: usize = 200 * 1024;
    let mut receiver = tcp_socket(256 * 1024);
    receiver.set_window_limit(limit);
    let mut pair = LoopbackTcp::connect(receiver, tcp_socket(256 * 1024));
    assert_eq!(pair.sender().send_slice(&[7; SENT]), Ok(SENT));

    let mut at_midpoint = Some(at_midpoint);
    let (mut before, mut after, mut received) = (0, 0, 0);
    for _ in 0..1000 {
        if received >= SENT / 2
            && let Some(change) = at_midpoint.take()
        {
            change(pair.receiver());
        }
        pair.poll();
        let now_received = pair.receiver().recv_queue();
        let burst = now_received - received;
        if at_midpoint.is_some() {
            before = before.max(burst)
        } else {
            after = after.max(burst)
        }
        received = now_received;
    }
    assert_eq!(received, SENT, "every byte arrives");
    (before, after)
}

/// `smoltcp/01`: a lowered window limit never pulls back the right edge of the receive window
/// already advertised. The remote may have sent up to that edge (segments a lost path dropped),
/// and its ACKs carry sequence numbers that far: with the edge pulled back, every segment past
/// the new one, ACKs included, was unacceptable, and a transfer whose direct path fell back to
/// the relay stalled for good. Here the receiver advertises 64 KiB (a SYN's window is not
/// scaled), the sender sends 48 KiB, the receiver lowers its limit to 16 KiB and acknowledges
/// the first segment before the rest arrive.
#[test]
fn a_lowered_window_limit_keeps_the_edge_already_advertised() {
    const SENT: usize = 48 * 1024;
    let mut pair = LoopbackTcp::connect(tcp_socket(256 * 1024), tcp_socket(256 * 1024));
    // Segments of a tailnet's size (the loopback's MTU would carry it all in one).
    pair.sender().set_nagle_enabled(false);
    let mut in_flight = Vec::new();
    for _ in 0..SENT / 1024 {
        assert_eq!(pair.sender().send_slice(&[7; 1024]), Ok(1024));
        pair.send_only();
        in_flight.extend(pair.take_in_flight());
    }
    assert_eq!(in_flight.len(), SENT / 1024);

    pair.receiver().set_window_limit(Some(16 * 1024));
    pair.deliver(&in_flight[..1]);
    pair.poll_for(20);
    // Only the receiver takes its turn: nothing is sent again.
    pair.deliver(&in_flight[1..]);
    pair.receive_only();
    assert_eq!(pair.receiver().recv_queue(), SENT, "every segment sent inside the advertised window is accepted");
}

/// `smoltcp/02`: a segment lost on a path of a few milliseconds is sent again after the 200 ms
/// minimum RTO of Linux and gVisor (Go's tsnet), not after 1 s: at 50 MB/s a lost tail segment
/// stalled a 32 MiB transfer for longer than the transfer itself.
#[test]
fn a_lost_segment_on_a_short_path_is_sent_again_within_200_ms() {
    let mut pair = LoopbackTcp::connect(tcp_socket(64 * 1024), tcp_socket(64 * 1024));
    // RTT samples of a few milliseconds, as on a LAN.
    for _ in 0..5 {
        assert_eq!(pair.sender().send_slice(&[7; 1024]), Ok(1024));
        pair.poll_for(5);
    }
    assert_eq!(pair.sender().send_slice(&[8; 1024]), Ok(1024));
    pair.send_only();
    assert_eq!(pair.take_in_flight().len(), 1, "the segment, lost");
    let lost_at = pair.now;
    let resent_at = loop {
        pair.now += smoltcp::time::Duration::from_millis(1);
        pair.send_only();
        if !pair.take_in_flight().is_empty() {
            break pair.now;
        }
        assert!(pair.now - lost_at < smoltcp::time::Duration::from_secs(2), "never sent again");
    };
    let waited = (resent_at - lost_at).total_millis();
    assert!((190..=250).contains(&waited), "sent again after {waited} ms");
}

/// `smoltcp/03`: a connection closed on our side first keeps its socket in TIME-WAIT for 10 s;
/// it gives up its buffers there, still acknowledges the peer's FIN sent again, and closes.
#[test]
fn a_connection_in_time_wait_gives_up_its_buffers_and_still_answers_a_fin() {
    use smoltcp::socket::tcp::State;
    let mut pair = LoopbackTcp::connect(tcp_socket(16 * 1024), tcp_socket(16 * 1024));
    assert_eq!(pair.sender().send_slice(b"last words"), Ok(10));
    pair.sender().close();
    pair.poll_for(20);
    assert_eq!(pair.receiver().recv_queue(), 10);
    pair.receiver().close();
    pair.send_only();
    let peer_fin = pair.take_in_flight();
    assert_eq!(peer_fin.len(), 1, "the peer's FIN");
    pair.deliver(&peer_fin);
    pair.poll_for(20);
    assert_eq!(pair.sender().state(), State::TimeWait);
    assert!(pair.sender().release_buffers_in_time_wait());
    assert_eq!((pair.sender().recv_capacity(), pair.sender().send_capacity()), (0, 0));
    assert!(!pair.sender().release_buffers_in_time_wait(), "once");

    // A second later the peer sends its FIN again, as if our ACK were lost: it is answered.
    pair.poll_for(1_500);
    pair.deliver(&peer_fin);
    pair.receive_one();
    assert_eq!(pair.take_in_flight().len(), 1, "the FIN is acknowledged again");
    assert_eq!(pair.sender().state(), State::TimeWait);
    // The FIN sent again restarted TIME-WAIT's 10 s.
    pair.poll_for(10_100);
    assert_eq!(pair.sender().state(), State::Closed);
}

/// `smoltcp/04`: a segment of data that arrives again, already acknowledged (its ACK was lost),
/// is acknowledged again every time, not once a second: each unanswered retransmission doubled
/// its sender's RTO, and one lost ACK stalled a transfer for 1.4 to 6 s.
#[test]
fn data_sent_again_is_acknowledged_again_every_time() {
    let mut pair = LoopbackTcp::connect(tcp_socket(16 * 1024), tcp_socket(16 * 1024));
    assert_eq!(pair.sender().send_slice(&[7; 1024]), Ok(1024));
    pair.send_only();
    let data = pair.take_in_flight();
    assert_eq!(data.len(), 1, "the segment");
    pair.deliver(&data);
    pair.poll_for(20);
    assert_eq!(pair.receiver().recv_queue(), 1024, "received and acknowledged");

    // The sender's RTO backoff: 200, 400 and 800 ms, as if every ACK were lost on the way.
    for wait in [0, 200, 400, 800] {
        pair.now += smoltcp::time::Duration::from_millis(wait);
        pair.deliver(&data);
        pair.receive_one();
        assert_eq!(pair.take_in_flight().len(), 1, "acknowledged again after {wait} ms");
    }
    assert_eq!(pair.receiver().recv_queue(), 1024, "and taken once");
}

/// `smoltcp/05`: when the peer has shrunk its window behind data we sent (gVisor does, as its
/// receive buffer fills), our ACKs carry a sequence number inside that window. At SND.NXT, past
/// the window's right edge, the peer drops each ACK unread and keeps retransmitting what we
/// already have, once per timeout: stalls of 600 ms on a fast direct path.
#[test]
fn acks_stay_inside_a_window_the_peer_shrank() {
    use smoltcp::wire::{Ipv4Packet, TcpPacket};
    let seq_of = |packet: &[u8]| {
        let ip = Ipv4Packet::new_checked(packet).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        (tcp.seq_number(), tcp.payload().len())
    };
    let mut pair = LoopbackTcp::connect(tcp_socket(64 * 1024), tcp_socket(64 * 1024));

    // Our data leaves and never arrives: SND.NXT moves 8 KiB past SND.UNA.
    assert_eq!(pair.sender().send_slice(&[1; 8192]), Ok(8192));
    pair.send_only();
    let lost = pair.take_in_flight();
    let (unacknowledged, _) = seq_of(&lost[0]);

    // The peer sends data, acknowledging none of ours, with its window shrunk to nothing.
    assert_eq!(pair.receiver().send_slice(&[2; 100]), Ok(100));
    pair.send_only();
    let mut from_peer = pair.take_in_flight();
    assert_eq!(from_peer.len(), 1, "the peer's segment alone");
    {
        let mut ip = Ipv4Packet::new_checked(&mut from_peer[0][..]).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let mut tcp = TcpPacket::new_checked(ip.payload_mut()).unwrap();
        tcp.set_window_len(0);
        tcp.fill_checksum(&src.into(), &dst.into());
    }
    pair.deliver(&from_peer);
    pair.receive_only();
    pair.now += smoltcp::time::Duration::from_millis(20);
    pair.send_only();

    let acks: Vec<_> = pair.take_in_flight().iter().map(|packet| seq_of(packet)).filter(|(_, len)| *len == 0).collect();
    assert!(!acks.is_empty(), "the peer's data is acknowledged");
    for (seq, _) in acks {
        assert_eq!(seq, unacknowledged, "an ACK at the right edge of the peer's (empty) window");
    }
}

/// `smoltcp/01`: a connection that starts with 16 KiB buffers (its window scale planned for
/// 256 KiB) and grows them mid-transfer, with data wrapped around both rings and out of order
/// data possible, delivers every byte in order, and then lets more wait for the reader.
#[test]
fn buffers_enlarged_mid_transfer_keep_every_byte_in_order() {
    const SMALL: usize = 16 * 1024;
    const LARGE: usize = 256 * 1024;
    const SENT: usize = 1024 * 1024;
    let pattern: Vec<u8> = (0..SENT).map(|i| (i % 251) as u8).collect();
    let socket = || {
        let mut socket = tcp_socket(SMALL);
        socket.plan_receive_capacity(LARGE);
        socket
    };
    let mut pair = LoopbackTcp::connect(socket(), socket());

    let (mut sent, mut received) = (0, Vec::with_capacity(SENT));
    // The most bytes waiting in the receiver, before and after the buffers grew.
    let (mut largest_small, mut largest_large, mut enlarged) = (0, 0, false);
    for round in 0..100_000 {
        if received.len() == SENT {
            break;
        }
        let waiting = pair.receiver().recv_queue();
        if !enlarged && received.len() >= SENT / 3 && waiting > 0 {
            pair.sender().enlarge_buffers(vec![0; LARGE], vec![0; LARGE]);
            pair.receiver().enlarge_buffers(vec![0; LARGE], vec![0; LARGE]);
            enlarged = true;
        }
        let tx = pair.sender();
        if tx.may_send() && sent < SENT {
            sent += tx.send_slice(&pattern[sent..]).unwrap();
        }
        pair.poll();
        let rx = pair.receiver();
        // Read at most 5,000 bytes every other round, so data wraps around the rings and waits
        // in them.
        if round % 2 == 0 {
            let burst = rx.recv(|data| {
                let n = data.len().min(5000);
                (n, data[..n].to_vec())
            });
            received.extend_from_slice(&burst.unwrap_or_default());
        }
        let largest = if enlarged { &mut largest_large } else { &mut largest_small };
        *largest = (*largest).max(rx.recv_queue());
    }
    assert_eq!(received.len(), SENT, "every byte arrives");
    assert!(received == pattern, "in order");
    assert!(largest_small <= SMALL, "{largest_small} bytes waiting in the small buffer");
    assert!(largest_large > SMALL, "{largest_large} bytes waiting at most once enlarged");
}

/// `ts_runtime/27`: a connection's window is the relay's unless its peer is on a direct path
/// now, and the netstack is told (a new version) only when that set changes.
#[test]
fn tcp_windows_follow_each_peer_path() {
    use std::collections::HashSet;
    use std::net::IpAddr;
    use ts_netstack_smoltcp::netcore::TcpWindowPolicy;
    use ts_runtime::tcp_windows::{RELAYED_WINDOW, TcpWindowsByPath};

    let direct: IpAddr = "100.64.0.2".parse().unwrap();
    let relayed: IpAddr = "100.64.0.3".parse().unwrap();
    let windows = TcpWindowsByPath::default();
    assert_eq!(windows.window_limit(direct), Some(RELAYED_WINDOW), "no direct path yet");

    let start = windows.version();
    windows.set_direct(HashSet::from([direct]));
    assert_eq!(windows.version(), start + 1);
    assert_eq!(windows.window_limit(direct), None);
    assert_eq!(windows.window_limit(relayed), Some(RELAYED_WINDOW));

    windows.set_direct(HashSet::from([direct]));
    assert_eq!(windows.version(), start + 1, "the same set is no news");
    windows.set_direct(HashSet::new());
    assert_eq!(windows.version(), start + 2);
    assert_eq!(windows.window_limit(direct), Some(RELAYED_WINDOW), "the path lost");
}

/// Two smoltcp TCP sockets connected over a loopback interface, polled one millisecond at a time.
struct LoopbackTcp {
    device: smoltcp::phy::Loopback,
    iface: smoltcp::iface::Interface,
    sockets: smoltcp::iface::SocketSet<'static>,
    now: smoltcp::time::Instant,
    sender: smoltcp::iface::SocketHandle,
    receiver: smoltcp::iface::SocketHandle,
}

impl LoopbackTcp {
    /// `receiver` listens, `sender` connects to it, and both are established.
    fn connect(
        mut receiver: smoltcp::socket::tcp::Socket<'static>,
        mut sender: smoltcp::socket::tcp::Socket<'static>,
    ) -> Self {
        use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
        let mut device = smoltcp::phy::Loopback::new(smoltcp::phy::Medium::Ip);
        let now = smoltcp::time::Instant::ZERO;
        let config = smoltcp::iface::Config::new(HardwareAddress::Ip);
        let mut iface = smoltcp::iface::Interface::new(config, &mut device, now);
        iface.update_ip_addrs(|addrs| addrs.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap());
        let mut sockets = smoltcp::iface::SocketSet::new(vec![]);
        receiver.listen(7).unwrap();
        sender.connect(iface.context(), (IpAddress::v4(127, 0, 0, 1), 7), 49152).unwrap();
        let receiver = sockets.add(receiver);
        let sender = sockets.add(sender);
        let mut pair = Self { device, iface, sockets, now, sender, receiver };
        pair.poll_for(10);
        assert_eq!(pair.sender().state(), smoltcp::socket::tcp::State::Established);
        pair
    }

    fn poll(&mut self) {
        self.iface.poll(self.now, &mut self.device, &mut self.sockets);
        self.now += smoltcp::time::Duration::from_millis(1);
    }

    /// Polls once a millisecond for `millis` milliseconds.
    fn poll_for(&mut self, millis: usize) {
        for _ in 0..millis {
            self.poll();
        }
    }

    /// Lets the sockets take in the next packet waiting, so a reply stays on the wire.
    fn receive_one(&mut self) {
        self.iface.poll_ingress_single(self.now, &mut self.device, &mut self.sockets);
    }

    /// Lets the sockets send, without receiving anything.
    fn send_only(&mut self) {
        self.iface.poll_egress(self.now, &mut self.device, &mut self.sockets);
    }

    /// Lets the sockets take in every packet waiting, without sending anything but replies.
    fn receive_only(&mut self) {
        use smoltcp::iface::PollIngressSingleResult;
        while self.iface.poll_ingress_single(self.now, &mut self.device, &mut self.sockets)
            != PollIngressSingleResult::None
        {}
    }

    /// Takes the packets on their way from one socket to the other, to deliver them later.
    fn take_in_flight(&mut self) -> Vec<Vec<u8>> {
        use smoltcp::phy::{Device, RxToken};
        let mut packets = Vec::new();
        while let Some((rx, _)) = self.device.receive(self.now) {
            packets.push(rx.consume(|bytes| bytes.to_vec()));
        }
        packets
    }

    /// Puts `packets` back on their way.
    fn deliver(&mut self, packets: &[Vec<u8>]) {
        use smoltcp::phy::{Device, TxToken};
        for packet in packets {
            let tx = self.device.transmit(self.now).expect("the loopback takes every packet");
            tx.consume(packet.len(), |buffer| buffer.copy_from_slice(packet));
        }
    }

    fn sender(&mut self) -> &mut smoltcp::socket::tcp::Socket<'static> {
        self.sockets.get_mut(self.sender)
    }

    fn receiver(&mut self) -> &mut smoltcp::socket::tcp::Socket<'static> {
        self.sockets.get_mut(self.receiver)
    }
}

/// A TCP socket with buffers of `size` bytes each.
fn tcp_socket(size: usize) -> smoltcp::socket::tcp::Socket<'static> {
    use smoltcp::socket::tcp;
    tcp::Socket::new(tcp::SocketBuffer::new(vec![0; size]), tcp::SocketBuffer::new(vec![0; size]))
}

/// `ts_derp/04`: a batch of packets to the DERP server is framed into one buffer and flushed
/// once. A flush per packet was a TLS record, a write(2) and, with Nagle off, a TCP segment of
/// its own. (`ts_runtime/28`, which hands it every batch the dataplane has queued, is private to
/// the runtime: the bench measures it.)
#[tokio::test]
async fn a_batch_of_packets_to_the_derp_server_is_written_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use ts_transport::{DynEndpoint, UnderlayTransport};

    const PACKETS: u8 = 32;
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(AtomicUsize::new(0));
    let client_io = CountingWrites { inner: client_io, writes: Arc::clone(&writes) };
    let node = ts_keys::NodeKeyPair::random();
    let server = tokio::spawn(FakeDerpServer::accept(server_io, node.public));
    let client = ts_derp::Client::handshake(client_io, &node).await.expect("the handshake");
    let mut server = server.await.unwrap();

    let dest = ts_keys::NodeKeyPair::random().public;
    let packets: Vec<ts_packet::PacketMut> = (0..PACKETS).map(|i| [i; 1280].as_slice().into()).collect();
    let before = writes.load(Ordering::SeqCst);
    client.send([(DynEndpoint::derp(dest), packets)]).await.expect("sent");
    let written = writes.load(Ordering::SeqCst) - before;

    for i in 0..PACKETS {
        let (to, payload) = server.next_packet().await;
        assert_eq!((to, payload), (dest, vec![i; 1280]), "packet {i}, in order and whole");
    }
    // 32 frames of 1,317 bytes are 41 KiB: a few writes of the codec's 8 KiB buffer, not 32.
    assert!(written <= 8, "{written} writes for {PACKETS} packets");
}

/// `ts_derp/04`: the packets a read from the DERP server brought in go to the dataplane together,
/// each sender's run of them as one batch, not a message (and a dataplane step) per packet.
#[tokio::test]
async fn packets_read_together_from_the_derp_server_arrive_as_one_batch() {
    use ts_transport::{BatchRecvIter, UnderlayTransport};

    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let node = ts_keys::NodeKeyPair::random();
    let server = tokio::spawn(FakeDerpServer::accept(server_io, node.public));
    let client = ts_derp::Client::handshake(client_io, &node).await.expect("the handshake");
    let mut server = server.await.unwrap();

    let (alice, bob) = (ts_keys::NodeKeyPair::random().public, ts_keys::NodeKeyPair::random().public);
    let packets: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1280]).collect();
    server.relay(alice, &packets[..30]).await;
    server.relay(bob, &packets[30..]).await;

    let (mut calls, mut runs) = (0, Vec::<(ts_keys::NodePublicKey, Vec<Vec<u8>>)>::new());
    while runs.iter().map(|(_, run)| run.len()).sum::<usize>() < packets.len() {
        calls += 1;
        for item in client.recv().await.batch_iter() {
            let (from, run) = item.expect("packets");
            let run: Vec<Vec<u8>> = run.into_iter().map(|p| p.as_ref().to_vec()).collect();
            match runs.last_mut() {
                Some((last, earlier)) if *last == from.as_derp().unwrap() => earlier.extend(run),
                _ => runs.push((from.as_derp().unwrap(), run)),
            }
        }
    }
    // A read takes what the codec's 8 KiB buffer holds: about six of these frames.
    assert!(calls <= 10, "{calls} receives for {} packets", packets.len());
    let senders: Vec<_> = runs.iter().map(|(from, run)| (*from, run.len())).collect();
    assert_eq!(senders, vec![(alice, 30), (bob, 10)], "each sender's packets, in order");
    assert_eq!(runs.into_iter().flat_map(|(_, run)| run).collect::<Vec<_>>(), packets);
}

/// Counts the writes that reach the transport under a DERP client.
struct CountingWrites {
    inner: tokio::io::DuplexStream,
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl tokio::io::AsyncRead for CountingWrites {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountingWrites {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The server's half of the DERP handshake, then the packets its client sends.
struct FakeDerpServer {
    frames: tokio_util::codec::FramedRead<tokio::io::ReadHalf<tokio::io::DuplexStream>, ts_derp::frame::Codec>,
    writer: tokio_util::codec::FramedWrite<tokio::io::WriteHalf<tokio::io::DuplexStream>, ts_derp::frame::Codec>,
}

impl FakeDerpServer {
    async fn accept(io: tokio::io::DuplexStream, client: ts_keys::NodePublicKey) -> Self {
        use crypto_box::aead::Aead;
        use futures_util::{SinkExt, StreamExt};
        use ts_derp::frame::{Codec, Magic, RawFrame, ServerInfo, ServerKey};

        let (read, write) = tokio::io::split(io);
        let mut frames = tokio_util::codec::FramedRead::new(read, Codec);
        let mut writer = tokio_util::codec::FramedWrite::new(write, Codec);
        let keys = ts_keys::NodeKeyPair::random();
        let key = ts_keys::DerpServerPublicKey::from_bytes(*keys.public.to_crypto_box().as_bytes());
        let server_key = ServerKey { magic: Magic::MAGIC, key };
        writer.send((RawFrame::from_body(&server_key, 0).unwrap(), &[][..])).await.unwrap();
        frames.next().await.expect("the client's info").unwrap();
        let nonce = ts_derp::Nonce([7; 24]);
        let sealed = crypto_box::SalsaBox::new(&client.to_crypto_box(), &keys.private.to_crypto_box())
            .encrypt(&nonce.into(), &br#"{"version":2}"#[..])
            .unwrap();
        let info = ServerInfo { nonce };
        writer.send((RawFrame::from_body(&info, sealed.len()).unwrap(), &sealed[..])).await.unwrap();
        FakeDerpServer { frames, writer }
    }

    /// Relays `packets` from `from` to its client, in one write.
    async fn relay(&mut self, from: ts_keys::NodePublicKey, packets: &[Vec<u8>]) {
        use futures_util::SinkExt;
        use ts_derp::frame::{RawFrame, RecvPacket};
        let header = RecvPacket { src: from };
        for packet in packets {
            self.writer.feed((RawFrame::from_body(&header, packet.len()).unwrap(), &packet[..])).await.unwrap();
        }
        SinkExt::<(RawFrame<'_>, &[u8])>::flush(&mut self.writer).await.unwrap();
    }

    /// The next packet sent through the server: its destination and its bytes.
    async fn next_packet(&mut self) -> (ts_keys::NodePublicKey, Vec<u8>) {
        use futures_util::StreamExt;
        let frame = self.frames.next().await.expect("a frame").unwrap();
        let (send, payload) = frame.get().as_type::<ts_derp::frame::SendPacket>().expect("a SendPacket frame");
        (send.dest, payload.to_vec())
    }
}

/// Packets of the given sizes, each filled with its index, so a test can tell them apart.
fn numbered_packets(sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes.iter().enumerate().map(|(i, &size)| vec![i as u8; size]).collect()
}

/// Sizes as the dataplane hands them over: full WireGuard packets, one shorter, more full ones,
/// a small one. The kernel cuts a segmented send at its first packet's size, so a run holds one
/// size and at most one shorter packet at its end: three sends here.
const DATAGRAM_SIZES: [usize; 7] = [1312, 1312, 1312, 700, 1312, 1312, 92];

/// `ts_runtime/29`: a run of packets to one peer is one segmented send (`UDP_SEGMENT`), and a
/// socket that asked for coalescing (`UDP_GRO`) reads it whole and splits it back into the
/// packets sent, in order. Each packet was a `send_to` of its own, and a read of its own (seven
/// here).
#[tokio::test]
async fn a_run_of_packets_to_one_peer_is_one_send_and_one_read() {
    use tokio::net::UdpSocket;
    use ts_runtime::udp_offload;

    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert!(udp_offload::enable_gro(&receiver), "this kernel coalesces received datagrams");
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let packets = numbered_packets(&DATAGRAM_SIZES);
    udp_offload::Sender::new().send(&sender, receiver.local_addr().unwrap(), &packets).await;

    let mut buf = vec![0; 65_535];
    let mut reads = vec![];
    let mut received: Vec<Vec<u8>> = vec![];
    while received.len() < packets.len() {
        receiver.readable().await.unwrap();
        match udp_offload::try_recv(&receiver, &mut buf) {
            Ok((read, from, segment)) => {
                assert_eq!(from, sender.local_addr().unwrap());
                reads.push(read);
                received.extend(buf[..read].chunks(segment).map(<[u8]>::to_vec));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(received, packets, "every packet, whole and in order");
    // Three sends; the kernel may coalesce further (the last two here, on some kernels).
    assert!(reads.len() <= 3, "reads of {reads:?} bytes for {} packets", packets.len());
}

/// `ts_runtime/29`: a peer that did not ask for coalescing still gets each packet as a datagram
/// of its own.
#[tokio::test]
async fn a_peer_reading_one_datagram_at_a_time_gets_each_packet() {
    use tokio::net::UdpSocket;
    use ts_runtime::udp_offload;

    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let packets = numbered_packets(&DATAGRAM_SIZES);
    udp_offload::Sender::new().send(&sender, receiver.local_addr().unwrap(), &packets).await;

    let mut buf = vec![0; 65_535];
    for packet in &packets {
        let (read, _) = receiver.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..read], packet.as_slice());
    }
}
