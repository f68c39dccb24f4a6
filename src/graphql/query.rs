//! Queries: each calls the service function of its REST twin.

use async_graphql::{Context, Enum, Object};
use uuid::Uuid;

use super::object::{
    AuditPage, ChannelPage, ConversationPage, DirectMessagePage, EpochKeyPage, GroupPage,
    MessagePage, SearchHitPage,
};
use super::{actor, gql, state};
use crate::service::channels::{self, ChannelView};
use crate::service::contexts::messages;
use crate::service::contexts::{self, Kind};
use crate::service::conversations;
use crate::service::groups::{self, GroupView};
use crate::service::members::{self, MemberView};
use crate::service::pagination::PageParams;
use crate::service::search;

/// A group or a channel.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ContextKind {
    Group,
    Channel,
}

impl From<ContextKind> for Kind {
    fn from(kind: ContextKind) -> Self {
        match kind {
            ContextKind::Group => Kind::Group,
            ContextKind::Channel => Kind::Channel,
        }
    }
}

/// The root of queries.
pub struct Query;

#[Object]
impl Query {
    /// The signed-in member.
    #[graphql(complexity = "crate::graphql::cost::CALL + child_complexity")]
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<MemberView> {
        gql(members::me(state(ctx), actor(ctx)?).await)
    }

    /// A member by id.
    #[graphql(complexity = "crate::graphql::cost::CALL + child_complexity")]
    async fn member(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<MemberView> {
        gql(members::get(state(ctx), actor(ctx)?, id).await)
    }

    /// Your conversations, most recent activity first.
    #[graphql(complexity = "crate::graphql::cost::page(&page, child_complexity)")]
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        page: Option<PageParams>,
    ) -> async_graphql::Result<ConversationPage> {
        gql(conversations::list(state(ctx), actor(ctx)?, &page.unwrap_or_default()).await)
            .map(Into::into)
    }

    /// Messages of a conversation, oldest first.
    #[graphql(complexity = "crate::graphql::cost::page(&page, child_complexity)")]
    async fn direct_messages(
        &self,
        ctx: &Context<'_>,
        conversation_id: Uuid,
        page: Option<PageParams>,
    ) -> async_graphql::Result<DirectMessagePage> {
        gql(conversations::messages(
            state(ctx),
            actor(ctx)?,
            conversation_id,
            &page.unwrap_or_default(),
        )
        .await)
        .map(Into::into)
    }

    /// Your groups, newest activity first.
    #[graphql(complexity = "crate::graphql::cost::page(&page, child_complexity)")]
    async fn groups(
        &self,
        ctx: &Context<'_>,
        page: Option<PageParams>,
    ) -> async_graphql::Result<GroupPage> {
        gql(groups::list(state(ctx), actor(ctx)?, &page.unwrap_or_default()).await).map(Into::into)
    }

    /// A group you belong to.
    #[graphql(complexity = "crate::graphql::cost::CALL + child_complexity")]
    async fn group(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<GroupView> {
        gql(groups::get(state(ctx), actor(ctx)?, id).await)
    }

    /// Channels you can discover.
    #[graphql(complexity = "crate::graphql::cost::page(&page, child_complexity)")]
    async fn channels(
        &self,
        ctx: &Context<'_>,
        page: Option<PageParams>,
    ) -> async_graphql::Result<ChannelPage> {
        gql(channels::list(state(ctx), actor(ctx)?, &page.unwrap_or_default()).await)
            .map(Into::into)
    }

    /// A channel's metadata.
    #[graphql(complexity = "crate::graphql::cost::CALL + child_complexity")]
    async fn channel(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<ChannelView> {
        gql(channels::get(state(ctx), actor(ctx)?, id).await)
    }

    /// Messages of a group or channel, oldest first.
    #[graphql(complexity = "crate::graphql::cost::page(&page, child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        page: Option<PageParams>,
    ) -> async_graphql::Result<MessagePage> {
        gql(messages::history(
            state(ctx),
            actor(ctx)?,
            kind.into(),
            context_id,
            &page.unwrap_or_default(),
        )
        .await)
        .map(Into::into)
    }

    /// Full-text search in a channel's messages, most relevant first: every word of
    /// `query` (1..=200 characters) must occur. Same rules and page shape as REST.
    #[graphql(
        complexity = "crate::graphql::cost::SEARCH + crate::graphql::cost::page(&page, child_complexity)"
    )]
    async fn search_messages(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
        query: String,
        page: Option<PageParams>,
    ) -> async_graphql::Result<SearchHitPage> {
        let page = page.unwrap_or_default();
        let params = search::SearchParams {
            query: Some(query),
            cursor: page.cursor,
            limit: page.limit,
        };
        gql(search::search(state(ctx), actor(ctx)?, channel_id, &params).await).map(Into::into)
    }

    /// The moderation audit log of a group or channel, newest first (owners and admins).
    #[graphql(complexity = "crate::graphql::cost::page(&page, child_complexity)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        page: Option<PageParams>,
    ) -> async_graphql::Result<AuditPage> {
        gql(crate::service::audit::list(
            state(ctx),
            actor(ctx)?,
            kind.into(),
            context_id,
            &page.unwrap_or_default(),
        )
        .await)
        .map(Into::into)
    }

    /// The epoch keys you may read in a group or channel, wrapped for your public key (your
    /// copy of an epoch is made on your first read of it, then kept).
    #[graphql(complexity = "crate::graphql::cost::page(&page, child_complexity)")]
    async fn keys(
        &self,
        ctx: &Context<'_>,
        kind: ContextKind,
        context_id: Uuid,
        page: Option<PageParams>,
    ) -> async_graphql::Result<EpochKeyPage> {
        gql(contexts::keys(
            state(ctx),
            actor(ctx)?,
            kind.into(),
            context_id,
            &page.unwrap_or_default(),
        )
        .await)
        .map(Into::into)
    }
}
