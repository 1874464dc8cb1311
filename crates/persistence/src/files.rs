//! Uploaded files' metadata. The bytes live behind the HTTP layer's `FileStore`.

use diesel::dsl::exists;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{FileId, FileMeta, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::StoreResult;
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
        }
    }
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

pub async fn delete(conn: &mut AsyncPgConnection, id: FileId) -> StoreResult<()> {
    diesel::delete(files::table.find(id.as_uuid())).execute(conn).await?;
    Ok(())
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
