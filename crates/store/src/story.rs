//! The one test story every backend runs (feature `story`): each store operation and each
//! guarantee of [`crate::Store`], written once against the trait.
//!
//! Every chapter is a public async function taking a fresh, empty store (`&Arc<dyn Store>`,
//! so chapters can spawn concurrent callers) and panicking, with the guarantee it checks in
//! the message, when the store breaks it. A backend's tests open a fresh store per chapter
//! and call the chapters one by one (one test per chapter, so a failure names it; see
//! [`story_chapters!`](crate::story_chapters)) or all of them with [`run_all`]. Times are made up (epoch ms from
//! [`T0`]); no chapter waits on the clock.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use peers_core::wire::{MessageState, RegisterRequest, SenderKind};

use crate::{
    Ack, Claim, ClaimOutcome, LogFilter, LogSender, LoopBudget, NewMessage, NewNotice,
    NewRegistration, PeerRecord, Reader, Registration, SearchFilter, Sender, Store, Subscribe,
    Sweep, TopicPostsFilter,
};

/// The story's "now": every time in it is `T0` plus a few milliseconds.
pub const T0: i64 = 1_700_000_000_000;

/// The machine every chapter's sessions run on, and its host label.
pub const MACHINE: &str = "machine-a";
pub const HOST: &str = "host-a";

/// A chapter: runs on a fresh, empty store.
pub type Chapter = for<'a> fn(&'a Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Calls the macro `$callback` with the name of every chapter, in story order:
/// `peers_store::story_chapters!(my_tests)` lets a backend's test file make one test per
/// chapter without listing them again (see `crates/store-sqlite/tests/story.rs`).
#[macro_export]
macro_rules! story_chapters {
    ($callback:ident) => {
        $callback![
            names_come_from_the_directory_and_stay_with_the_process,
            previous_name_is_kept_when_free,
            reserved_names_are_never_given,
            a_reused_pid_ends_the_old_session,
            an_ended_sessions_name_and_mail_go_to_the_next_session_in_its_directory,
            heartbeat_revives_only_when_allowed,
            unregister_makes_the_token_invalid_and_keeps_the_mail,
            resolve_by_name_host_and_id,
            lineage_follows_replacements,
            peer_lists_and_counts,
            sequential_sends_get_increasing_ids,
            concurrent_sends_keep_their_own_ids_and_share_commits,
            a_send_racing_a_reregistration_follows_the_replacement,
            claim_leases_in_send_order_up_to_max,
            concurrent_claimers_never_get_one_message_twice,
            a_lapsed_lease_is_claimable_again,
            ack_full_and_partial,
            a_late_ack_of_a_lapsed_lease_still_counts,
            loop_budget_limits_automatic_claims,
            loop_budget_is_shared_by_the_registrations_of_one_process,
            sweep_marks_gone_requeues_expires_and_forgets_budget,
            a_sweep_without_the_turn_only_marks_gone,
            status_and_replies,
            log_filters,
            delivered_to_lists_delivered_mail_newest_first,
            queued_and_pending_counts,
            notices_newest_first,
            a_post_stores_one_message_and_a_copy_per_reader_in_one_commit,
            each_reader_claims_its_own_copy_once_under_concurrent_claimers,
            a_readers_lapsed_lease_comes_back_only_to_that_reader,
            an_ack_delivers_one_readers_copy_and_status_counts_readers,
            subscriptions_belong_to_the_name_in_its_directory,
            queued_to_wake_counts_only_wake_copies_and_claims_take_all,
            topics_list_counts_and_the_viewers_subscription,
            topic_posts_page_by_since_id_and_limit_oldest_first,
            log_filters_by_topic_and_by_reader,
            a_reregistration_takes_its_waiting_copies_only,
            the_sweep_requeues_and_expires_each_copy_on_its_own,
            retention_prunes_old_delivered_mail_and_keeps_the_rest,
            search_finds_each_send_before_its_answer_even_on_a_reused_id,
            export_pages_every_message_in_id_order,
            handovers_wait_in_order_for_the_next_session_of_their_name_and_go_once,
        ];
    };
}

macro_rules! chapters {
    ($($name:ident),* $(,)?) => {
        /// Every chapter by name, in story order.
        pub const CHAPTERS: &[(&str, Chapter)] = &[
            $((stringify!($name), |s| Box::pin($name(s)))),*
        ];
    };
}

story_chapters!(chapters);

/// Runs every chapter, each on a store from `open` (which must be fresh and empty), and
/// closes it after.
pub async fn run_all<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    for (name, chapter) in CHAPTERS {
        let store = open().await;
        eprintln!("story: {name}");
        chapter(&store).await;
        store.close().await;
    }
}

// ---- the cast ------------------------------------------------------------------------------

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn fresh_id() -> String {
    format!("story-{}", NEXT_ID.fetch_add(1, Ordering::SeqCst))
}

/// A registration request of Claude Code process `pid` (start time `pid * 10`) in `cwd`.
pub fn request(pid: u32, cwd: &str) -> RegisterRequest {
    RegisterRequest {
        claude_pid: pid,
        claude_start_time: Some(pid as u64 * 10),
        mcp_pid: pid + 1,
        machine_id: MACHINE.into(),
        host: HOST.into(),
        cwd: cwd.into(),
        ..Default::default()
    }
}

/// Registers `request` under a fresh id.
pub async fn register_as(s: &Arc<dyn Store>, request: RegisterRequest, now: i64) -> Registration {
    let peer_id = fresh_id();
    s.register(NewRegistration {
        request,
        token_hash: format!("hash-of-{peer_id}"),
        peer_id,
        now,
    })
    .await
    .expect("register")
}

/// Registers process `pid` in `cwd` at `T0`.
pub async fn register(s: &Arc<dyn Store>, pid: u32, cwd: &str) -> PeerRecord {
    register_as(s, request(pid, cwd), T0).await.peer
}

/// A message from the human to `to`.
pub fn from_human(to: &PeerRecord, body: &str, sent_ms: i64) -> NewMessage {
    NewMessage {
        tags: vec![],
        project: None,
        from: Sender {
            kind: SenderKind::Human,
            peer_id: None,
            address: format!("you@{HOST}"),
            cwd: None,
        },
        to_address: to.address(),
        channel: None,
        readers: vec![crate::Reader {
            peer_id: to.id.clone(),
            address: to.address(),
            wake: true,
        }],
        body: body.into(),
        reply_to: None,
        sent_ms,
        expires_ms: sent_ms + 86_400_000,
    }
}

/// A message from peer `from` to `to`.
pub fn from_peer(from: &PeerRecord, to: &PeerRecord, body: &str, sent_ms: i64) -> NewMessage {
    NewMessage {
        from: Sender {
            kind: SenderKind::Peer,
            peer_id: Some(from.id.clone()),
            address: from.address(),
            cwd: Some(from.cwd.clone()),
        },
        ..from_human(to, body, sent_ms)
    }
}

/// A post from peer `from` to `#topic`, with a copy for each of `readers` (and whether that
/// copy may wake its reader), in that order.
pub fn post(
    from: &PeerRecord,
    topic: &str,
    readers: &[(&PeerRecord, bool)],
    body: &str,
    sent_ms: i64,
) -> NewMessage {
    NewMessage {
        to_address: format!("#{topic}"),
        channel: Some(format!("#{topic}")),
        readers: readers
            .iter()
            .map(|(p, wake)| Reader {
                peer_id: p.id.clone(),
                address: p.address(),
                wake: *wake,
            })
            .collect(),
        ..from_peer(from, from, body, sent_ms)
    }
}

async fn send(s: &Arc<dyn Store>, m: NewMessage) -> i64 {
    s.send(m).await.expect("send").id
}

fn claim_of(peer: &PeerRecord, lease: &str, max: u32, now: i64) -> Claim {
    Claim {
        peer_id: peer.id.clone(),
        lease_id: lease.into(),
        max,
        now,
        lease_expires_ms: now + 1_000,
        automatic: None,
    }
}

async fn claim(s: &Arc<dyn Store>, c: Claim) -> ClaimOutcome {
    s.claim(c).await.expect("claim")
}

fn bodies(out: &ClaimOutcome) -> Vec<&str> {
    out.messages.iter().map(|m| m.body.as_str()).collect()
}

async fn waiting_bodies(s: &Arc<dyn Store>, peer: &PeerRecord) -> Vec<String> {
    let w = s.waiting(&peer.id).await.expect("waiting");
    w.into_iter().map(|m| m.body).collect()
}

/// Acks `lease` of `peer` as shown by the Stop hook: (delivered, released).
async fn ack(
    s: &Arc<dyn Store>,
    peer: &PeerRecord,
    lease: &str,
    ids: Option<Vec<i64>>,
    now: i64,
) -> (u64, u64) {
    ack_via(s, peer, lease, "Stop", ids, now).await
}

async fn ack_via(
    s: &Arc<dyn Store>,
    peer: &PeerRecord,
    lease: &str,
    via: &str,
    ids: Option<Vec<i64>>,
    now: i64,
) -> (u64, u64) {
    let a = s
        .ack(Ack {
            peer_id: peer.id.clone(),
            lease_id: lease.into(),
            via: via.into(),
            ids,
            now,
        })
        .await
        .expect("ack");
    (a.delivered, a.released)
}

async fn sweep(
    s: &Arc<dyn Store>,
    gone: &[&PeerRecord],
    now: i64,
    budget_window_ms: i64,
) -> crate::Swept {
    s.sweep(Sweep {
        gone: gone.iter().map(|p| p.id.clone()).collect(),
        now,
        budget_window_ms,
        whole: true,
    })
    .await
    .expect("sweep")
}

async fn peer(s: &Arc<dyn Store>, id: &str) -> PeerRecord {
    s.peer(id)
        .await
        .expect("peer")
        .expect("the registration exists")
}

fn budget(p: &PeerRecord, limit: u32, window_ms: i64) -> LoopBudget {
    LoopBudget {
        machine_id: p.machine_id.clone(),
        claude_pid: p.claude_pid,
        limit,
        window_ms,
        notice: format!("{} used its loop budget", p.address()),
    }
}

fn automatic(p: &PeerRecord, lease: &str, now: i64, b: &LoopBudget) -> Claim {
    Claim {
        automatic: Some(b.clone()),
        ..claim_of(p, lease, 50, now)
    }
}

// ---- peers ---------------------------------------------------------------------------------

/// Names: the directory's base name, then `base-2`, `base-3`; the same process registering
/// again keeps its name, replaces its old registration (whose token dies) and takes its mail.
pub async fn names_come_from_the_directory_and_stay_with_the_process(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/y/api").await;
    let c = register(s, 12, "/z/API").await;
    assert_eq!(
        (a.name.as_str(), b.name.as_str(), c.name.as_str()),
        ("api", "api-2", "api-3"),
        "base name, then numbered"
    );
    assert!(a.alive() && a.token_valid(), "a new registration is live");
    assert_eq!(a.address(), format!("api@{HOST}"));
    send(s, from_human(&a, "before the re-registration", T0 + 1)).await;
    let again = register_as(s, request(10, "/x/api"), T0 + 2).await;
    assert_eq!(again.peer.name, "api", "the same process keeps its name");
    assert_ne!(again.peer.id, a.id, "under a new registration");
    assert_eq!(
        again.replaced,
        vec![a.id.clone()],
        "which replaced the old one"
    );
    assert!(again.ended.is_empty(), "the same process ended nothing");
    assert_eq!(again.inherited_messages, 1, "and took its waiting mail");
    assert_eq!(
        waiting_bodies(s, &again.peer).await,
        ["before the re-registration"]
    );
    let old = peer(s, &a.id).await;
    assert_eq!(old.replaced_by.as_deref(), Some(again.peer.id.as_str()));
    assert!(
        !old.token_valid(),
        "a replaced registration's token is dead"
    );
    assert!(!old.alive(), "a replaced registration is not live");
    assert!(waiting_bodies(s, &old).await.is_empty(), "its mail moved");
}

/// `previous_name` is given when no live peer holds it, and not when one does.
pub async fn previous_name_is_kept_when_free(s: &Arc<dyn Store>) {
    let holder = register(s, 10, "/x/web").await;
    assert_eq!(holder.name, "web");
    let mut r = request(11, "/y/other");
    r.previous_name = Some("Web".into());
    let taken = register_as(s, r, T0).await.peer;
    assert_eq!(
        taken.name, "other",
        "a live peer holds `web`: not given again"
    );
    let mut r = request(12, "/y/other");
    r.previous_name = Some("frontend".into());
    let free = register_as(s, r, T0).await.peer;
    assert_eq!(free.name, "frontend", "a free previous name is kept");
}

/// Reserved names (`you`, `human`, `user`, `all`, `peers`) are numbered as if taken, and
/// never given as a previous name.
pub async fn reserved_names_are_never_given(s: &Arc<dyn Store>) {
    for (pid, reserved) in [
        (10, "you"),
        (11, "human"),
        (12, "user"),
        (13, "all"),
        (14, "peers"),
    ] {
        let p = register(s, pid, &format!("/x/{reserved}")).await;
        assert_eq!(p.name, format!("{reserved}-2"), "{reserved} is reserved");
    }
    let mut r = request(20, "/x/plain");
    r.previous_name = Some("you".into());
    let p = register_as(s, r, T0).await.peer;
    assert_eq!(p.name, "plain", "a reserved previous name is not given");
    for p in s.live_peers().await.unwrap() {
        let reserved = ["you", "human", "user", "all", "peers"];
        assert!(!reserved.contains(&p.name.as_str()), "{}", p.name);
    }
}

/// A registration with a known pid but another start time comes from a new process: the old
/// registration is ended (listed in `ended`), not replaced by the same-process rule.
pub async fn a_reused_pid_ends_the_old_session(s: &Arc<dyn Store>) {
    let old = register(s, 10, "/x/api").await;
    let mut r = request(10, "/x/api");
    r.claude_start_time = Some(999_999);
    let new = register_as(s, r, T0 + 5).await;
    assert_eq!(new.ended, vec![old.id.clone()], "the old process is over");
    let old_now = peer(s, &old.id).await;
    assert!(!old_now.alive(), "the old registration is gone");
    assert_ne!(new.peer.id, old.id);
    assert!(new.peer.alive());
    assert_eq!(
        new.peer.name, "api",
        "the ended session's name is free again"
    );
    // The same pid with the same (new) start time is that new process again.
    let mut r = request(10, "/x/api");
    r.claude_start_time = Some(999_999);
    let again = register_as(s, r, T0 + 6).await;
    assert!(again.ended.is_empty(), "same process: nothing ended");
    assert!(
        again.replaced.contains(&new.peer.id),
        "same process: replaced"
    );
}

/// A session that ended with mail waiting hands its name and its mail to the next session
/// registering in its directory; a session elsewhere does not get them.
pub async fn an_ended_sessions_name_and_mail_go_to_the_next_session_in_its_directory(
    s: &Arc<dyn Store>,
) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/y/api").await;
    assert_eq!(b.name, "api-2");
    send(s, from_human(&b, "for api-2", T0 + 1)).await;
    let swept = sweep(s, &[&b], T0 + 2, 60_000).await;
    assert_eq!(swept.marked_gone, 1);
    let next = register_as(s, request(13, "/y/api"), T0 + 3).await;
    assert_eq!(
        next.peer.name, "api-2",
        "the name goes to the next session there"
    );
    assert_eq!(next.replaced, vec![b.id.clone()]);
    assert_eq!(next.inherited_messages, 1, "and its mail");
    assert_eq!(waiting_bodies(s, &next.peer).await, ["for api-2"]);
    let elsewhere = register_as(s, request(12, "/z/api"), T0 + 4).await;
    assert_eq!(elsewhere.peer.name, "api-3");
    assert_eq!(
        elsewhere.inherited_messages, 0,
        "another directory inherits nothing"
    );
    assert!(a.alive());
}

/// A heartbeat keeps a peer live; a peer marked gone comes back only when `may_revive`
/// (under a fresh name if its own was taken meanwhile); a replaced or unregistered
/// registration gets `None`.
pub async fn heartbeat_revives_only_when_allowed(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let beat = s.heartbeat(&a.id, T0 + 10, false).await.unwrap().unwrap();
    assert_eq!(beat.last_seen_ms, T0 + 10, "a heartbeat records when");
    assert_eq!(peer(s, &a.id).await.last_seen_ms, T0 + 10, "durably");
    sweep(s, &[&a], T0 + 20, 60_000).await;
    assert!(!peer(s, &a.id).await.alive());
    assert!(
        s.heartbeat(&a.id, T0 + 30, false).await.unwrap().is_none(),
        "gone and may not revive"
    );
    assert!(!peer(s, &a.id).await.alive(), "still gone");
    let back = s.heartbeat(&a.id, T0 + 40, true).await.unwrap().unwrap();
    assert!(back.alive() && back.name == "api", "revived under its name");
    assert!(peer(s, &a.id).await.alive());
    // Gone again, and someone else takes the name meanwhile.
    sweep(s, &[&a], T0 + 50, 60_000).await;
    let other = register(s, 11, "/y/api").await;
    assert_eq!(other.name, "api");
    let back = s.heartbeat(&a.id, T0 + 60, true).await.unwrap().unwrap();
    assert_eq!(back.name, "api-2", "its name was taken: a fresh one");
    assert_eq!(peer(s, &a.id).await.name, "api-2");
    // Replaced: no heartbeat.
    let again = register(s, 11, "/y/api").await;
    assert!(
        s.heartbeat(&other.id, T0 + 70, true)
            .await
            .unwrap()
            .is_none()
    );
    // Unregistered: no heartbeat.
    s.unregister(&again.id, T0 + 80).await.unwrap();
    assert!(
        s.heartbeat(&again.id, T0 + 90, true)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.heartbeat("no-such-peer", T0, true)
            .await
            .unwrap()
            .is_none()
    );
}

/// Unregistering ends the registration and kills its token; its mail stays queued and
/// goes to the next session with its name in its directory. A summary sticks.
pub async fn unregister_makes_the_token_invalid_and_keeps_the_mail(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    s.set_summary(&a.id, "refactoring the parser")
        .await
        .unwrap();
    assert_eq!(
        peer(s, &a.id).await.summary.as_deref(),
        Some("refactoring the parser")
    );
    send(s, from_human(&a, "left behind", T0 + 1)).await;
    s.unregister(&a.id, T0 + 2).await.unwrap();
    let gone = peer(s, &a.id).await;
    assert!(!gone.token_valid(), "an unregistered token is dead");
    assert!(!gone.alive());
    assert_eq!(gone.gone_ms, Some(T0 + 2));
    assert_eq!(
        waiting_bodies(s, &gone).await,
        ["left behind"],
        "mail stays"
    );
    let next = register_as(s, request(11, "/x/api"), T0 + 3).await;
    assert_eq!(next.peer.name, "api");
    assert_eq!(next.inherited_messages, 1);
    assert!(next.peer.token_valid());
}

/// Resolve: by id, name and `name@host`, case-insensitively; a replaced id follows to its
/// replacement; an ended session not yet replaced still resolves; unknown names do not.
pub async fn resolve_by_name_host_and_id(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/y/web").await;
    let a2 = register(s, 10, "/x/api").await;
    for who in [
        "api",
        "API",
        "api@host-a",
        "Api@HOST-A",
        " api ",
        a.id.as_str(),
        a2.id.as_str(),
    ] {
        let r = s
            .resolve(who)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{who:?} resolves"));
        assert_eq!(r.id, a2.id, "{who:?}");
    }
    assert!(
        s.resolve("api@other-host").await.unwrap().is_none(),
        "wrong host"
    );
    assert!(s.resolve("nobody").await.unwrap().is_none());
    sweep(s, &[&b], T0 + 1, 60_000).await;
    let ended = s
        .resolve("web")
        .await
        .unwrap()
        .expect("an ended session resolves");
    assert_eq!(ended.id, b.id);
    assert!(!ended.alive());
    // A live peer of a name wins over an ended one.
    let c = register(s, 12, "/z/web").await;
    assert_eq!(c.name, "web");
    assert_eq!(s.resolve("web").await.unwrap().unwrap().id, c.id);
}

/// `lineage` lists a registration and every one it replaced, transitively.
pub async fn lineage_follows_replacements(s: &Arc<dyn Store>) {
    let a1 = register(s, 10, "/x/api").await;
    let a2 = register(s, 10, "/x/api").await;
    let a3 = register(s, 10, "/x/api").await;
    let other = register(s, 11, "/y/web").await;
    let got: BTreeSet<String> = s.lineage(&a3.id).await.unwrap().into_iter().collect();
    let want: BTreeSet<String> = [&a1.id, &a2.id, &a3.id].into_iter().cloned().collect();
    assert_eq!(got, want);
    assert_eq!(s.lineage(&other.id).await.unwrap(), vec![other.id.clone()]);
}

/// Live peers by name; unreplaced peers add ended sessions not yet replaced; counts.
pub async fn peer_lists_and_counts(s: &Arc<dyn Store>) {
    let web = register(s, 10, "/x/web").await;
    let api = register(s, 11, "/x/api").await;
    let db = register(s, 12, "/x/db").await;
    register(s, 11, "/x/api").await; // replaces `api`
    sweep(s, &[&db], T0 + 1, 60_000).await;
    let live: Vec<String> = s
        .live_peers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(live, ["api", "web"], "live, by name");
    let all = s.unreplaced_peers().await.unwrap();
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["api", "db", "web"], "plus ended, unreplaced");
    assert!(
        !all.iter().any(|p| p.id == api.id),
        "a replaced one is not listed"
    );
    assert_eq!(s.count_live().await.unwrap(), 2);
    assert!(web.alive());
}

// ---- sends -----------------------------------------------------------------------------

/// Sends one after another get increasing ids, and the mail waits in send order.
pub async fn sequential_sends_get_increasing_ids(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let mut ids = vec![];
    for i in 0..5 {
        let sent = s
            .send(from_human(&a, &format!("m{i}"), T0 + i))
            .await
            .unwrap();
        assert_eq!(sent.readers, std::slice::from_ref(&a.id));
        assert!(s.message_exists(sent.id).await.unwrap());
        ids.push(sent.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(waiting_bodies(s, &a).await, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(!s.message_exists(ids[4] + 1000).await.unwrap());
}

/// 300 concurrent sends: each returns once stored, under its own id with its own body and
/// recipient; together they take fewer commits than sends (they are batched).
pub async fn concurrent_sends_keep_their_own_ids_and_share_commits(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/a").await;
    let b = register(s, 11, "/x/b").await;
    let before = s.commits();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300u32 {
        let s = s.clone();
        let to = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            let sent = s
                .send(from_human(&to, &format!("message number {i}"), T0 + 1))
                .await
                .expect("send");
            (i, to.id, sent)
        });
    }
    let mut ids = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let (i, to, sent) = done.expect("task");
        assert_eq!(
            sent.readers,
            std::slice::from_ref(&to),
            "message {i} queued for its recipient"
        );
        assert!(ids.insert(sent.id), "id {} given twice", sent.id);
        let (status, _) = s.status(sent.id, true).await.unwrap().expect("stored");
        assert_eq!(
            status.body.as_deref(),
            Some(format!("message number {i}").as_str()),
            "id {} holds message {i}",
            sent.id
        );
        assert_eq!(status.to_peer_id, to);
    }
    assert_eq!(ids.len(), 300);
    assert_eq!(s.waiting(&a.id).await.unwrap().len(), 150);
    assert_eq!(s.waiting(&b.id).await.unwrap().len(), 150);
    let commits = s.commits() - before;
    assert!(commits >= 1, "the sends were committed");
    assert!(commits < 300, "300 concurrent sends took {commits} commits");
}

/// A send resolved its recipient before that session registered again: the mail follows to
/// the replacement instead of stranding on the dead id.
pub async fn a_send_racing_a_reregistration_follows_the_replacement(s: &Arc<dyn Store>) {
    let old = register(s, 10, "/x/api").await;
    let new = register(s, 10, "/x/api").await;
    let newer = register(s, 10, "/x/api").await;
    let sent = s
        .send(from_human(
            &old,
            "resolved before the re-registration",
            T0 + 1,
        ))
        .await
        .unwrap();
    assert_eq!(
        sent.readers,
        std::slice::from_ref(&newer.id),
        "followed the whole chain"
    );
    assert_eq!(waiting_bodies(s, &newer).await.len(), 1);
    assert!(waiting_bodies(s, &old).await.is_empty());
    assert!(waiting_bodies(s, &new).await.is_empty());
}

// ---- claims and acks -------------------------------------------------------------------

/// A claim leases up to `max` in send order; what it leased is not claimable again, the rest
/// is; an empty claim leases nothing.
pub async fn claim_leases_in_send_order_up_to_max(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/x/web").await;
    assert!(!s.claimable(&a.id, T0).await.unwrap(), "nothing waits yet");
    assert!(
        claim(s, claim_of(&a, "L0", 10, T0))
            .await
            .messages
            .is_empty()
    );
    for body in ["one", "two", "three"] {
        send(s, from_peer(&b, &a, body, T0)).await;
    }
    assert!(s.claimable(&a.id, T0 + 1).await.unwrap());
    let first = claim(s, claim_of(&a, "L1", 2, T0 + 1)).await;
    assert_eq!(bodies(&first), ["one", "two"], "send order, at most max");
    assert!(!first.budget_exhausted && !first.budget_notice);
    let m = &first.messages[0];
    assert_eq!(m.from, b.address());
    assert_eq!(m.from_peer_id.as_deref(), Some(b.id.as_str()));
    assert_eq!(m.from_kind, SenderKind::Peer);
    assert_eq!(m.status, MessageState::Leased);
    assert_eq!(m.channel, None, "direct mail has no channel");
    let second = claim(s, claim_of(&a, "L2", 10, T0 + 2)).await;
    assert_eq!(
        bodies(&second),
        ["three"],
        "leased mail is not claimed again"
    );
    assert!(!s.claimable(&a.id, T0 + 3).await.unwrap(), "all leased");
    assert!(
        claim(s, claim_of(&a, "L3", 10, T0 + 3))
            .await
            .messages
            .is_empty()
    );
    assert!(
        claim(s, claim_of(&b, "L4", 10, T0 + 3))
            .await
            .messages
            .is_empty(),
        "b's own inbox is empty"
    );
    assert_eq!(
        waiting_bodies(s, &a).await.len(),
        3,
        "leased mail still waits"
    );
}

/// Eight claimers racing over one peer's 200 messages never get one message twice, and
/// together get all of them.
pub async fn concurrent_claimers_never_get_one_message_twice(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let mut sent = BTreeSet::new();
    for i in 0..200 {
        sent.insert(send(s, from_human(&a, &format!("m{i}"), T0)).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let (s, a) = (s.clone(), a.clone());
        tasks.spawn(async move {
            let mut got = vec![];
            for round in 0..100 {
                let out = s
                    .claim(claim_of(&a, &format!("L{t}-{round}"), 7, T0 + 1))
                    .await
                    .expect("claim");
                if out.messages.is_empty() {
                    break;
                }
                got.extend(out.messages.into_iter().map(|m| m.message_id));
                tokio::task::yield_now().await;
            }
            got
        });
    }
    let mut seen: HashMap<i64, u32> = HashMap::new();
    while let Some(got) = tasks.join_next().await {
        for id in got.expect("task") {
            *seen.entry(id).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "claimed twice: {twice:?}");
    let got: BTreeSet<i64> = seen.into_keys().collect();
    assert_eq!(got, sent, "together the claimers got every message");
}

/// A lease not acked by its expiry makes its mail claimable again (before any sweep).
pub async fn a_lapsed_lease_is_claimable_again(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    send(s, from_human(&a, "shown once, maybe", T0)).await;
    let mut c = claim_of(&a, "L1", 10, T0 + 1);
    c.lease_expires_ms = T0 + 100;
    assert_eq!(claim(s, c).await.messages.len(), 1);
    assert!(
        !s.claimable(&a.id, T0 + 50).await.unwrap(),
        "leased until T0+100"
    );
    assert!(
        claim(s, claim_of(&a, "L2", 10, T0 + 50))
            .await
            .messages
            .is_empty()
    );
    assert!(s.claimable(&a.id, T0 + 101).await.unwrap(), "lapsed");
    let again = claim(s, claim_of(&a, "L3", 10, T0 + 101)).await;
    assert_eq!(bodies(&again), ["shown once, maybe"]);
}

/// Acks: the whole lease, only some ids (the rest goes back to the queue), an empty list
/// (releases all); another peer's ack of the lease does nothing.
pub async fn ack_full_and_partial(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/x/web").await;
    for body in ["one", "two", "three"] {
        send(s, from_human(&a, body, T0)).await;
    }
    let out = claim(s, claim_of(&a, "L1", 2, T0 + 1)).await;
    let first = out.messages[0].message_id;
    assert_eq!(
        ack(s, &b, "L1", None, T0 + 2).await,
        (0, 0),
        "not b's lease"
    );
    assert_eq!(
        ack(s, &a, "L1", Some(vec![first]), T0 + 2).await,
        (1, 1),
        "partial"
    );
    assert_eq!(
        waiting_bodies(s, &a).await,
        ["two", "three"],
        "the rest is back"
    );
    let (st, _) = s.status(first, false).await.unwrap().unwrap();
    assert_eq!(st.status, MessageState::Delivered);
    assert_eq!(st.delivered_at_ms, Some(T0 + 2));
    assert_eq!(st.delivered_via.as_deref(), Some("Stop"));
    let out = claim(s, claim_of(&a, "L2", 10, T0 + 3)).await;
    assert_eq!(bodies(&out), ["two", "three"]);
    assert_eq!(
        ack(s, &a, "L2", Some(vec![]), T0 + 4).await,
        (0, 2),
        "empty list releases all"
    );
    let out = claim(s, claim_of(&a, "L3", 10, T0 + 5)).await;
    assert_eq!(out.messages.len(), 2);
    assert_eq!(
        ack(s, &a, "L3", None, T0 + 6).await,
        (2, 0),
        "the whole lease"
    );
    assert!(waiting_bodies(s, &a).await.is_empty());
    assert_eq!(
        ack(s, &a, "L3", None, T0 + 7).await,
        (0, 0),
        "acking twice is harmless"
    );
}

/// Mail whose lease lapsed but that was not claimed again is still delivered by the late ack
/// (it was shown); once claimed under a new lease, the old lease's ack no longer counts.
pub async fn a_late_ack_of_a_lapsed_lease_still_counts(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    send(s, from_human(&a, "late", T0)).await;
    send(s, from_human(&a, "reclaimed", T0)).await;
    let mut c = claim_of(&a, "L1", 1, T0);
    c.lease_expires_ms = T0 + 10;
    assert_eq!(bodies(&claim(s, c).await), ["late"]);
    let swept = sweep(s, &[], T0 + 20, 60_000).await;
    assert_eq!(swept.requeued, 1, "the sweep returned the lapsed lease");
    assert_eq!(
        ack(s, &a, "L1", None, T0 + 30).await.0,
        1,
        "the late ack counts"
    );
    assert!(waiting_bodies(s, &a).await == ["reclaimed"]);
    let mut c = claim_of(&a, "L2", 1, T0 + 40);
    c.lease_expires_ms = T0 + 50;
    claim(s, c).await;
    let again = claim(s, claim_of(&a, "L3", 1, T0 + 60)).await;
    assert_eq!(bodies(&again), ["reclaimed"], "lapsed, claimed under L3");
    assert_eq!(
        ack(s, &a, "L2", None, T0 + 70).await.0,
        0,
        "L2 no longer holds it"
    );
    assert_eq!(ack(s, &a, "L3", None, T0 + 70).await.0, 1);
}

// ---- the loop budget -------------------------------------------------------------------

/// `limit` automatic claims that find mail per window; past it nothing is leased and the
/// first such claim records the notice (once per window); a claim that finds nothing
/// spends nothing; a claim by hand is never limited; a new window starts afresh.
pub async fn loop_budget_limits_automatic_claims(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = budget(&a, 2, 1_000);
    for round in 0..3 {
        let out = claim(s, automatic(&a, &format!("E{round}"), T0 + round, &b)).await;
        assert!(
            out.messages.is_empty() && !out.budget_exhausted,
            "empty claims spend nothing"
        );
    }
    for (i, now) in [(0, T0 + 10), (1, T0 + 20)] {
        send(s, from_human(&a, &format!("m{i}"), now)).await;
        let out = claim(s, automatic(&a, &format!("A{i}"), now + 1, &b)).await;
        assert_eq!(out.messages.len(), 1, "within the budget");
        assert!(!out.budget_exhausted);
        ack(s, &a, &format!("A{i}"), None, now + 2).await;
    }
    send(s, from_human(&a, "over budget", T0 + 30)).await;
    let out = claim(s, automatic(&a, "A2", T0 + 31, &b)).await;
    assert!(out.messages.is_empty(), "past the budget nothing is leased");
    assert!(
        out.budget_exhausted && out.budget_notice,
        "the first one records the notice"
    );
    let notices = s.notices(10).await.unwrap();
    let budget_notices: Vec<_> = notices.iter().filter(|n| n.kind == "loop_budget").collect();
    assert_eq!(budget_notices.len(), 1);
    assert_eq!(budget_notices[0].text, b.notice);
    assert_eq!(budget_notices[0].peer_id.as_deref(), Some(a.id.as_str()));
    assert_eq!(budget_notices[0].author, "broker", "raised by the broker");
    let out = claim(s, automatic(&a, "A3", T0 + 32, &b)).await;
    assert!(
        out.budget_exhausted && !out.budget_notice,
        "one notice per window"
    );
    assert_eq!(
        s.notices(10)
            .await
            .unwrap()
            .iter()
            .filter(|n| n.kind == "loop_budget")
            .count(),
        1
    );
    assert_eq!(
        waiting_bodies(s, &a).await,
        ["over budget"],
        "the mail waits"
    );
    let by_hand = claim(s, claim_of(&a, "H", 10, T0 + 33)).await;
    assert_eq!(
        bodies(&by_hand),
        ["over budget"],
        "a claim by hand is not limited"
    );
    ack(s, &a, "H", Some(vec![]), T0 + 34).await;
    let next_window = claim(s, automatic(&a, "A4", T0 + 1_100, &b)).await;
    assert_eq!(
        bodies(&next_window),
        ["over budget"],
        "a new window starts afresh"
    );
}

/// The budget belongs to the Claude Code process (machine, pid), whichever registration it
/// has now; another process has its own.
pub async fn loop_budget_is_shared_by_the_registrations_of_one_process(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = budget(&a, 1, 1_000);
    send(s, from_human(&a, "m1", T0)).await;
    let out = claim(s, automatic(&a, "A1", T0 + 1, &b)).await;
    assert_eq!(out.messages.len(), 1);
    ack(s, &a, "A1", None, T0 + 2).await;
    let a2 = register(s, 10, "/x/api").await;
    send(s, from_human(&a2, "m2", T0 + 3)).await;
    let out = claim(s, automatic(&a2, "A2", T0 + 4, &budget(&a2, 1, 1_000))).await;
    assert!(
        out.budget_exhausted,
        "the re-registered process spent its budget already"
    );
    let other = register(s, 11, "/x/web").await;
    send(s, from_human(&other, "m3", T0 + 5)).await;
    let out = claim(
        s,
        automatic(&other, "B1", T0 + 6, &budget(&other, 1, 1_000)),
    )
    .await;
    assert_eq!(out.messages.len(), 1, "another process has its own budget");
}

// ---- the sweep -------------------------------------------------------------------------

/// One sweep marks the given peers gone (once), returns lapsed leases, expires mail past
/// its TTL (the sender sees `expired`), and forgets budget spending older than its window.
/// A broker without the sweep turn marks its own machine's ended sessions gone, and does
/// nothing else: lapsed leases and expired mail stay for the turn holder.
pub async fn a_sweep_without_the_turn_only_marks_gone(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/x/web").await;
    let mut short = from_human(&a, "short-lived", T0);
    short.expires_ms = T0 + 50;
    send(s, short).await;
    let mut c = claim_of(&a, "L1", 10, T0 + 1);
    c.lease_expires_ms = T0 + 10;
    assert_eq!(claim(s, c).await.messages.len(), 1);
    let swept = s
        .sweep(Sweep {
            gone: vec![b.id.clone()],
            now: T0 + 100,
            budget_window_ms: 60_000,
            whole: false,
        })
        .await
        .expect("sweep");
    assert_eq!(
        (swept.marked_gone, swept.requeued, swept.expired),
        (1, 0, 0)
    );
    assert_eq!(peer(s, &b.id).await.gone_ms, Some(T0 + 100));
    // The lapsed lease was not touched: its mail is still leased, not expired.
    let waiting = s.waiting(&a.id).await.expect("waiting");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].status, MessageState::Leased);
    // The whole pass then does the rest.
    let swept = sweep(s, &[], T0 + 100, 60_000).await;
    assert_eq!((swept.requeued, swept.expired), (1, 1));
}

pub async fn sweep_marks_gone_requeues_expires_and_forgets_budget(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/x/web").await;
    let mut short = from_human(&a, "short-lived", T0);
    short.expires_ms = T0 + 50;
    let short = send(s, short).await;
    send(s, from_human(&a, "leased", T0)).await;
    let mut c = claim_of(&a, "L1", 10, T0 + 1);
    c.lease_expires_ms = T0 + 10;
    assert_eq!(claim(s, c).await.messages.len(), 2);
    let swept = sweep(s, &[&b], T0 + 20, 60_000).await;
    assert_eq!(
        (swept.marked_gone, swept.requeued, swept.expired),
        (1, 2, 0)
    );
    let b_now = peer(s, &b.id).await;
    assert_eq!(b_now.gone_ms, Some(T0 + 20));
    let again = sweep(s, &[&b], T0 + 30, 60_000).await;
    assert_eq!((again.marked_gone, again.requeued), (0, 0), "gone once");
    assert_eq!(
        peer(s, &b.id).await.gone_ms,
        Some(T0 + 20),
        "and keeps its time"
    );
    let swept = sweep(s, &[], T0 + 100, 60_000).await;
    assert_eq!(swept.expired, 1);
    let (st, _) = s.status(short, false).await.unwrap().unwrap();
    assert_eq!(st.status, MessageState::Expired);
    assert_eq!(
        waiting_bodies(s, &a).await,
        ["leased"],
        "expired mail no longer waits"
    );
    // Budget: spent at T0+200 within a 10 s window, then a sweep with a 50 ms window
    // forgets it, so the next automatic claim is allowed again.
    let bud = budget(&a, 1, 10_000);
    let out = claim(s, automatic(&a, "A1", T0 + 200, &bud)).await;
    assert_eq!(out.messages.len(), 1);
    ack(s, &a, "A1", None, T0 + 201).await;
    send(s, from_human(&a, "after", T0 + 202)).await;
    assert!(
        claim(s, automatic(&a, "A2", T0 + 203, &bud))
            .await
            .budget_exhausted
    );
    sweep(s, &[], T0 + 300, 50).await;
    let out = claim(s, automatic(&a, "A3", T0 + 301, &bud)).await;
    assert_eq!(bodies(&out), ["after"], "the sweep forgot the old spending");
}

// ---- reading history -------------------------------------------------------------------

/// A message's status for its sender: queued (also while leased), then delivered; its
/// replies; whether the recipient is alive; its body only when asked; its sender's id.
pub async fn status_and_replies(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/x/web").await;
    let q = send(s, from_peer(&a, &b, "question", T0)).await;
    let (st, from) = s.status(q, false).await.unwrap().unwrap();
    assert_eq!(from.as_deref(), Some(a.id.as_str()));
    assert_eq!(st.status, MessageState::Queued);
    assert_eq!(
        (st.from.as_str(), st.to.as_str()),
        (a.address().as_str(), b.address().as_str())
    );
    assert_eq!(st.from_kind, SenderKind::Peer);
    assert_eq!(st.bytes, "question".len() as u64);
    assert!(st.body.is_none(), "no body unless asked");
    assert!(st.recipient_alive);
    assert_eq!(st.sent_at_ms, T0);
    assert_eq!(
        (st.channel.as_deref(), st.to_peer_id.as_str()),
        (None, b.id.as_str())
    );
    assert_eq!(st.readers.len(), 1, "direct mail has one reader's copy");
    let r0 = &st.readers[0];
    assert_eq!(
        (
            r0.peer_id.as_str(),
            r0.to.as_str(),
            r0.status,
            r0.wake,
            r0.alive
        ),
        (
            b.id.as_str(),
            b.address().as_str(),
            MessageState::Queued,
            true,
            true
        )
    );
    claim(s, claim_of(&b, "L", 10, T0 + 1)).await;
    let (st, _) = s.status(q, true).await.unwrap().unwrap();
    assert_eq!(
        st.status,
        MessageState::Queued,
        "a lease is internal: still queued"
    );
    assert_eq!(
        st.readers[0].status,
        MessageState::Leased,
        "the copy shows it"
    );
    assert_eq!(st.body.as_deref(), Some("question"));
    ack(s, &b, "L", None, T0 + 2).await;
    let mut reply = from_peer(&b, &a, "answer", T0 + 3);
    reply.reply_to = Some(q);
    let r = send(s, reply).await;
    let (st, _) = s.status(q, false).await.unwrap().unwrap();
    assert_eq!(st.status, MessageState::Delivered);
    assert_eq!(
        (st.delivered_at_ms, st.delivered_via.as_deref()),
        (Some(T0 + 2), Some("Stop"))
    );
    assert_eq!(st.readers[0].delivered_via.as_deref(), Some("Stop"));
    assert_eq!(st.delivered_of(), (1, 1));
    assert_eq!(st.replies, vec![r]);
    let (rs, _) = s.status(r, false).await.unwrap().unwrap();
    assert_eq!(rs.reply_to, Some(q));
    sweep(s, &[&b], T0 + 4, 60_000).await;
    assert!(!s.status(q, false).await.unwrap().unwrap().0.recipient_alive);
    let h = send(s, from_human(&a, "from you", T0 + 5)).await;
    let (hs, from) = s.status(h, false).await.unwrap().unwrap();
    assert!(from.is_none() && hs.from_kind == SenderKind::Human);
    assert!(s.status(h + 1000, false).await.unwrap().is_none());
}

/// The human's log: newest first, by sender (the human or a peer's registrations), by
/// recipient, since a time, limited, bodies only when asked.
pub async fn log_filters(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/x/web").await;
    let m1 = send(s, from_human(&a, "h->a", T0 + 1)).await;
    let m2 = send(s, from_peer(&a, &b, "a->b", T0 + 2)).await;
    let m3 = send(s, from_peer(&b, &a, "b->a", T0 + 3)).await;
    let m4 = send(s, from_human(&b, "h->b", T0 + 4)).await;
    let log = |f: LogFilter| {
        let s = s.clone();
        async move {
            let out = s.log(f).await.expect("log");
            out.into_iter().map(|m| m.message_id).collect::<Vec<_>>()
        }
    };
    let all = LogFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(log(all.clone()).await, [m4, m3, m2, m1], "newest first");
    assert_eq!(
        log(LogFilter {
            from: Some(LogSender::Human),
            ..all.clone()
        })
        .await,
        [m4, m1]
    );
    assert_eq!(
        log(LogFilter {
            from: Some(LogSender::Peers(vec![a.id.clone()])),
            ..all.clone()
        })
        .await,
        [m2]
    );
    assert_eq!(
        log(LogFilter {
            to: Some(vec![a.id.clone()]),
            ..all.clone()
        })
        .await,
        [m3, m1]
    );
    assert_eq!(
        log(LogFilter {
            to: Some(vec![]),
            ..all.clone()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        log(LogFilter {
            since_ms: T0 + 3,
            ..all.clone()
        })
        .await,
        [m4, m3]
    );
    assert_eq!(
        log(LogFilter {
            limit: 2,
            ..all.clone()
        })
        .await,
        [m4, m3]
    );
    let with = s
        .log(LogFilter {
            with_body: true,
            limit: 1,
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(with[0].body.as_deref(), Some("h->b"));
    let without = s.log(LogFilter { limit: 1, ..all }).await.unwrap();
    assert!(without[0].body.is_none());
}

/// Mail delivered to any of some registrations, newest first, since a time, limited;
/// mail still waiting is not listed.
pub async fn delivered_to_lists_delivered_mail_newest_first(s: &Arc<dyn Store>) {
    let a1 = register(s, 10, "/x/api").await;
    send(s, from_human(&a1, "old session", T0 + 1)).await;
    claim(s, claim_of(&a1, "L1", 10, T0 + 2)).await;
    ack(s, &a1, "L1", None, T0 + 3).await;
    let a2 = register(s, 10, "/x/api").await;
    for (i, t) in [(1, 4), (2, 5)] {
        send(s, from_human(&a2, &format!("new {i}"), T0 + t)).await;
    }
    claim(s, claim_of(&a2, "L2", 10, T0 + 6)).await;
    ack(s, &a2, "L2", None, T0 + 7).await;
    send(s, from_human(&a2, "still waiting", T0 + 8)).await;
    let ids = s.lineage(&a2.id).await.unwrap();
    let got = s.delivered_to(&ids, 0, 50).await.unwrap();
    let got: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(got, ["new 2", "new 1", "old session"]);
    let only_new = s
        .delivered_to(std::slice::from_ref(&a2.id), 0, 50)
        .await
        .unwrap();
    assert_eq!(only_new.len(), 2);
    assert!(only_new.iter().all(|m| m.status == MessageState::Delivered));
    assert_eq!(
        s.delivered_to(&ids, T0 + 5, 50).await.unwrap().len(),
        1,
        "since"
    );
    assert_eq!(
        s.delivered_to(&ids, 0, 1).await.unwrap()[0].body,
        "new 2",
        "limit"
    );
}

/// Queued counts leave leased mail out and give the oldest send time; pending counts
/// include leased mail, per peer and overall.
pub async fn queued_and_pending_counts(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/x/web").await;
    assert_eq!(s.queued_count(&a.id).await.unwrap(), (0, None));
    for t in [5, 6, 7] {
        send(s, from_human(&a, "x", T0 + t)).await;
    }
    send(s, from_human(&b, "y", T0 + 8)).await;
    claim(s, claim_of(&a, "L", 1, T0 + 9)).await;
    assert_eq!(
        s.queued_count(&a.id).await.unwrap(),
        (2, Some(T0 + 6)),
        "leased left out"
    );
    assert_eq!(s.pending_count(&a.id).await.unwrap(), 3, "leased included");
    let counts = s.pending_counts().await.unwrap();
    assert_eq!(counts.get(&a.id), Some(&3));
    assert_eq!(counts.get(&b.id), Some(&1));
    assert_eq!(s.count_pending().await.unwrap(), 4);
    ack(s, &a, "L", None, T0 + 10).await;
    assert_eq!(s.pending_count(&a.id).await.unwrap(), 2);
    assert_eq!(s.count_pending().await.unwrap(), 3);
}

/// Notices come back newest first, with their kind, peer, text and author, up to `limit`.
pub async fn notices_newest_first(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    assert!(s.notices(10).await.unwrap().is_empty());
    for (i, peer_id) in [(1, None), (2, Some(a.id.clone())), (3, None)] {
        s.add_notice(NewNotice {
            kind: "escalation".into(),
            peer_id,
            text: format!("notice {i}"),
            author: if i == 2 { a.address() } else { "you".into() },
            now: T0 + i,
        })
        .await
        .unwrap();
    }
    let got = s.notices(2).await.unwrap();
    let texts: Vec<&str> = got.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(texts, ["notice 3", "notice 2"]);
    assert_eq!(got[1].peer_id.as_deref(), Some(a.id.as_str()));
    assert_eq!(got[1].author, a.address());
    assert_eq!(got[1].at_ms, T0 + 2);
    assert_eq!(got[0].kind, "escalation");
    assert!(got[0].id > got[1].id);
}

// ---- topics and broadcast ------------------------------------------------------------------

async fn subscribe(
    s: &Arc<dyn Store>,
    p: &PeerRecord,
    topic: &str,
    wake: Option<bool>,
    mute: Option<bool>,
    now: i64,
) -> peers_core::wire::Subscription {
    s.subscribe(Subscribe {
        peer_id: p.id.clone(),
        topic: topic.into(),
        wake,
        mute,
        now,
    })
    .await
    .expect("subscribe")
    .expect("the subscriber is registered")
}

async fn status_of(s: &Arc<dyn Store>, id: i64) -> peers_core::wire::MessageStatus {
    s.status(id, false)
        .await
        .expect("status")
        .expect("the message exists")
        .0
}

/// Each reader's (peer id, state) of a message, in the order the copies were stored.
async fn reader_states(s: &Arc<dyn Store>, id: i64) -> Vec<(String, MessageState)> {
    let st = status_of(s, id).await;
    st.readers
        .into_iter()
        .map(|r| (r.peer_id, r.status))
        .collect()
}

/// The sender of a chapter's posts (`lead`, process 10) and sessions in `/x/<name>`
/// (processes 11, 12, …), registered one after another.
async fn lead_and<const N: usize>(
    s: &Arc<dyn Store>,
    names: [&str; N],
) -> (PeerRecord, [PeerRecord; N]) {
    let from = register(s, 10, "/x/lead").await;
    let mut readers = Vec::with_capacity(N);
    for (i, name) in names.iter().enumerate() {
        readers.push(register(s, 11 + i as u32, &format!("/x/{name}")).await);
    }
    (from, readers.try_into().expect("one per name"))
}

/// `n` sessions, each in its own directory, registered 16 at a time (they share commits).
/// Not all at once: a shared server serialises registrations (names are allocated under a
/// lock), and 500 waiting at once would outwait its connection pool on a busy machine.
async fn many_peers(s: &Arc<dyn Store>, n: u32) -> Vec<PeerRecord> {
    let mut out = vec![None; n as usize];
    for wave in (0..n).collect::<Vec<_>>().chunks(16) {
        let mut tasks = tokio::task::JoinSet::new();
        for &i in wave {
            let s = s.clone();
            tasks.spawn(async move { (i, register(&s, 1_000 + i * 2, &format!("/r/w{i}")).await) });
        }
        while let Some(done) = tasks.join_next().await {
            let (i, p) = done.expect("task");
            out[i as usize] = Some(p);
        }
    }
    out.into_iter().map(|p| p.expect("registered")).collect()
}

/// A post to 500 readers stores one message and 500 copies in one commit; `Sent.readers`
/// lists the copies' registrations in the order given; every copy is queued on its own; the
/// topic exists from its first post.
pub async fn a_post_stores_one_message_and_a_copy_per_reader_in_one_commit(s: &Arc<dyn Store>) {
    let from = register(s, 10, "/x/lead").await;
    let mut readers = many_peers(s, 500).await;
    readers.reverse(); // not the registration order: the copies keep the order given
    let wake: Vec<(&PeerRecord, bool)> =
        readers.iter().map(|p| (p, p.claude_pid % 4 == 0)).collect();
    assert!(!s.topic_exists("big").await.unwrap());
    s.flush().await.unwrap();
    let before = s.commits();
    let sent = s
        .send(post(&from, "big", &wake, "main is red", T0 + 1))
        .await
        .expect("send a post to 500 readers");
    assert_eq!(s.commits() - before, 1, "a 500-reader post is one commit");
    let want: Vec<String> = readers.iter().map(|p| p.id.clone()).collect();
    assert_eq!(sent.readers, want, "Sent.readers in input order");
    assert!(s.message_exists(sent.id).await.unwrap());
    assert!(
        s.topic_exists("big").await.unwrap(),
        "the first post created the topic"
    );
    let st = status_of(s, sent.id).await;
    assert_eq!(st.channel.as_deref(), Some("#big"));
    assert_eq!(st.to, "#big");
    assert_eq!(st.to_peer_id, "", "a post has no one recipient");
    assert_eq!(st.status, MessageState::Queued);
    assert_eq!(st.delivered_of(), (0, 500));
    for (r, (p, wake)) in st.readers.iter().zip(&wake) {
        assert_eq!(
            (r.peer_id.as_str(), r.to.as_str(), r.status, r.wake, r.alive),
            (
                p.id.as_str(),
                p.address().as_str(),
                MessageState::Queued,
                *wake,
                true
            ),
            "each reader's own copy"
        );
        assert!(!r.can_wake, "the broker fills can_wake, not the store");
    }
    assert_eq!(
        s.count_pending().await.unwrap(),
        500,
        "one copy per reader waits"
    );
    let w = s.waiting(&readers[7].id).await.unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].body, "main is red");
    assert_eq!(
        w[0].channel.as_deref(),
        Some("#big"),
        "the copy names its topic"
    );
    assert_eq!(w[0].from, from.address());
    assert!(
        s.waiting(&from.id).await.unwrap().is_empty(),
        "the sender has no copy"
    );
}

/// Four readers of 60 posts, three claimers per reader racing: each reader gets each post
/// exactly once, and never another reader's copy or another reader's direct mail.
pub async fn each_reader_claims_its_own_copy_once_under_concurrent_claimers(s: &Arc<dyn Store>) {
    let from = register(s, 10, "/x/lead").await;
    let readers = many_peers(s, 4).await;
    let all: Vec<(&PeerRecord, bool)> = readers.iter().map(|p| (p, true)).collect();
    let mut posts = BTreeSet::new();
    let mut direct: HashMap<String, BTreeSet<i64>> = HashMap::new();
    for i in 0..60 {
        posts.insert(send(s, post(&from, "work", &all, &format!("p{i}"), T0)).await);
        if i % 10 == 0 {
            for r in &readers {
                let id = send(s, from_peer(&from, r, "direct", T0)).await;
                direct.entry(r.id.clone()).or_default().insert(id);
            }
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for r in &readers {
        for t in 0..3 {
            let (s, r) = (s.clone(), r.clone());
            tasks.spawn(async move {
                let mut got = vec![];
                for round in 0..200 {
                    let lease = format!("L-{}-{t}-{round}", r.id);
                    let out = s
                        .claim(claim_of(&r, &lease, 7, T0 + 1))
                        .await
                        .expect("claim");
                    if out.messages.is_empty() {
                        break;
                    }
                    got.extend(
                        out.messages
                            .iter()
                            .map(|m| (m.message_id, m.channel.clone())),
                    );
                    let (delivered, _) = ack_via(&s, &r, &lease, "PostToolUse", None, T0 + 2).await;
                    assert_eq!(delivered as usize, out.messages.len(), "its own lease");
                    tokio::task::yield_now().await;
                }
                (r.id, got)
            });
        }
    }
    let mut seen: HashMap<String, HashMap<i64, u32>> = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        let (reader, got) = done.expect("task");
        for (id, channel) in got {
            let is_post = posts.contains(&id);
            assert_eq!(channel.is_some(), is_post, "message {id}'s channel");
            *seen
                .entry(reader.clone())
                .or_default()
                .entry(id)
                .or_default() += 1;
        }
    }
    for r in &readers {
        let mine = seen.remove(&r.id).unwrap_or_default();
        let twice: Vec<_> = mine.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{} claimed a copy twice: {twice:?}",
            r.name
        );
        let got: BTreeSet<i64> = mine.into_keys().collect();
        let want: BTreeSet<i64> = posts.union(&direct[&r.id]).copied().collect();
        assert_eq!(
            got, want,
            "{} got every post and its own direct mail, nothing else",
            r.name
        );
    }
    for id in &posts {
        let st = status_of(s, *id).await;
        assert_eq!(
            st.delivered_of(),
            (4, 4),
            "post {id}: every copy delivered once"
        );
        assert_eq!(st.status, MessageState::Delivered);
    }
}

/// A reader whose lease lapsed gets its copy back; the readers who have theirs (delivered,
/// or under a live lease) do not, and the sweep requeues only the lapsed copy.
pub async fn a_readers_lapsed_lease_comes_back_only_to_that_reader(s: &Arc<dyn Store>) {
    let (from, [a, b, c]) = lead_and(s, ["a", "b", "c"]).await;
    let id = send(
        s,
        post(
            &from,
            "t",
            &[(&a, true), (&b, true), (&c, true)],
            "once each",
            T0,
        ),
    )
    .await;
    assert_eq!(
        claim(s, claim_of(&a, "LA", 10, T0 + 1))
            .await
            .messages
            .len(),
        1
    );
    assert_eq!(ack(s, &a, "LA", None, T0 + 2).await, (1, 0));
    let mut cb = claim_of(&b, "LB", 10, T0 + 1);
    cb.lease_expires_ms = T0 + 10;
    assert_eq!(claim(s, cb).await.messages.len(), 1);
    let mut cc = claim_of(&c, "LC", 10, T0 + 1);
    cc.lease_expires_ms = T0 + 10_000;
    assert_eq!(claim(s, cc).await.messages.len(), 1);
    assert!(
        s.claimable(&b.id, T0 + 11).await.unwrap(),
        "b's lease lapsed"
    );
    assert!(
        !s.claimable(&a.id, T0 + 11).await.unwrap(),
        "a has its copy"
    );
    assert!(
        !s.claimable(&c.id, T0 + 11).await.unwrap(),
        "c's lease holds"
    );
    let swept = sweep(s, &[], T0 + 20, 60_000).await;
    assert_eq!(swept.requeued, 1, "only b's copy goes back to the queue");
    assert_eq!(
        reader_states(s, id).await,
        [
            (a.id.clone(), MessageState::Delivered),
            (b.id.clone(), MessageState::Queued),
            (c.id.clone(), MessageState::Leased),
        ]
    );
    assert!(
        claim(s, claim_of(&a, "LA2", 10, T0 + 21))
            .await
            .messages
            .is_empty()
    );
    assert!(
        claim(s, claim_of(&c, "LC2", 10, T0 + 21))
            .await
            .messages
            .is_empty()
    );
    let again = claim(s, claim_of(&b, "LB2", 10, T0 + 21)).await;
    assert_eq!(bodies(&again), ["once each"], "b gets its copy again");
    assert_eq!(again.messages[0].message_id, id);
}

/// Readers ack their own copies, even under the same lease id; the post's status counts N of
/// M delivered, with each reader's state and how its copy was delivered, and turns
/// `delivered` once every copy is.
pub async fn an_ack_delivers_one_readers_copy_and_status_counts_readers(s: &Arc<dyn Store>) {
    let (from, [a, b, c]) = lead_and(s, ["a", "b", "c"]).await;
    let id = send(
        s,
        post(
            &from,
            "t",
            &[(&a, false), (&b, true), (&c, false)],
            "status?",
            T0,
        ),
    )
    .await;
    // Lease ids are chosen by each claimer: two readers may hold leases of the same id.
    claim(s, claim_of(&a, "SAME", 10, T0 + 1)).await;
    claim(s, claim_of(&b, "SAME", 10, T0 + 1)).await;
    assert_eq!(
        ack_via(s, &a, "SAME", "PostToolUse", None, T0 + 2).await,
        (1, 0),
        "a's ack delivers a's copy only"
    );
    let st = status_of(s, id).await;
    assert_eq!(st.status, MessageState::Queued, "not every reader has it");
    assert_eq!(st.delivered_of(), (1, 3));
    assert_eq!(
        reader_states(s, id).await,
        [
            (a.id.clone(), MessageState::Delivered),
            (b.id.clone(), MessageState::Leased),
            (c.id.clone(), MessageState::Queued),
        ],
        "a reader's lease is shown"
    );
    assert_eq!(st.readers[0].delivered_via.as_deref(), Some("PostToolUse"));
    assert_eq!(st.readers[0].delivered_at_ms, Some(T0 + 2));
    assert_eq!(
        (st.readers[0].wake, st.readers[1].wake),
        (false, true),
        "each copy keeps its wake"
    );
    assert_eq!(
        ack(s, &b, "SAME", None, T0 + 3).await,
        (1, 0),
        "b's own copy"
    );
    assert_eq!(
        waiting_bodies(s, &c).await,
        ["status?"],
        "c's copy still waits"
    );
    claim(s, claim_of(&c, "LC", 10, T0 + 4)).await;
    assert_eq!(ack(s, &c, "LC", None, T0 + 5).await, (1, 0));
    let st = status_of(s, id).await;
    assert_eq!(st.delivered_of(), (3, 3));
    assert_eq!(st.status, MessageState::Delivered, "every reader has it");
    let via: Vec<Option<&str>> = st
        .readers
        .iter()
        .map(|r| r.delivered_via.as_deref())
        .collect();
    assert_eq!(via, [Some("PostToolUse"), Some("Stop"), Some("Stop")]);
    assert_eq!(
        st.readers[2].delivered_at_ms,
        Some(T0 + 5),
        "each reader's own time"
    );
}

/// A subscription starts with `wake` and `mute` off, keeps what a later call leaves `None`,
/// and belongs to the session's name in its directory: muted, unsubscribed and gone sessions
/// are not readers, the next session with that name there inherits it, a session of the
/// same name in another directory does not.
pub async fn subscriptions_belong_to_the_name_in_its_directory(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    // Every optional field set, so a reader read back misses none of them.
    let b = register_as(
        s,
        RegisterRequest {
            session_id: Some("session-b".into()),
            git_root: Some("/y".into()),
            git_branch: Some("main".into()),
            tty: Some("/dev/pts/4".into()),
            summary: Some("web \"quoted\" ☃".into()),
            agent: peers_core::wire::Agent::Codex,
            ..request(11, "/y/web")
        },
        T0,
    )
    .await
    .peer;
    assert!(
        s.topic_readers("t").await.unwrap().is_empty(),
        "unknown topic"
    );
    let sub = subscribe(s, &a, "t", None, None, T0 + 1).await;
    assert_eq!(
        (sub.topic.as_str(), sub.wake, sub.mute, sub.since_ms),
        ("t", false, false, T0 + 1),
        "defaults"
    );
    assert!(
        s.topic_exists("t").await.unwrap(),
        "subscribing created the topic"
    );
    let sub = subscribe(s, &a, "t", Some(true), None, T0 + 2).await;
    assert_eq!(
        (sub.wake, sub.mute, sub.since_ms),
        (true, false, T0 + 1),
        "wake on"
    );
    let sub = subscribe(s, &a, "t", None, Some(true), T0 + 3).await;
    assert_eq!((sub.wake, sub.mute), (true, true), "mute on, wake kept");
    assert_eq!(
        s.subscriptions(&a.id).await.unwrap(),
        std::slice::from_ref(&sub)
    );
    assert!(
        s.topic_readers("t").await.unwrap().is_empty(),
        "muted: not a reader"
    );
    subscribe(s, &a, "t", None, Some(false), T0 + 4).await;
    subscribe(s, &b, "t", None, None, T0 + 5).await;
    subscribe(s, &b, "other", None, None, T0 + 5).await;
    let readers: Vec<(String, bool)> = s
        .topic_readers("t")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.peer.id, r.wake))
        .collect();
    assert_eq!(
        readers,
        [(a.id.clone(), true), (b.id.clone(), false)],
        "by name"
    );
    for r in s.topic_readers("t").await.unwrap() {
        assert_eq!(
            Some(&r.peer),
            s.peer(&r.peer.id).await.unwrap().as_ref(),
            "a reader is its whole registration"
        );
    }
    let topics: Vec<String> = s
        .subscriptions(&b.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.topic)
        .collect();
    assert_eq!(topics, ["other", "t"], "by topic");
    assert!(s.unsubscribe(&b.id, "t").await.unwrap());
    assert!(
        !s.unsubscribe(&b.id, "t").await.unwrap(),
        "nothing left to end"
    );
    assert!(!s.unsubscribe("no-such-peer", "t").await.unwrap());
    let no_one = s
        .subscribe(Subscribe {
            peer_id: "no-such-peer".into(),
            topic: "t".into(),
            wake: None,
            mute: None,
            now: T0,
        })
        .await
        .unwrap();
    assert!(no_one.is_none(), "an unknown peer subscribes nothing");
    let ids = |r: Vec<crate::TopicReader>| r.into_iter().map(|r| r.peer.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.topic_readers("t").await.unwrap()),
        std::slice::from_ref(&a.id)
    );
    sweep(s, &[&a], T0 + 6, 60_000).await;
    assert!(
        s.topic_readers("t").await.unwrap().is_empty(),
        "gone: not a reader"
    );
    // The same name in another directory is another subscriber.
    let elsewhere = register(s, 12, "/z/api").await;
    assert_eq!(elsewhere.name, "api");
    assert!(s.subscriptions(&elsewhere.id).await.unwrap().is_empty());
    assert!(s.topic_readers("t").await.unwrap().is_empty());
    s.unregister(&elsewhere.id, T0 + 7).await.unwrap();
    // The next session with the name in its directory has the subscription.
    let next = register(s, 13, "/x/api").await;
    assert_eq!(next.name, "api");
    let subs = s.subscriptions(&next.id).await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (subs[0].topic.as_str(), subs[0].wake, subs[0].mute),
        ("t", true, false)
    );
    assert_eq!(
        ids(s.topic_readers("t").await.unwrap()),
        std::slice::from_ref(&next.id)
    );
}

/// `queued_to_wake` counts the queued copies that may wake their reader; a claim takes every
/// copy, wake or not, in send order.
pub async fn queued_to_wake_counts_only_wake_copies_and_claims_take_all(s: &Arc<dyn Store>) {
    let (from, [a]) = lead_and(s, ["a"]).await;
    let quiet = send(s, post(&from, "t", &[(&a, false)], "no wake", T0)).await;
    assert_eq!(s.queued_to_wake(&a.id).await.unwrap(), 0);
    assert!(s.claimable(&a.id, T0 + 1).await.unwrap(), "still claimable");
    assert_eq!(s.queued_count(&a.id).await.unwrap(), (1, Some(T0)));
    let direct = send(s, from_peer(&from, &a, "direct", T0 + 1)).await;
    let loud = send(s, post(&from, "u", &[(&a, true)], "wake", T0 + 2)).await;
    assert_eq!(
        s.queued_to_wake(&a.id).await.unwrap(),
        2,
        "direct mail and a wake post"
    );
    let out = claim(s, claim_of(&a, "L", 50, T0 + 3)).await;
    let got: Vec<i64> = out.messages.iter().map(|m| m.message_id).collect();
    assert_eq!(got, [quiet, direct, loud], "all of them, in send order");
    assert_eq!(
        s.queued_to_wake(&a.id).await.unwrap(),
        0,
        "leased: not queued"
    );
    ack(s, &a, "L", Some(vec![]), T0 + 4).await;
    assert_eq!(
        s.queued_to_wake(&a.id).await.unwrap(),
        2,
        "released: queued again"
    );
}

/// `topics` lists every topic by name with its subscriber and post counts and its last post;
/// the viewer's own subscription (by its name and directory) is filled in.
pub async fn topics_list_counts_and_the_viewers_subscription(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/a").await;
    let b = register(s, 11, "/x/b").await;
    let c = register(s, 12, "/x/c").await;
    subscribe(s, &a, "t1", Some(true), None, T0 + 1).await;
    subscribe(s, &b, "t1", None, None, T0 + 2).await;
    subscribe(s, &b, "t2", None, Some(true), T0 + 3).await;
    send(
        s,
        post(&c, "t1", &[(&a, true), (&b, false)], "first", T0 + 4),
    )
    .await;
    let last = send(
        s,
        post(&c, "t1", &[(&a, true), (&b, false)], "second", T0 + 5),
    )
    .await;
    send(s, from_peer(&c, &a, "direct mail is no post", T0 + 6)).await;
    let all = s.topics(None).await.unwrap();
    let names: Vec<&str> = all.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(names, ["t1", "t2"]);
    let (t1, t2) = (&all[0], &all[1]);
    assert_eq!((t1.created_ms, t1.subscribers, t1.posts), (T0 + 1, 2, 2));
    assert_eq!(
        (t1.last_post_id, t1.last_post_ms),
        (Some(last), Some(T0 + 5))
    );
    assert_eq!((t2.created_ms, t2.subscribers, t2.posts), (T0 + 3, 1, 0));
    assert_eq!((t2.last_post_id, t2.last_post_ms), (None, None));
    assert!(all.iter().all(|t| t.subscription.is_none()), "no viewer");
    let for_a = s.topics(Some(&a.id)).await.unwrap();
    let sub = for_a[0].subscription.as_ref().expect("a is in t1");
    assert_eq!(
        (sub.topic.as_str(), sub.wake, sub.mute),
        ("t1", true, false)
    );
    assert!(for_a[1].subscription.is_none(), "a is not in t2");
    let for_b = s.topics(Some(&b.id)).await.unwrap();
    assert!(
        for_b[1].subscription.as_ref().is_some_and(|s| s.mute),
        "b muted t2"
    );
    let for_c = s.topics(Some(&c.id)).await.unwrap();
    assert!(
        for_c.iter().all(|t| t.subscription.is_none()),
        "c posts, not subscribed"
    );
    // A later session with a's name in a's directory sees a's subscription as its own.
    let a2 = register(s, 10, "/x/a").await;
    let for_a2 = s.topics(Some(&a2.id)).await.unwrap();
    assert!(for_a2[0].subscription.is_some());
}

/// `topic_posts`: the newest `limit` posts after `since_id`, oldest first, with bodies and
/// every reader's copy — posts from before a session subscribed included; other topics and
/// direct mail not.
pub async fn topic_posts_page_by_since_id_and_limit_oldest_first(s: &Arc<dyn Store>) {
    let (from, [a, late]) = lead_and(s, ["a", "late"]).await;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(
            send(
                s,
                post(&from, "t", &[(&a, false)], &format!("p{i}"), T0 + i),
            )
            .await,
        );
        send(s, post(&from, "other", &[(&a, false)], "elsewhere", T0 + i)).await;
        send(s, from_peer(&from, &a, "direct", T0 + i)).await;
    }
    subscribe(s, &late, "t", None, None, T0 + 10).await;
    let page = |since_id: Option<i64>, limit: u32| {
        let s = s.clone();
        async move {
            s.topic_posts(TopicPostsFilter {
                topic: "t".into(),
                since_id,
                limit,
            })
            .await
            .expect("topic posts")
        }
    };
    let newest = page(None, 3).await;
    let got: Vec<i64> = newest.iter().map(|m| m.message_id).collect();
    assert_eq!(got, ids[2..], "the newest three, oldest first");
    let bodies: Vec<Option<&str>> = newest.iter().map(|m| m.body.as_deref()).collect();
    assert_eq!(bodies, [Some("p2"), Some("p3"), Some("p4")], "with bodies");
    assert!(newest.iter().all(|m| m.channel.as_deref() == Some("#t")));
    assert_eq!(newest[0].readers.len(), 1, "and readers");
    assert_eq!(newest[0].readers[0].peer_id, a.id);
    let after: Vec<i64> = page(Some(ids[1]), 10)
        .await
        .iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(after, ids[2..], "only after since_id");
    let all: Vec<i64> = page(None, 50).await.iter().map(|m| m.message_id).collect();
    assert_eq!(all, ids, "from before the late subscription too");
    assert!(page(Some(ids[4]), 10).await.is_empty());
    let unknown = s
        .topic_posts(TopicPostsFilter {
            topic: "nope".into(),
            since_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert!(unknown.is_empty());
}

/// The log's `topic` filter lists posts to that topic; its `to` filter matches any reader's
/// copy; each entry carries its readers.
pub async fn log_filters_by_topic_and_by_reader(s: &Arc<dyn Store>) {
    let (from, [a, b]) = lead_and(s, ["a", "b"]).await;
    let p1 = send(
        s,
        post(&from, "t", &[(&a, false), (&b, true)], "to both", T0 + 1),
    )
    .await;
    let d = send(s, from_peer(&from, &a, "direct", T0 + 2)).await;
    let p2 = send(s, post(&from, "u", &[(&b, true)], "to b", T0 + 3)).await;
    let log = |f: LogFilter| {
        let s = s.clone();
        async move { s.log(f).await.expect("log") }
    };
    let all = LogFilter {
        limit: 100,
        ..Default::default()
    };
    let ids = |v: Vec<peers_core::wire::MessageStatus>| {
        v.into_iter().map(|m| m.message_id).collect::<Vec<_>>()
    };
    let topic_t = log(LogFilter {
        topic: Some("t".into()),
        ..all.clone()
    })
    .await;
    assert_eq!(topic_t.len(), 1);
    assert_eq!(topic_t[0].message_id, p1);
    assert_eq!(topic_t[0].readers.len(), 2, "with its readers");
    assert_eq!(
        ids(log(LogFilter {
            topic: Some("nope".into()),
            ..all.clone()
        })
        .await),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(log(LogFilter {
            to: Some(vec![b.id.clone()]),
            ..all.clone()
        })
        .await),
        [p2, p1],
        "b's copies"
    );
    assert_eq!(
        ids(log(LogFilter {
            to: Some(vec![a.id.clone()]),
            ..all.clone()
        })
        .await),
        [d, p1],
        "a's copy and a's direct mail"
    );
    assert_eq!(
        ids(log(LogFilter {
            to: Some(vec![a.id.clone()]),
            topic: Some("t".into()),
            ..all.clone()
        })
        .await),
        [p1]
    );
    let everything = log(all).await;
    assert_eq!(ids(everything.clone()), [p2, d, p1]);
    assert_eq!(everything[1].readers.len(), 1, "direct mail has one reader");
    assert_eq!(everything[1].channel, None);
}

/// A re-registration takes the waiting copies of the registration it replaces (its posts
/// with the rest), not its delivered ones, and leaves other readers' copies alone.
pub async fn a_reregistration_takes_its_waiting_copies_only(s: &Arc<dyn Store>) {
    let (from, [a, b]) = lead_and(s, ["a", "b"]).await;
    let seen = send(s, post(&from, "t", &[(&a, true), (&b, true)], "seen", T0)).await;
    claim(s, claim_of(&a, "LA", 10, T0 + 1)).await;
    ack(s, &a, "LA", None, T0 + 2).await;
    let unseen = send(
        s,
        post(&from, "t", &[(&a, false), (&b, true)], "unseen", T0 + 3),
    )
    .await;
    let again = register_as(s, request(11, "/x/a"), T0 + 4).await;
    assert_eq!(again.replaced, std::slice::from_ref(&a.id));
    assert_eq!(again.inherited_messages, 1, "the waiting copy only");
    let w = s.waiting(&again.peer.id).await.unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].message_id, w[0].channel.as_deref()),
        (unseen, Some("#t"))
    );
    let st = status_of(s, unseen).await;
    assert_eq!(
        (st.readers[0].peer_id.as_str(), st.readers[0].to.as_str()),
        (again.peer.id.as_str(), again.peer.address().as_str()),
        "the copy moved to the new registration"
    );
    assert!(!st.readers[0].wake, "and keeps its wake");
    assert_eq!(st.readers[1].peer_id, b.id, "b's copy stays b's");
    assert_eq!(
        reader_states(s, seen).await,
        [
            (a.id.clone(), MessageState::Delivered),
            (b.id.clone(), MessageState::Queued)
        ],
        "a delivered copy stays with the registration that read it"
    );
    assert_eq!(waiting_bodies(s, &b).await, ["seen", "unseen"]);
}

/// The sweep works per copy: a lapsed lease goes back to its reader's queue; past the TTL
/// the waiting copies expire and the delivered ones stay delivered; a post none of whose
/// copies can still be delivered is `expired`.
pub async fn the_sweep_requeues_and_expires_each_copy_on_its_own(s: &Arc<dyn Store>) {
    let (from, [a, b, c]) = lead_and(s, ["a", "b", "c"]).await;
    let mut m = post(
        &from,
        "t",
        &[(&a, true), (&b, true), (&c, false)],
        "brief",
        T0,
    );
    m.expires_ms = T0 + 50;
    let id = send(s, m).await;
    claim(s, claim_of(&a, "LA", 10, T0 + 1)).await;
    ack(s, &a, "LA", None, T0 + 2).await;
    let mut cb = claim_of(&b, "LB", 10, T0 + 1);
    cb.lease_expires_ms = T0 + 10;
    claim(s, cb).await;
    let swept = sweep(s, &[], T0 + 20, 60_000).await;
    assert_eq!((swept.requeued, swept.expired), (1, 0), "b's lapsed lease");
    assert_eq!(s.queued_count(&b.id).await.unwrap().0, 1);
    assert_eq!(status_of(s, id).await.status, MessageState::Queued);
    let swept = sweep(s, &[], T0 + 100, 60_000).await;
    assert_eq!(swept.expired, 2, "b's and c's copies expire");
    assert_eq!(
        reader_states(s, id).await,
        [
            (a.id.clone(), MessageState::Delivered),
            (b.id.clone(), MessageState::Expired),
            (c.id.clone(), MessageState::Expired),
        ]
    );
    let st = status_of(s, id).await;
    assert_eq!(
        st.status,
        MessageState::Expired,
        "no copy can be delivered any more"
    );
    assert_eq!(st.delivered_of(), (1, 3));
    assert!(waiting_bodies(s, &b).await.is_empty());
    assert_eq!(s.count_pending().await.unwrap(), 0);
}

// ---- retention and export ------------------------------------------------------------------

/// Claims and acks everything waiting for `p` at `now`.
async fn deliver_all(s: &Arc<dyn Store>, p: &PeerRecord, lease: &str, now: i64) {
    claim(s, claim_of(p, lease, 1000, now)).await;
    ack(s, p, lease, None, now).await;
}

/// A message from `from` to `to` answering `reply_to`.
fn reply(
    from: &PeerRecord,
    to: &PeerRecord,
    body: &str,
    reply_to: i64,
    sent_ms: i64,
) -> NewMessage {
    NewMessage {
        reply_to: Some(reply_to),
        ..from_peer(from, to, body, sent_ms)
    }
}

/// Ids of the messages a human's search for `query` finds.
async fn found(s: &Arc<dyn Store>, query: &str) -> BTreeSet<i64> {
    s.search(SearchFilter {
        query: query.into(),
        limit: 100,
        ..SearchFilter::default()
    })
    .await
    .expect("search")
    .into_iter()
    .map(|h| h.message_id)
    .collect()
}

/// Search sees every send acknowledged before it began, however the backend indexes (SQLite
/// indexes after the send's commit, in batches), and only what is stored: concurrent
/// sends are each found by a search that starts after their answer; once the newest message
/// is pruned, a new send may get its id back (SQLite hands out `MAX(id) + 1`) and is found
/// by its own words, never by the pruned message's.
pub async fn search_finds_each_send_before_its_answer_even_on_a_reused_id(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/x/web").await;
    let mut tasks = vec![];
    for i in 0..40 {
        let s = s.clone();
        let m = from_peer(&a, &b, &format!("racing word{i}"), T0 + i);
        tasks.push(tokio::spawn(async move {
            let id = send(&s, m).await;
            (id, found(&s, &format!("word{i}")).await)
        }));
    }
    for t in tasks {
        let (id, hits) = t.await.expect("send and search");
        assert_eq!(
            hits,
            BTreeSet::from([id]),
            "a search after the send's answer finds it"
        );
    }
    assert_eq!(found(s, "racing").await.len(), 40);
    deliver_all(s, &b, "B1", T0 + 100).await;
    let newest = send(s, from_peer(&a, &b, "walrus alone", T0 + 200)).await;
    deliver_all(s, &b, "B2", T0 + 201).await;
    assert_eq!(found(s, "walrus").await, BTreeSet::from([newest]));
    while s.prune_delivered(T0 + 1_000, 100).await.expect("prune") > 0 {}
    assert!(
        found(s, "walrus OR racing").await.is_empty(),
        "pruned mail is not found"
    );
    let next = send(s, from_peer(&a, &b, "narwhal next", T0 + 300)).await;
    assert_eq!(found(s, "narwhal").await, BTreeSet::from([next]));
    assert!(
        found(s, "walrus").await.is_empty(),
        "the reused id is not the old message"
    );
}

/// Retention: mail sent before the cut whose every copy is delivered or expired goes, with
/// its copies, tags and search entries, `limit` messages per call, oldest first; delivered
/// mail sent after the cut stays; old mail a reader still waits for (a direct message, one
/// reader's copy of a post, a handover for the next session) stays until its TTL; a thread
/// whose older half went still reads, from the oldest message left.
pub async fn retention_prunes_old_delivered_mail_and_keeps_the_rest(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/x/web").await;
    let c = register(s, 12, "/x/ops").await;
    let cut = T0 + 10_000;
    // An old thread, delivered both ways, then answered after the cut.
    let mut root = from_peer(&a, &b, "zebra root", T0);
    root.tags = vec!["deploy".into()];
    let root_id = send(s, root).await;
    deliver_all(s, &b, "B1", T0 + 1).await;
    let first_id = send(s, reply(&b, &a, "zebra first reply", root_id, T0 + 2)).await;
    deliver_all(s, &a, "A1", T0 + 3).await;
    // Seven more old delivered messages, for the batches.
    let mut filler = Vec::new();
    for i in 0..7 {
        filler.push(send(s, from_human(&b, &format!("old filler {i}"), T0 + 10 + i)).await);
    }
    deliver_all(s, &b, "B2", T0 + 20).await;
    // An old post both readers of which let expire: final, so it goes too.
    let mut lapsed = post(
        &a,
        "ops",
        &[(&b, false), (&c, false)],
        "zebra lapsed",
        T0 + 30,
    );
    lapsed.expires_ms = T0 + 40;
    let lapsed_id = send(s, lapsed).await;
    sweep(s, &[], T0 + 50, 60_000).await;
    // Old mail still waiting: for c directly, c's copy of a post b has read, a handover.
    let waiting_id = send(s, from_peer(&a, &c, "zebra waiting", T0 + 60)).await;
    let half_id = send(
        s,
        post(
            &a,
            "ops",
            &[(&b, false), (&c, false)],
            "zebra half read",
            T0 + 61,
        ),
    )
    .await;
    deliver_all(s, &b, "B3", T0 + 62).await;
    let handover_id = send(
        s,
        NewMessage {
            to_address: "api".into(),
            channel: Some(peers_core::wire::HANDOVER_CHANNEL.into()),
            readers: vec![Reader {
                peer_id: String::new(),
                address: "api".into(),
                wake: false,
            }],
            ..from_peer(&a, &a, "zebra handover", T0 + 63)
        },
    )
    .await;
    // After the cut: two more replies to the thread, delivered.
    let mut second = reply(&a, &b, "zebra second reply", first_id, cut + 1);
    second.tags = vec!["deploy".into()];
    let second_id = send(s, second).await;
    deliver_all(s, &b, "B4", cut + 2).await;
    let third_id = send(s, reply(&b, &a, "zebra third reply", second_id, cut + 3)).await;
    deliver_all(s, &a, "A2", cut + 4).await;

    let before = found(s, "zebra").await;
    assert!(before.contains(&root_id) && before.contains(&lapsed_id));
    // Ten old final messages: the root, its first reply, seven fillers, the lapsed post.
    let mut batches = Vec::new();
    loop {
        let n = s.prune_delivered(cut, 4).await.expect("prune");
        batches.push(n);
        if n < 4 {
            break;
        }
    }
    assert_eq!(
        batches,
        [4, 4, 2],
        "at most `limit` per call, until none is left"
    );
    assert_eq!(
        s.prune_delivered(cut, 4).await.unwrap(),
        0,
        "nothing more to prune"
    );

    for id in [root_id, first_id, lapsed_id].iter().chain(&filler) {
        assert!(
            !s.message_exists(*id).await.unwrap(),
            "old delivered or expired message {id} was pruned"
        );
        assert!(s.status(*id, true).await.unwrap().is_none());
    }
    for id in [waiting_id, half_id, handover_id, second_id, third_id] {
        assert!(
            s.message_exists(id).await.unwrap(),
            "message {id} is waiting for a reader or young: kept"
        );
    }
    assert_eq!(
        reader_states(s, half_id).await,
        [
            (b.id.clone(), MessageState::Delivered),
            (c.id.clone(), MessageState::Queued)
        ],
        "the half-read post keeps both copies"
    );
    assert_eq!(
        waiting_bodies(s, &c).await,
        ["zebra waiting", "zebra half read"],
        "c's waiting mail is untouched"
    );

    let thread: Vec<i64> = s
        .thread(third_id)
        .await
        .unwrap()
        .into_iter()
        .map(|(m, _)| m.message_id)
        .collect();
    assert_eq!(
        thread,
        [second_id, third_id],
        "the thread reads from its oldest message left"
    );
    let (kept, _) = s.status(second_id, true).await.unwrap().unwrap();
    assert_eq!(
        kept.reply_to,
        Some(first_id),
        "a reply keeps what it answered"
    );
    assert_eq!(kept.body.as_deref(), Some("zebra second reply"));

    assert_eq!(
        found(s, "zebra").await,
        BTreeSet::from([waiting_id, half_id, handover_id, second_id, third_id]),
        "search no longer finds pruned mail"
    );
    let tagged: Vec<i64> = s
        .log(LogFilter {
            tag: Some("deploy".into()),
            limit: 100,
            ..LogFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(tagged, [second_id], "the pruned root's tag went with it");
    let delivered: Vec<i64> = s
        .delivered_to(std::slice::from_ref(&b.id), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(delivered, [second_id, half_id]);
}

/// The export: every message in id order, page by page (`after_id`, `limit`), from
/// `since_ms`, each with its body, tags, project, every reader's state and its thread's root.
pub async fn export_pages_every_message_in_id_order(s: &Arc<dyn Store>) {
    let a = register(s, 10, "/x/api").await;
    let b = register(s, 11, "/x/web").await;
    let mut q = from_peer(&a, &b, "question", T0);
    q.tags = vec!["deploy".into(), "db".into()];
    q.project = Some("api".into());
    let q_id = send(s, q).await;
    deliver_all(s, &b, "B1", T0 + 1).await;
    let answer_id = send(s, reply(&b, &a, "answer", q_id, T0 + 2)).await;
    let more_id = send(s, reply(&a, &b, "more", answer_id, T0 + 3)).await;
    let post_id = send(s, post(&a, "ops", &[(&b, true)], "to all of ops", T0 + 4)).await;

    let page = s.export_page(0, 0, 2).await.unwrap();
    let ids: Vec<i64> = page.iter().map(|m| m.message.message_id).collect();
    assert_eq!(ids, [q_id, answer_id], "the first page, in id order");
    let first = &page[0];
    assert_eq!(first.thread_id, q_id);
    assert_eq!(first.message.body.as_deref(), Some("question"));
    assert_eq!(first.message.tags, ["deploy", "db"]);
    assert_eq!(first.message.project.as_deref(), Some("api"));
    assert_eq!(first.message.from, a.address());
    assert_eq!(
        first
            .message
            .readers
            .iter()
            .map(|r| (r.to.clone(), r.status))
            .collect::<Vec<_>>(),
        [(b.address(), MessageState::Delivered)]
    );
    assert_eq!(page[1].message.reply_to, Some(q_id));
    let rest = s.export_page(answer_id, 0, 2).await.unwrap();
    let ids: Vec<(i64, i64)> = rest
        .iter()
        .map(|m| (m.message.message_id, m.thread_id))
        .collect();
    assert_eq!(ids, [(more_id, q_id), (post_id, post_id)], "the next page");
    assert_eq!(rest[1].message.channel.as_deref(), Some("#ops"));
    assert_eq!(rest[1].message.readers[0].status, MessageState::Queued);
    assert!(s.export_page(post_id, 0, 2).await.unwrap().is_empty());
    let since: Vec<i64> = s
        .export_page(0, T0 + 3, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.message.message_id)
        .collect();
    assert_eq!(since, [more_id, post_id], "only what was sent since");
}

// ---- handovers -----------------------------------------------------------------------------

/// A handover from `from` for the next session of `to` (`name` or `name@host`): one copy
/// waiting for no registration yet, as `POST /v1/handovers` stores it.
fn handover(from: &PeerRecord, to: &str, note: &str, sent_ms: i64) -> NewMessage {
    NewMessage {
        to_address: to.into(),
        channel: Some(peers_core::wire::HANDOVER_CHANNEL.into()),
        readers: vec![Reader {
            peer_id: String::new(),
            address: to.into(),
            wake: false,
        }],
        ..from_peer(from, from, note, sent_ms)
    }
}

/// Handovers wait for the first registration of their name (on any host, or on the host
/// `name@host` names) after they were left: several in the order they were left, taken once;
/// a session registered before the note, another name or another host never gets them. Mail
/// sent to a name while no session of it ran goes the same way.
pub async fn handovers_wait_in_order_for_the_next_session_of_their_name_and_go_once(
    s: &Arc<dyn Store>,
) {
    let alpha = register(s, 10, "/x/alpha").await;
    let beta = register(s, 12, "/x/beta").await;
    let first = send(s, handover(&alpha, "alpha", "first", T0 + 1)).await;
    let second = send(s, handover(&alpha, "ALPHA", "second", T0 + 2)).await;
    let on_b = send(s, handover(&alpha, "alpha@host-b", "on host-b", T0 + 3)).await;
    let for_beta = send(s, handover(&alpha, "beta", "for beta", T0 + 4)).await;
    assert_eq!(
        s.take_handovers(&alpha.id).await.unwrap(),
        0,
        "the session that left them registered before them"
    );
    assert_eq!(s.take_handovers(&beta.id).await.unwrap(), 0, "beta too");
    assert_eq!(status_of(s, first).await.readers[0].peer_id, "");

    s.unregister(&alpha.id, T0 + 5).await.unwrap();
    let next = register_as(s, request(14, "/x/alpha"), T0 + 6).await.peer;
    assert_eq!(next.name, "alpha");
    assert_eq!(
        s.take_handovers(&next.id).await.unwrap(),
        2,
        "the next alpha on host-a takes the two for any alpha, not the one for host-b"
    );
    assert_eq!(waiting_bodies(s, &next).await, ["first", "second"]);
    let st = status_of(s, second).await;
    assert_eq!(
        (st.readers[0].peer_id.as_str(), st.readers[0].to.as_str()),
        (next.id.as_str(), next.address().as_str()),
        "the copy is the new registration's"
    );
    assert_eq!(st.readers[0].status, MessageState::Queued);
    assert_eq!(s.take_handovers(&next.id).await.unwrap(), 0, "taken once");

    // Mail for alpha: one while it ran; after it ended, one to the bare name (stored so by
    // the broker) and one to alpha@host-a.
    let to_name = |m: NewMessage| NewMessage {
        to_address: "alpha".into(),
        ..m
    };
    send(s, to_name(from_peer(&beta, &next, "while it ran", T0 + 7))).await;
    s.unregister(&next.id, T0 + 8).await.unwrap();
    let none_ran = send(
        s,
        to_name(from_peer(&beta, &next, "while none ran", T0 + 9)),
    )
    .await;
    send(s, from_peer(&beta, &next, "for alpha@host-a", T0 + 9)).await;

    let elsewhere = register_as(
        s,
        RegisterRequest {
            machine_id: "machine-b".into(),
            host: "host-b".into(),
            ..request(16, "/y/alpha")
        },
        T0 + 10,
    )
    .await
    .peer;
    assert_eq!(elsewhere.name, "alpha");
    assert_eq!(
        s.take_handovers(&elsewhere.id).await.unwrap(),
        2,
        "alpha on host-b takes the note for alpha@host-b and the mail sent to alpha while \
         none ran, not the mail for alpha@host-a or sent while alpha ran"
    );
    assert_eq!(
        waiting_bodies(s, &elsewhere).await,
        ["on host-b", "while none ran"]
    );
    assert_eq!(status_of(s, on_b).await.readers[0].peer_id, elsewhere.id);
    assert_eq!(
        status_of(s, none_ran).await.readers[0].peer_id,
        elsewhere.id
    );
    assert_eq!(
        waiting_bodies(s, &next).await,
        ["first", "second", "while it ran", "for alpha@host-a"],
        "the rest waits for the next alpha in its directory"
    );
    assert_eq!(s.take_handovers(&elsewhere.id).await.unwrap(), 0);
    assert_eq!(
        status_of(s, for_beta).await.readers[0].peer_id,
        "",
        "beta's waits for beta's next session"
    );
}
