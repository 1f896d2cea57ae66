//! Tests of our patches to the crates under `tailscale` (`docs/upstream.md`), where a test through
//! a whole device cannot see the failure: what a stopped actor leaves allocated, and what the
//! network monitor reports when it starts.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use kameo::actor::{Actor, ActorRef, Spawn, WeakActorRef};

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
