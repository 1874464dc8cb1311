//! Posting messages with group commit.
//!
//! A busy channel's writers all need the channel row's lock to take the next seq, so one
//! transaction per message would serialise them on that lock. Instead each post becomes a
//! job for a writer task; a task takes every job waiting for a channel and commits them in
//! one transaction — one lock, one multi-row insert of messages and events — then publishes
//! the events in commit order and answers each caller. Durability is unchanged: no caller
//! hears "created" before its transaction has committed.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher as _;
use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
pub use domain::NewMessage;
use domain::{ChannelEvent, ChannelId, EventBody, EventSink, FileId, MentionNotice, Message, UserSummary};
use futures_util::TryFutureExt as _;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::db::Database;
use crate::error::{StoreError, StoreResult};
use crate::events;
use crate::messages::{self, MessageRow};
use crate::pipelined::{self, PipelinedTransaction};
use crate::schema::{files, memberships, message_attachments, message_nonces, messages as messages_table, users};

/// At most this many jobs go into one transaction.
const MAX_BATCH: usize = 256;

/// What became of a post.
#[derive(Debug, Clone)]
pub struct Posted {
    pub message: Message,
    /// False when the nonce named an earlier message, which is returned instead.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Not (or no longer: banned or left meanwhile) a member. For a private channel or a DM
    /// this is `Denied::NotFound`, so its existence is not confirmed.
    #[error("not allowed to post here")]
    Denied(domain::Denied),
    #[error("the channel does not exist")]
    ChannelGone,
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the writer is shutting down")]
    Closed,
}

type Reply = oneshot::Sender<Result<Posted, PostError>>;

struct Job {
    message: NewMessage,
    reply: Reply,
}

/// A cheap-to-clone handle to the writer tasks.
#[derive(Clone)]
pub struct MessageWriter {
    shards: Arc<[mpsc::Sender<Job>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl MessageWriter {
    /// Starts `shards` writer tasks. A channel always maps to the same task, so its batches
    /// commit — and publish — one after another, in seq order.
    pub fn spawn(db: Database, sink: Arc<dyn EventSink>, shards: usize) -> Self {
        let shards: Vec<mpsc::Sender<Job>> = std::iter::repeat_n((db, sink), shards.max(1))
            .map(|(db, sink)| {
                let (tx, rx) = mpsc::channel(4096);
                tokio::spawn(run_shard(db, sink, rx));
                tx
            })
            .collect();
        Self { shards: shards.into(), hasher: std::collections::hash_map::RandomState::new() }
    }

    pub async fn post(&self, message: NewMessage) -> Result<Posted, PostError> {
        let hash = self.hasher.hash_one(message.channel_id);
        let shard = &self.shards[(hash % self.shards.len() as u64) as usize];
        let (reply, answer) = oneshot::channel();
        shard.send(Job { message, reply }).await.map_err(|_| PostError::Closed)?;
        answer.await.map_err(|_| PostError::Closed)?
    }
}

async fn run_shard(db: Database, sink: Arc<dyn EventSink>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut by_channel: HashMap<ChannelId, Vec<Job>> = HashMap::new();
        for job in jobs {
            by_channel.entry(job.message.channel_id).or_default().push(job);
        }
        // Different channels do not contend for a lock: their batches commit side by side
        // (bounded by the pool). One channel's batches still commit one after another.
        futures_util::future::join_all(
            by_channel.into_iter().map(|(channel_id, jobs)| commit_batch(&db, sink.as_ref(), channel_id, jobs)),
        )
        .await;
    }
}

async fn commit_batch(db: &Database, sink: &dyn EventSink, channel_id: ChannelId, jobs: Vec<Job>) {
    let (requests, replies): (Vec<NewMessage>, Vec<Reply>) = jobs.into_iter().map(|j| (j.message, j.reply)).unzip();
    metrics::histogram!("message_batch_size").record(requests.len() as f64);
    let outcome = match db.get().await {
        Ok(conn) => {
            let mut transaction = PipelinedTransaction::new(conn);
            match write_batch(transaction.conn(), channel_id, &requests).await {
                Ok(written) => transaction.commit().await.map(|()| written),
                Err(error) => {
                    transaction.rollback().await;
                    Err(error)
                }
            }
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok(Written { results, events, notices }) => {
            // Published before anyone is answered, so a sender's own connections see the
            // message no later than the sender hears it was created.
            sink.publish(events);
            if !notices.is_empty() {
                sink.notify(notices);
            }
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(error) => {
            let error = match error {
                StoreError::NotFound => None,
                other => Some(other.to_string()),
            };
            for reply in replies {
                let _ = reply.send(Err(match &error {
                    None => PostError::ChannelGone,
                    Some(cause) => PostError::Store(StoreError::Unavailable(cause.clone())),
                }));
            }
        }
    }
}

/// What the database says about a batch, read under the channel lock.
#[derive(Debug, Default)]
struct Facts {
    kind: Option<domain::ChannelKind>,
    is_private: bool,
    members: HashSet<Uuid>,
    /// Authors who are not members and are banned (asked only when someone is refused).
    banned: HashSet<Uuid>,
    /// In a DM or group DM: authors another member blocked.
    blocked: HashSet<Uuid>,
    /// `(author, nonce)` seen in the last 24 hours → the message it named.
    nonces: HashMap<(Uuid, String), Uuid>,
    /// Parent id → (its channel, its own parent, deleted).
    parents: HashMap<Uuid, (Uuid, Option<Uuid>, bool)>,
    /// File id → uploader.
    uploaders: HashMap<Uuid, Uuid>,
    /// The authors as messages show them.
    authors: HashMap<domain::UserId, UserSummary>,
}

/// What to do with one request of a batch.
#[derive(Debug)]
enum Plan {
    /// Insert it as the `n`th new message of the batch (its seq is `last_seq + 1 + n`).
    Insert(usize),
    /// Its nonce names a message committed earlier.
    Existing(Uuid),
    /// Its nonce repeats the request with this index earlier in the same batch.
    SameAs(usize),
    Refused(PostError),
}

async fn load_facts(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    requests: &[NewMessage],
) -> StoreResult<(i64, Facts)> {
    let channel = channel_id.as_uuid();
    let authors: Vec<Uuid> = requests.iter().map(|r| r.author.as_uuid()).collect::<HashSet<_>>().into_iter().collect();
    // Four statements in one round trip (pipelined), run by PostgreSQL in this order: the
    // transaction's `BEGIN`, the channel's lock, the members among the authors and the
    // authors' names. Under READ COMMITTED each statement takes its snapshot when it starts,
    // so the membership read, which starts once the lock is granted, sees every change
    // committed before — a kick or ban that took the lock first is never missed.
    let ((), (last_seq, kind, is_private), members, summaries) = {
        let (mut first, mut second) = (&*conn, &*conn);
        let members = memberships::table
            .filter(memberships::channel_id.eq(channel))
            .filter(memberships::user_id.eq_any(&authors))
            .select(memberships::user_id)
            .load::<Uuid>(&mut first);
        let summaries = users::table
            .filter(users::id.eq_any(&authors))
            .select(crate::users::SummaryRow::as_select())
            .load::<crate::users::SummaryRow>(&mut second);
        futures_util::try_join!(
            pipelined::begin(conn),
            events::lock_channel_facts(conn, channel_id),
            members.err_into::<StoreError>(),
            summaries.err_into::<StoreError>(),
        )?
    };
    let members: HashSet<Uuid> = members.into_iter().collect();
    let authors_known = summaries
        .into_iter()
        .map(|row| UserSummary::try_from(row).map(|summary| (summary.id, summary)))
        .collect::<StoreResult<HashMap<_, _>>>()?;
    let outsiders: Vec<Uuid> = authors.iter().filter(|a| !members.contains(a)).copied().collect();
    let banned = if outsiders.is_empty() {
        HashSet::new()
    } else {
        crate::schema::channel_bans::table
            .filter(crate::schema::channel_bans::channel_id.eq(channel))
            .filter(crate::schema::channel_bans::user_id.eq_any(&outsiders))
            .select(crate::schema::channel_bans::user_id)
            .load::<Uuid>(conn)
            .await?
            .into_iter()
            .collect()
    };

    let blocked = if kind == domain::ChannelKind::Channel || members.is_empty() {
        HashSet::new()
    } else {
        let members_here = memberships::table.filter(memberships::channel_id.eq(channel)).select(memberships::user_id);
        crate::schema::blocks::table
            .filter(crate::schema::blocks::blocked_id.eq_any(members.iter().copied().collect::<Vec<_>>()))
            .filter(crate::schema::blocks::blocker_id.eq_any(members_here))
            .select(crate::schema::blocks::blocked_id)
            .load::<Uuid>(conn)
            .await?
            .into_iter()
            .collect()
    };

    let nonces: Vec<String> = requests.iter().filter_map(|r| r.nonce.clone()).collect();
    let cutoff = OffsetDateTime::now_utc() - time::Duration::hours(24);
    let nonces = if nonces.is_empty() {
        HashMap::new()
    } else {
        message_nonces::table
            .filter(message_nonces::channel_id.eq(channel))
            .filter(message_nonces::user_id.eq_any(&authors))
            .filter(message_nonces::nonce.eq_any(&nonces))
            .filter(message_nonces::created_at.gt(cutoff))
            .select((message_nonces::user_id, message_nonces::nonce, message_nonces::message_id))
            .load::<(Uuid, String, Uuid)>(conn)
            .await?
            .into_iter()
            .map(|(user, nonce, message)| ((user, nonce), message))
            .collect()
    };

    let parent_ids: Vec<Uuid> = requests.iter().filter_map(|r| r.parent_id.map(|p| p.as_uuid())).collect();
    let parents = if parent_ids.is_empty() {
        HashMap::new()
    } else {
        messages_table::table
            .filter(messages_table::id.eq_any(&parent_ids))
            .select((
                messages_table::id,
                messages_table::channel_id,
                messages_table::parent_id,
                messages_table::deleted,
            ))
            .load::<(Uuid, Uuid, Option<Uuid>, bool)>(conn)
            .await?
            .into_iter()
            .map(|(id, channel, parent, deleted)| (id, (channel, parent, deleted)))
            .collect()
    };

    // `FOR KEY SHARE` holds the files until commit: a file deleted meanwhile would otherwise
    // break the attachment insert's foreign key and fail the whole batch — everyone's posts
    // — instead of this one post. A delete that committed first leaves the file out of this
    // result, so the post is refused (422).
    let file_ids: Vec<Uuid> = requests.iter().flat_map(|r| r.attachment_ids.iter().map(FileId::as_uuid)).collect();
    let uploaders = if file_ids.is_empty() {
        HashMap::new()
    } else {
        files::table
            .filter(files::id.eq_any(&file_ids))
            .select((files::id, files::uploader_id))
            .for_key_share()
            .load::<(Uuid, Uuid)>(conn)
            .await?
            .into_iter()
            .collect()
    };
    Ok((
        last_seq,
        Facts {
            kind: Some(kind),
            is_private,
            members,
            banned,
            blocked,
            nonces,
            parents,
            uploaders,
            authors: authors_known,
        },
    ))
}

/// Decides each request of a batch from the facts alone: refused (and why), a repeat of an
/// earlier message, or the next new message.
fn plan(channel_id: ChannelId, facts: &Facts, requests: &[NewMessage]) -> Vec<Plan> {
    let channel = channel_id.as_uuid();
    let mut batch_nonces: HashMap<(Uuid, &str), usize> = HashMap::new();
    let mut inserts = 0;
    requests
        .iter()
        .enumerate()
        .map(|(index, request)| {
            let author = request.author.as_uuid();
            if !facts.members.contains(&author) {
                let role = domain::Role::from_facts(false, None, facts.banned.contains(&author));
                let kind = facts.kind.unwrap_or(domain::ChannelKind::Channel);
                let denied = domain::authorize(kind, facts.is_private, role, domain::Action::Post)
                    .err()
                    .unwrap_or(domain::Denied::Forbidden("join the channel first"));
                return Plan::Refused(PostError::Denied(denied));
            }
            if facts.blocked.contains(&author) {
                return Plan::Refused(PostError::Denied(domain::Denied::Blocked));
            }
            if let Some(nonce) = &request.nonce {
                if let Some(existing) = facts.nonces.get(&(author, nonce.clone())) {
                    return Plan::Existing(*existing);
                }
                if let Some(&first) = batch_nonces.get(&(author, nonce.as_str())) {
                    return Plan::SameAs(first);
                }
            }
            if let Some(parent) = request.parent_id {
                let refusal = match facts.parents.get(&parent.as_uuid()) {
                    // One answer for both: telling "no such message" from "a message of another
                    // channel" would confirm that a message of a private channel exists.
                    None => Some("must be a message of this channel"),
                    Some((parent_channel, _, _)) if *parent_channel != channel => {
                        Some("must be a message of this channel")
                    }
                    Some((_, Some(_), _)) => Some("replies cannot be replied to: threads are one level deep"),
                    Some((_, None, true)) => Some("the message was deleted"),
                    Some(_) => None,
                };
                if let Some(message) = refusal {
                    return Plan::Refused(PostError::Invalid { field: "parent_id", message: message.into() });
                }
            }
            if let Some(bad) =
                request.attachment_ids.iter().find(|f| facts.uploaders.get(&f.as_uuid()) != Some(&author))
            {
                return Plan::Refused(PostError::Invalid {
                    field: "attachment_ids",
                    message: format!("{bad} is not a file you uploaded"),
                });
            }
            if let Some(nonce) = &request.nonce {
                batch_nonces.insert((author, nonce.as_str()), index);
            }
            inserts += 1;
            Plan::Insert(inserts - 1)
        })
        .collect()
}

/// What a committed batch answers and publishes.
struct Written {
    results: Vec<Result<Posted, PostError>>,
    events: Vec<ChannelEvent>,
    notices: Vec<MentionNotice>,
}

fn message_bodies(messages: &[Message]) -> Vec<EventBody> {
    messages.iter().map(|m| EventBody::Message(Box::new(m.clone()))).collect()
}

/// One transaction for a channel's batch: lock and load the facts, plan, then write what
/// the plan says.
async fn write_batch(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    requests: &[NewMessage],
) -> StoreResult<Written> {
    let (last_seq, facts) = load_facts(conn, channel_id, requests).await?;
    let plans = plan(channel_id, &facts, requests);
    apply(conn, channel_id, &facts, last_seq, requests, plans).await
}

async fn apply(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    facts: &Facts,
    last_seq: i64,
    requests: &[NewMessage],
    plans: Vec<Plan>,
) -> StoreResult<Written> {
    let channel = channel_id.as_uuid();
    let now = OffsetDateTime::now_utc();
    let inserted: Vec<(&NewMessage, MessageRow)> = requests
        .iter()
        .zip(&plans)
        .filter_map(|(request, plan)| match plan {
            Plan::Insert(n) => Some((request, *n)),
            _ => None,
        })
        .map(|(request, n)| {
            let row = MessageRow {
                mention_ids: Vec::new(),
                mentions_everyone: false,
                pinned_at: None,
                pinned_by: None,
                id: Uuid::now_v7(),
                channel_id: channel,
                user_id: request.author.as_uuid(),
                seq: last_seq + 1 + n as i64,
                parent_id: request.parent_id.map(|p| p.as_uuid()),
                content: request.content.as_str().to_owned(),
                reply_count: 0,
                created_at: now,
                edited_at: None,
                deleted: false,
                webhook_username: request.webhook_username.clone(),
            };
            (request, row)
        })
        .collect();
    let texts: Vec<(domain::UserId, &str)> =
        inserted.iter().map(|(request, _)| (request.author, request.content.as_str())).collect();
    let kind = facts.kind.unwrap_or(domain::ChannelKind::Channel);
    let resolved = crate::mentions::resolve(conn, channel_id, kind, facts.is_private, &texts).await?;
    let rows: Vec<MessageRow> = inserted
        .iter()
        .zip(&resolved)
        .map(|((_, row), mentions)| MessageRow {
            mention_ids: mentions.named.iter().map(|u| u.id.as_uuid()).collect(),
            mentions_everyone: mentions.everyone,
            ..row.clone()
        })
        .collect();

    let mut created: Vec<Message> = Vec::new();
    let mut events_out = Vec::new();
    let mut notices = Vec::new();
    if !rows.is_empty() {
        let links: Vec<_> = inserted
            .iter()
            .flat_map(|(request, row)| {
                request.attachment_ids.iter().enumerate().map(move |(position, file)| {
                    (
                        message_attachments::message_id.eq(row.id),
                        message_attachments::file_id.eq(file.as_uuid()),
                        message_attachments::position.eq(position as i32),
                    )
                })
            })
            .collect();
        if links.is_empty() {
            // The messages are whole before they are written (no attachments to read back,
            // the authors known from the facts), so their rows and their events go in one
            // round trip, pipelined. Order does not matter inside the transaction.
            created = messages::hydrate_fresh(conn, rows.clone(), false, &facts.authors).await?;
            let (append, events) = events::append_statement(channel_id, last_seq, message_bodies(&created));
            let insert = messages::insert_fresh_statement(channel, now, &rows);
            let (mut first, mut second) = (&*conn, &*conn);
            futures_util::try_join!(insert.execute(&mut first), append.execute(&mut second))?;
            events_out = events;
        } else {
            messages::insert_fresh(conn, channel, now, &rows).await?;
        }
        crate::mentions::insert(
            conn,
            channel_id,
            rows.iter()
                .zip(&resolved)
                .map(|(row, mentions)| (domain::MessageId::from_uuid(row.id), row.seq, mentions.notified.as_slice())),
        )
        .await?;
        if !links.is_empty() {
            diesel::insert_into(message_attachments::table)
                .values(&links)
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            // The hint history pages read instead of asking every row (migration 000009).
            let with_files: Vec<Uuid> = inserted
                .iter()
                .filter(|(request, _)| !request.attachment_ids.is_empty())
                .map(|(_, row)| row.id)
                .collect();
            diesel::sql_query("UPDATE messages SET has_attachments = true WHERE id = ANY($1)")
                .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(with_files)
                .execute(conn)
                .await?;
        }
        let nonce_rows: Vec<_> = inserted
            .iter()
            .filter_map(|(request, row)| request.nonce.as_ref().map(|nonce| (row, nonce)))
            .map(|(row, nonce)| {
                (
                    message_nonces::channel_id.eq(channel),
                    message_nonces::user_id.eq(row.user_id),
                    message_nonces::nonce.eq(nonce.clone()),
                    message_nonces::message_id.eq(row.id),
                    message_nonces::created_at.eq(now),
                )
            })
            .collect();
        if !nonce_rows.is_empty() {
            // A row still there is older than 24 hours (fresh ones were matched above):
            // the nonce may be used again.
            diesel::insert_into(message_nonces::table)
                .values(&nonce_rows)
                .on_conflict((message_nonces::channel_id, message_nonces::user_id, message_nonces::nonce))
                .do_update()
                .set((
                    message_nonces::message_id.eq(diesel::upsert::excluded(message_nonces::message_id)),
                    message_nonces::created_at.eq(diesel::upsert::excluded(message_nonces::created_at)),
                ))
                .execute(conn)
                .await?;
        }
        let mut reply_counts: HashMap<Uuid, i64> = HashMap::new();
        for row in &rows {
            if let Some(parent) = row.parent_id {
                *reply_counts.entry(parent).or_default() += 1;
            }
        }
        for (parent, count) in reply_counts {
            diesel::update(messages_table::table.find(parent))
                .set(messages_table::reply_count.eq(messages_table::reply_count + count))
                .execute(conn)
                .await?;
        }
        if !links.is_empty() {
            // Read back with their attachments, after the links are in.
            created = messages::hydrate_fresh(conn, rows.clone(), true, &facts.authors).await?;
            events_out = events::append(conn, channel_id, last_seq, message_bodies(&created)).await?;
        }
        notices = created
            .iter()
            .zip(resolved)
            .map(|(message, mentions)| MentionNotice { users: mentions.notified, message: Box::new(message.clone()) })
            .filter(|notice| !notice.users.is_empty())
            .collect();
    }

    let existing_ids: Vec<Uuid> = plans
        .iter()
        .filter_map(|p| match p {
            Plan::Existing(id) => Some(*id),
            _ => None,
        })
        .collect();
    let existing: HashMap<Uuid, Message> = if existing_ids.is_empty() {
        HashMap::new()
    } else {
        let found: Vec<MessageRow> = messages_table::table
            .filter(messages_table::id.eq_any(&existing_ids))
            .select(MessageRow::as_select())
            .load(conn)
            .await?;
        messages::hydrate(conn, found, None).await?.into_iter().map(|m| (m.id.as_uuid(), m)).collect()
    };
    let lost = || PostError::Store(StoreError::NotFound);
    let outcome = |plan: &Plan| -> Result<Posted, PostError> {
        match plan {
            Plan::Insert(n) => created.get(*n).map(|m| Posted { message: m.clone(), created: true }).ok_or_else(lost),
            Plan::Existing(id) => {
                existing.get(id).map(|m| Posted { message: m.clone(), created: false }).ok_or_else(lost)
            }
            Plan::SameAs(_) | Plan::Refused(_) => Err(lost()),
        }
    };
    let mut results: Vec<Result<Posted, PostError>> = Vec::with_capacity(plans.len());
    for plan in &plans {
        let result = match plan {
            Plan::SameAs(first) => match &results[*first] {
                Ok(posted) => Ok(Posted { message: posted.message.clone(), created: false }),
                Err(_) => Err(lost()),
            },
            _ => outcome(plan),
        };
        results.push(result);
    }
    let results = results
        .into_iter()
        .zip(plans)
        .map(|(result, plan)| match plan {
            Plan::Refused(error) => Err(error),
            _ => result,
        })
        .collect();
    Ok(Written { results, events: events_out, notices })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{MessageContent, MessageId, UserId};

    fn request(author: UserId, nonce: Option<&str>) -> NewMessage {
        NewMessage {
            channel_id: ChannelId::new(),
            author,
            content: MessageContent::parse("hi", false).unwrap(),
            parent_id: None,
            attachment_ids: Vec::new(),
            nonce: nonce.map(str::to_owned),
            webhook_username: None,
        }
    }

    fn check(facts: &Facts, requests: &[NewMessage], expected: &[&str]) {
        let channel = ChannelId::new();
        let got: Vec<String> = plan(channel, facts, requests)
            .into_iter()
            .map(|p| match p {
                Plan::Insert(n) => format!("insert {n}"),
                Plan::Existing(_) => "existing".into(),
                Plan::SameAs(i) => format!("same as {i}"),
                Plan::Refused(PostError::Denied(domain::Denied::NotFound)) => "not found".into(),
                Plan::Refused(PostError::Denied(domain::Denied::Blocked)) => "blocked".into(),
                Plan::Refused(PostError::Denied(_)) => "forbidden".into(),
                Plan::Refused(PostError::Invalid { field, .. }) => format!("invalid {field}"),
                Plan::Refused(other) => format!("{other}"),
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn members_post_outsiders_and_banned_users_are_refused() {
        let (member, outsider, banned) = (UserId::new(), UserId::new(), UserId::new());
        let mut facts = Facts { kind: Some(domain::ChannelKind::Channel), ..Facts::default() };
        facts.members.insert(member.as_uuid());
        facts.banned.insert(banned.as_uuid());
        let requests = [request(member, None), request(outsider, None), request(banned, None), request(member, None)];
        check(&facts, &requests, &["insert 0", "forbidden", "forbidden", "insert 1"]);
        facts.is_private = true;
        check(&facts, &requests, &["insert 0", "not found", "not found", "insert 1"]);
    }

    #[test]
    fn a_blocked_author_cannot_write_to_the_conversation() {
        let (member, blocked) = (UserId::new(), UserId::new());
        let mut facts = Facts { kind: Some(domain::ChannelKind::GroupDm), is_private: true, ..Facts::default() };
        facts.members.extend([member.as_uuid(), blocked.as_uuid()]);
        facts.blocked.insert(blocked.as_uuid());
        check(&facts, &[request(blocked, None), request(member, None)], &["blocked", "insert 0"]);
    }

    #[test]
    fn a_nonce_names_its_first_message_in_the_log_or_in_the_batch() {
        let author = UserId::new();
        let mut facts = Facts { kind: Some(domain::ChannelKind::Channel), ..Facts::default() };
        facts.members.insert(author.as_uuid());
        facts.nonces.insert((author.as_uuid(), "old".into()), Uuid::now_v7());
        let requests = [
            request(author, Some("old")),
            request(author, Some("new")),
            request(author, Some("new")),
            request(author, None),
        ];
        check(&facts, &requests, &["existing", "insert 0", "same as 1", "insert 1"]);
    }

    #[test]
    fn replies_attachments_and_parents_are_checked() {
        let author = UserId::new();
        let channel = ChannelId::new();
        let mut facts = Facts { kind: Some(domain::ChannelKind::Channel), ..Facts::default() };
        facts.members.insert(author.as_uuid());
        let (top, reply, gone, elsewhere) = (MessageId::new(), MessageId::new(), MessageId::new(), MessageId::new());
        facts.parents.insert(top.as_uuid(), (channel.as_uuid(), None, false));
        facts.parents.insert(reply.as_uuid(), (channel.as_uuid(), Some(top.as_uuid()), false));
        facts.parents.insert(gone.as_uuid(), (channel.as_uuid(), None, true));
        facts.parents.insert(elsewhere.as_uuid(), (Uuid::now_v7(), None, false));
        let mine = FileId::new();
        let theirs = FileId::new();
        facts.uploaders.insert(mine.as_uuid(), author.as_uuid());
        facts.uploaders.insert(theirs.as_uuid(), Uuid::now_v7());
        let with = |parent: Option<MessageId>, files: Vec<FileId>| NewMessage {
            parent_id: parent,
            attachment_ids: files,
            ..request(author, None)
        };
        let requests = [
            with(Some(top), vec![mine]),
            with(Some(reply), vec![]),
            with(Some(gone), vec![]),
            with(Some(elsewhere), vec![]),
            with(Some(MessageId::new()), vec![]),
            with(None, vec![theirs]),
        ];
        let got: Vec<String> = plan(channel, &facts, &requests)
            .into_iter()
            .map(|p| match p {
                Plan::Insert(n) => format!("insert {n}"),
                Plan::Refused(PostError::Invalid { field, .. }) => format!("invalid {field}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                "insert 0",
                "invalid parent_id",
                "invalid parent_id",
                "invalid parent_id",
                "invalid parent_id",
                "invalid attachment_ids"
            ]
        );
    }
}
