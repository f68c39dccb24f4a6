//! Mutations: each calls the service function of its REST twin, so permissions,
//! validation, encryption and events are the same.

use async_graphql::{Context, Object};
use uuid::Uuid;

use super::query::ContextKind;
use super::{actor, gql, state};
use crate::service::auth::{self, ChallengeRequest, ChallengeView, LoginRequest, TokenView};
use crate::service::channels::{
    self, ChannelSettings, ChannelView, CreateChannel, CreateInvite, InviteView, UpdateChannel,
};
use crate::service::contexts::messages::{
    self, ContentRequest, MessageView, ReactionRequest, ReactionView,
};
use crate::service::contexts::{self, AssignRole, Kind, MuteRequest, Muted, RoleAssigned};
use crate::service::conversations::{self, DirectMessageView, SendDirectMessage};
use crate::service::groups::{
    self, AddMembers, CreateGroup, GroupView, PromoteConversation, Promoted,
};
use crate::service::members::{self, MemberView, RegisterMember};
use crate::service::moderation;
use crate::service::presence::{self, PresenceStatus, SetPresence};
use crate::service::roles::Role;

/// The root of mutations.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Register a member with a secp256k1 public key (hex).
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn register_member(
        &self,
        ctx: &Context<'_>,
        input: RegisterMember,
    ) -> async_graphql::Result<MemberView> {
        gql(members::register(state(ctx), input).await)
    }

    /// Change the signed-in member's display name.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        input: members::UpdateProfile,
    ) -> async_graphql::Result<MemberView> {
        gql(members::update_profile(state(ctx), actor(ctx)?, input).await)
    }

    /// A single-use sign-in challenge.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn auth_challenge(
        &self,
        ctx: &Context<'_>,
        member_id: Uuid,
    ) -> async_graphql::Result<ChallengeView> {
        gql(auth::challenge(state(ctx), ChallengeRequest { member_id }).await)
    }

    /// Exchange a signed challenge for a bearer token.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginRequest,
    ) -> async_graphql::Result<TokenView> {
        gql(auth::login(state(ctx), input).await)
    }

    /// Revoke the token of this request.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        gql(auth::logout(state(ctx), actor(ctx)?).await).map(|r| r.revoked)
    }

    /// Block a member from sending you direct messages.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn block_member(
        &self,
        ctx: &Context<'_>,
        member_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(members::block(state(ctx), actor(ctx)?, member_id).await).map(|r| r.blocked)
    }

    /// Lift a block.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn unblock_member(
        &self,
        ctx: &Context<'_>,
        member_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(members::unblock(state(ctx), actor(ctx)?, member_id).await).map(|r| r.unblocked)
    }

    /// Set your presence status.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn set_presence(
        &self,
        ctx: &Context<'_>,
        status: PresenceStatus,
    ) -> async_graphql::Result<PresenceStatus> {
        gql(presence::set(state(ctx), actor(ctx)?, SetPresence { status }).await).map(|r| r.status)
    }

    /// Send a direct message.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn send_direct_message(
        &self,
        ctx: &Context<'_>,
        input: SendDirectMessage,
    ) -> async_graphql::Result<DirectMessageView> {
        gql(conversations::send(state(ctx), actor(ctx)?, input).await)
    }

    /// Delete one of your direct messages.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn delete_direct_message(
        &self,
        ctx: &Context<'_>,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(
            conversations::delete_message(state(ctx), actor(ctx)?, conversation_id, message_id)
                .await,
        )
        .map(|r| r.deleted)
    }

    /// Turn a conversation into a group.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn promote_conversation(
        &self,
        ctx: &Context<'_>,
        conversation_id: Uuid,
        input: PromoteConversation,
    ) -> async_graphql::Result<Promoted> {
        gql(groups::promote(state(ctx), actor(ctx)?, conversation_id, input).await)
    }

    /// Create a group.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn create_group(
        &self,
        ctx: &Context<'_>,
        input: CreateGroup,
    ) -> async_graphql::Result<GroupView> {
        gql(groups::create(state(ctx), actor(ctx)?, input).await)
    }

    /// Add members to a group (all or nothing).
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn add_group_members(
        &self,
        ctx: &Context<'_>,
        group_id: Uuid,
        member_ids: Vec<Uuid>,
    ) -> async_graphql::Result<Vec<Uuid>> {
        gql(groups::add_members(state(ctx), actor(ctx)?, group_id, AddMembers { member_ids }).await)
            .map(|r| r.added)
    }

    /// Remove a member from a group.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn remove_group_member(
        &self,
        ctx: &Context<'_>,
        group_id: Uuid,
        member_id: Uuid,
    ) -> async_graphql::Result<Uuid> {
        gql(groups::remove_member(state(ctx), actor(ctx)?, group_id, member_id).await)
            .map(|r| r.removed)
    }

    /// Leave a group.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn leave_group(&self, ctx: &Context<'_>, group_id: Uuid) -> async_graphql::Result<bool> {
        gql(groups::leave(state(ctx), actor(ctx)?, group_id).await).map(|r| r.left)
    }

    /// Create a channel.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn create_channel(
        &self,
        ctx: &Context<'_>,
        input: CreateChannel,
    ) -> async_graphql::Result<ChannelView> {
        gql(channels::create(state(ctx), actor(ctx)?, input).await)
    }

    /// Update channel settings (owners).
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn update_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
        input: UpdateChannel,
    ) -> async_graphql::Result<ChannelSettings> {
        gql(channels::update(state(ctx), actor(ctx)?, channel_id, input).await)
    }

    /// Delete a channel (owners).
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn delete_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(channels::delete(state(ctx), actor(ctx)?, channel_id).await).map(|r| r.deleted)
    }

    /// Join a public channel.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn join_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(channels::join(state(ctx), actor(ctx)?, channel_id).await).map(|r| r.joined)
    }

    /// Leave a channel.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn leave_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(channels::leave(state(ctx), actor(ctx)?, channel_id).await).map(|r| r.left)
    }

    /// Kick a member from a channel.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn kick_member(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
        member_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(channels::kick(state(ctx), actor(ctx)?, channel_id, member_id).await).map(|r| r.kicked)
    }

    /// Create an invite token.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn create_invite(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
        input: Option<CreateInvite>,
    ) -> async_graphql::Result<InviteView> {
        gql(channels::create_invite(
            state(ctx),
            actor(ctx)?,
            channel_id,
            input.unwrap_or_default(),
        )
        .await)
    }

    /// Redeem an invite token.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn redeem_invite(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
        token: String,
    ) -> async_graphql::Result<bool> {
        gql(channels::redeem(state(ctx), actor(ctx)?, channel_id, &token).await).map(|r| r.redeemed)
    }

    /// Send a message to a group or channel.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        content: String,
    ) -> async_graphql::Result<MessageView> {
        gql(messages::send(
            state(ctx),
            actor(ctx)?,
            kind.into(),
            context_id,
            ContentRequest { content },
        )
        .await)
    }

    /// Edit one of your messages.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn edit_message(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        message_id: Uuid,
        content: String,
    ) -> async_graphql::Result<MessageView> {
        let input = ContentRequest { content };
        gql(messages::edit(
            state(ctx),
            actor(ctx)?,
            kind.into(),
            context_id,
            message_id,
            input,
        )
        .await)
    }

    /// Delete a message.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn delete_message(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        message_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(messages::delete(state(ctx), actor(ctx)?, kind.into(), context_id, message_id).await)
            .map(|r| r.deleted)
    }

    /// React to a message.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn add_reaction(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        message_id: Uuid,
        emoji: String,
    ) -> async_graphql::Result<ReactionView> {
        let input = ReactionRequest { emoji };
        gql(messages::react(
            state(ctx),
            actor(ctx)?,
            kind.into(),
            context_id,
            message_id,
            input,
        )
        .await)
    }

    /// Remove your reaction.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn remove_reaction(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        message_id: Uuid,
        reaction_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(messages::unreact(
            state(ctx),
            actor(ctx)?,
            kind.into(),
            context_id,
            message_id,
            reaction_id,
        )
        .await)
        .map(|r| r.removed)
    }

    /// Pin a message.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn pin_message(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        message_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(messages::pin(state(ctx), actor(ctx)?, kind.into(), context_id, message_id).await)
            .map(|r| r.pinned)
    }

    /// Unpin a message.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn unpin_message(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        message_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(messages::unpin(state(ctx), actor(ctx)?, kind.into(), context_id, message_id).await)
            .map(|r| r.unpinned)
    }

    /// Assign a role in a group or channel.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn assign_role(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        member_id: Uuid,
        role: Role,
    ) -> async_graphql::Result<RoleAssigned> {
        gql(contexts::assign_role(
            state(ctx),
            actor(ctx)?,
            kind.into(),
            context_id,
            member_id,
            AssignRole { role },
        )
        .await)
    }

    /// Mute a member for `durationMs` (1..=2,419,200,000).
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn mute_member(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        member_id: Uuid,
        duration_ms: i64,
    ) -> async_graphql::Result<Muted> {
        let input = MuteRequest { duration_ms };
        gql(contexts::mute(
            state(ctx),
            actor(ctx)?,
            kind.into(),
            context_id,
            member_id,
            input,
        )
        .await)
    }

    /// Lift a mute.
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn unmute_member(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        member_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(contexts::unmute(state(ctx), actor(ctx)?, kind.into(), context_id, member_id).await)
            .map(|r| r.unmuted)
    }

    /// Lift a moderation plugin's lock on a channel (owners).
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn unlock_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
    ) -> async_graphql::Result<bool> {
        gql(moderation::unlock(state(ctx), actor(ctx)?, Kind::Channel, channel_id).await)
            .map(|r| r.unlocked)
    }

    /// Lift a moderation plugin's lock on a group (owners).
    #[graphql(complexity = "crate::graphql::cost::MUTATION + child_complexity")]
    async fn unlock_group(&self, ctx: &Context<'_>, group_id: Uuid) -> async_graphql::Result<bool> {
        gql(moderation::unlock(state(ctx), actor(ctx)?, Kind::Group, group_id).await)
            .map(|r| r.unlocked)
    }
}
