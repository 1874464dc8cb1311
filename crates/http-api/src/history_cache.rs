//! History pages this node has rendered, kept while they are current (issue 15).
//!
//! Reading a page is one statement (`persistence::history::page`), but on this hardware
//! that statement and the page's JSON encoding cap a node near 2,500 pages a second, and
//! most reads are of a few pages (everyone opening a channel reads its newest page). A kept
//! page is shown again only after `persistence::history::standing` has checked, in the
//! database and so on every node alike, both the caller's access and that the page's
//! [`Version`] has not moved: nothing here is trusted about who may read, and a change made
//! through another node is seen exactly as one made here.
//!
//! A page is the same for every reader except for each reaction's `me`; a page with
//! reactions is kept per reader, one without is kept once for all. Capacity is in bytes of
//! rendered JSON (`HISTORY_CACHE_BYTES`; 0 keeps nothing), evicted by `quick_cache`'s
//! S3-FIFO policy.

use bytes::Bytes;
use domain::{ChannelId, Limit, UserId};
use persistence::history::{HistoryPage, Version};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// Which page: the request's channel, position and limit, and the reader when the page
/// shows something only they see.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    channel: ChannelId,
    page: HistoryPage,
    limit: Limit,
    reader: Option<UserId>,
}

/// A rendered page (the response body) and the version it was read at.
#[derive(Debug, Clone)]
pub struct KeptPage {
    pub version: Version,
    pub body: Bytes,
}

/// What an entry costs beyond its body: the key, the version and the cache's own slot.
const ENTRY_OVERHEAD: u64 = 128;
/// The body size the cache is sized for when estimating how many entries it will hold.
const TYPICAL_PAGE: u64 = 16 * 1024;

#[derive(Debug, Clone)]
struct BodyBytes;

impl Weighter<Key, KeptPage> for BodyBytes {
    fn weight(&self, _key: &Key, page: &KeptPage) -> u64 {
        page.body.len() as u64 + ENTRY_OVERHEAD
    }
}

/// The node's kept pages; `HISTORY_CACHE_BYTES` = 0 keeps none.
pub struct HistoryCache {
    pages: Option<Cache<Key, KeptPage, BodyBytes>>,
}

impl HistoryCache {
    pub fn new(capacity_bytes: u64) -> Self {
        let pages = (capacity_bytes > 0).then(|| {
            let estimated = usize::try_from((capacity_bytes / TYPICAL_PAGE).max(16)).unwrap_or(usize::MAX);
            Cache::with_weighter(estimated, capacity_bytes, BodyBytes)
        });
        Self { pages }
    }

    /// The kept page for this request as `reader` would see it, current or not: the caller
    /// compares its version with the database's before showing it.
    pub fn get(&self, channel: ChannelId, page: HistoryPage, limit: Limit, reader: UserId) -> Option<KeptPage> {
        let pages = self.pages.as_ref()?;
        let mut key = Key { channel, page, limit, reader: None };
        pages.get(&key).or_else(|| {
            key.reader = Some(reader);
            pages.get(&key)
        })
    }

    /// Keeps a page read at `version`. `only_for` names the reader when the page shows
    /// something only they see (a reaction's `me`); such a page replaces the one kept for
    /// everyone, which would otherwise be found first and be stale each time.
    pub fn keep(&self, channel: ChannelId, page: HistoryPage, limit: Limit, only_for: Option<UserId>, kept: KeptPage) {
        let Some(pages) = &self.pages else { return };
        let key = Key { channel, page, limit, reader: only_for };
        if only_for.is_some() {
            pages.remove(&Key { reader: None, ..key.clone() });
        }
        pages.insert(key, kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persistence::history::Position;

    fn kept(last_seq: i64, body: &'static str) -> KeptPage {
        KeptPage { version: Version { last_seq, epoch: 0 }, body: Bytes::from_static(body.as_bytes()) }
    }

    fn fifty() -> Limit {
        Limit::DEFAULT
    }

    fn ids() -> (ChannelId, UserId, UserId) {
        (
            ChannelId::from_uuid(uuid::Uuid::now_v7()),
            UserId::from_uuid(uuid::Uuid::now_v7()),
            UserId::from_uuid(uuid::Uuid::now_v7()),
        )
    }

    #[test]
    fn a_page_without_reactions_is_kept_once_for_every_reader() {
        let cache = HistoryCache::new(1 << 20);
        let (channel, alice, bob) = ids();
        cache.keep(channel, HistoryPage::Latest, fifty(), None, kept(3, "everyone"));
        assert_eq!(cache.get(channel, HistoryPage::Latest, fifty(), alice).unwrap().body, "everyone");
        assert_eq!(cache.get(channel, HistoryPage::Latest, fifty(), bob).unwrap().body, "everyone");
    }

    #[test]
    fn a_page_with_reactions_is_kept_per_reader_and_replaces_the_shared_one() {
        let cache = HistoryCache::new(1 << 20);
        let (channel, alice, bob) = ids();
        cache.keep(channel, HistoryPage::Latest, fifty(), None, kept(3, "everyone"));
        cache.keep(channel, HistoryPage::Latest, fifty(), Some(alice), kept(4, "alice's"));
        let for_alice = cache.get(channel, HistoryPage::Latest, fifty(), alice).unwrap();
        assert_eq!((for_alice.body.as_ref(), for_alice.version.last_seq), (b"alice's".as_slice(), 4));
        assert!(cache.get(channel, HistoryPage::Latest, fifty(), bob).is_none(), "Bob must not get Alice's `me`");
    }

    #[test]
    fn position_limit_and_channel_are_part_of_the_key() {
        let cache = HistoryCache::new(1 << 20);
        let (channel, alice, _) = ids();
        let (other, _, _) = ids();
        cache.keep(channel, HistoryPage::Latest, fifty(), None, kept(3, "latest"));
        assert!(cache.get(channel, HistoryPage::Latest, Limit::parse(Some(20)).unwrap(), alice).is_none());
        assert!(cache.get(other, HistoryPage::Latest, fifty(), alice).is_none());
        assert!(cache.get(channel, HistoryPage::Before(Position::Seq(3)), fifty(), alice).is_none());
        assert!(cache.get(channel, HistoryPage::After(Position::Seq(3)), fifty(), alice).is_none());
    }

    #[test]
    fn a_zero_capacity_keeps_nothing() {
        let cache = HistoryCache::new(0);
        let (channel, alice, _) = ids();
        cache.keep(channel, HistoryPage::Latest, fifty(), None, kept(3, "latest"));
        assert!(cache.get(channel, HistoryPage::Latest, fifty(), alice).is_none());
    }
}
