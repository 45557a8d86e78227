//! Following page tokens to the end. Hotmart's pages are offset windows, not snapshots: a
//! row inserted ahead of the cursor mid-walk pushes rows already seen onto the next page, so
//! a walk drops rows it has already returned. A token that comes back, or a page count no
//! real query reaches, stops the walk with an error instead of looping.

use super::{HotmartApi, HotmartApiError, Page, Sale, SalesQuery, Subscription, SubscriptionsQuery};
use std::collections::HashSet;
use std::future::Future;

/// 5 000 pages of 500 rows: 2.5 million rows, far over any real window.
const DEFAULT_MAX_PAGES: u32 = 5_000;

/// A query whose pages a [`Walk`] follows.
pub trait Walkable: Clone + Send + Sync {
    /// The rows.
    type Item: Send;
    /// The call, for errors.
    const WHAT: &'static str;

    /// One page.
    fn fetch(
        &self,
        api: &HotmartApi,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<Page<Self::Item>, HotmartApiError>> + Send;

    /// What identifies a row, for deduplication.
    fn key(item: &Self::Item) -> &str;
}

impl Walkable for SalesQuery {
    type Item = Sale;
    const WHAT: &'static str = "sales history";

    async fn fetch(&self, api: &HotmartApi, page_token: Option<&str>) -> Result<Page<Sale>, HotmartApiError> {
        api.sales_page(self, page_token).await
    }

    fn key(item: &Sale) -> &str {
        &item.transaction
    }
}

impl Walkable for SubscriptionsQuery {
    type Item = Subscription;
    const WHAT: &'static str = "subscriptions";

    async fn fetch(&self, api: &HotmartApi, page_token: Option<&str>) -> Result<Page<Subscription>, HotmartApiError> {
        api.subscriptions_page(self, page_token).await
    }

    fn key(item: &Subscription) -> &str {
        &item.subscriber_code
    }
}

/// The pages of one query, in order, each row once.
pub struct Walk<'a, Q: Walkable> {
    api: &'a HotmartApi,
    query: Q,
    next: Option<String>,
    finished: bool,
    tokens_seen: HashSet<String>,
    keys_seen: HashSet<String>,
    pages: u32,
    max_pages: u32,
}

impl<'a, Q: Walkable> Walk<'a, Q> {
    /// From the first page.
    pub fn new(api: &'a HotmartApi, query: Q) -> Self {
        Self {
            api,
            query,
            next: None,
            finished: false,
            tokens_seen: HashSet::new(),
            keys_seen: HashSet::new(),
            pages: 0,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }

    /// From a checkpointed [`Walk::page_token`] (rows returned before it are not known, so
    /// they are not deduped against).
    pub fn resume(api: &'a HotmartApi, query: Q, page_token: String) -> Self {
        Self { next: Some(page_token), ..Self::new(api, query) }
    }

    /// Stops with [`HotmartApiError::TooManyPages`] past this many pages.
    #[must_use]
    pub fn with_max_pages(mut self, max_pages: u32) -> Self {
        self.max_pages = max_pages;
        self
    }

    /// Where the next page starts (`None` before the first page and after the last): what
    /// to checkpoint once the rows of the last page are stored.
    pub fn page_token(&self) -> Option<&str> {
        self.next.as_deref()
    }

    /// The rows of the next page not returned before; `None` once the walk is done. A page
    /// may come back empty when all its rows were seen.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Q::Item>>, HotmartApiError> {
        if self.finished {
            return Ok(None);
        }
        if self.pages >= self.max_pages {
            return Err(HotmartApiError::TooManyPages { what: Q::WHAT, pages: self.pages });
        }
        let page = self.query.fetch(self.api, self.next.as_deref()).await?;
        self.pages += 1;
        match page.next_page_token {
            Some(token) if !self.tokens_seen.insert(token.clone()) => {
                return Err(HotmartApiError::RepeatedPageToken { what: Q::WHAT });
            }
            Some(token) => self.next = Some(token),
            None => {
                self.next = None;
                self.finished = true;
            }
        }
        let before = page.items.len();
        let fresh: Vec<Q::Item> =
            page.items.into_iter().filter(|i| self.keys_seen.insert(Q::key(i).to_owned())).collect();
        if fresh.len() < before {
            tracing::debug!(what = Q::WHAT, repeated = before - fresh.len(), "rows seen on an earlier page dropped");
        }
        Ok(Some(fresh))
    }

    /// Every remaining row.
    pub async fn collect(mut self) -> Result<Vec<Q::Item>, HotmartApiError> {
        let mut all = Vec::new();
        while let Some(rows) = self.next_page().await? {
            all.extend(rows);
        }
        Ok(all)
    }
}
