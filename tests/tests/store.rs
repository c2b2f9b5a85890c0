//! The store's group commit, on both databases: many channels' batches written at once keep
//! consecutive seqs per channel, and a channel that fails (fenced, seq taken) fails alone.

use std::sync::Arc;

use actors::model::MessageView;
use actors::ports::{AppendOutcome, ChannelKind, ChannelStore, NewMessage, StoreError};
use integration_tests::{fresh_database, on_both_backends, Backend, TempDir};
use node::store::{Db, NewUser};
use uuid::Uuid;

on_both_backends!(
    concurrent_batches_of_many_channels_keep_consecutive_seqs,
    a_fenced_or_conflicting_channel_fails_alone,
    a_repeated_client_msg_id_in_a_batch_takes_no_seq,
);

struct Fixture {
    db: Arc<Db>,
    company_id: Uuid,
    user_id: Uuid,
    _dir: TempDir,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let dir = TempDir::new();
    let url = fresh_database(backend, &dir.0).await?;
    let db = Db::open(&url, 8).await.expect("database opens");
    let admin = NewUser { username: "admin", display_name: "Admin", password_hash: "x", is_admin: true };
    let (company, user) = db.create_company("Acme", "acme", admin).await.expect("company");
    Some(Fixture { db: Arc::new(db), company_id: company.id, user_id: user.id, _dir: dir })
}

impl Fixture {
    async fn channel(&self, name: &str) -> Uuid {
        let row = self
            .db
            .create_channel(self.company_id, ChannelKind::Public, name, self.user_id, &[self.user_id], None)
            .await
            .expect("channel");
        row.id
    }

    fn message(&self, channel_id: Uuid, client_msg_id: &str) -> NewMessage {
        let message = MessageView {
            id: Uuid::now_v7(),
            channel_id,
            seq: 0,
            sender_id: self.user_id,
            client_msg_id: client_msg_id.to_owned(),
            parent_id: None,
            body: format!("body of {client_msg_id}"),
            mentions: vec![],
            attachment_ids: vec![],
            created_at: 1,
            edited_at: None,
            deleted: false,
            reactions: vec![],
        };
        NewMessage { message, company_id: self.company_id }
    }
}

fn stored_seqs(outcomes: &[AppendOutcome]) -> Vec<i64> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            AppendOutcome::Stored { seq } => *seq,
            AppendOutcome::Duplicate(_) => panic!("unexpected duplicate"),
        })
        .collect()
}

async fn concurrent_batches_of_many_channels_keep_consecutive_seqs(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let mut channels = Vec::new();
    for n in 0..20 {
        channels.push(f.channel(&format!("c{n}")).await);
    }
    for channel_id in &channels {
        f.db.load_channel(*channel_id, 1).await.unwrap().expect("channel loads");
    }
    // Three rounds of one batch per channel, all channels at once: each round's batches go
    // to the committer together.
    for round in 0..3i64 {
        let writes = channels.iter().map(|&channel_id| {
            let db = Arc::clone(&f.db);
            let batch: Vec<NewMessage> = (0..5).map(|n| f.message(channel_id, &format!("r{round}-{n}"))).collect();
            tokio::spawn(async move { db.append_messages(1, channel_id, round * 5, &batch).await })
        });
        for write in futures_util::future::join_all(writes).await {
            let outcomes = write.unwrap().expect("batch stored");
            let expected: Vec<i64> = (round * 5 + 1..=round * 5 + 5).collect();
            assert_eq!(stored_seqs(&outcomes), expected);
        }
    }
    for channel_id in channels {
        let snapshot = f.db.load_channel(channel_id, 2).await.unwrap().unwrap();
        assert_eq!(snapshot.head_seq, 15, "every message of every round is in the log");
        let replayed = f.db.events_after(channel_id, 0, 100).await.unwrap();
        let seqs: Vec<i64> = replayed.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, (1..=15).collect::<Vec<_>>());
    }
}

async fn a_fenced_or_conflicting_channel_fails_alone(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let (fenced, conflicting, healthy) =
        (f.channel("fenced").await, f.channel("conflict").await, f.channel("ok").await);
    for channel_id in [fenced, conflicting, healthy] {
        f.db.load_channel(channel_id, 1).await.unwrap().unwrap();
    }
    f.db.append_messages(1, conflicting, 0, &[f.message(conflicting, "first")]).await.unwrap();
    // A newer owner loads the fenced channel: the old owner's writes must be refused.
    f.db.load_channel(fenced, 2).await.unwrap().unwrap();

    let (a, b, c) = (f.message(fenced, "a"), f.message(conflicting, "b"), f.message(healthy, "c"));
    let (old_owner, stale_head, fine) = tokio::join!(
        f.db.append_messages(1, fenced, 0, std::slice::from_ref(&a)),
        // Seq 1 is taken: an owner with a stale head must not overwrite it.
        f.db.append_messages(1, conflicting, 0, std::slice::from_ref(&b)),
        f.db.append_messages(1, healthy, 0, std::slice::from_ref(&c)),
    );
    assert!(matches!(old_owner, Err(StoreError::Fenced)), "fenced: {old_owner:?}");
    assert!(stale_head.is_err(), "a taken seq is refused: {stale_head:?}");
    assert_eq!(stored_seqs(&fine.expect("the healthy channel's batch commits")), vec![1]);
    assert_eq!(f.db.events_after(fenced, 0, 10).await.unwrap().len(), 0, "nothing of the fenced write is stored");
    assert_eq!(f.db.events_after(conflicting, 0, 10).await.unwrap().len(), 1);
}

async fn a_repeated_client_msg_id_in_a_batch_takes_no_seq(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let channel_id = f.channel("dups").await;
    f.db.load_channel(channel_id, 1).await.unwrap().unwrap();
    let first = f.message(channel_id, "same");
    let batch = [first.clone(), f.message(channel_id, "same"), f.message(channel_id, "other")];
    let outcomes = f.db.append_messages(1, channel_id, 0, &batch).await.unwrap();
    assert_eq!(outcomes[0], AppendOutcome::Stored { seq: 1 });
    match &outcomes[1] {
        AppendOutcome::Duplicate(earlier) => assert_eq!(earlier.id, first.message.id, "answers the first message"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(outcomes[2], AppendOutcome::Stored { seq: 2 });
}
