//! The broker bench's load generator, built so that it is not what the bench measures: each
//! generator thread runs its own current-thread tokio runtime (optionally pinned to a core),
//! every simulated sender owns one keep-alive HTTP/1.1 connection and one request serialised
//! once before the run, and the loop reuses one buffer per connection (responses parsed with
//! `httparse`), so a request costs a `write`, a `read` and a header parse — nothing is
//! allocated per request but the latency sample.
//!
//! [`Trivial`] is the yardstick: an HTTP server on its own thread that answers every request
//! with a fixed `200`, so the generator's rate against it is what the generator can do at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One HTTP/1.1 request, serialised once.
pub fn request(method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    if let Some(t) = token {
        head.push_str(&format!("authorization: Bearer {t}\r\n"));
    }
    let mut out = match body {
        Some(b) => {
            head.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                b.len()
            ));
            let mut out = head.into_bytes();
            out.extend_from_slice(b);
            out
        }
        None => {
            head.push_str("\r\n");
            head.into_bytes()
        }
    };
    out.shrink_to_fit();
    out
}

/// What one run of the generator measured.
pub struct Outcome {
    /// Answered requests per second in the measured window.
    pub rate: f64,
    /// Requests answered in the whole run (warm-up included).
    pub total: u64,
    /// Round trips of the measured window, sorted.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn percentile(&self, p: f64) -> Duration {
        super::percentile(&self.latencies, p)
    }
}

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPED: u8 = 2;

/// Drives `addr` with one connection per entry of `requests` (each connection sends its
/// request again as soon as the answer is in) spread over `threads` generator threads, each
/// pinned to `cpus[i % cpus.len()]` when `cpus` is not empty. Every answer must have the
/// status `expect`.
pub fn run(
    addr: SocketAddr,
    requests: &[Arc<[u8]>],
    expect: u16,
    threads: usize,
    cpus: &[usize],
    warmup: Duration,
    dur: Duration,
) -> Result<Outcome> {
    let phase = Arc::new(AtomicU8::new(WARMING));
    let threads = threads.clamp(1, requests.len().max(1));
    let mut handles = vec![];
    for t in 0..threads {
        let mine: Vec<Arc<[u8]>> = requests.iter().skip(t).step_by(threads).cloned().collect();
        let phase = phase.clone();
        let cpu = (!cpus.is_empty()).then(|| cpus[t % cpus.len()]);
        handles.push(std::thread::spawn(
            move || -> Result<(u64, u64, Vec<Duration>)> {
                if let Some(cpu) = cpu {
                    pin_thread(0, &[cpu])?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let mut tasks = vec![];
                    for req in mine {
                        let stream = TcpStream::connect(addr).await?;
                        stream.set_nodelay(true)?;
                        tasks.push(tokio::spawn(connection(stream, req, expect, phase.clone())));
                    }
                    let (mut measured, mut total, mut lat) = (0, 0, vec![]);
                    for t in tasks {
                        let (m, n, l) = t.await??;
                        measured += m;
                        total += n;
                        lat.extend(l);
                    }
                    Ok((measured, total, lat))
                })
            },
        ));
    }
    std::thread::sleep(warmup);
    phase.store(MEASURING, Ordering::SeqCst);
    let t0 = Instant::now();
    std::thread::sleep(dur);
    phase.store(STOPPED, Ordering::SeqCst);
    let elapsed = t0.elapsed();
    let (mut measured, mut total, mut latencies) = (0, 0, vec![]);
    for h in handles {
        let (m, n, l) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
        measured += m;
        total += n;
        latencies.extend(l);
    }
    latencies.sort_unstable();
    Ok(Outcome {
        rate: measured as f64 / elapsed.as_secs_f64(),
        total,
        latencies,
    })
}

/// One simulated sender: `req` again and again on one connection until the run stops.
/// Returns the answers in the measured window, all answers, and the window's round trips.
async fn connection(
    mut stream: TcpStream,
    req: Arc<[u8]>,
    expect: u16,
    phase: Arc<AtomicU8>,
) -> Result<(u64, u64, Vec<Duration>)> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut lat = Vec::with_capacity(1 << 16);
    let (mut measured, mut total) = (0u64, 0u64);
    loop {
        let now = phase.load(Ordering::Relaxed);
        if now == STOPPED {
            return Ok((measured, total, lat));
        }
        let t = Instant::now();
        stream.write_all(&req).await?;
        let (status, len) = read_message(&mut stream, &mut buf, Kind::Response).await?;
        if status != expect {
            bail!(
                "the server answered {status}: {}",
                String::from_utf8_lossy(&buf[..len])
            );
        }
        total += 1;
        if now == MEASURING {
            lat.push(t.elapsed());
            measured += 1;
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Request,
    Response,
}

/// Reads one whole HTTP/1.1 message with a `content-length` body (or none) into the start of
/// `buf` (growing it if needed); returns the response status (0 for a request) and the
/// message's length. The peer sends nothing past it (no pipelining), so nothing is left over.
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    kind: Kind,
) -> Result<(u16, usize)> {
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            bail!("the connection closed after {filled} bytes of a message");
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let (parsed, status, headers) = match kind {
            Kind::Response => {
                let mut r = httparse::Response::new(&mut headers);
                let p = r
                    .parse(&buf[..filled])
                    .context("a malformed HTTP response")?;
                (p, r.code.unwrap_or(0), r.headers)
            }
            Kind::Request => {
                let mut r = httparse::Request::new(&mut headers);
                let p = r
                    .parse(&buf[..filled])
                    .context("a malformed HTTP request")?;
                (p, 0, r.headers)
            }
        };
        let httparse::Status::Complete(head) = parsed else {
            continue;
        };
        let body = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| -> Result<usize> { Ok(std::str::from_utf8(h.value)?.trim().parse()?) })
            .transpose()?
            .unwrap_or(0);
        let len = head + body;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        while filled < len {
            let n = stream.read(&mut buf[filled..len]).await?;
            if n == 0 {
                bail!("the connection closed inside a body");
            }
            filled += n;
        }
        return Ok((status, len));
    }
}

/// An HTTP server answering every request with `200` and `{}`, on a thread of its own (pinned
/// to `cpus` when not empty); stopped on drop.
pub struct Trivial {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trivial {
    pub fn start(cpus: &[usize]) -> Result<Trivial> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let cpus = cpus.to_vec();
        let thread = std::thread::spawn(move || {
            if !cpus.is_empty() {
                let _ = pin_thread(0, &cpus);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the trivial server");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("a tokio listener");
                let accept = async {
                    while let Ok((s, _)) = listener.accept().await {
                        let _ = s.set_nodelay(true);
                        tokio::spawn(answer(s));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(Trivial {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Trivial {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn answer(mut s: TcpStream) {
    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    let mut buf = vec![0u8; 16 * 1024];
    while read_message(&mut s, &mut buf, Kind::Request).await.is_ok() {
        if s.write_all(OK).await.is_err() {
            return;
        }
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is the empty set; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it, and CPU_ISSET reads inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the thread or process `tid` (0: the calling thread) to `cpus`.
pub fn pin_thread(tid: libc::pid_t, cpus: &[usize]) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET only writes inside it, and
    // sched_setaffinity reads exactly size_of::<cpu_set_t>() bytes from it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!(
            "sched_setaffinity({tid}, {cpus:?}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Pins every thread of process `pid` to `cpus` (threads it starts later inherit the mask of
/// the thread that starts them).
pub fn pin_process(pid: u32, cpus: &[usize]) -> Result<()> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: libc::pid_t = task?.file_name().to_string_lossy().parse()?;
        pin_thread(tid, cpus)?;
    }
    Ok(())
}
