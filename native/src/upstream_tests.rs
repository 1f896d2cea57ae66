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
