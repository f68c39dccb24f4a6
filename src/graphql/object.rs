//! Fields that are not plain data: related members and pinned messages, batched so that
//! nested fields never cause a query per item.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{ComplexObject, Context, ErrorExtensions};
use uuid::Uuid;

use super::{actor, gql, state};
use crate::service::channels::{self, ChannelView};
use crate::service::contexts::messages::{self, MessageView};
use crate::service::contexts::{Kind, MemberEntry};
use crate::service::conversations::DirectMessageView;
use crate::service::groups::{self, GroupView};
use crate::service::members::{self, MemberView};
use crate::service::pagination::PageParams;
use crate::state::AppState;

/// GraphQL page types: `{items, cursor, hasMore}` for each kind of list.
macro_rules! page_types {
    ($($name:ident => $item:ty),* $(,)?) => {$(
        #[doc = concat!("A page of `", stringify!($item), "`.")]
        #[derive(async_graphql::SimpleObject)]
        pub struct $name {
            pub items: Vec<$item>,
            /// Continue from here; `null` when the list is empty.
            pub cursor: Option<String>,
            /// Whether another page follows in this direction.
            pub has_more: bool,
        }

        impl From<crate::service::pagination::Page<$item>> for $name {
            fn from(page: crate::service::pagination::Page<$item>) -> Self {
                Self { items: page.items, cursor: page.cursor, has_more: page.has_more }
            }
        }
    )*};
}

page_types! {
    ConversationPage => crate::service::conversations::ConversationView,
    DirectMessagePage => DirectMessageView,
    GroupPage => GroupView,
    MessagePage => MessageView,
    ChannelPage => crate::service::channels::ChannelSummary,
    EpochKeyPage => crate::service::keys::KeyView,
    AuditPage => crate::service::audit::AuditView,
    SearchHitPage => crate::service::search::SearchResult,
    MemberPage => MemberEntry,
}

/// Loads members by id, one query per batch.
pub struct MemberLoader(pub AppState);

impl Loader<Uuid> for MemberLoader {
    type Value = MemberView;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, MemberView>, Self::Error> {
        let found = members::find_many(&self.0.db.read, keys)
            .await
            .map_err(|err| err.extend())?;
        Ok(found.into_iter().map(|m| (m.id, m)).collect())
    }
}

async fn load_member(ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Option<MemberView>> {
    actor(ctx)?;
    ctx.data_unchecked::<DataLoader<MemberLoader>>()
        .load_one(id)
        .await
}

#[ComplexObject]
impl MessageView {
    /// The author.
    async fn sender(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<MemberView>> {
        load_member(ctx, self.sender_id).await
    }
}

#[ComplexObject]
impl DirectMessageView {
    /// The author.
    async fn sender(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<MemberView>> {
        load_member(ctx, self.sender_id).await
    }
}

#[ComplexObject]
impl MemberEntry {
    /// The member's profile.
    async fn member(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<MemberView>> {
        load_member(ctx, self.member_id).await
    }
}

#[ComplexObject]
impl ChannelView {
    /// The pinned messages, in pin order.
    #[graphql(
        complexity = "crate::graphql::cost::CALL + crate::graphql::cost::list(crate::graphql::cost::UNPAGED_LIST, child_complexity)"
    )]
    async fn pinned_messages(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<MessageView>> {
        gql(messages::pinned(state(ctx), actor(ctx)?, Kind::Channel, self.id).await)
    }

    /// Every member, a page at a time, oldest membership first (join time, then member
    /// id); `members` holds only the first 100.
    #[graphql(complexity = "crate::graphql::cost::page(&page, child_complexity)")]
    async fn member_page(
        &self,
        ctx: &Context<'_>,
        page: Option<PageParams>,
    ) -> async_graphql::Result<MemberPage> {
        gql(channels::members(state(ctx), actor(ctx)?, self.id, &page.unwrap_or_default()).await)
            .map(Into::into)
    }
}

#[ComplexObject]
impl GroupView {
    /// The pinned messages, in pin order.
    #[graphql(
        complexity = "crate::graphql::cost::CALL + crate::graphql::cost::list(crate::graphql::cost::UNPAGED_LIST, child_complexity)"
    )]
    async fn pinned_messages(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<MessageView>> {
        gql(messages::pinned(state(ctx), actor(ctx)?, Kind::Group, self.id).await)
    }

    /// Every member, a page at a time, oldest membership first (join time, then member
    /// id); `members` holds only the first 100.
    #[graphql(complexity = "crate::graphql::cost::page(&page, child_complexity)")]
    async fn member_page(
        &self,
        ctx: &Context<'_>,
        page: Option<PageParams>,
    ) -> async_graphql::Result<MemberPage> {
        gql(groups::members(state(ctx), actor(ctx)?, self.id, &page.unwrap_or_default()).await)
            .map(Into::into)
    }
}
