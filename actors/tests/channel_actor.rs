//! ChannelActor: ordering, idempotency, authorization, typing expiry, receipts, store failures.

mod common;

use std::time::Duration;

use actors::channel::ChannelConfig;
use actors::model::{Caller, ChannelEvent, ErrorCode, MessageDraft};
use actors::ports::{ChannelKind, StoreError};
use actors::routing::ChannelRequest;
use actors::DirectoryConfig;
use common::Harness;
use uuid::Uuid;

fn draft(client_msg_id: &str, body: &str) -> MessageDraft {
    MessageDraft {
        client_msg_id: client_msg_id.to_owned(),
        body: body.to_owned(),
        parent_id: None,
        attachment_ids: vec![],
    }
}

#[tokio::test]
async fn messages_get_consecutive_seqs_and_reach_subscribers_in_order() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let mut probe = h.probe(bob.user_id).await;
    let answer = h.subscribe(channel, bob, &probe).await.unwrap();
    assert_eq!(answer.head_seq, 0);

    for n in 1..=5 {
        let message = h.send(channel, alice, draft(&format!("m{n}"), &format!("hello {n}"))).await.unwrap();
        assert_eq!(message.seq, n);
    }
    for n in 1..=5 {
        let (seq, frame) = probe.next().await;
        assert_eq!(seq, Some(n));
        assert_eq!(frame["type"], "event");
        assert_eq!(frame["event"]["message"]["body"], format!("hello {n}"));
    }
    let stored: Vec<i64> = h.store.events(channel).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(stored, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn another_sender_cannot_reuse_a_client_msg_id() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    h.send(channel, alice, draft("same", "alice's")).await.unwrap();
    let err = h.send(channel, bob, draft("same", "bob's")).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "bob must not receive alice's message as his own");
}

#[tokio::test]
async fn a_repeated_client_msg_id_returns_the_first_message_and_stores_nothing() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let channel = h.channel(ChannelKind::Public, &[alice]);
    let first = h.send(channel, alice, draft("same", "one")).await.unwrap();
    let again = h.send(channel, alice, draft("same", "two")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(h.store.events(channel).len(), 1);
    let next = h.send(channel, alice, draft("other", "three")).await.unwrap();
    assert_eq!(next.seq, 2, "a duplicate does not consume a seq");
}

#[tokio::test]
async fn outsiders_and_other_tenants_are_refused_and_nothing_is_stored() {
    let h = Harness::new().await;
    let (alice, carol) = (h.user("alice"), h.user("carol"));
    let channel = h.channel(ChannelKind::Private, &[alice]);
    let hidden = h.send(channel, carol, draft("x", "hi")).await;
    assert_eq!(hidden.unwrap_err().code, ErrorCode::NotFound, "a private channel is invisible to outsiders");
    let public = h.channel(ChannelKind::Public, &[alice]);
    let not_member = h.send(public, carol, draft("x", "hi")).await;
    assert_eq!(not_member.unwrap_err().code, ErrorCode::NotMember, "a public one tells them to join first");
    let join = h.ask(channel, ChannelRequest::Join { caller: carol }).await;
    assert_eq!(join.unwrap_err().code, ErrorCode::NotFound, "private channels cannot be joined, nor seen");

    let other_company = Uuid::new_v4();
    let stranger = Caller { user_id: h.store.add_user(other_company, "mallory"), company_id: other_company };
    let other_tenant = h.send(channel, stranger, draft("y", "hi")).await;
    assert_eq!(other_tenant.unwrap_err().code, ErrorCode::NotFound, "another tenant cannot even see the channel");
    let probe = h.probe(stranger.user_id).await;
    let subscribe = h.subscribe(channel, stranger, &probe).await;
    assert_eq!(subscribe.unwrap_err().code, ErrorCode::NotFound);
    let add = h.ask(channel, ChannelRequest::AddMember { caller: alice, user_id: stranger.user_id }).await;
    assert_eq!(add.unwrap_err().code, ErrorCode::NotFound, "a user of another company cannot be added");
    assert!(h.store.events(channel).is_empty());

    let unknown = h.ask(Uuid::new_v4(), ChannelRequest::Join { caller: alice }).await;
    assert_eq!(unknown.unwrap_err().code, ErrorCode::NotFound);
}

#[tokio::test]
async fn a_session_cannot_subscribe_for_another_user() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let bobs_probe = h.probe(bob.user_id).await;
    let err = h.subscribe(channel, alice, &bobs_probe).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
}

#[tokio::test]
async fn invalid_drafts_are_refused() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let channel = h.channel(ChannelKind::Public, &[alice]);
    for (bad, code) in [
        (draft("", "body"), ErrorCode::Invalid),
        (draft("e", "   "), ErrorCode::Invalid),
        (draft("big", &"x".repeat(actors::model::MAX_BODY_BYTES + 1)), ErrorCode::PayloadTooLarge),
        (MessageDraft { parent_id: Some(Uuid::new_v4()), ..draft("p", "reply") }, ErrorCode::NotFound),
        (MessageDraft { attachment_ids: vec![Uuid::new_v4()], ..draft("a", "file") }, ErrorCode::NotFound),
    ] {
        let err = h.send(channel, alice, bad).await.unwrap_err();
        assert_eq!(err.code, code);
    }
    assert!(h.store.events(channel).is_empty());
}

#[tokio::test]
async fn edits_deletes_and_reactions_are_sequenced_and_checked() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let message = h.send(channel, alice, draft("m", "hi")).await.unwrap();
    let id = message.id;
    let by_bob = h.ask(channel, ChannelRequest::Edit { caller: bob, message_id: id, body: "hacked".into() }).await;
    assert_eq!(by_bob.unwrap_err().code, ErrorCode::Forbidden);
    let edited = h.seq(channel, ChannelRequest::Edit { caller: alice, message_id: id, body: "hi all".into() }).await;
    assert_eq!(edited.unwrap(), Some(2));
    let react = |add| ChannelRequest::React { caller: bob, message_id: id, emoji: "+1".into(), add };
    assert_eq!(h.seq(channel, react(true)).await.unwrap(), Some(3));
    assert_eq!(h.seq(channel, react(true)).await.unwrap(), None, "the same reaction twice changes nothing");
    assert_eq!(h.seq(channel, react(false)).await.unwrap(), Some(4));
    let deleted = h.seq(channel, ChannelRequest::Delete { caller: alice, message_id: id }).await;
    assert_eq!(deleted.unwrap(), Some(5));
    let gone = h.ask(channel, ChannelRequest::Edit { caller: alice, message_id: id, body: "x".into() }).await;
    assert_eq!(gone.unwrap_err().code, ErrorCode::NotFound);
    let kinds: Vec<&str> = h
        .store
        .events(channel)
        .iter()
        .map(|(_, e)| match e {
            ChannelEvent::MessageNew { .. } => "new",
            ChannelEvent::MessageEdited { .. } => "edited",
            ChannelEvent::ReactionAdded { .. } => "reacted",
            ChannelEvent::ReactionRemoved { .. } => "unreacted",
            ChannelEvent::MessageDeleted { .. } => "deleted",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["new", "edited", "reacted", "unreacted", "deleted"]);
}

#[tokio::test(start_paused = true)]
async fn typing_expires_without_a_refresh() {
    let config = DirectoryConfig {
        channel: ChannelConfig { typing_ttl: Duration::from_secs(5), ..ChannelConfig::default() },
        ..DirectoryConfig::default()
    };
    let h = Harness::with_config(config).await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let mut probe = h.probe(bob.user_id).await;
    h.subscribe(channel, bob, &probe).await.unwrap();

    h.ask(channel, ChannelRequest::Typing { caller: alice, active: true }).await.unwrap();
    let (_, started) = probe.next().await;
    assert_eq!((started["type"].as_str(), started["active"].as_bool()), (Some("typing"), Some(true)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A refresh keeps it alive past the first deadline and sends nothing new.
    h.ask(channel, ChannelRequest::Typing { caller: alice, active: true }).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(probe.try_next().is_none(), "still typing 6 s after the start thanks to the refresh");
    let (_, stopped) = probe.next().await;
    assert_eq!(stopped["active"], false);
    assert_eq!(stopped["user_id"], alice.user_id.to_string());
}

#[tokio::test]
async fn read_cursors_only_move_forward_within_the_head() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let mut probe = h.probe(alice.user_id).await;
    h.subscribe(channel, alice, &probe).await.unwrap();
    for n in 0..3 {
        h.send(channel, alice, draft(&n.to_string(), "hi")).await.unwrap();
        probe.next().await;
    }
    assert_eq!(h.seq(channel, ChannelRequest::Read { caller: bob, seq: 2 }).await.unwrap(), Some(2));
    let (seq, receipt) = probe.next().await;
    assert_eq!(seq, None, "receipts do not take a seq");
    assert_eq!((receipt["type"].as_str(), receipt["seq"].as_i64()), (Some("read"), Some(2)));
    assert_eq!(h.seq(channel, ChannelRequest::Read { caller: bob, seq: 1 }).await.unwrap(), Some(2));
    let beyond = h.ask(channel, ChannelRequest::Read { caller: bob, seq: 99 }).await;
    assert_eq!(beyond.unwrap_err().code, ErrorCode::Invalid);
    let bobs = h.probe(bob.user_id).await;
    let answer = h.subscribe(channel, bob, &bobs).await.unwrap();
    assert!(answer.read_cursors.iter().any(|c| c.user_id == bob.user_id && c.seq == 2));
}

#[tokio::test]
async fn a_failed_write_is_not_acknowledged_and_an_uncertain_one_reloads_the_actor() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let channel = h.channel(ChannelKind::Public, &[alice]);
    h.send(channel, alice, draft("a", "one")).await.unwrap();

    h.store.fail_writes(Some(StoreError::Unavailable("db down".into())));
    let refused = h.send(channel, alice, draft("b", "two")).await;
    assert_eq!(refused.unwrap_err().code, ErrorCode::Unavailable);
    let first_actor = h.directory.find_channel(channel).unwrap().get_id();

    h.store.fail_writes(Some(StoreError::Unknown("timeout after send".into())));
    let uncertain = h.send(channel, alice, draft("b", "two")).await;
    assert_eq!(uncertain.unwrap_err().code, ErrorCode::Unavailable);

    h.store.fail_writes(None);
    let retried = h.send(channel, alice, draft("b", "two")).await.unwrap();
    assert_eq!(retried.seq, 2);
    assert_ne!(h.directory.find_channel(channel).unwrap().get_id(), first_actor, "the actor was restarted");
}

#[tokio::test]
async fn members_join_and_leave_through_the_channel() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice]);
    assert_eq!(h.seq(channel, ChannelRequest::Join { caller: bob }).await.unwrap(), Some(1));
    assert_eq!(h.seq(channel, ChannelRequest::Join { caller: bob }).await.unwrap(), None);
    assert!(h.store.members(channel).contains(&bob.user_id));
    h.send(channel, bob, draft("b", "hi")).await.unwrap();
    assert_eq!(h.seq(channel, ChannelRequest::Leave { caller: bob }).await.unwrap(), Some(3));
    let after = h.send(channel, bob, draft("c", "hi")).await;
    assert_eq!(after.unwrap_err().code, ErrorCode::NotMember);
}

#[tokio::test]
async fn sends_that_arrive_during_a_write_are_stored_together_with_consecutive_seqs() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let mut probe = h.probe(bob.user_id).await;
    h.subscribe(channel, bob, &probe).await.unwrap();
    h.store.slow_appends(Duration::from_millis(40));

    let sends = (1..=30).map(|n| h.send(channel, alice, draft(&format!("m{n}"), &format!("hello {n}"))));
    let mut seqs: Vec<i64> =
        futures_util::future::join_all(sends).await.into_iter().map(|answer| answer.unwrap().seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>(), "every send acknowledged with its own seq");

    let batches = h.store.append_batches();
    assert_eq!(batches.iter().sum::<usize>(), 30);
    assert!(batches.len() < 30, "sends waiting behind a write share the next one: {batches:?}");
    for n in 1..=30 {
        let (seq, _) = probe.next().await;
        assert_eq!(seq, Some(n), "subscribers see the batch in seq order");
    }
    let stored: Vec<i64> = h.store.events(channel).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(stored, (1..=30).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_edit_waits_for_the_send_before_it_and_the_send_after_it_waits_for_the_edit() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let channel = h.channel(ChannelKind::Public, &[alice]);
    let first = h.send(channel, alice, draft("m0", "first")).await.unwrap();
    h.store.slow_appends(Duration::from_millis(100));

    let before = h.send(channel, alice, draft("m1", "before the edit"));
    let edit = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        h.seq(channel, ChannelRequest::Edit { caller: alice, message_id: first.id, body: "edited".into() }).await
    };
    let after = async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        h.send(channel, alice, draft("m2", "after the edit")).await
    };
    let (before, edit, after) = tokio::join!(before, edit, after);
    assert_eq!(before.unwrap().seq, 2);
    assert_eq!(edit.unwrap(), Some(3), "the edit takes the seq after the send in flight");
    assert_eq!(after.unwrap().seq, 4, "a send behind a waiting edit waits too: arrival order is kept");
}

#[tokio::test]
async fn a_failed_batch_acknowledges_none_of_its_sends() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let channel = h.channel(ChannelKind::Public, &[alice]);
    h.send(channel, alice, draft("a", "one")).await.unwrap();
    h.store.slow_appends(Duration::from_millis(40));
    h.store.fail_writes(Some(StoreError::Unknown("commit outcome unknown".into())));
    let sends = (1..=5).map(|n| h.send(channel, alice, draft(&format!("b{n}"), "lost?")));
    for answer in futures_util::future::join_all(sends).await {
        assert_eq!(answer.unwrap_err().code, ErrorCode::Unavailable, "nothing in a failed batch is acknowledged");
    }
    h.store.fail_writes(None);
    let next = h.send(channel, alice, draft("c", "after")).await.unwrap();
    assert_eq!(next.seq, 2, "the reloaded actor continues after what is stored");
}
