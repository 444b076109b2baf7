//! Asking the other instances of the group ([`crate::cluster`]): each
//! answers from its own memory (`scope=local`) with the partitions it holds,
//! and the asker merges. An instance that does not answer within the
//! cluster's timeout is named, and the partitions nobody answered for are
//! listed, so that a group answer is complete or says what it lacks.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use crate::cluster::{Cluster, Member};

/// One instance's own page of active sessions.
#[derive(Debug, Deserialize)]
pub(super) struct LocalPage {
    pub total: usize,
    pub sessions: Vec<Value>,
    pub next: Option<String>,
    pub partitions: Vec<i32>,
}

/// What another instance answered to a `scope=local` request.
pub(super) enum Answer<T> {
    /// 200, with its body.
    Found(T),
    /// 404: it does not hold it.
    NotFound,
    /// No answer, a 5xx or a body that does not parse: the instance.
    Unreachable(String),
}

/// Asks every other instance that announced partitions for `path_and_query`
/// (with `scope=local` in it), in parallel, each bounded by the cluster's
/// timeout.
pub(super) async fn ask_all<T>(cluster: &Cluster, path_and_query: &str) -> Vec<(Member, Answer<T>)>
where
    T: for<'de> Deserialize<'de> + Send + 'static,
{
    let others = cluster.others();
    let token = cluster.token().map(str::to_owned);
    let timeout = cluster.timeout();
    let asks = others.into_iter().map(|member| {
        let url = format!("{}{path_and_query}", member.url);
        let token = token.clone();
        async move {
            let answer = tokio::task::spawn_blocking(move || get::<T>(&url, token.as_deref(), timeout))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            let answer = match answer {
                Ok(Some(found)) => Answer::Found(found),
                Ok(None) => Answer::NotFound,
                Err(why) => {
                    tracing::debug!(instance = %member.instance, url = %member.url, %why, "another instance did not answer");
                    Answer::Unreachable(member.instance.clone())
                }
            };
            (member, answer)
        }
    });
    futures_util::future::join_all(asks).await
}

/// One GET: `Ok(Some)` for a 200 whose body parses, `Ok(None)` for a 404.
fn get<T: for<'de> Deserialize<'de>>(
    url: &str,
    token: Option<&str>,
    timeout: std::time::Duration,
) -> Result<Option<T>, String> {
    let mut agent = ureq::AgentBuilder::new().timeout(timeout);
    if url.starts_with("https://") {
        // The system's trust store, as for the schema registry.
        let tls = native_tls::TlsConnector::new().map_err(|e| e.to_string())?;
        agent = agent.tls_connector(std::sync::Arc::new(tls));
    }
    let agent = agent.build();
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    match request.call() {
        Ok(response) => {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut response.into_reader(), &mut body)
                .map_err(|e| e.to_string())?;
            serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| e.to_string())
        }
        Err(ureq::Error::Status(404, _)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Pages merged in `variant_id` order: the first `limit` sessions of their
/// union (each page is the first `limit` of its own instance's, so the
/// union's first `limit` are among them), a session held by two instances
/// during a rebalance listed once.
pub(super) struct Merged {
    pub total: usize,
    pub sessions: Vec<Value>,
    pub next: Option<String>,
    pub partitions: Vec<i32>,
}

pub(super) fn merge(pages: Vec<LocalPage>, limit: usize) -> Merged {
    let mut total = 0;
    let mut more = false;
    let mut partitions = BTreeSet::new();
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for page in pages {
        total += page.total;
        more |= page.next.is_some();
        partitions.extend(page.partitions);
        for session in page.sessions {
            if let Some(id) = session.get("variant_id").and_then(Value::as_str) {
                by_id.entry(id.to_owned()).or_insert(session);
            }
        }
    }
    more |= by_id.len() > limit;
    let sessions: Vec<Value> = by_id.into_values().take(limit).collect();
    let next = more
        .then(|| {
            sessions
                .last()
                .and_then(|s| s.get("variant_id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .flatten();
    Merged {
        total,
        sessions,
        next,
        partitions: partitions.into_iter().collect(),
    }
}

/// The partitions of `0..input_partitions` that no answer covered.
pub(super) fn missing(input_partitions: i32, covered: &[i32]) -> Vec<i32> {
    (0..input_partitions)
        .filter(|p| !covered.contains(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(ids: &[&str], total: usize, next: bool, partitions: &[i32]) -> LocalPage {
        LocalPage {
            total,
            sessions: ids.iter().map(|id| json!({ "variant_id": id })).collect(),
            next: next.then(|| ids.last().unwrap().to_string()),
            partitions: partitions.to_vec(),
        }
    }

    fn ids(merged: &Merged) -> Vec<&str> {
        merged
            .sessions
            .iter()
            .map(|s| s["variant_id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn pages_merge_in_id_order_with_the_cursor_of_the_last() {
        let merged = merge(
            vec![
                page(&["a", "d", "e"], 5, true, &[0, 1]),
                page(&["b", "c"], 2, false, &[2]),
            ],
            3,
        );
        assert_eq!(ids(&merged), ["a", "b", "c"]);
        assert_eq!(merged.next.as_deref(), Some("c"));
        assert_eq!(merged.total, 7);
        assert_eq!(merged.partitions, [0, 1, 2]);
    }

    #[test]
    fn the_last_page_has_no_cursor_and_a_session_held_twice_is_listed_once() {
        let merged = merge(
            vec![
                page(&["a", "b"], 2, false, &[0]),
                page(&["b"], 1, false, &[0]),
            ],
            10,
        );
        assert_eq!(ids(&merged), ["a", "b"]);
        assert_eq!(merged.next, None);
    }

    #[test]
    fn partitions_nobody_answered_for_are_missing() {
        assert_eq!(missing(6, &[0, 2, 3, 5]), [1, 4]);
        assert!(missing(3, &[0, 1, 2]).is_empty());
    }
}
