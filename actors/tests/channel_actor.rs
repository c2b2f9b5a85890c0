//! ChannelActor: ordering, idempotency, authorization, typing expiry, receipts, store failures.

mod common;

use std::time::Duration;

use actors::channel::{ChannelConfig, ChannelMsg, MessageDraft};
use actors::ports::{Caller, ChannelKind, StoreError};
use actors::protocol::{ChannelEvent, ErrorCode};
use actors::DirectoryConfig;
use common::{Harness, Probe};
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
    let mut probe = Probe::new(bob.user_id).await;
    let sink = probe.sink.clone();
    let answer = h.ask(channel, |reply| ChannelMsg::Subscribe { caller: bob, sink, reply }).await.unwrap();
    assert_eq!(answer.head_seq, 0);

    for n in 1..=5 {
        let message = h
            .ask(channel, |reply| ChannelMsg::Send {
                caller: alice,
                draft: draft(&format!("m{n}"), &format!("hello {n}")),
                reply,
            })
            .await
            .unwrap();
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
async fn a_repeated_client_msg_id_returns_the_first_message_and_stores_nothing() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let channel = h.channel(ChannelKind::Public, &[alice]);
    let first =
        h.ask(channel, |reply| ChannelMsg::Send { caller: alice, draft: draft("same", "one"), reply }).await.unwrap();
    let again =
        h.ask(channel, |reply| ChannelMsg::Send { caller: alice, draft: draft("same", "two"), reply }).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(h.store.events(channel).len(), 1);
    let next = h
        .ask(channel, |reply| ChannelMsg::Send { caller: alice, draft: draft("other", "three"), reply })
        .await
        .unwrap();
    assert_eq!(next.seq, 2, "a duplicate does not consume a seq");
}

#[tokio::test]
async fn outsiders_and_other_tenants_are_refused_and_nothing_is_stored() {
    let h = Harness::new().await;
    let (alice, carol) = (h.user("alice"), h.user("carol"));
    let channel = h.channel(ChannelKind::Private, &[alice]);
    let not_member = h.ask(channel, |reply| ChannelMsg::Send { caller: carol, draft: draft("x", "hi"), reply }).await;
    assert_eq!(not_member.unwrap_err().code, ErrorCode::NotMember);
    let join = h.ask(channel, |reply| ChannelMsg::Join { caller: carol, reply }).await;
    assert_eq!(join.unwrap_err().code, ErrorCode::Forbidden, "private channels cannot be joined");

    let other_company = Uuid::new_v4();
    let stranger = Caller { user_id: h.store.add_user(other_company, "mallory"), company_id: other_company };
    let other_tenant =
        h.ask(channel, |reply| ChannelMsg::Send { caller: stranger, draft: draft("y", "hi"), reply }).await;
    assert_eq!(other_tenant.unwrap_err().code, ErrorCode::NotFound, "another tenant cannot even see the channel");
    let probe = Probe::new(stranger.user_id).await;
    let sink = probe.sink.clone();
    let subscribe = h.ask(channel, |reply| ChannelMsg::Subscribe { caller: stranger, sink, reply }).await;
    assert_eq!(subscribe.unwrap_err().code, ErrorCode::NotFound);
    let add = h.ask(channel, |reply| ChannelMsg::AddMember { caller: alice, user_id: stranger.user_id, reply }).await;
    assert_eq!(add.unwrap_err().code, ErrorCode::NotFound, "a user of another company cannot be added");
    assert!(h.store.events(channel).is_empty());

    let unknown = h.ask(Uuid::new_v4(), |reply| ChannelMsg::Join { caller: alice, reply }).await;
    assert_eq!(unknown.unwrap_err().code, ErrorCode::NotFound);
}

#[tokio::test]
async fn invalid_drafts_are_refused() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let channel = h.channel(ChannelKind::Public, &[alice]);
    for (bad, code) in [
        (draft("", "body"), ErrorCode::Invalid),
        (draft("e", "   "), ErrorCode::Invalid),
        (draft("big", &"x".repeat(actors::protocol::MAX_BODY_BYTES + 1)), ErrorCode::PayloadTooLarge),
        (MessageDraft { parent_id: Some(Uuid::new_v4()), ..draft("p", "reply") }, ErrorCode::NotFound),
        (MessageDraft { attachment_ids: vec![Uuid::new_v4()], ..draft("a", "file") }, ErrorCode::NotFound),
    ] {
        let err = h.ask(channel, |reply| ChannelMsg::Send { caller: alice, draft: bad, reply }).await.unwrap_err();
        assert_eq!(err.code, code);
    }
    assert!(h.store.events(channel).is_empty());
}

#[tokio::test]
async fn edits_deletes_and_reactions_are_sequenced_and_checked() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let message =
        h.ask(channel, |reply| ChannelMsg::Send { caller: alice, draft: draft("m", "hi"), reply }).await.unwrap();
    let id = message.id;
    let by_bob =
        h.ask(channel, |reply| ChannelMsg::Edit { caller: bob, message_id: id, body: "hacked".into(), reply }).await;
    assert_eq!(by_bob.unwrap_err().code, ErrorCode::Forbidden);
    let edited =
        h.ask(channel, |reply| ChannelMsg::Edit { caller: alice, message_id: id, body: "hi all".into(), reply }).await;
    assert_eq!(edited.unwrap(), 2);
    let react = |add| move |reply| ChannelMsg::React { caller: bob, message_id: id, emoji: "+1".into(), add, reply };
    assert_eq!(h.ask(channel, react(true)).await.unwrap(), Some(3));
    assert_eq!(h.ask(channel, react(true)).await.unwrap(), None, "the same reaction twice changes nothing");
    assert_eq!(h.ask(channel, react(false)).await.unwrap(), Some(4));
    let deleted = h.ask(channel, |reply| ChannelMsg::Delete { caller: alice, message_id: id, reply }).await;
    assert_eq!(deleted.unwrap(), 5);
    let gone =
        h.ask(channel, |reply| ChannelMsg::Edit { caller: alice, message_id: id, body: "x".into(), reply }).await;
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
    let mut probe = Probe::new(bob.user_id).await;
    let sink = probe.sink.clone();
    h.ask(channel, |reply| ChannelMsg::Subscribe { caller: bob, sink, reply }).await.unwrap();

    h.ask(channel, |reply| ChannelMsg::Typing { caller: alice, active: true, reply }).await.unwrap();
    let (_, started) = probe.next().await;
    assert_eq!((started["type"].as_str(), started["active"].as_bool()), (Some("typing"), Some(true)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A refresh keeps it alive past the first deadline and sends nothing new.
    h.ask(channel, |reply| ChannelMsg::Typing { caller: alice, active: true, reply }).await.unwrap();
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
    let mut probe = Probe::new(alice.user_id).await;
    let sink = probe.sink.clone();
    h.ask(channel, |reply| ChannelMsg::Subscribe { caller: alice, sink, reply }).await.unwrap();
    for n in 0..3 {
        h.ask(channel, |reply| ChannelMsg::Send { caller: alice, draft: draft(&n.to_string(), "hi"), reply })
            .await
            .unwrap();
        probe.next().await;
    }
    assert_eq!(h.ask(channel, |reply| ChannelMsg::Read { caller: bob, seq: 2, reply }).await.unwrap(), 2);
    let (seq, receipt) = probe.next().await;
    assert_eq!(seq, None, "receipts do not take a seq");
    assert_eq!((receipt["type"].as_str(), receipt["seq"].as_i64()), (Some("read"), Some(2)));
    assert_eq!(h.ask(channel, |reply| ChannelMsg::Read { caller: bob, seq: 1, reply }).await.unwrap(), 2);
    let beyond = h.ask(channel, |reply| ChannelMsg::Read { caller: bob, seq: 99, reply }).await;
    assert_eq!(beyond.unwrap_err().code, ErrorCode::Invalid);
    let sink = Probe::new(bob.user_id).await.sink;
    let answer = h.ask(channel, |reply| ChannelMsg::Subscribe { caller: bob, sink, reply }).await.unwrap();
    assert!(answer.read_cursors.iter().any(|c| c.user_id == bob.user_id && c.seq == 2));
}

#[tokio::test]
async fn a_failed_write_is_not_acknowledged_and_an_uncertain_one_reloads_the_actor() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let channel = h.channel(ChannelKind::Public, &[alice]);
    h.ask(channel, |reply| ChannelMsg::Send { caller: alice, draft: draft("a", "one"), reply }).await.unwrap();

    h.store.fail_writes(Some(StoreError::Unavailable("db down".into())));
    let refused = h.ask(channel, |reply| ChannelMsg::Send { caller: alice, draft: draft("b", "two"), reply }).await;
    assert_eq!(refused.unwrap_err().code, ErrorCode::Unavailable);
    let first_actor = h.directory.find_channel(channel).unwrap().get_id();

    h.store.fail_writes(Some(StoreError::Unknown("timeout after send".into())));
    let uncertain = h.ask(channel, |reply| ChannelMsg::Send { caller: alice, draft: draft("b", "two"), reply }).await;
    assert_eq!(uncertain.unwrap_err().code, ErrorCode::Unavailable);

    h.store.fail_writes(None);
    let retried =
        h.ask(channel, |reply| ChannelMsg::Send { caller: alice, draft: draft("b", "two"), reply }).await.unwrap();
    assert_eq!(retried.seq, 2);
    assert_ne!(h.directory.find_channel(channel).unwrap().get_id(), first_actor, "the actor was restarted");
}

#[tokio::test]
async fn members_join_and_leave_through_the_channel() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice]);
    assert_eq!(h.ask(channel, |reply| ChannelMsg::Join { caller: bob, reply }).await.unwrap(), Some(1));
    assert_eq!(h.ask(channel, |reply| ChannelMsg::Join { caller: bob, reply }).await.unwrap(), None);
    assert!(h.store.members(channel).contains(&bob.user_id));
    h.ask(channel, |reply| ChannelMsg::Send { caller: bob, draft: draft("b", "hi"), reply }).await.unwrap();
    assert_eq!(h.ask(channel, |reply| ChannelMsg::Leave { caller: bob, reply }).await.unwrap(), Some(3));
    let after = h.ask(channel, |reply| ChannelMsg::Send { caller: bob, draft: draft("c", "hi"), reply }).await;
    assert_eq!(after.unwrap_err().code, ErrorCode::NotMember);
}
