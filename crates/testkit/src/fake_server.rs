//! What the scripted fakes of the Codex and Gemini model APIs share (`fake_openai`,
//! `fake_gemini`): a server on its own thread, and the requests it recorded, waited on.

use std::net::SocketAddr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use serde_json::Value;

/// Serves `app` on a free loopback port from a thread of its own (its own runtime, so a test
/// may block meanwhile); the server stops when the returned sender is dropped.
pub fn serve(name: &str, app: Router) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
            rt.shutdown_timeout(Duration::from_millis(200));
        })
        .expect("spawn the fake API thread");
    (addr, tx)
}

/// Request bodies in arrival order.
#[derive(Default)]
pub struct Requests {
    bodies: Mutex<Vec<Value>>,
    changed: Condvar,
}

impl Requests {
    /// Records `body`; returns how many requests there are now.
    pub fn push(&self, body: Value) -> usize {
        let mut b = self.bodies.lock().unwrap();
        b.push(body);
        self.changed.notify_all();
        b.len()
    }

    pub fn all(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the requests so far; returns its answer, `None` after
    /// `timeout`.
    pub fn wait<T>(&self, timeout: Duration, done: impl Fn(&[Value]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut bodies = self.bodies.lock().unwrap();
        loop {
            if let Some(t) = done(&bodies) {
                return Some(t);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            bodies = self.changed.wait_timeout(bodies, deadline - now).unwrap().0;
        }
    }

    /// Waits for a main-loop request (one with `tools`) whose `field` contains `needle`.
    pub fn wait_main_with(&self, timeout: Duration, field: &str, needle: &str) -> Option<Value> {
        self.wait(timeout, |b| {
            b.iter()
                .find(|r| r.get("tools").is_some() && r[field].to_string().contains(needle))
                .cloned()
        })
    }

    /// Waits until `n` main-loop requests arrived.
    pub fn wait_main_count(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |b| {
            (b.iter().filter(|r| r.get("tools").is_some()).count() >= n).then_some(())
        })
        .is_some()
    }
}
