//! The `Store` conformance suite: one set of checks that every storage
//! backend runs as it is (SQLite embedded, PostgreSQL and MySQL in cluster
//! mode).
//!
//! A backend's test target calls [`suite!`] with two functions:
//! - `open() -> Option<(Arc<dyn Store>, Ctx)>`: a fresh, empty store and
//!   whatever locates its data (`None` skips the test: a backing service
//!   is down outside CI);
//! - `reopen(&Ctx) -> Arc<dyn Store>`: a new handle on the same data.
//!
//! A backend that several processes share (SQL servers) also calls
//! [`shared_suite!`]: concurrent writers on separate handles, as separate
//! nodes would be.

mod checks;
mod revocations;
mod signing_keys;
pub use checks::*;
pub use revocations::*;
pub use signing_keys::*;

use std::sync::Arc;
use tern_core::store::Store;

/// Concurrent writers on one handle share transactions; seqs stay
/// gap-free and each writer sees its own messages in increasing seq order.
pub async fn concurrent_appends_are_gap_free(stores: Vec<Arc<dyn Store>>) {
    let writers = 8;
    let per_writer = 25u64;
    let tasks: Vec<_> = (0..writers)
        .map(|t| {
            let store = stores[t % stores.len()].clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..per_writer {
                    let from = if t % 2 == 0 { "ann" } else { "bob" };
                    let to = if t % 2 == 0 { "bob" } else { "ann" };
                    let m = dm(from, to, i as i64, &format!("t{t}-{i}"));
                    seqs.push(send(&*store, m).await.seq);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.expect("writer task");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=writers as u64 * per_writer).collect::<Vec<u64>>());
}

/// The same `client_msg_id` sent concurrently through several handles is
/// stored once: every answer carries the same seq and msg_id.
pub async fn concurrent_dedup(stores: Vec<Arc<dyn Store>>) {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = stores[t % stores.len()].clone();
            tokio::spawn(async move {
                let mut m = dm("cat", "dan", 1, "same");
                m.msg_id = 1_000_000 + t as u64;
                let out = store.append_messages(vec![m]).await.expect("append");
                out[0].message().cloned().expect("stored or duplicate")
            })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.expect("task"));
    }
    assert!(seen
        .iter()
        .all(|m| m.seq == 1 && m.msg_id == seen[0].msg_id));
    let conv = "dm:cat:dan";
    assert_eq!(stores[0].max_seq(conv).await.unwrap(), 1);
}

/// Runs every check against a backend; see the crate docs.
#[macro_export]
macro_rules! suite {
    (open: $open:path, reopen: $reopen:path $(,)?) => {
        $crate::suite!(@each $open;
            seq_is_gap_free,
            batch_append_keeps_input_order,
            dedup_across_calls,
            dedup_within_batch,
            offline_queue_in_order,
            offline_queue_self_conversation,
            offline_cap_keeps_newest,
            ack_clears_queue_of_that_conv,
            ack_reports_receipts,
            ack_many_matches_single_acks,
            mark_read_and_unread_counts,
            peer_positions_in_the_list,
            recall_rules,
            delete_for_user_hides_for_that_user_only,
            conversations_order_since_limit,
            history_pages,
            group_create_join_and_refusals,
            group_unread_starts_at_join,
            group_leave_bounds_view,
            group_diffusion_threshold,
            group_owner_transfer,
            group_version_follows_changes,
            users_and_friends,
            revoked_tokens_until_expiry,
            revoked_users_until_expiry,
            msg_id_is_unique,
            max_msg_id_per_node,
            group_units_are_all_or_nothing,
            offline_cap_across_many_conversations,
            per_user_counts,
            signing_keys_in_order,
            // 5.4 and blocks
            group_roles_and_settings,
            group_dissolve_freezes_the_group,
            blocks_both_ways,
            // 5.1
            replies_and_mentions_are_stored,
            edits_follow_the_rules,
            reactions_counted_and_bounded,
            // 5.3
            profiles_name_and_avatar,
            conv_settings_per_user,
            sessions_recorded_touched_and_forgotten,
            // 5.2
            search_words_prefixes_and_cjk,
            search_bounds_and_exclusions,
            search_across_many_conversations,
            // 5.5
            media_stored_referenced_and_swept,
            push_registrations_bounded_replaced_and_removed,
            put_jobs_replace_pending_content,
            // 5.6
            scheduled_bound_list_and_cancel,
            scheduled_claims_take_due_rows_under_a_lease,
            jobs_claimed_once_until_the_lease_ends,
            jobs_commit_with_their_message,
            retention_set_cleared_and_listed,
            expiry_removes_a_prefix_and_moves_positions,
            expiry_is_bounded_and_honours_the_default,
            expiry_releases_media_no_kept_message_names,
            erase_keeps_tombstones_and_removes_the_rest,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn scheduled_claimed_once() {
            let Some((store, _ctx)) = $open().await else { return };
            $crate::scheduled_claimed_once(vec![store]).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_claims_take_each_job_once() {
            let Some((store, _ctx)) = $open().await else { return };
            $crate::concurrent_claims_take_each_job_once(vec![store]).await;
        }

        #[tokio::test]
        async fn durable_across_reopen() {
            let Some((store, ctx)) = $open().await else { return };
            $crate::reopen_before(&*store).await;
            drop(store);
            let store = $reopen(&ctx).await;
            $crate::reopen_after(&*store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_appends_are_gap_free() {
            let Some((store, _ctx)) = $open().await else { return };
            $crate::concurrent_appends_are_gap_free(vec![store]).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_dedup() {
            let Some((store, _ctx)) = $open().await else { return };
            $crate::concurrent_dedup(vec![store]).await;
        }

        #[tokio::test]
        async fn revoked_tokens_durable_across_reopen() {
            let Some((store, ctx)) = $open().await else { return };
            let other = $reopen(&ctx).await;
            $crate::revoked_tokens_seen_by_other_handle(&*store, &*other).await;
        }

        #[tokio::test]
        async fn signing_keys_durable_across_reopen() {
            let Some((store, ctx)) = $open().await else { return };
            $crate::signing_keys_before_reopen(&*store).await;
            drop(store);
            let store = $reopen(&ctx).await;
            $crate::signing_keys_after_reopen(&*store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn first_signing_key_once() {
            let Some((store, _ctx)) = $open().await else { return };
            $crate::first_signing_key_once(vec![store]).await;
        }
    };
    (@each $open:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((store, _ctx)) = $open().await else { return };
                $crate::$name(&*store).await;
            }
        )*
    };
}

#[doc(hidden)]
pub use proptest as __proptest;

/// The property of [`search_follows_access`] as a test: `cases` random
/// histories of up to 40 steps (`PROPTEST_CASES` when set), each on a
/// fresh store from `open`.
#[macro_export]
macro_rules! search_access_property {
    (open: $open:path, cases: $cases:expr $(,)?) => {
        #[test]
        fn search_follows_access() {
            use $crate::__proptest::test_runner::{Config, TestRunner};
            let cases = std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or($cases);
            let mut runner = TestRunner::new(Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            });
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let outcome = runner.run(&$crate::search_access_ops(40), |ops| {
                rt.block_on(async {
                    let Some((store, _ctx)) = $open().await else {
                        return;
                    };
                    $crate::search_follows_access(&*store, &ops).await;
                });
                Ok(())
            });
            if let Err(e) = outcome {
                panic!("{e}");
            }
        }
    };
}

/// Checks for backends that several nodes share: writers on separate
/// handles to the same data.
#[macro_export]
macro_rules! shared_suite {
    (open: $open:path, reopen: $reopen:path $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn shared_concurrent_appends_are_gap_free() {
            let Some((store, ctx)) = $open().await else {
                return;
            };
            let other = $reopen(&ctx).await;
            $crate::concurrent_appends_are_gap_free(vec![store, other]).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn shared_concurrent_dedup() {
            let Some((store, ctx)) = $open().await else {
                return;
            };
            let other = $reopen(&ctx).await;
            $crate::concurrent_dedup(vec![store, other]).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn shared_first_signing_key_once() {
            let Some((store, ctx)) = $open().await else {
                return;
            };
            let other = $reopen(&ctx).await;
            $crate::first_signing_key_once(vec![store, other]).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn shared_scheduled_claimed_once() {
            let Some((store, ctx)) = $open().await else {
                return;
            };
            let other = $reopen(&ctx).await;
            $crate::scheduled_claimed_once(vec![store, other]).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn shared_concurrent_claims_take_each_job_once() {
            let Some((store, ctx)) = $open().await else {
                return;
            };
            let other = $reopen(&ctx).await;
            $crate::concurrent_claims_take_each_job_once(vec![store, other]).await;
        }
    };
}
