//! 5.2 search: a user's messages that hold every word of a query.

use super::Core;
use crate::error::{CoreError, CoreResult};
use crate::search::{query_terms, SearchQuery};
use crate::store::StoredMessage;

/// Hits of a search without `limit`.
pub const SEARCH_DEFAULT: u32 = 20;

impl Core {
    /// `search` (PROTOCOL.md 5.2): newest first, over what `user` can read.
    pub async fn search(
        &self,
        user: &str,
        q: &str,
        conv: Option<&str>,
        limit: Option<u64>,
        before_ts: Option<i64>,
    ) -> CoreResult<Vec<StoredMessage>> {
        if q.len() > self.cfg.search_query_bytes {
            return Err(CoreError::invalid(format!(
                "q is over {} bytes",
                self.cfg.search_query_bytes
            )));
        }
        let Some(terms) = query_terms(q) else {
            return Err(CoreError::invalid("q holds no word to search for"));
        };
        let max = self.cfg.search_limit_max;
        let limit = match limit {
            None => SEARCH_DEFAULT.min(max),
            Some(l) if (1..=u64::from(max)).contains(&l) => l as u32,
            Some(_) => return Err(CoreError::invalid(format!("limit must be 1-{max}"))),
        };
        if let Some(conv) = conv {
            // Someone who never was in the conversation learns nothing.
            self.access(user, conv, true).await?;
        }
        let query = SearchQuery {
            terms,
            conv: conv.map(str::to_owned),
            before_ts,
            limit,
        };
        metrics::counter!("tern_searches_total").increment(1);
        Ok(self.store.search(user, &query).await?)
    }
}
