//! The shared story (`peers_store::story`) against the SQLite backend: one test per chapter,
//! each on a fresh database file in a temp dir.

use std::sync::Arc;

use peers_store::Store;
use peers_store::story;
use peers_store_sqlite::SqliteStore;

async fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("peers.db"))
        .await
        .expect("open a fresh database");
    (dir, Arc::new(store))
}

macro_rules! chapters {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_dir, store) = fresh().await;
                story::$name(&store).await;
                store.close().await;
            }
        )*

        /// Every chapter of the story has its test here.
        #[test]
        fn every_chapter_is_run() {
            let here = [$(stringify!($name)),*];
            for (name, _) in story::CHAPTERS {
                assert!(here.contains(name), "chapter {name} has no test in tests/story.rs");
            }
        }
    };
}

chapters![
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
    status_and_replies,
    log_filters,
    delivered_to_lists_delivered_mail_newest_first,
    queued_and_pending_counts,
    notices_newest_first,
];

/// What a fresh SQLite store says about itself.
#[tokio::test]
async fn describes_itself_as_sqlite_at_its_file() {
    let (dir, store) = fresh().await;
    let info = store.describe();
    assert_eq!(info.backend, "sqlite");
    assert_eq!(
        info.location,
        dir.path().join("peers.db").display().to_string()
    );
    assert_eq!(store.health(), peers_store::Health::default());
    assert!(
        store.sweep_turn().await.unwrap(),
        "one broker per file: always its turn"
    );
    assert!(store.events().is_none());
    store.close().await;
}
