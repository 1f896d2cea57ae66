//! Tests of our patches to the actor library under the crate (`docs/upstream.md`), where a test
//! through a whole device cannot see the failure: what a stopped actor leaves allocated.

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
