//! The user list (`GET :7001/`), streamed from user_db page by page.
//!
//! The body is the contract's `{"count":n,"payload":[users, id descending]}`, byte for byte
//! what serializing the whole list at once gives, but never held whole: one producer task per
//! request reads `PAGE_ROWS` users at a time (keyset pagination on `id`) and hands each page's
//! JSON to the response through a channel of `CHANNEL_PAGES` pages, so a request holds at most
//! a few pages, whatever the number of users (1M users are ~100 MB of JSON).
//!
//! `count` comes first in the body, so the count and every page are read in one
//! `REPEATABLE READ` snapshot: users added or deleted while the list streams change neither,
//! and `count` is always the number of entries in `payload`. The snapshot holds one pooled
//! connection for as long as the client reads; a client that stops reading for
//! `SEND_TIMEOUT` loses the response (the transaction is rolled back), and at most
//! [`UserLists::new`]'s number of lists stream at once, so lists never take the whole pool.

use std::{sync::Arc, time::Duration};

use actix::prelude::*;
use bytes::Bytes;
use common::input::Page;
use common::{
    error::{Error, Result},
    store::{MigratedPool, Store},
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::IsolationLevel;
use user_kind::User;

/// Users per page: a few hundred kB of JSON, one statement each.
pub const PAGE_ROWS: i64 = 2000;
/// Pages a response may hold beyond the one being written (the client's read-ahead).
const CHANNEL_PAGES: usize = 2;
/// A client that reads nothing for this long loses its list (and its snapshot's connection).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How many user lists may stream at once (each holds one pooled connection while it does).
#[derive(Clone)]
pub struct UserLists {
    permits: Arc<Semaphore>,
    wait: Duration,
    /// `USER_LIST_TOKENS`: whether each user's `access_token` is listed, as the contract says,
    /// default 1; 0 leaves it out (docs/security.md).
    pub tokens: bool,
}

impl UserLists {
    /// At most half the pool, at least one; a list waits at most `wait` (DB_TIMEOUT_MS) for a turn.
    pub fn new(pool_size: u32, wait: Duration, tokens: bool) -> Self {
        UserLists { permits: Arc::new(Semaphore::new((pool_size as usize / 2).max(1))), wait, tokens }
    }

    /// A turn to stream a list, or "the database is busy" after `wait`.
    pub async fn turn(&self) -> Result<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(Error::StoreGone),
            Err(_) => {
                Err(Error::DbUnavailable(format!("every user-list slot stayed busy for {} ms", self.wait.as_millis())))
            }
        }
    }
}

/// The start of a streamed list: its first bytes (the whole body when it fits in one page)
/// and, when more follows, the rest page by page. An error in the rest can only cut the
/// response short (its status has been sent); it is logged by the producer.
pub struct UserListBody {
    pub head: Bytes,
    pub rest: Option<mpsc::Receiver<Result<Bytes>>>,
}

/// Opens the user list (one page of it with `?limit=&offset=`): answers once the count and
/// the first page are read, so that user_db being down is a `503`, not a cut-off `200`.
#[derive(Message)]
#[rtype(result = "Result<UserListBody>")]
pub struct StreamUsers {
    pub page: Page,
    /// Held until the last page is sent.
    pub turn: OwnedSemaphorePermit,
    /// Whether each user's `access_token` is listed (`USER_LIST_TOKENS`).
    pub tokens: bool,
    /// Told when user_db first answered: what comes after (writing the first page's JSON)
    /// is this service's time, not the database's, so the database deadline ends here.
    pub answered: oneshot::Sender<()>,
}

impl Handler<StreamUsers> for Store {
    type Result = ResponseFuture<Result<UserListBody>>;

    fn handle(&mut self, msg: StreamUsers, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool();
        let db = self.db_runtime();
        Box::pin(async move {
            let (head_tx, head_rx) = oneshot::channel();
            let (rest_tx, rest_rx) = mpsc::channel(CHANNEL_PAGES);
            // Ends with the response: when the last page is sent, the client goes away, or
            // the client stops reading (SEND_TIMEOUT); it never outlives its request by more.
            db.spawn(async move {
                let _turn = msg.turn;
                let mut out = Output { head: Some(head_tx), rest: rest_tx, answered: Some(msg.answered) };
                if let Err(e) = produce(pool, msg.page, msg.tokens, &mut out).await {
                    match out.head.take() {
                        Some(head) => {
                            let _ = head.send(Err(e));
                        }
                        None => {
                            log::warn!("user list cut short after its first page: {e}");
                            let _ = out.rest.send(Err(e)).await;
                        }
                    }
                }
            });
            let (head, more) = head_rx.await.map_err(|_| Error::StoreGone)??;
            Ok(UserListBody { head, rest: more.then_some(rest_rx) })
        })
    }
}

/// Where the producer's pages go: the first (with whether more follows) to the handler, the
/// others to the response body.
struct Output {
    head: Option<oneshot::Sender<Result<(Bytes, bool)>>>,
    rest: mpsc::Sender<Result<Bytes>>,
    answered: Option<oneshot::Sender<()>>,
}

/// Why the producer stopped early without an error to report: the client is gone.
struct ClientGone;

impl Output {
    fn database_answered(&mut self) {
        if let Some(answered) = self.answered.take() {
            let _ = answered.send(());
        }
    }

    async fn send(&mut self, bytes: Vec<u8>, more: bool) -> std::result::Result<(), ClientGone> {
        match self.head.take() {
            Some(head) => head.send(Ok((Bytes::from(bytes), more))).map_err(|_| ClientGone),
            None => match tokio::time::timeout(SEND_TIMEOUT, self.rest.send(Ok(Bytes::from(bytes)))).await {
                Ok(Ok(())) => Ok(()),
                _ => Err(ClientGone),
            },
        }
    }
}

async fn produce(pool: MigratedPool, page: Page, tokens: bool, out: &mut Output) -> Result<()> {
    let offset = i64::try_from(page.offset).unwrap_or(i64::MAX);
    let limit = page.limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut conn = pool.get().await?;
    // A page of at most PAGE_ROWS is one statement, outside any transaction.
    if limit <= PAGE_ROWS {
        let rows = conn.query(LIST_FROM_OFFSET, &[&offset, &limit]).await?;
        out.database_answered();
        let users = rows.iter().map(user_of).collect::<Result<Vec<_>>>()?;
        let mut body = list_head(users.len() as i64);
        write_users(&mut body, &users, true, tokens)?;
        body.extend_from_slice(LIST_TAIL);
        let _ = out.send(body, false).await;
        return Ok(());
    }
    // Otherwise the count and every page come from one snapshot.
    let tx = conn.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
    // A backstop for a producer that stalls between statements: the server ends the session.
    tx.batch_execute("SET LOCAL idle_in_transaction_session_timeout = '60s'").await?;
    // The usual list fits in one page: one row more than a page tells whether it does, and
    // then `count` is simply the rows read, without counting the table (a count of 10M users
    // takes a second). Past a page, the rows read are the first page.
    let rows = tx.query(LIST_FROM_OFFSET, &[&offset, &(PAGE_ROWS + 1)]).await?;
    out.database_answered();
    let mut users = rows.iter().map(user_of).collect::<Result<Vec<_>>>()?;
    let count = if users.len() as i64 <= PAGE_ROWS {
        users.len() as i64
    } else {
        users.truncate(PAGE_ROWS as usize);
        let total: i64 = tx.query_one(r#"SELECT count(*) FROM public."user""#, &[]).await?.try_get(0)?;
        total.saturating_sub(offset).clamp(0, limit)
    };
    let mut body = list_head(count);
    let mut left = count;
    let mut first = true;
    while left > 0 {
        let Some(last) = users.last().map(|u| u.id) else {
            // Cannot happen in one snapshot; a body whose count disagrees with its payload
            // must not be sent either, so it is an error.
            return Err(Error::DbUnavailable(format!("the user list ended {left} users before its count")));
        };
        let take = users.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        write_users(&mut body, &users[..take], first, tokens)?;
        first = false;
        left -= take as i64;
        if left == 0 {
            break;
        }
        if out.send(std::mem::take(&mut body), true).await.is_err() {
            return Ok(()); // dropping the transaction rolls it back
        }
        body.reserve(PAGE_ROWS as usize * 100);
        let rows = tx
            .query(
                r#"SELECT id, name, access_token FROM public."user" WHERE id < $1 ORDER BY id DESC LIMIT $2"#,
                &[&last, &left.min(PAGE_ROWS)],
            )
            .await?;
        users = rows.iter().map(user_of).collect::<Result<_>>()?;
    }
    body.extend_from_slice(LIST_TAIL);
    tx.commit().await?;
    let _ = out.send(body, false).await;
    Ok(())
}

/// The id-descending list from an offset: `$1` offset, `$2` limit.
const LIST_FROM_OFFSET: &str =
    r#"SELECT id, name, access_token FROM public."user" ORDER BY id DESC OFFSET $1 LIMIT $2"#;

fn user_of(r: &tokio_postgres::Row) -> Result<User> {
    Ok(User { id: r.try_get(0)?, name: r.try_get(1)?, access_token: r.try_get(2)? })
}

fn write_users(body: &mut Vec<u8>, users: &[User], first: bool, tokens: bool) -> Result<()> {
    for (i, user) in users.iter().enumerate() {
        write_user(body, user, first && i == 0, tokens)?;
    }
    Ok(())
}

/// A user listed without its token (`USER_LIST_TOKENS=0`).
#[derive(serde::Serialize)]
struct TokenlessUser<'a> {
    id: i64,
    name: &'a str,
}

/// What comes before the first user: `{"count":n,"payload":[`.
fn list_head(count: i64) -> Vec<u8> {
    format!("{{\"count\":{count},\"payload\":[").into_bytes()
}

/// What comes after the last user.
const LIST_TAIL: &[u8] = b"]}";

/// One user of the list, with the separator `serde_json` puts before every element of an
/// array but the first: the pages together are the bytes of serializing the whole list.
fn write_user(body: &mut Vec<u8>, user: &User, first: bool, tokens: bool) -> Result<()> {
    if !first {
        body.push(b',');
    }
    let written = if tokens {
        serde_json::to_writer(body, user)
    } else {
        serde_json::to_writer(body, &TokenlessUser { id: user.id, name: &user.name })
    };
    written.map_err(|e| Error::Malformed(format!("a user row: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_written_apart_are_the_bytes_of_the_whole_list_and_the_documented_type() {
        let users: Vec<User> = (1..=5)
            .rev()
            .map(|id| User { id, name: format!("이름 \"{id}\"\n"), access_token: format!("t{id}") })
            .collect();
        for n in [0, 1, 5] {
            let mut streamed = list_head(n as i64);
            for (i, u) in users[..n].iter().enumerate() {
                write_user(&mut streamed, u, i == 0, true).unwrap();
            }
            streamed.extend_from_slice(LIST_TAIL);
            let whole = format!("{{\"count\":{n},\"payload\":{}}}", serde_json::to_string(&users[..n]).unwrap());
            assert_eq!(String::from_utf8(streamed.clone()).unwrap(), whole);
            let list: user_kind::UserList = serde_json::from_slice(&streamed).unwrap();
            assert_eq!(list.count as usize, n);
        }
    }

    #[test]
    fn a_list_without_tokens_names_each_user_and_no_token() {
        let users = [User { id: 2, name: "b".into(), access_token: "secret-2".into() }];
        let mut body = list_head(1);
        write_users(&mut body, &users, true, false).unwrap();
        body.extend_from_slice(LIST_TAIL);
        assert_eq!(String::from_utf8(body).unwrap(), r#"{"count":1,"payload":[{"id":2,"name":"b"}]}"#);
    }
}
