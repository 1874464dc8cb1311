//! The moderation audit log. Each entry is written by the repository function that makes
//! the change, in its transaction, so no moderation action goes unrecorded.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{AuditAction, AuditEntry, AuditRecord, ChannelId, MessageId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::schema::audit_log;

pub(crate) async fn record(conn: &mut AsyncPgConnection, entry: AuditRecord<'_>) -> StoreResult<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::id.eq(Uuid::now_v7()),
            audit_log::channel_id.eq(entry.channel_id.as_uuid()),
            audit_log::action.eq(entry.action.as_str()),
            audit_log::actor_id.eq(entry.actor.as_uuid()),
            audit_log::target_user_id.eq(entry.target_user.map(|u| u.as_uuid())),
            audit_log::target_message_id.eq(entry.target_message.map(|m| m.as_uuid())),
            audit_log::reason.eq(entry.reason.map(|r| r.as_str().to_owned())),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// A channel's audit log, newest first, before the entry id `before`.
pub async fn page(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    before: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<AuditEntry>> {
    type Row = (Uuid, String, Uuid, Option<Uuid>, Option<Uuid>, Option<String>, OffsetDateTime);
    let mut query = audit_log::table
        .filter(audit_log::channel_id.eq(channel_id.as_uuid()))
        .select((
            audit_log::id,
            audit_log::action,
            audit_log::actor_id,
            audit_log::target_user_id,
            audit_log::target_message_id,
            audit_log::reason,
            audit_log::created_at,
        ))
        .order(audit_log::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(audit_log::id.lt(before));
    }
    let rows: Vec<Row> = query.load(conn).await?;
    let mut people: Vec<Uuid> = rows.iter().flat_map(|r| [Some(r.2), r.3]).flatten().collect();
    people.sort_unstable();
    people.dedup();
    let people: std::collections::HashMap<UserId, domain::UserSummary> =
        crate::users::summaries(conn, &people).await?.into_iter().map(|u| (u.id, u)).collect();
    let person = |id: Uuid| people.get(&UserId::from_uuid(id)).cloned();
    rows.into_iter()
        .map(|(id, action, actor, target_user, target_message, reason, created_at)| {
            Ok(AuditEntry {
                id,
                action: AuditAction::parse(&action)
                    .ok_or_else(|| StoreError::Corrupt(format!("audit action {action}")))?,
                actor: person(actor).ok_or_else(|| StoreError::Corrupt("audit actor missing".into()))?,
                target_user: target_user.and_then(person),
                target_message_id: target_message.map(MessageId::from_uuid),
                reason,
                created_at,
            })
        })
        .collect()
}
