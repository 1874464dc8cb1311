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
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::{ChannelEvent, ChannelId, EventBody, EventSink, FileId, Message, MessageContent, MessageId, UserId};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::db::Database;
use crate::error::{StoreError, StoreResult};
use crate::events;
use crate::messages::{self, MessageRow};
use crate::schema::{files, memberships, message_attachments, message_nonces, messages as messages_table};

/// At most this many jobs go into one transaction.
const MAX_BATCH: usize = 256;
/// Attachments per message.
pub const MAX_ATTACHMENTS: usize = 10;
/// Nonces longer than this are refused.
pub const MAX_NONCE_LEN: usize = 128;

/// A message to post. The caller has parsed the content and checked that the author may
/// post; the writer re-checks membership under the channel lock.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub channel_id: ChannelId,
    pub author: UserId,
    pub content: MessageContent,
    pub parent_id: Option<MessageId>,
    pub attachment_ids: Vec<FileId>,
    pub nonce: Option<String>,
}

impl NewMessage {
    /// Applies the rules every entry point shares (REST and WebSocket): content 1–4000
    /// characters (empty allowed with attachments), at most 10 attachments, a nonce of at
    /// most 128 characters.
    pub fn parse(
        channel_id: ChannelId,
        author: UserId,
        content: &str,
        parent_id: Option<MessageId>,
        attachment_ids: Vec<FileId>,
        nonce: Option<String>,
    ) -> Result<Self, domain::DomainError> {
        if attachment_ids.len() > MAX_ATTACHMENTS {
            return Err(domain::DomainError::invalid(
                "attachment_ids",
                format!("at most {MAX_ATTACHMENTS} attachments"),
            ));
        }
        let mut seen = HashSet::new();
        if !attachment_ids.iter().all(|id| seen.insert(*id)) {
            return Err(domain::DomainError::invalid("attachment_ids", "must not repeat a file"));
        }
        if let Some(nonce) = &nonce
            && (nonce.is_empty() || nonce.chars().count() > MAX_NONCE_LEN || nonce.contains('\0'))
        {
            return Err(domain::DomainError::invalid("nonce", format!("must be 1 to {MAX_NONCE_LEN} characters")));
        }
        let content = MessageContent::parse(content, !attachment_ids.is_empty())?;
        Ok(Self { channel_id, author, content, parent_id, attachment_ids, nonce })
    }
}

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
        Ok(mut conn) => {
            conn.transaction::<_, StoreError, _>(async |conn| write_batch(conn, channel_id, &requests).await).await
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok((results, events)) => {
            // Published before anyone is answered, so a sender's own connections see the
            // message no later than the sender hears it was created.
            sink.publish(events);
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

/// Which of the non-member authors are banned (only asked when someone is refused).
async fn banned_authors(
    conn: &mut AsyncPgConnection,
    channel: Uuid,
    authors: &[Uuid],
    members: &HashSet<Uuid>,
) -> StoreResult<HashSet<Uuid>> {
    let outsiders: Vec<Uuid> = authors.iter().filter(|a| !members.contains(a)).copied().collect();
    Ok(crate::schema::channel_bans::table
        .filter(crate::schema::channel_bans::channel_id.eq(channel))
        .filter(crate::schema::channel_bans::user_id.eq_any(&outsiders))
        .select(crate::schema::channel_bans::user_id)
        .load::<Uuid>(conn)
        .await?
        .into_iter()
        .collect())
}

/// One transaction for a channel's batch: lock, check, insert, append events.
async fn write_batch(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    requests: &[NewMessage],
) -> StoreResult<(Vec<Result<Posted, PostError>>, Vec<ChannelEvent>)> {
    let (last_seq, kind, is_private) = events::lock_channel_facts(conn, channel_id).await?;
    let channel = channel_id.as_uuid();

    // Membership under the lock: a ban committed before this point wins.
    let authors: Vec<Uuid> = requests.iter().map(|r| r.author.as_uuid()).collect::<HashSet<_>>().into_iter().collect();
    let members: HashSet<Uuid> = memberships::table
        .filter(memberships::channel_id.eq(channel))
        .filter(memberships::user_id.eq_any(&authors))
        .select(memberships::user_id)
        .load::<Uuid>(conn)
        .await?
        .into_iter()
        .collect();

    // Nonces seen in the last 24 hours name an earlier message.
    let nonces: Vec<String> = requests.iter().filter_map(|r| r.nonce.clone()).collect();
    let cutoff = OffsetDateTime::now_utc() - time::Duration::hours(24);
    let known: HashMap<(Uuid, String), Uuid> = if nonces.is_empty() {
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

    // Parents: top-level, live, same channel.
    let parent_ids: Vec<Uuid> = requests.iter().filter_map(|r| r.parent_id.map(|p| p.as_uuid())).collect();
    let parents: HashMap<Uuid, (Uuid, Option<Uuid>, bool)> = if parent_ids.is_empty() {
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

    // Attachments: files the author uploaded. `FOR KEY SHARE` holds them until commit: a
    // file deleted meanwhile would otherwise break the attachment insert's foreign key and
    // fail the whole batch — everyone's posts — instead of this one post. A delete that
    // committed first leaves the file out of this result, so the post is refused (422).
    let file_ids: Vec<Uuid> = requests.iter().flat_map(|r| r.attachment_ids.iter().map(FileId::as_uuid)).collect();
    let uploaders: HashMap<Uuid, Uuid> = if file_ids.is_empty() {
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

    enum Plan {
        Insert(usize),
        Existing(Uuid),
        Refused(PostError),
    }
    let mut plans = Vec::with_capacity(requests.len());
    let mut rows: Vec<MessageRow> = Vec::new();
    let mut batch_nonces: HashMap<(Uuid, String), usize> = HashMap::new();
    let now = OffsetDateTime::now_utc();
    // Asked at most once per batch, and only when someone is refused.
    let mut banned: Option<HashSet<Uuid>> = None;
    for request in requests {
        let author = request.author.as_uuid();
        if !members.contains(&author) {
            if banned.is_none() {
                banned = Some(banned_authors(conn, channel, &authors, &members).await?);
            }
            let banned = banned.as_ref().is_some_and(|b| b.contains(&author));
            let role = domain::Role::from_facts(false, false, banned);
            let denied = domain::authorize(kind, is_private, role, domain::Action::Post)
                .err()
                .unwrap_or(domain::Denied::Forbidden("join the channel first"));
            plans.push(Plan::Refused(PostError::Denied(denied)));
            continue;
        }
        if let Some(nonce) = &request.nonce {
            let key = (author, nonce.clone());
            if let Some(existing) = known.get(&key) {
                plans.push(Plan::Existing(*existing));
                continue;
            }
            if let Some(&index) = batch_nonces.get(&key) {
                plans.push(Plan::Existing(rows[index].id));
                continue;
            }
        }
        if let Some(parent) = request.parent_id {
            let refusal = match parents.get(&parent.as_uuid()) {
                // One answer for both: telling "no such message" from "a message of another
                // channel" would confirm that a message of a private channel exists.
                None => Some("must be a message of this channel"),
                Some((parent_channel, _, _)) if *parent_channel != channel => Some("must be a message of this channel"),
                Some((_, Some(_), _)) => Some("replies cannot be replied to: threads are one level deep"),
                Some((_, None, true)) => Some("the message was deleted"),
                Some(_) => None,
            };
            if let Some(message) = refusal {
                plans.push(Plan::Refused(PostError::Invalid { field: "parent_id", message: message.into() }));
                continue;
            }
        }
        if let Some(bad) = request.attachment_ids.iter().find(|f| uploaders.get(&f.as_uuid()) != Some(&author)) {
            plans.push(Plan::Refused(PostError::Invalid {
                field: "attachment_ids",
                message: format!("{bad} is not a file you uploaded"),
            }));
            continue;
        }
        let index = rows.len();
        rows.push(MessageRow {
            id: Uuid::now_v7(),
            channel_id: channel,
            user_id: author,
            seq: last_seq + 1 + index as i64,
            parent_id: request.parent_id.map(|p| p.as_uuid()),
            content: request.content.as_str().to_owned(),
            reply_count: 0,
            created_at: now,
            edited_at: None,
            deleted: false,
        });
        if let Some(nonce) = &request.nonce {
            batch_nonces.insert((author, nonce.clone()), index);
        }
        plans.push(Plan::Insert(index));
    }

    let mut created: Vec<Message> = Vec::new();
    let mut events_out = Vec::new();
    if !rows.is_empty() {
        diesel::insert_into(messages_table::table).values(&rows).execute(conn).await?;
        let links: Vec<_> = requests
            .iter()
            .zip(&plans)
            .filter_map(|(request, plan)| match plan {
                Plan::Insert(index) => Some((rows[*index].id, request)),
                _ => None,
            })
            .flat_map(|(message_id, request)| {
                request.attachment_ids.iter().enumerate().map(move |(position, file)| {
                    (
                        message_attachments::message_id.eq(message_id),
                        message_attachments::file_id.eq(file.as_uuid()),
                        message_attachments::position.eq(position as i32),
                    )
                })
            })
            .collect();
        if !links.is_empty() {
            diesel::insert_into(message_attachments::table)
                .values(&links)
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
        }
        let nonce_rows: Vec<_> = batch_nonces
            .iter()
            .map(|((user, nonce), index)| {
                (
                    message_nonces::channel_id.eq(channel),
                    message_nonces::user_id.eq(*user),
                    message_nonces::nonce.eq(nonce.clone()),
                    message_nonces::message_id.eq(rows[*index].id),
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
        created = messages::hydrate_fresh(conn, rows.clone(), !links.is_empty()).await?;
        let bodies: Vec<EventBody> = created.iter().map(|m| EventBody::Message(Box::new(m.clone()))).collect();
        events_out = events::append(conn, channel_id, last_seq, &bodies).await?;
    }

    let existing_ids: Vec<Uuid> = plans
        .iter()
        .filter_map(|p| match p {
            Plan::Existing(id) if !rows.iter().any(|r| r.id == *id) => Some(*id),
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
    let by_id: HashMap<Uuid, &Message> = created.iter().map(|m| (m.id.as_uuid(), m)).collect();
    let results = plans
        .into_iter()
        .map(|plan| match plan {
            Plan::Insert(index) => by_id
                .get(&rows[index].id)
                .map(|m| Posted { message: (*m).clone(), created: true })
                .ok_or(PostError::Store(StoreError::NotFound)),
            Plan::Existing(id) => by_id
                .get(&id)
                .map(|m| (*m).clone())
                .or_else(|| existing.get(&id).cloned())
                .map(|message| Posted { message, created: false })
                .ok_or(PostError::Store(StoreError::NotFound)),
            Plan::Refused(error) => Err(error),
        })
        .collect();
    Ok((results, events_out))
}
