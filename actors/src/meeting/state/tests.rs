//! The meeting room's rules, without an actor runtime.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::model::{ParticipantStatus, SignalKind, StateChange, MAX_SIGNAL_BYTES};

const COMPANY: Uuid = Uuid::from_u128(9);

fn info(host: Uuid, invitees: &[Uuid], lobby: bool) -> MeetingInfo {
    MeetingInfo {
        meeting_id: Uuid::new_v4(),
        company_id: COMPANY,
        host_id: host,
        invitees: invitees.to_vec(),
        lobby,
        ended: false,
    }
}

fn user() -> (Caller, SessionAddr) {
    let user_id = Uuid::new_v4();
    let caller = Caller { user_id, company_id: COMPANY };
    (caller, session_of(&caller))
}

fn session_of(caller: &Caller) -> SessionAddr {
    SessionAddr { node: 1, incarnation: 1, session_id: Uuid::new_v4(), user_id: caller.user_id }
}

fn me(answer: MeetingAnswer) -> ParticipantView {
    match answer {
        MeetingAnswer::Joined { me, .. } => me,
        other => panic!("{other:?}"),
    }
}

/// The texts sent to `session` among `effects`.
fn sent_to(effects: &[RoomEffect], session: &SessionAddr) -> Vec<serde_json::Value> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            RoomEffect::Send { sessions, text, .. } if sessions.contains(session) => {
                Some(serde_json::from_str(text.as_str()).unwrap())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_host_leads_a_rejoin_takes_over_and_the_grace_period_ends_a_drop() {
    let (host, host_session) = user();
    let (guest, guest_session) = user();
    let mut room = MeetingRoom::new(info(host.user_id, &[], false), MeetingConfig::default(), 1);
    let host_view = me(room.join(&host, host_session).unwrap());
    assert_eq!(host_view.role, Role::Host);
    room.drain();
    let guest_view = me(room.join(&guest, guest_session).unwrap());
    assert_eq!(guest_view.role, Role::Participant);
    let effects = room.drain();
    assert_eq!(sent_to(&effects, &host_session)[0]["event"]["kind"], "joined");
    assert!(sent_to(&effects, &guest_session).is_empty(), "a joiner gets the snapshot in its answer, not events");

    // The guest's socket drops: disconnected, then back from another session (another node).
    room.disconnected(&guest, guest_session.session_id);
    let effects = room.drain();
    let Some(RoomEffect::ExpireLater { participant_id, generation }) = effects.last().cloned() else { panic!() };
    assert_eq!(participant_id, guest_view.participant_id);
    let again = SessionAddr { node: 2, ..session_of(&guest) };
    let back = me(room.join(&guest, again).unwrap());
    assert_eq!((back.participant_id, back.status), (guest_view.participant_id, ParticipantStatus::Joined));
    room.expire(participant_id, generation);
    assert_eq!(room.roster().len(), 2, "a stale expiry does nothing after the rejoin");

    // Dropped for good: removed after the grace period, and the host hears it.
    room.disconnected(&guest, again.session_id);
    let Some(RoomEffect::ExpireLater { generation, .. }) = room.drain().last().cloned() else { panic!() };
    room.expire(participant_id, generation);
    let effects = room.drain();
    assert_eq!(sent_to(&effects, &host_session)[0]["event"]["reason"], "timed_out");
    assert_eq!(room.roster().len(), 1);
}

#[test]
fn the_lobby_waits_for_the_host_and_the_cap_holds() {
    let (host, host_session) = user();
    let (invited, invited_session) = user();
    let (walk_in, walk_in_session) = user();
    let config = MeetingConfig { max_participants: 2, ..MeetingConfig::default() };
    let mut room = MeetingRoom::new(info(host.user_id, &[invited.user_id], true), config, 1);
    room.join(&host, host_session).unwrap();
    let waiting = me(room.join(&walk_in, walk_in_session).unwrap());
    assert_eq!(waiting.status, ParticipantStatus::Lobby);
    let effects = room.drain();
    assert_eq!(sent_to(&effects, &host_session).last().unwrap()["event"]["kind"], "lobby");
    let signal = room.relay(&walk_in, walk_in_session.session_id, Uuid::new_v4(), SignalKind::Offer, "{}");
    assert_eq!(signal.unwrap_err().code, ErrorCode::Forbidden, "no signaling from the lobby");
    assert_eq!(
        room.lobby_decision(&walk_in, walk_in_session.session_id, waiting.participant_id, true).unwrap_err().code,
        ErrorCode::Forbidden
    );
    room.join(&invited, invited_session).unwrap();
    let full = room.lobby_decision(&host, host_session.session_id, waiting.participant_id, true);
    assert_eq!(full.unwrap_err().code, ErrorCode::LimitExceeded);
    room.lobby_decision(&host, host_session.session_id, waiting.participant_id, false).unwrap();
    let effects = room.drain();
    assert_eq!(sent_to(&effects, &walk_in_session).last().unwrap()["event"]["reason"], "denied");
}

#[test]
fn signals_pass_only_between_joined_participants_with_a_polite_later_joiner() {
    let (host, host_session) = user();
    let (guest, guest_session) = user();
    let mut room = MeetingRoom::new(info(host.user_id, &[], false), MeetingConfig::default(), 1);
    let host_view = me(room.join(&host, host_session).unwrap());
    let guest_view = me(room.join(&guest, guest_session).unwrap());
    let to_guest =
        room.relay(&host, host_session.session_id, guest_view.participant_id, SignalKind::Offer, "{\"sdp\":1}");
    let to_guest = to_guest.unwrap();
    assert_eq!(to_guest.session, guest_session);
    let frame: serde_json::Value = serde_json::from_str(&to_guest.text).unwrap();
    assert_eq!((frame["polite"].as_bool(), frame["payload"]["sdp"].as_i64()), (Some(true), Some(1)));
    let to_host = room.relay(&guest, guest_session.session_id, host_view.participant_id, SignalKind::Answer, "{}");
    let frame: serde_json::Value = serde_json::from_str(&to_host.unwrap().text).unwrap();
    assert_eq!(frame["polite"], false, "the earlier joiner is impolite");
    let to_self = room.relay(&host, host_session.session_id, host_view.participant_id, SignalKind::Ice, "{}");
    assert_eq!(to_self.unwrap_err().code, ErrorCode::NotFound);
    let stranger = Caller { user_id: Uuid::new_v4(), company_id: COMPANY };
    let spoofed = room.relay(&stranger, host_session.session_id, guest_view.participant_id, SignalKind::Ice, "{}");
    assert_eq!(spoofed.unwrap_err().code, ErrorCode::NotMember, "a session id alone proves nothing");
    let big = "x".repeat(MAX_SIGNAL_BYTES + 1);
    let too_big = room.relay(&host, host_session.session_id, guest_view.participant_id, SignalKind::Offer, &big);
    assert_eq!(too_big.unwrap_err().code, ErrorCode::PayloadTooLarge);
}

#[test]
fn when_the_host_leaves_the_longest_present_becomes_host_and_only_the_host_ends() {
    let (host, host_session) = user();
    let (first, first_session) = user();
    let (second, second_session) = user();
    let mut room = MeetingRoom::new(info(host.user_id, &[], false), MeetingConfig::default(), 1);
    room.join(&host, host_session).unwrap();
    let first_view = me(room.join(&first, first_session).unwrap());
    room.join(&second, second_session).unwrap();
    assert_eq!(room.authorize_end(&first, Some(first_session.session_id)).unwrap_err().code, ErrorCode::Forbidden);
    room.leave(&host, host_session.session_id).unwrap();
    let hosts: Vec<Uuid> = room.roster().iter().filter(|p| p.role == Role::Host).map(|p| p.participant_id).collect();
    assert_eq!(hosts, vec![first_view.participant_id]);
    assert_eq!(room.authorize_end(&first, Some(first_session.session_id)).unwrap(), first.user_id);
    assert_eq!(room.authorize_end(&host, None).unwrap(), host.user_id, "the meeting's host may end it over HTTP");
    room.drain();
    room.ended(first.user_id);
    let effects = room.drain();
    assert_eq!(sent_to(&effects, &second_session)[0]["event"]["kind"], "ended");
    assert!(room.is_empty());
    assert_eq!(room.join(&second, second_session).unwrap_err().code, ErrorCode::Conflict);
}

/// Random joins, rejoins, drops, expiries and leaves: one participant per user, at most one
/// host, versions that only grow, and a session map that points at live participants.
#[test]
fn property_roster_invariants_hold_under_any_order() {
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let users: Vec<Caller> = (0..5).map(|_| user().0).collect();
        let host = users[0];
        let invitees: Vec<Uuid> = users[1..3].iter().map(|c| c.user_id).collect();
        let config = MeetingConfig { max_participants: 3, ..MeetingConfig::default() };
        let mut room = MeetingRoom::new(info(host.user_id, &invitees, rng.gen_bool(0.5)), config, 1);
        let mut sessions: Vec<(Caller, SessionAddr)> = Vec::new();
        let mut expiries: Vec<(Uuid, u64)> = Vec::new();
        let mut last_version = 0;
        for _ in 0..80 {
            let caller = users[rng.gen_range(0..users.len())];
            match rng.gen_range(0..5) {
                0 | 1 => {
                    let session = session_of(&caller);
                    if room.join(&caller, session).is_ok() {
                        sessions.push((caller, session));
                    }
                }
                2 if !sessions.is_empty() => {
                    let (caller, session) = sessions[rng.gen_range(0..sessions.len())];
                    room.disconnected(&caller, session.session_id);
                }
                3 if !expiries.is_empty() => {
                    let (participant, generation) = expiries.swap_remove(rng.gen_range(0..expiries.len()));
                    room.expire(participant, generation);
                }
                _ if !sessions.is_empty() => {
                    let (caller, session) = sessions[rng.gen_range(0..sessions.len())];
                    let _ = room.leave(&caller, session.session_id);
                }
                _ => {}
            }
            for effect in room.drain() {
                if let RoomEffect::ExpireLater { participant_id, generation } = effect {
                    expiries.push((participant_id, generation));
                }
            }
            let roster = room.roster();
            let users_in: HashSet<Uuid> = roster.iter().map(|p| p.user_id).collect();
            assert_eq!(users_in.len(), roster.len(), "seed {seed}: one participant per user");
            let hosts = roster.iter().filter(|p| p.role == Role::Host && p.status == ParticipantStatus::Joined).count();
            assert!(hosts <= 1, "seed {seed}: at most one joined host");
            let live = roster.iter().filter(|p| p.status != ParticipantStatus::Lobby).count();
            assert!(live <= 3, "seed {seed}: the cap holds");
            assert!(room.version() >= last_version, "seed {seed}: versions only grow");
            last_version = room.version();
        }
    }
}

/// The room's node died: a new run rebuilt from the saved record has everyone, with their
/// roles, lobby and media state, `reconnecting` until they rejoin — in any order.
#[test]
fn a_rebuilt_room_keeps_host_lobby_and_roster_in_any_rejoin_order() {
    let (host, host_session) = user();
    let (invited, invited_session) = user();
    let (walk_in, walk_in_session) = user();
    let meeting = info(host.user_id, &[invited.user_id], true);
    let mut room = MeetingRoom::new(meeting.clone(), MeetingConfig::default(), 1);
    let host_view = me(room.join(&host, host_session).unwrap());
    let invited_view = me(room.join(&invited, invited_session).unwrap());
    let waiting = me(room.join(&walk_in, walk_in_session).unwrap());
    room.set_state(&invited, invited_session.session_id, StateChange { audio: Some(true), ..StateChange::default() })
        .unwrap();
    let record = RoomRecord::decode(&room.record().encode()).expect("the record reads back");
    let before = room.version();

    let orders: [[usize; 3]; 3] = [[2, 1, 0], [1, 2, 0], [0, 2, 1]];
    for order in orders {
        let mut rebuilt = MeetingRoom::rebuild(meeting.clone(), MeetingConfig::default(), record.clone(), 2);
        assert_eq!(rebuilt.incarnation(), 2);
        let statuses: Vec<ParticipantStatus> = rebuilt.roster().iter().map(|p| p.status).collect();
        assert!(statuses.contains(&ParticipantStatus::Lobby) && statuses.contains(&ParticipantStatus::Reconnecting));
        let expiries = rebuilt.drain().iter().filter(|e| matches!(e, RoomEffect::ExpireLater { .. })).count();
        assert_eq!(expiries, 3, "everyone gets a grace period in the new run");
        let people = [(host, host_view.clone()), (invited, invited_view.clone()), (walk_in, waiting.clone())];
        for index in order {
            let (caller, view) = &people[index];
            let session = SessionAddr { node: 7, ..session_of(caller) };
            let back = me(rebuilt.join(caller, session).unwrap());
            assert_eq!((back.participant_id, back.role, back.order), (view.participant_id, view.role, view.order));
            if index == 2 {
                assert_eq!(back.status, ParticipantStatus::Lobby, "the walk-in still waits, whoever came first");
            } else {
                assert_eq!(back.status, ParticipantStatus::Joined);
            }
        }
        let roster = rebuilt.roster();
        let host_now = roster.iter().find(|p| p.user_id == host.user_id).unwrap();
        assert_eq!(host_now.role, Role::Host, "the host is the host again, not the first to rejoin");
        assert!(roster.iter().find(|p| p.user_id == invited.user_id).unwrap().state.audio, "media state kept");
        assert!(rebuilt.version() > before, "versions go on from the record");
    }
}

#[test]
fn nobody_who_does_not_rejoin_a_rebuilt_room_stays_in_it() {
    let (host, host_session) = user();
    let (guest, guest_session) = user();
    let meeting = info(host.user_id, &[], false);
    let mut room = MeetingRoom::new(meeting.clone(), MeetingConfig::default(), 1);
    room.join(&host, host_session).unwrap();
    let guest_view = me(room.join(&guest, guest_session).unwrap());
    let mut rebuilt = MeetingRoom::rebuild(meeting, MeetingConfig::default(), room.record(), 2);
    let expiries: Vec<(Uuid, u64)> = rebuilt
        .drain()
        .into_iter()
        .filter_map(|e| {
            if let RoomEffect::ExpireLater { participant_id, generation } = e {
                Some((participant_id, generation))
            } else {
                None
            }
        })
        .collect();
    let again = SessionAddr { node: 7, ..session_of(&host) };
    rebuilt.join(&host, again).unwrap();
    for (participant_id, generation) in expiries {
        rebuilt.expire(participant_id, generation);
    }
    let roster = rebuilt.roster();
    assert_eq!(roster.len(), 1, "the guest never came back: gone after its grace");
    assert!(roster.iter().all(|p| p.participant_id != guest_view.participant_id));
    let effects = rebuilt.drain();
    let left: Vec<serde_json::Value> = sent_to(&effects, &again);
    assert_eq!(left.last().unwrap()["event"]["reason"], "timed_out");
    assert_eq!(left.last().unwrap()["incarnation"], 2);
}
