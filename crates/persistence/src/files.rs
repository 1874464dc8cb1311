//! Uploaded files' metadata. The bytes live behind the HTTP layer's `FileStore`.

use diesel::dsl::exists;
use diesel::prelude::*;
use std::collections::{BTreeMap, HashMap};

use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::{ChannelId, Committed, EventBody, FileId, FileMeta, ImageInfo, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::events;
use crate::messages::MessageRow;
use crate::schema::{files, memberships, message_attachments, messages};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = files)]
pub(crate) struct FileRow {
    pub id: Uuid,
    pub uploader_id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: OffsetDateTime,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub has_thumbnail: bool,
}

impl From<FileRow> for FileMeta {
    fn from(row: FileRow) -> Self {
        FileMeta {
            id: FileId::from_uuid(row.id),
            filename: row.filename,
            content_type: row.content_type,
            size: row.size,
            sha256: row.sha256,
            created_at: row.created_at,
            uploader_id: UserId::from_uuid(row.uploader_id),
            image: match (row.width, row.height) {
                (Some(width), Some(height)) => {
                    Some(ImageInfo { width: width as u32, height: height as u32, thumbnail: row.has_thumbnail })
                }
                _ => None,
            },
        }
    }
}

/// How much one user may hold and write: bytes of uploads no message refers to, and bytes
/// uploaded in the last hour.
#[derive(Debug, Clone, Copy)]
pub struct UploadQuota {
    pub unattached_bytes: u64,
    pub bytes_per_hour: u64,
}

/// How many more bytes `user` may upload now under `quota` (0 when the quota is used up).
pub async fn quota_left(conn: &mut AsyncPgConnection, user: UserId, quota: UploadQuota) -> StoreResult<u64> {
    let (unattached, last_hour) = usage(conn, user).await?;
    Ok(quota.unattached_bytes.saturating_sub(unattached).min(quota.bytes_per_hour.saturating_sub(last_hour)))
}

/// Bytes of `user`'s unattached uploads, and of their uploads in the last hour.
async fn usage(conn: &mut AsyncPgConnection, user: UserId) -> StoreResult<(u64, u64)> {
    #[derive(QueryableByName)]
    struct Usage {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        unattached: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        last_hour: i64,
    }
    let usage: Usage = diesel::sql_query(
        "SELECT \
           coalesce(sum(size) FILTER (WHERE NOT EXISTS \
             (SELECT 1 FROM message_attachments a WHERE a.file_id = files.id)), 0)::bigint AS unattached, \
           coalesce(sum(size) FILTER (WHERE created_at > now() - interval '1 hour'), 0)::bigint AS last_hour \
         FROM files WHERE uploader_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(user.as_uuid())
    .get_result(conn)
    .await?;
    Ok((usage.unattached.max(0) as u64, usage.last_hour.max(0) as u64))
}

/// Records an upload if it fits `user`'s quota, checked under a per-user lock so concurrent
/// uploads on any node cannot all slip under it. Returns `false` (and records nothing) when
/// it does not fit.
pub async fn create_within_quota(
    conn: &mut AsyncPgConnection,
    meta: &FileMeta,
    quota: UploadQuota,
) -> StoreResult<bool> {
    use diesel_async::AsyncConnection as _;
    conn.transaction::<bool, crate::StoreError, _>(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended('upload-quota:' || $1::text, 0))")
            .bind::<diesel::sql_types::Uuid, _>(meta.uploader_id.as_uuid())
            .execute(conn)
            .await?;
        let left = quota_left(conn, meta.uploader_id, quota).await?;
        if meta.size as u64 > left {
            return Ok(false);
        }
        create(conn, meta).await?;
        Ok(true)
    })
    .await
}

/// Records what the thumbnail worker learned. Returns `false` when the file is gone (deleted
/// meanwhile), so the caller removes the thumbnail it stored.
pub async fn set_image(conn: &mut AsyncPgConnection, id: FileId, image: ImageInfo) -> StoreResult<bool> {
    let updated = diesel::update(files::table.find(id.as_uuid()))
        .set((
            files::width.eq(image.width as i32),
            files::height.eq(image.height as i32),
            files::has_thumbnail.eq(image.thumbnail),
        ))
        .execute(conn)
        .await?;
    Ok(updated > 0)
}

/// Which of `ids` have a row, for the janitor's sweep of stored objects.
pub async fn existing(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> StoreResult<Vec<Uuid>> {
    Ok(files::table.filter(files::id.eq_any(ids)).select(files::id).load(conn).await?)
}

pub async fn create(conn: &mut AsyncPgConnection, meta: &FileMeta) -> StoreResult<()> {
    diesel::insert_into(files::table)
        .values(&FileRow {
            id: meta.id.as_uuid(),
            uploader_id: meta.uploader_id.as_uuid(),
            filename: meta.filename.clone(),
            content_type: meta.content_type.clone(),
            size: meta.size,
            sha256: meta.sha256.clone(),
            created_at: meta.created_at,
            width: meta.image.map(|i| i.width as i32),
            height: meta.image.map(|i| i.height as i32),
            has_thumbnail: meta.image.is_some_and(|i| i.thumbnail),
        })
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn find(conn: &mut AsyncPgConnection, id: FileId) -> StoreResult<FileMeta> {
    Ok(files::table.find(id.as_uuid()).select(FileRow::as_select()).first(conn).await?.into())
}

/// The files among `ids` that exist, keyed by id.
pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> StoreResult<Vec<FileMeta>> {
    let rows: Vec<FileRow> = files::table.filter(files::id.eq_any(ids)).select(FileRow::as_select()).load(conn).await?;
    Ok(rows.into_iter().map(FileMeta::from).collect())
}

/// The uploader may read a file, and so may every member of a channel where it is attached
/// to a message. (Members only: a ban removes membership, so banned users lose access.)
pub async fn can_read(conn: &mut AsyncPgConnection, file: &FileMeta, user: UserId) -> StoreResult<bool> {
    if file.uploader_id == user {
        return Ok(true);
    }
    Ok(diesel::select(exists(
        message_attachments::table
            .inner_join(messages::table)
            .inner_join(memberships::table.on(memberships::channel_id.eq(messages::channel_id)))
            .filter(message_attachments::file_id.eq(file.id.as_uuid()))
            .filter(memberships::user_id.eq(user.as_uuid()))
            .filter(messages::deleted.eq(false)),
    ))
    .get_result(conn)
    .await?)
}

/// Deletes a file. Messages it was attached to lose the attachment, and each gets a
/// `message_updated` in its channel, so live clients and resumes drop it too.
pub async fn delete(conn: &mut AsyncPgConnection, id: FileId) -> StoreResult<Committed<()>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        // Lock the channels that show the file first, in one order, as every writer does:
        // the channel lock comes before any row of the channel.
        let mut channels: Vec<Uuid> = message_attachments::table
            .inner_join(messages::table)
            .filter(message_attachments::file_id.eq(id.as_uuid()))
            .select(messages::channel_id)
            .distinct()
            .load(conn)
            .await?;
        channels.sort_unstable();
        let mut last_seqs = HashMap::new();
        for channel in &channels {
            let channel_id = ChannelId::from_uuid(*channel);
            last_seqs.insert(channel_id, events::lock_channel(conn, channel_id).await?);
        }
        let unlinked: Vec<Uuid> =
            diesel::delete(message_attachments::table.filter(message_attachments::file_id.eq(id.as_uuid())))
                .returning(message_attachments::message_id)
                .get_results(conn)
                .await?;
        diesel::delete(files::table.find(id.as_uuid())).execute(conn).await?;
        let rows: Vec<MessageRow> = messages::table
            .filter(messages::id.eq_any(&unlinked))
            .order(messages::seq.asc())
            .select(MessageRow::as_select())
            .load(conn)
            .await?;
        let mut by_channel: BTreeMap<ChannelId, Vec<EventBody>> = BTreeMap::new();
        for message in crate::messages::hydrate(conn, rows, None).await? {
            by_channel
                .entry(message.channel_id)
                .or_default()
                .push(EventBody::MessageUpdated { message: Box::new(message) });
        }
        let mut out = Vec::new();
        for (channel_id, bodies) in by_channel {
            // A post that attached the file after the first read committed before our
            // delete could see the file: its channel is locked only now.
            let last_seq = match last_seqs.get(&channel_id) {
                Some(last_seq) => *last_seq,
                None => events::lock_channel(conn, channel_id).await?,
            };
            let appended = events::append(conn, channel_id, last_seq, bodies).await?;
            last_seqs.insert(channel_id, last_seq + appended.len() as i64);
            out.extend(appended);
        }
        Ok(Committed::new((), out))
    })
    .await
}

/// Deletes uploads older than `cutoff` that no message refers to and returns their ids, so
/// the bytes can be removed too.
pub async fn purge_orphans(conn: &mut AsyncPgConnection, cutoff: OffsetDateTime) -> StoreResult<Vec<FileId>> {
    let ids: Vec<Uuid> = diesel::delete(files::table.filter(files::created_at.lt(cutoff)).filter(diesel::dsl::not(
        exists(message_attachments::table.filter(message_attachments::file_id.eq(files::id))),
    )))
    .returning(files::id)
    .get_results(conn)
    .await?;
    Ok(ids.into_iter().map(FileId::from_uuid).collect())
}
