//! docs/api.md sections 4 and 11's authorization rules as one table: every channel-scoped endpoint, for
//! every role a caller can have, in every kind of channel. Each cell runs against a fresh
//! channel, so what one call changes (a leave, a ban, a delete) never colours the next.
//!
//! The rules it spells out:
//! - anonymous → 401 everywhere;
//! - private channels and DMs: outsiders and banned users → 404 (never confirm they exist);
//! - public channels: banned → 403 on everything; non-members may read (channel, members,
//!   history, messages, reactions) and join, but posting, reacting and read markers → 403;
//! - owner powers (patch, delete, set roles, transfer) → 403 for everyone else; moderation
//!   (ban, unban, kick plain members, banned-users, audit log, webhooks, adding members to a
//!   private channel) → the owner and moderators; the owner cannot leave (409);
//! - pins: members pin and unpin; whoever may read sees the pins;
//! - DMs and group DMs have no owner and cannot be joined, moderated or invited to → 403
//!   for members; a group DM may be left, a DM not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;

use blackbox_tests::{Reply, TestApp};
use reqwest::Method;
use serde_json::json;

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    GetChannel,
    Join,
    Leave,
    Members,
    AddMember,
    Ban,
    Unban,
    BannedUsers,
    Patch,
    Delete,
    ReadMarker,
    PostMessage,
    History,
    GetMessage,
    React,
    ListReactions,
    Kick,
    SetRole,
    Transfer,
    AuditLog,
    Pins,
    Pin,
    Unpin,
    CreateWebhook,
    ListWebhooks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Public,
    Private,
    Dm,
    GroupDm,
}

#[derive(Debug, Clone, Copy)]
enum Role {
    /// The channel's creator. In a DM or group DM, the user who opened it, who has no owner
    /// powers.
    Owner,
    /// A member the owner made a moderator.
    Moderator,
    Member,
    NonMember,
    /// A former member the owner banned.
    Banned,
    Anonymous,
}

const ROLES: [Role; 6] = [Role::Owner, Role::Moderator, Role::Member, Role::NonMember, Role::Banned, Role::Anonymous];

/// Not applicable: nobody can be banned from, or moderate, a DM or group DM.
const NA: u16 = 0;

use Endpoint::*;
use Kind::*;

/// The contract. Columns: owner, moderator, member, non-member, banned, anonymous.
#[rustfmt::skip]
const MATRIX: &[(Endpoint, Kind, [u16; 6])] = &[
    //                            owner  mod  member non-mem banned anon
    (GetChannel,    Public,      [200,  200,  200,   200,    403,   401]),
    (GetChannel,    Private,     [200,  200,  200,   404,    404,   401]),
    (GetChannel,    Dm,          [200,  NA,   200,   404,    NA,    401]),
    (GetChannel,    GroupDm,     [200,  NA,   200,   404,    NA,    401]),

    (Join,          Public,      [200,  200,  200,   200,    403,   401]),
    (Join,          Private,     [200,  200,  200,   404,    404,   401]),
    (Join,          Dm,          [403,  NA,   403,   404,    NA,    401]),
    (Join,          GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (Leave,         Public,      [409,  204,  204,   403,    403,   401]),
    (Leave,         Private,     [409,  204,  204,   404,    404,   401]),
    (Leave,         Dm,          [403,  NA,   403,   404,    NA,    401]),
    (Leave,         GroupDm,     [204,  NA,   204,   404,    NA,    401]),

    (Members,       Public,      [200,  200,  200,   200,    403,   401]),
    (Members,       Private,     [200,  200,  200,   404,    404,   401]),
    (Members,       Dm,          [200,  NA,   200,   404,    NA,    401]),
    (Members,       GroupDm,     [200,  NA,   200,   404,    NA,    401]),

    // Public channels are joined, not invited to.
    (AddMember,     Public,      [403,  403,  403,   403,    403,   401]),
    (AddMember,     Private,     [200,  200,  403,   404,    404,   401]),
    (AddMember,     Dm,          [403,  NA,   403,   404,    NA,    401]),
    (AddMember,     GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (Ban,           Public,      [200,  200,  403,   403,    403,   401]),
    (Ban,           Private,     [200,  200,  403,   404,    404,   401]),
    (Ban,           Dm,          [403,  NA,   403,   404,    NA,    401]),
    (Ban,           GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (Unban,         Public,      [200,  200,  403,   403,    403,   401]),
    (Unban,         Private,     [200,  200,  403,   404,    404,   401]),
    (Unban,         Dm,          [403,  NA,   403,   404,    NA,    401]),
    (Unban,         GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (BannedUsers,   Public,      [200,  200,  403,   403,    403,   401]),
    (BannedUsers,   Private,     [200,  200,  403,   404,    404,   401]),
    (BannedUsers,   Dm,          [403,  NA,   403,   404,    NA,    401]),
    (BannedUsers,   GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (Patch,         Public,      [200,  403,  403,   403,    403,   401]),
    (Patch,         Private,     [200,  403,  403,   404,    404,   401]),
    (Patch,         Dm,          [403,  NA,   403,   404,    NA,    401]),
    (Patch,         GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (Delete,        Public,      [204,  403,  403,   403,    403,   401]),
    (Delete,        Private,     [204,  403,  403,   404,    404,   401]),
    (Delete,        Dm,          [403,  NA,   403,   404,    NA,    401]),
    (Delete,        GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (ReadMarker,    Public,      [204,  204,  204,   403,    403,   401]),
    (ReadMarker,    Private,     [204,  204,  204,   404,    404,   401]),
    (ReadMarker,    Dm,          [204,  NA,   204,   404,    NA,    401]),
    (ReadMarker,    GroupDm,     [204,  NA,   204,   404,    NA,    401]),

    (PostMessage,   Public,      [201,  201,  201,   403,    403,   401]),
    (PostMessage,   Private,     [201,  201,  201,   404,    404,   401]),
    (PostMessage,   Dm,          [201,  NA,   201,   404,    NA,    401]),
    (PostMessage,   GroupDm,     [201,  NA,   201,   404,    NA,    401]),

    (History,       Public,      [200,  200,  200,   200,    403,   401]),
    (History,       Private,     [200,  200,  200,   404,    404,   401]),
    (History,       Dm,          [200,  NA,   200,   404,    NA,    401]),
    (History,       GroupDm,     [200,  NA,   200,   404,    NA,    401]),

    (GetMessage,    Public,      [200,  200,  200,   200,    403,   401]),
    (GetMessage,    Private,     [200,  200,  200,   404,    404,   401]),
    (GetMessage,    Dm,          [200,  NA,   200,   404,    NA,    401]),
    (GetMessage,    GroupDm,     [200,  NA,   200,   404,    NA,    401]),

    (React,         Public,      [200,  200,  200,   403,    403,   401]),
    (React,         Private,     [200,  200,  200,   404,    404,   401]),
    (React,         Dm,          [200,  NA,   200,   404,    NA,    401]),
    (React,         GroupDm,     [200,  NA,   200,   404,    NA,    401]),

    (ListReactions, Public,      [200,  200,  200,   200,    403,   401]),
    (ListReactions, Private,     [200,  200,  200,   404,    404,   401]),
    (ListReactions, Dm,          [200,  NA,   200,   404,    NA,    401]),
    (ListReactions, GroupDm,     [200,  NA,   200,   404,    NA,    401]),

    // Kicks a plain member (the owner and moderators may).
    (Kick,          Public,      [204,  204,  403,   403,    403,   401]),
    (Kick,          Private,     [204,  204,  403,   404,    404,   401]),
    (Kick,          Dm,          [403,  NA,   403,   404,    NA,    401]),
    (Kick,          GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (SetRole,       Public,      [200,  403,  403,   403,    403,   401]),
    (SetRole,       Private,     [200,  403,  403,   404,    404,   401]),
    (SetRole,       Dm,          [403,  NA,   403,   404,    NA,    401]),
    (SetRole,       GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (Transfer,      Public,      [200,  403,  403,   403,    403,   401]),
    (Transfer,      Private,     [200,  403,  403,   404,    404,   401]),
    (Transfer,      Dm,          [403,  NA,   403,   404,    NA,    401]),
    (Transfer,      GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (AuditLog,      Public,      [200,  200,  403,   403,    403,   401]),
    (AuditLog,      Private,     [200,  200,  403,   404,    404,   401]),
    (AuditLog,      Dm,          [403,  NA,   403,   404,    NA,    401]),
    (AuditLog,      GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (Pins,          Public,      [200,  200,  200,   200,    403,   401]),
    (Pins,          Private,     [200,  200,  200,   404,    404,   401]),
    (Pins,          Dm,          [200,  NA,   200,   404,    NA,    401]),
    (Pins,          GroupDm,     [200,  NA,   200,   404,    NA,    401]),

    (Pin,           Public,      [204,  204,  204,   403,    403,   401]),
    (Pin,           Private,     [204,  204,  204,   404,    404,   401]),
    (Pin,           Dm,          [204,  NA,   204,   404,    NA,    401]),
    (Pin,           GroupDm,     [204,  NA,   204,   404,    NA,    401]),

    (Unpin,         Public,      [204,  204,  204,   403,    403,   401]),
    (Unpin,         Private,     [204,  204,  204,   404,    404,   401]),
    (Unpin,         Dm,          [204,  NA,   204,   404,    NA,    401]),
    (Unpin,         GroupDm,     [204,  NA,   204,   404,    NA,    401]),

    // Incoming webhooks are managed by the owner and moderators (section 12).
    (CreateWebhook, Public,      [201,  201,  403,   403,    403,   401]),
    (CreateWebhook, Private,     [201,  201,  403,   404,    404,   401]),
    (CreateWebhook, Dm,          [403,  NA,   403,   404,    NA,    401]),
    (CreateWebhook, GroupDm,     [403,  NA,   403,   404,    NA,    401]),

    (ListWebhooks,  Public,      [200,  200,  403,   403,    403,   401]),
    (ListWebhooks,  Private,     [200,  200,  403,   404,    404,   401]),
    (ListWebhooks,  Dm,          [403,  NA,   403,   404,    NA,    401]),
    (ListWebhooks,  GroupDm,     [403,  NA,   403,   404,    NA,    401]),
];

/// Users shared by every channel cell (roles are per channel, so sharing is safe).
struct Cast {
    owner: String,
    moderator: String,
    member: String,
    outsider: String,
    banned: String,
    victim: String,
}

impl Cast {
    async fn new(app: &TestApp) -> Self {
        Self {
            owner: app.user("owner").await,
            moderator: app.user("moderator").await,
            member: app.user("member").await,
            outsider: app.user("outsider").await,
            banned: app.user("banned").await,
            victim: app.user("victim").await,
        }
    }
}

/// One fresh channel with every role in place and a message in it.
struct World {
    channel: String,
    message: String,
    owner: String,
    /// `None` for DMs and group DMs: they have no moderators.
    moderator: Option<String>,
    member: String,
    outsider: String,
    /// `None` for DMs and group DMs: nobody can be banned from one.
    banned: Option<String>,
    /// Whom ban, kick, role changes and transfers target (a plain member), and whom unban
    /// targets (the banned user; in a DM, the other member).
    ban_target: String,
    unban_target: String,
}

impl World {
    fn token(&self, role: Role) -> Option<&str> {
        match role {
            Role::Owner => Some(&self.owner),
            Role::Moderator => self.moderator.as_deref(),
            Role::Member => Some(&self.member),
            Role::NonMember => Some(&self.outsider),
            Role::Banned => self.banned.as_deref(),
            Role::Anonymous => None,
        }
    }
}

fn id_of(reply: &Reply, status: u16) -> String {
    reply.assert_status(status)["id"].as_str().unwrap().to_owned()
}

async fn build(app: &TestApp, cast: &Cast, kind: Kind, n: usize) -> World {
    let client = &app.client;
    if kind == Dm || kind == GroupDm {
        // A DM or group DM exists once per set of people, so each cell gets its own.
        let owner = app.user(&format!("dm{n}_opener")).await;
        let other = format!("dm{n}_other");
        let member = app.user(&other).await;
        let third = format!("dm{n}_third");
        let dm = if kind == Dm {
            client.post_empty(&format!("/api/channels/dm/{other}"), Some(&owner)).await
        } else {
            app.user(&third).await;
            client.post("/api/channels/group-dm", Some(&owner), &json!({"usernames": [other, third]})).await
        };
        let channel = id_of(&dm, 201);
        let message =
            client.post("/api/chat/messages", Some(&owner), &json!({"content": "hello", "channel_id": channel})).await;
        let target = if kind == Dm { other } else { third };
        return World {
            message: id_of(&message, 201),
            channel,
            owner,
            moderator: None,
            member,
            outsider: cast.outsider.clone(),
            banned: None,
            ban_target: target.clone(),
            unban_target: target,
        };
    }
    let created = client
        .post("/api/channels", Some(&cast.owner), &json!({"name": format!("cell-{n}"), "is_private": kind == Private}))
        .await;
    let channel = id_of(&created, 201);
    for (token, username) in
        [(&cast.moderator, "moderator"), (&cast.member, "member"), (&cast.banned, "banned"), (&cast.victim, "victim")]
    {
        let reply = if kind == Public {
            client.post_empty(&format!("/api/channels/{channel}/join"), Some(token)).await
        } else {
            client.post_empty(&format!("/api/channels/{channel}/members/{username}"), Some(&cast.owner)).await
        };
        reply.assert_status(200);
    }
    client
        .put(
            &format!("/api/channels/{channel}/members/moderator/role"),
            Some(&cast.owner),
            &json!({"role": "moderator"}),
        )
        .await
        .assert_status(200);
    // The banned user wrote something before the ban.
    let message = client
        .post("/api/chat/messages", Some(&cast.banned), &json!({"content": "hello", "channel_id": channel}))
        .await;
    client
        .post_empty(&format!("/api/channels/{channel}/ban-by-username/banned"), Some(&cast.owner))
        .await
        .assert_status(200);
    World {
        message: id_of(&message, 201),
        channel,
        owner: cast.owner.clone(),
        moderator: Some(cast.moderator.clone()),
        member: cast.member.clone(),
        outsider: cast.outsider.clone(),
        banned: Some(cast.banned.clone()),
        ban_target: "victim".into(),
        unban_target: "banned".into(),
    }
}

/// The one request each endpoint stands for, made as `token`.
async fn call(app: &TestApp, world: &World, endpoint: Endpoint, token: Option<&str>) -> Reply {
    let client = &app.client;
    let channel = &world.channel;
    let message = &world.message;
    let target = &world.ban_target;
    let (method, path, body) = match endpoint {
        GetChannel => (Method::GET, format!("/api/channels/{channel}"), None),
        Join => (Method::POST, format!("/api/channels/{channel}/join"), None),
        Leave => (Method::POST, format!("/api/channels/{channel}/leave"), None),
        Members => (Method::GET, format!("/api/channels/{channel}/members"), None),
        AddMember => (Method::POST, format!("/api/channels/{channel}/members/guest"), None),
        Ban => (Method::POST, format!("/api/channels/{channel}/ban-by-username/{target}"), None),
        Unban => (Method::POST, format!("/api/channels/{channel}/unban-by-username/{}", world.unban_target), None),
        BannedUsers => (Method::GET, format!("/api/channels/{channel}/banned-users"), None),
        Patch => (Method::PATCH, format!("/api/channels/{channel}"), Some(json!({"description": "changed"}))),
        Delete => (Method::DELETE, format!("/api/channels/{channel}"), None),
        ReadMarker => (Method::PUT, format!("/api/channels/{channel}/read"), Some(json!({"seq": 1}))),
        PostMessage => {
            (Method::POST, "/api/chat/messages".to_owned(), Some(json!({"content": "hi", "channel_id": channel})))
        }
        History => (Method::GET, format!("/api/chat/channels/{channel}/messages"), None),
        GetMessage => (Method::GET, format!("/api/chat/messages/{message}"), None),
        React => (Method::POST, format!("/api/chat/messages/{message}/reactions"), Some(json!({"emoji": "👍"}))),
        ListReactions => (Method::GET, format!("/api/chat/messages/{message}/reactions"), None),
        Kick => (Method::DELETE, format!("/api/channels/{channel}/members/{target}"), None),
        SetRole => {
            (Method::PUT, format!("/api/channels/{channel}/members/{target}/role"), Some(json!({"role": "moderator"})))
        }
        Transfer => (Method::POST, format!("/api/channels/{channel}/transfer"), Some(json!({"username": target}))),
        AuditLog => (Method::GET, format!("/api/channels/{channel}/audit-log"), None),
        Pins => (Method::GET, format!("/api/channels/{channel}/pins"), None),
        Pin => (Method::PUT, format!("/api/chat/messages/{message}/pin"), None),
        Unpin => (Method::DELETE, format!("/api/chat/messages/{message}/pin"), None),
        CreateWebhook => (Method::POST, format!("/api/channels/{channel}/webhooks"), Some(json!({"name": "CI"}))),
        ListWebhooks => (Method::GET, format!("/api/channels/{channel}/webhooks"), None),
    };
    let mut request = client.request(method, &path, token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    client.send(request).await
}

/// What an error response must carry besides its status.
fn error_shape_problem(reply: &Reply) -> Option<String> {
    let status = reply.status.as_u16();
    if status < 400 {
        return None;
    }
    if !reply.body["detail"].is_string() || !reply.body["code"].is_string() {
        return Some(format!("not a documented error body: {}", reply.text));
    }
    let expected_code = match status {
        401 => "not_authenticated",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        _ => return None,
    };
    if reply.body["code"] != expected_code {
        return Some(format!("code {} (want {expected_code})", reply.body["code"]));
    }
    if status == 401 && reply.header("www-authenticate") != Some("Bearer") {
        return Some("401 without WWW-Authenticate: Bearer".into());
    }
    None
}

#[tokio::test]
async fn every_endpoint_answers_every_role_as_the_contract_says() {
    let app = TestApp::spawn().await;
    let cast = Cast::new(&app).await;
    app.user("guest").await;

    let mut failures = String::new();
    let mut cells = 0;
    for (n, (endpoint, kind, expected)) in MATRIX.iter().enumerate() {
        for (role, want) in ROLES.iter().zip(expected) {
            if *want == NA {
                continue;
            }
            let world = build(&app, &cast, *kind, n * ROLES.len() + *role as usize).await;
            let reply = call(&app, &world, *endpoint, world.token(*role)).await;
            cells += 1;
            let got = reply.status.as_u16();
            if got != *want {
                let _ =
                    writeln!(failures, "{endpoint:?} / {kind:?} / {role:?}: got {got}, want {want}: {}", reply.text);
            } else if let Some(problem) = error_shape_problem(&reply) {
                let _ = writeln!(failures, "{endpoint:?} / {kind:?} / {role:?}: {problem}");
            }
        }
    }
    assert!(failures.is_empty(), "the matrix disagrees:\n{failures}");
    let applicable = MATRIX.iter().flat_map(|(_, _, row)| row).filter(|&&want| want != NA).count();
    assert_eq!(cells, applicable, "every applicable cell ran");
}

/// The table above covers 25 endpoints; the remaining channel-scoped ones follow the same
/// rules and are spot-checked here: replies, edits, deletes and reaction removal.
#[tokio::test]
async fn thread_edit_delete_and_unreact_follow_the_same_rules() {
    let app = TestApp::spawn().await;
    let cast = Cast::new(&app).await;
    for (n, kind) in [Public, Private].into_iter().enumerate() {
        let world = build(&app, &cast, kind, 1000 + n).await;
        let hidden = if kind == Public { 403 } else { 404 };
        let replies = format!("/api/chat/messages/{}/replies", world.message);
        let message = format!("/api/chat/messages/{}", world.message);
        let unreact = format!("/api/chat/messages/{}/reactions/%F0%9F%91%8D", world.message);
        // The banned user wrote the message: once banned, not even its author reaches it.
        let banned = world.banned.as_deref();
        assert_eq!(app.client.get(&replies, banned).await.status, hidden);
        assert_eq!(app.client.patch(&message, banned, &json!({"content": "edited"})).await.status, hidden);
        assert_eq!(app.client.delete(&message, banned).await.status, hidden);
        assert_eq!(app.client.delete(&unreact, banned).await.status, hidden);
        // Outsiders: public threads are readable, private ones do not exist.
        let outsider = Some(world.outsider.as_str());
        let want = if kind == Public { 200 } else { 404 };
        assert_eq!(app.client.get(&replies, outsider).await.status, want);
        let want = if kind == Public { 403 } else { 404 };
        assert_eq!(app.client.patch(&message, outsider, &json!({"content": "edited"})).await.status, want);
        assert_eq!(app.client.delete(&message, outsider).await.status, want);
        // Anonymous.
        for reply in [
            app.client.get(&replies, None).await,
            app.client.delete(&message, None).await,
            app.client.delete(&unreact, None).await,
        ] {
            reply.assert_error(401, "not_authenticated");
        }
        // The owner may delete the banned user's message; the member may not.
        assert_eq!(app.client.delete(&message, Some(&world.member)).await.status, 403);
        assert_eq!(app.client.delete(&message, Some(&world.owner)).await.status, 204);
    }
}

/// docs/api.md section 12: tokens and bots belong to one person. Anonymous callers get 401
/// everywhere; another person's token or bot is "not found" (never confirmed to exist); a
/// bot cannot make bots.
#[tokio::test]
async fn integration_endpoints_answer_only_their_owner() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let other = app.user("other").await;
    let token = app.client.post("/api/users/me/tokens", Some(&owner), &json!({"name": "ci"})).await;
    let token_id = token.assert_status(201)["id"].as_str().unwrap().to_owned();
    app.client.post("/api/bots", Some(&owner), &json!({"username": "owned"})).await.assert_status(201);

    let token_path = format!("/api/users/me/tokens/{token_id}");
    #[rustfmt::skip]
    let table: [(Method, &str, Option<serde_json::Value>, [u16; 3]); 6] = [
        //                                                                          owner other anon
        (Method::POST,   "/api/users/me/tokens", Some(json!({"name": "x"})),       [201, 201, 401]),
        (Method::GET,    "/api/users/me/tokens", None,                             [200, 200, 401]),
        (Method::GET,    "/api/bots",            None,                             [200, 200, 401]),
        (Method::POST,   "/api/bots/owned/token", None,                            [200, 404, 401]),
        (Method::DELETE, &token_path,            None,                             [204, 404, 401]),
        (Method::DELETE, "/api/bots/owned",      None,                             [204, 404, 401]),
    ];
    let mut failures = String::new();
    for (method, path, body, expected) in table {
        // The owner goes last, since their calls delete things.
        for (who, token, want) in [
            ("anonymous", None, expected[2]),
            ("other", Some(other.as_str()), expected[1]),
            ("owner", Some(owner.as_str()), expected[0]),
        ] {
            let mut request = app.client.request(method.clone(), path, token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let reply = app.client.send(request).await;
            let got = reply.status.as_u16();
            if got != want {
                let _ = writeln!(failures, "{method} {path} / {who}: got {got}, want {want}: {}", reply.text);
            } else if let Some(problem) = error_shape_problem(&reply) {
                let _ = writeln!(failures, "{method} {path} / {who}: {problem}");
            }
        }
    }
    assert!(failures.is_empty(), "the integrations table disagrees:\n{failures}");
    // Bots cannot make bots.
    let minted = app.client.post("/api/bots", Some(&owner), &json!({"username": "second"})).await;
    let second = minted.assert_status(201)["token"].as_str().unwrap().to_owned();
    let reply = app.client.post("/api/bots", Some(&second), &json!({"username": "third"})).await;
    reply.assert_error(403, "forbidden");
}
