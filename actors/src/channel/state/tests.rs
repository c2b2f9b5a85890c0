//! The channel's rules, without an actor runtime.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::ports::ChannelSnapshot;

fn member(name: &str) -> (Caller, Member) {
    let user_id = Uuid::new_v4();
    (Caller { user_id, company_id: COMPANY }, Member { user_id, username: name.to_owned() })
}

const COMPANY: Uuid = Uuid::from_u128(7);

fn room(kind: ChannelKind, members: &[&Member]) -> ChannelRoom {
    ChannelRoom::new(ChannelSnapshot {
        channel_id: Uuid::new_v4(),
        company_id: COMPANY,
        kind,
        head_seq: 0,
        members: members.iter().map(|m| (*m).clone()).collect(),
        read_cursors: Vec::new(),
    })
}

fn draft(id: &str, body: &str) -> MessageDraft {
    MessageDraft { client_msg_id: id.to_owned(), body: body.to_owned(), parent_id: None, attachment_ids: Vec::new() }
}

fn broadcasts(effects: &[Effect]) -> Vec<&Outbound> {
    effects.iter().filter_map(|e| if let Effect::Broadcast(o) = e { Some(o) } else { None }).collect()
}

fn notified(effects: &[Effect]) -> Vec<(Uuid, NotificationReason)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify { user_id, frame: ServerFrame::Notification { reason, .. }, .. } => {
                Some((*user_id, *reason))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_stored_message_becomes_the_head_ends_typing_and_notifies_mentions() {
    let (alice, alice_m) = member("alice");
    let (bob, bob_m) = member("bob");
    let mut room = room(ChannelKind::Public, &[&alice_m, &bob_m]);
    room.typing(&alice, true).unwrap();
    let plan = room.plan_message(&alice, draft("c1", "hi @bob and @nobody")).unwrap();
    assert_eq!(plan.message.seq, 1);
    assert_eq!(plan.message.mentions, vec![bob.user_id]);
    assert_eq!(room.head_seq(), 0, "planning consumes no seq");
    let effects = room.message_stored(&plan.message);
    assert_eq!(room.head_seq(), 1);
    let kinds: Vec<DeliveryKind> = broadcasts(&effects).iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        vec![
            DeliveryKind::Typing { channel_id: room.channel_id(), user_id: alice.user_id, active: false },
            DeliveryKind::Event { channel_id: room.channel_id(), seq: 1 },
        ],
        "typing stops before the message shows"
    );
    assert_eq!(notified(&effects), vec![(bob.user_id, NotificationReason::Mention)]);
}

#[test]
fn a_direct_message_notifies_the_other_side_and_never_the_sender() {
    let (alice, alice_m) = member("alice");
    let (bob, bob_m) = member("bob");
    let mut room = room(ChannelKind::Direct, &[&alice_m, &bob_m]);
    let plan = room.plan_message(&alice, draft("c1", "hello @alice")).unwrap();
    let effects = room.message_stored(&plan.message);
    assert_eq!(notified(&effects), vec![(bob.user_id, NotificationReason::DirectMessage)]);
    match effects.iter().find(|e| matches!(e, Effect::Notify { .. })) {
        Some(Effect::Notify { push: Some(push), .. }) => {
            assert_eq!(push.title, "Message from alice");
            assert!(push.data["deep_link"].starts_with("lark://channel/"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn outsiders_and_other_tenants_are_refused_without_revealing_private_channels() {
    let (alice, alice_m) = member("alice");
    let (carol, _) = member("carol");
    let stranger = Caller { user_id: Uuid::new_v4(), company_id: Uuid::new_v4() };
    let public = room(ChannelKind::Public, &[&alice_m]);
    let private = room(ChannelKind::Private, &[&alice_m]);
    assert_eq!(public.plan_message(&carol, draft("c", "x")).unwrap_err().code, ErrorCode::NotMember);
    assert_eq!(private.plan_message(&carol, draft("c", "x")).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(public.plan_message(&stranger, draft("c", "x")).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(public.plan_join(&carol).unwrap(), AdmitPlan::Admit(carol.user_id));
    assert_eq!(private.plan_join(&carol).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(public.plan_join(&alice).unwrap(), AdmitPlan::AlreadyMember);
    assert_eq!(public.plan_join(&stranger).unwrap_err().code, ErrorCode::NotFound);
    let session = SessionAddr { node: 1, incarnation: 1, session_id: Uuid::new_v4(), user_id: carol.user_id };
    assert_eq!(public.authorize_subscribe(&alice, &session).unwrap_err().code, ErrorCode::Forbidden);
}

#[test]
fn only_the_author_edits_or_deletes_and_deleted_messages_stay_deleted() {
    let (alice, alice_m) = member("alice");
    let (bob, bob_m) = member("bob");
    let mut room = room(ChannelKind::Public, &[&alice_m, &bob_m]);
    let plan = room.plan_message(&alice, draft("c1", "first")).unwrap();
    room.message_stored(&plan.message);
    let mut message = plan.message;
    assert_eq!(room.plan_edit(&bob, Some(&message), "mine".into()).unwrap_err().code, ErrorCode::Forbidden);
    let edit = room.plan_edit(&alice, Some(&message), "second".into()).unwrap();
    assert_eq!(edit.seq, 2);
    room.change_stored(&edit);
    let delete = room.plan_delete(&alice, Some(&message)).unwrap();
    room.change_stored(&delete);
    message.deleted = true;
    assert_eq!(room.plan_edit(&alice, Some(&message), "again".into()).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(room.plan_reaction(&bob, Some(&message), "+1".into(), true).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(room.plan_reaction(&bob, None, "+1".into(), true).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(room.head_seq(), 3);
}

#[test]
fn typing_expires_only_when_not_refreshed() {
    let (alice, alice_m) = member("alice");
    let mut room = room(ChannelKind::Public, &[&alice_m]);
    let first = room.typing(&alice, true).unwrap();
    let Some(Effect::ExpireTypingLater { generation: g1, .. }) = first.last().cloned() else { panic!("{first:?}") };
    let refresh = room.typing(&alice, true).unwrap();
    assert_eq!(broadcasts(&refresh).len(), 0, "a refresh is not broadcast again");
    let Some(Effect::ExpireTypingLater { generation: g2, .. }) = refresh.last().cloned() else { panic!() };
    assert!(room.expire_typing(alice.user_id, g1).is_empty(), "a stale expiry does nothing");
    assert_eq!(room.subscribe_answer().typing, vec![alice.user_id]);
    let expired = room.expire_typing(alice.user_id, g2);
    assert_eq!(broadcasts(&expired).len(), 1);
    assert!(room.subscribe_answer().typing.is_empty());
}

#[test]
fn read_cursors_only_move_forward_within_the_head() {
    let (alice, alice_m) = member("alice");
    let mut room = room(ChannelKind::Public, &[&alice_m]);
    for n in 0..3 {
        let plan = room.plan_message(&alice, draft(&format!("c{n}"), "x")).unwrap();
        room.message_stored(&plan.message);
    }
    assert_eq!(room.plan_read(&alice, 4).unwrap_err().code, ErrorCode::Invalid);
    assert_eq!(room.plan_read(&alice, 2).unwrap(), ReadPlan::Advance(2));
    assert_eq!(broadcasts(&room.cursor_stored(alice.user_id, 2)).len(), 1);
    assert_eq!(room.plan_read(&alice, 1).unwrap(), ReadPlan::AlreadyAt(2));
    assert!(room.cursor_stored(alice.user_id, 1).is_empty(), "a cursor never moves back");
}

#[test]
fn leaving_drops_the_member_its_subscriptions_and_its_typing() {
    let (alice, alice_m) = member("alice");
    let (bob, bob_m) = member("bob");
    let mut room = room(ChannelKind::Public, &[&alice_m, &bob_m]);
    room.typing(&bob, true).unwrap();
    let leave = room.plan_leave(&bob).unwrap();
    let effects = room.change_stored(&leave);
    assert!(effects.contains(&Effect::DropSubscriber { user_id: bob.user_id }));
    assert!(room.subscribe_answer().typing.is_empty());
    assert_eq!(room.plan_message(&bob, draft("c", "x")).unwrap_err().code, ErrorCode::NotMember);
    assert!(room.plan_message(&alice, draft("c", "x")).is_ok());
    let dm = self::room(ChannelKind::Direct, &[&alice_m, &bob_m]);
    assert_eq!(dm.plan_leave(&alice).unwrap_err().code, ErrorCode::Forbidden);
}

/// Random commands against the room, with a model of the store that sometimes fails: the head
/// moves by exactly one per stored event, every broadcast event carries the new head, and
/// refusals and failed writes consume nothing.
#[test]
fn property_seqs_are_gapless_and_only_stored_events_consume_them() {
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let people: Vec<(Caller, Member)> = (0..4).map(|i| member(&format!("u{i}"))).collect();
        let members: Vec<&Member> = people.iter().take(3).map(|(_, m)| m).collect();
        let mut room = room(ChannelKind::Public, &members);
        let mut stored: Vec<MessageView> = Vec::new();
        let mut expected_head = 0;
        for step in 0..60 {
            let (caller, _) = &people[rng.gen_range(0..people.len())];
            let store_ok = rng.gen_bool(0.8);
            let effects = match rng.gen_range(0..5) {
                0 | 1 => match room.plan_message(caller, draft(&format!("s{seed}-{step}"), "hello @u1")) {
                    Ok(plan) if store_ok => {
                        assert_eq!(plan.message.seq, expected_head + 1);
                        expected_head += 1;
                        stored.push(plan.message.clone());
                        room.message_stored(&plan.message)
                    }
                    _ => Vec::new(),
                },
                2 if !stored.is_empty() => {
                    let target = stored[rng.gen_range(0..stored.len())].clone();
                    match room.plan_edit(caller, Some(&target), "edited".into()) {
                        Ok(plan) if store_ok => {
                            assert_eq!(plan.seq, expected_head + 1);
                            expected_head += 1;
                            room.change_stored(&plan)
                        }
                        _ => Vec::new(),
                    }
                }
                3 if !stored.is_empty() => {
                    let target = stored[rng.gen_range(0..stored.len())].clone();
                    match room.plan_reaction(caller, Some(&target), "+1".into(), rng.gen_bool(0.5)) {
                        Ok(plan) if store_ok => {
                            expected_head += 1;
                            room.change_stored(&plan)
                        }
                        _ => Vec::new(),
                    }
                }
                _ => room.typing(caller, rng.gen_bool(0.5)).unwrap_or_default(),
            };
            assert_eq!(room.head_seq(), expected_head, "seed {seed} step {step}");
            for outbound in broadcasts(&effects) {
                if let DeliveryKind::Event { seq, .. } = outbound.kind {
                    assert_eq!(seq, room.head_seq(), "an event is broadcast at the head it made");
                }
            }
            for (user, _) in notified(&effects) {
                assert_ne!(Some(user), stored.last().map(|m| m.sender_id), "nobody is notified of their own message");
            }
        }
    }
}
