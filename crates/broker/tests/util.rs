//! What the broker's tests share: registered sessions and a send request.

use peers_core::wire::{RegisterRequest, SendRequest};
use peers_testkit::peer::Peer;
use peers_testkit::{ChildGuard, TestEnv, fake_claude};

/// A new stand-in session registered in `cwd` (host `box`).
pub async fn register(env: &TestEnv, cwd: &str) -> Peer {
    Peer::register(env, cwd).await
}

/// Registers the stand-in `claude` in `cwd`, e.g. again after its first registration.
pub async fn register_as(env: &TestEnv, claude: ChildGuard, cwd: &str) -> Peer {
    Peer::register_as(env, claude, cwd).await
}

/// A new stand-in session registered with the fields of `req`.
pub async fn register_with(env: &TestEnv, req: RegisterRequest) -> Peer {
    Peer::register_with(env, fake_claude(), req).await
}

pub fn send_req(to: &str, message: &str) -> SendRequest {
    SendRequest {
        to: to.into(),
        message: message.into(),
        reply_to: None,
    }
}
