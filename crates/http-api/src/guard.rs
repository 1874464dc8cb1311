//! The one place that decides whether the caller may touch a channel. Every endpoint that
//! reads or changes anything channel-scoped (messages, reactions, files, membership) goes
//! through [`channel_access`], so none can forget a ban or leak a private channel.

use domain::{Action, ChannelId, UserId};
use persistence::AsyncPgConnection;
use persistence::channels::{self, ChannelAccess};

use crate::error::{ApiError, ApiResult};

pub async fn channel_access(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    caller: UserId,
    action: Action,
) -> ApiResult<ChannelAccess> {
    let access = channels::access(conn, channel_id, caller).await.map_err(|e| match e {
        persistence::StoreError::NotFound => ApiError::not_found("channel"),
        other => other.into(),
    })?;
    authorize(&access, action)?;
    Ok(access)
}

/// The same decision for an access already loaded by a query that read more than the
/// channel (the one-statement history page).
pub fn authorize(access: &ChannelAccess, action: Action) -> ApiResult<()> {
    domain::authorize(access.channel.kind, access.channel.is_private, access.role, action)?;
    Ok(())
}
