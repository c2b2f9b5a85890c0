//! What a session tracks per channel and per watch, without an actor runtime.

use super::*;

fn answer(channel_id: Uuid, head: ChannelSeq, typing: &[Uuid]) -> SubscribeAnswer {
    SubscribeAnswer { channel_id, head_seq: head, read_cursors: Vec::new(), typing: typing.to_vec() }
}

#[test]
fn a_fresh_subscription_replays_from_last_seq_and_refuses_one_ahead_of_the_head() {
    let channel = Uuid::new_v4();
    let mut subs = Subscriptions::default();
    subs.begin(channel, None);
    let err = subs.answered(channel, 1, &answer(channel, 5, &[]), Some(9)).unwrap_err();
    assert_eq!(err.code, crate::model::ErrorCode::Invalid);
    let subscribed = subs.answered(channel, 1, &answer(channel, 5, &[]), Some(2)).unwrap();
    assert_eq!(subscribed.replay, Some((2, 5)));
    assert_eq!(subs.delivered(channel), Some(2), "delivered moves as the replay is sent");
    subs.advance(channel, 5);
    // Subscribed already: a last_seq ahead of the head is refused too.
    assert!(subs.answered(channel, 1, &answer(channel, 5, &[]), Some(6)).is_err());
}

#[test]
fn a_stale_answer_never_moves_delivered_back() {
    // A paused owner answers a resubscribe with the head it had before the pause: the session
    // must not deliver the seqs after it a second time.
    let channel = Uuid::new_v4();
    let mut subs = Subscriptions::default();
    subs.begin(channel, None);
    subs.answered(channel, 1, &answer(channel, 0, &[]), None).unwrap();
    for seq in 1..=50 {
        assert_eq!(subs.on_event(channel, seq), EventAction::Push);
        subs.advance(channel, seq);
    }
    let stale = subs.answered(channel, 2, &answer(channel, 40, &[]), None).unwrap();
    assert_eq!(stale.replay, None);
    assert_eq!(stale.head, 50, "the client is never told a head below a seq it has");
    assert_eq!(subs.delivered(channel), Some(50));
    for seq in 41..=50 {
        assert_eq!(subs.on_event(channel, seq), EventAction::Drop, "seq {seq} again is a duplicate");
    }
    assert_eq!(subs.on_event(channel, 51), EventAction::Push);
    assert_eq!(subs.on_event(channel, 53), EventAction::FillThenPush { after: 50, up_to: 52 });
}

#[test]
fn events_before_the_first_answer_are_replayed_not_lost() {
    let channel = Uuid::new_v4();
    let mut subs = Subscriptions::default();
    subs.begin(channel, None);
    assert_eq!(subs.on_event(channel, 8), EventAction::Drop);
    let subscribed = subs.answered(channel, 1, &answer(channel, 7, &[]), Some(3)).unwrap();
    assert_eq!(subscribed.replay, Some((3, 8)), "the event seen before the answer comes from the store");
    assert_eq!(subscribed.head, 8, "the ok comes after seq 8 was replayed: its head_seq says 8, not 7");
}

#[test]
fn typing_is_taken_from_the_owner_only_and_reconciled_on_every_answer() {
    let channel = Uuid::new_v4();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mut subs = Subscriptions::default();
    subs.begin(channel, None);
    subs.answered(channel, 1, &answer(channel, 0, &[]), None).unwrap();
    assert!(subs.on_typing(channel, alice, true, 1));
    assert!(!subs.on_typing(channel, bob, true, 2), "not from the node we subscribed at");
    // The owner died; its successor knows bob typing but not alice.
    let again = subs.answered(channel, 3, &answer(channel, 0, &[bob]), None).unwrap();
    assert_eq!(again.typing, vec![(alice, false), (bob, true)]);
    assert!(!subs.on_typing(channel, bob, false, 1), "the old owner no longer speaks");
    assert!(subs.on_typing(channel, bob, false, 3));
    assert_eq!(subs.clear_typing(channel), Vec::<Uuid>::new());
    assert!(subs.on_typing(channel, alice, true, 3));
    assert_eq!(subs.clear_typing(channel), vec![alice]);
    assert_eq!(subs.owned_by(3), vec![channel]);
}

#[test]
fn presence_is_reconciled_after_a_rewatch_and_fenced_by_owner() {
    let user = Uuid::new_v4();
    let view = |status| PresenceView { user_id: user, status, last_seen: None };
    let mut watches = Watches::default();
    assert_eq!(watches.answered(1, view(PresenceStatus::Online), true), None, "a fresh watch answers in its reply");
    assert!(!watches.on_presence(user, PresenceStatus::Away, 2), "not from the node we watched at");
    assert!(watches.on_presence(user, PresenceStatus::Away, 1));
    assert!(!watches.on_presence(user, PresenceStatus::Away, 1), "no repeat of what the client knows");
    // The user's node died; the new owner says offline: the watcher must hear it.
    assert_eq!(watches.answered(4, view(PresenceStatus::Offline), false), Some(view(PresenceStatus::Offline)));
    assert_eq!(watches.answered(4, view(PresenceStatus::Offline), false), None);
    assert_eq!(watches.owned_by(4), vec![user]);
}

#[test]
fn an_answer_that_overtakes_the_clients_own_still_replays_what_the_client_asked_for() {
    // The client subscribes with last_seq 3; before its answer comes, a second subscribe (the
    // session's own, after a membership change) is answered first, without a last_seq. It
    // must still replay (3, 7]: before, it took the head as the start and seqs 4..=7 never
    // reached the client (the fast-restart chaos run: "unfilled gaps at receivers").
    let channel = Uuid::new_v4();
    let mut subs = Subscriptions::default();
    subs.begin(channel, Some(3));
    let first = subs.answered(channel, 2, &answer(channel, 7, &[]), None).unwrap();
    assert_eq!(first.replay, Some((3, 7)));
    subs.advance(channel, 7);
    let clients = subs.answered(channel, 2, &answer(channel, 7, &[]), Some(3)).unwrap();
    assert_eq!((clients.replay, clients.head), (None, 7));
}

#[test]
fn a_rehome_waits_for_the_first_answer_of_a_pending_subscription() {
    let (pending, live) = (Uuid::new_v4(), Uuid::new_v4());
    let mut subs = Subscriptions::default();
    subs.begin(live, None);
    subs.answered(live, 1, &answer(live, 4, &[]), None).unwrap();
    subs.begin(pending, Some(1));
    assert_eq!(subs.rehome(), vec![live], "only the answered one subscribes again at once");
    let answered = subs.answered(pending, 1, &answer(pending, 5, &[]), Some(1)).unwrap();
    assert_eq!(answered.replay, Some((1, 5)));
    assert!(answered.again, "…the pending one right after its answer");
    assert!(!subs.answered(pending, 2, &answer(pending, 5, &[]), None).unwrap().again);
}
