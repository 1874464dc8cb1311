// The tables of `migrations/`, as diesel sees them. Columns only SQL reads or writes are left
// out where they are noted (diesel checks at most 16 per table).

diesel::table! {
    users (id) {
        id -> Uuid,
        username -> Text,
        email -> Text,
        display_name -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
        username_skeleton -> Nullable<Text>,
        is_bot -> Bool,
        bot_owner_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Uuid,
        expires_at -> Timestamptz,
        revoked_at -> Timestamptz,
    }
}

diesel::table! {
    token_floors (user_id) {
        user_id -> Uuid,
        not_before -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    login_failures (account, failed_at) {
        account -> Text,
        failed_at -> Timestamptz,
    }
}

diesel::table! {
    channels (id) {
        id -> Uuid,
        name -> Text,
        description -> Nullable<Text>,
        owner_id -> Uuid,
        is_private -> Bool,
        kind -> Text,
        dm_key -> Nullable<Text>,
        last_seq -> Int8,
        member_count -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    memberships (channel_id, user_id) {
        channel_id -> Uuid,
        user_id -> Uuid,
        last_read_seq -> Int8,
        joined_at -> Timestamptz,
        role -> Text,
    }
}

diesel::table! {
    channel_bans (channel_id, user_id) {
        channel_id -> Uuid,
        user_id -> Uuid,
        banned_by -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    messages (id) {
        id -> Uuid,
        channel_id -> Uuid,
        user_id -> Uuid,
        seq -> Int8,
        parent_id -> Nullable<Uuid>,
        content -> Text,
        reply_count -> Int8,
        created_at -> Timestamptz,
        edited_at -> Nullable<Timestamptz>,
        deleted -> Bool,
        mention_ids -> Array<Uuid>,
        mentions_everyone -> Bool,
        pinned_at -> Nullable<Timestamptz>,
        pinned_by -> Nullable<Uuid>,
        webhook_username -> Nullable<Text>,
        // Not listed (diesel's 16-column limit): the `search` tsvector and the history
        // hints `has_attachments`/`has_reactions` (migration 000009), written in SQL.
    }
}

diesel::table! {
    message_nonces (channel_id, user_id, nonce) {
        channel_id -> Uuid,
        user_id -> Uuid,
        nonce -> Text,
        message_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    reactions (message_id, emoji, user_id) {
        message_id -> Uuid,
        emoji -> Text,
        user_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    files (id) {
        id -> Uuid,
        uploader_id -> Uuid,
        filename -> Text,
        content_type -> Text,
        size -> Int8,
        sha256 -> Text,
        created_at -> Timestamptz,
        width -> Nullable<Int4>,
        height -> Nullable<Int4>,
        has_thumbnail -> Bool,
    }
}

diesel::table! {
    message_attachments (message_id, file_id) {
        message_id -> Uuid,
        file_id -> Uuid,
        position -> Int4,
    }
}

diesel::table! {
    channel_events (channel_id, seq) {
        channel_id -> Uuid,
        seq -> Int8,
        kind -> Text,
        data -> Jsonb,
        subject_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    mentions (user_id, message_id) {
        user_id -> Uuid,
        message_id -> Uuid,
        channel_id -> Uuid,
        seq -> Int8,
    }
}

diesel::table! {
    blocks (blocker_id, blocked_id) {
        blocker_id -> Uuid,
        blocked_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Uuid,
        channel_id -> Uuid,
        action -> Text,
        actor_id -> Uuid,
        target_user_id -> Nullable<Uuid>,
        target_message_id -> Nullable<Uuid>,
        reason -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Uuid,
        channel_id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        secret_hash -> Bytea,
        created_by -> Uuid,
        created_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(memberships -> channels (channel_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(channel_bans -> channels (channel_id));
diesel::joinable!(messages -> channels (channel_id));
diesel::joinable!(messages -> users (user_id));
diesel::joinable!(reactions -> messages (message_id));
diesel::joinable!(message_attachments -> files (file_id));
diesel::joinable!(message_attachments -> messages (message_id));
diesel::joinable!(api_tokens -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    revoked_tokens,
    token_floors,
    login_failures,
    channels,
    memberships,
    channel_bans,
    messages,
    message_nonces,
    reactions,
    files,
    message_attachments,
    channel_events,
    mentions,
    blocks,
    audit_log,
    api_tokens,
    webhooks,
);
