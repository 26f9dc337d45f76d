//! How accounts renew, as cmdrd says: `renewal_plans` (with `renews_at`, cmdrd's own
//! judgement of whether an expiry is an alarm), or `renewals_page` from a daemon older than
//! that (no `renews_at`), or nothing from one older still. One account is a page of one;
//! lists take every page.

use std::collections::HashMap;

use cmdr_client::{Client, ClientError};
use cmdr_proto::{Page, PageRequest, RenewalPlan, Request, Response};

use crate::report::unexpected;

/// One page, through the newest request the daemon knows; `None`: it knows neither.
async fn page(
    client: &mut Client,
    ask: PageRequest,
) -> Result<Option<Page<RenewalPlan>>, ClientError> {
    let has = |feature: &str| client.welcome().features.iter().any(|f| f == feature);
    if has(cmdr_proto::FEATURE_RENEWAL_PLANS) {
        return match client.request(Request::RenewalPlans(ask)).await? {
            Response::RenewalPlans(page) => Ok(Some(page)),
            _ => Err(unexpected("a renewal_plans request")),
        };
    }
    if has(cmdr_proto::FEATURE_RENEWALS) {
        return match client.request(Request::RenewalsPage(ask)).await? {
            Response::RenewalsPage(page) => Ok(Some(Page {
                items: page
                    .items
                    .into_iter()
                    .map(RenewalPlan::from_facts)
                    .collect(),
                next: page.next,
            })),
            _ => Err(unexpected("a renewals request")),
        };
    }
    Ok(None)
}

/// Every account's plan, by name; `None` from a daemon that says nothing of renewals.
pub(crate) async fn all(
    client: &mut Client,
) -> Result<Option<HashMap<String, RenewalPlan>>, ClientError> {
    let mut all = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let ask = PageRequest {
            after: after.clone(),
            limit: cmdr_proto::MAX_PAGE_ITEMS,
        };
        let Some(page) = self::page(client, ask).await? else {
            return Ok(None);
        };
        all.extend(page.items.into_iter().map(|p| (p.account.clone(), p)));
        match page.next {
            // A cursor that does not advance would never end.
            Some(next) if after.as_ref().is_none_or(|a| next > *a) => after = Some(next),
            Some(_) => return Err(unexpected("a renewals request (the cursor went back)")),
            None => return Ok(Some(all)),
        }
    }
}

/// Account `name`'s plan (a page of one that starts at it), if the daemon says.
pub(crate) async fn one(
    client: &mut Client,
    name: &str,
) -> Result<Option<RenewalPlan>, ClientError> {
    let ask = PageRequest {
        after: Some(crate::renew::before(name)),
        limit: 1,
    };
    Ok(page(client, ask)
        .await?
        .and_then(|p| p.items.into_iter().find(|p| p.account == name)))
}
