//! Statements prepared once per connection and reused ([`Prepared`]).
//!
//! `tokio_postgres`'s `execute(&str, ..)` prepares the text on every call: a Parse and
//! Describe round trip, then Bind and Execute, and the server parses and plans it each
//! time. On the saga's path that doubled the round trips and showed as parsing in
//! PostgreSQL's profile. deadpool keeps a statement cache per pooled connection; these
//! methods go through it, so a hot statement costs one round trip and no parse after its
//! first use on a connection.
//!
//! [`every`] runs periodic database work (a gauge refresh, a fold) on a pooled connection.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};
use tokio_util::sync::CancellationToken;

/// The query methods of a pooled connection or transaction, through its statement cache.
pub trait Prepared: GenericClient {
    /// Like `execute`: the number of rows changed.
    fn execute_prepared(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, Error>> + Send {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.execute(&statement, params).await
        }
    }

    /// Like `query`: every row.
    fn query_prepared(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query(&statement, params).await
        }
    }

    /// Like `query_opt`: at most one row.
    fn query_opt_prepared(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query_opt(&statement, params).await
        }
    }

    /// Like `query_one`: exactly one row.
    fn query_one_prepared(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, Error>> + Send {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query_one(&statement, params).await
        }
    }
}

impl<C: GenericClient> Prepared for C {}

/// Runs `work` on a pooled connection every `period` until `shutdown`; a turn that finds no
/// free connection (the database down, the pool busy) is skipped, not queued.
pub async fn every<Work, Turn>(
    period: Duration,
    pool: &Pool,
    shutdown: &CancellationToken,
    mut work: Work,
) where
    Work: FnMut(deadpool_postgres::Client) -> Turn,
    Turn: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Ok(client) = pool.get().await {
            work(client).await;
        }
    }
}
