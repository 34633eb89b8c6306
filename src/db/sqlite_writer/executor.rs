//! [`TxConn`]: sqlx's `Executor` for a transaction's connection, on PostgreSQL the pool's
//! and on SQLite the writer's, so repository code runs unchanged on both.

use super::LiteTx;
use super::values::Output;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::any::{Any, AnyQueryResult, AnyRow, AnyTypeInfo};
use sqlx::{Either, Execute, Executor};

/// The connection of a [`super::Tx`], for sqlx queries: `query.fetch_one(tx.conn())`.
#[derive(Debug)]
pub enum TxConn<'c> {
    Postgres(&'c mut sqlx::AnyConnection),
    Sqlite(&'c mut LiteTx),
}

impl<'c> TxConn<'c> {
    fn run_sqlite<'q, E: Execute<'q, Any>>(
        tx: &mut LiteTx,
        mut query: E,
    ) -> Result<Output, sqlx::Error> {
        let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
        let sql = query.sql();
        tx.writing()?.run(sql.as_str(), arguments)
    }
}

impl<'c> Executor<'c> for TxConn<'c> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            TxConn::Postgres(conn) => conn.fetch_many(query),
            TxConn::Sqlite(tx) => {
                let items: Vec<Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> =
                    match Self::run_sqlite(tx, query) {
                        Ok(output) => output
                            .rows
                            .into_iter()
                            .map(|row| Ok(Either::Right(row)))
                            .chain(std::iter::once(Ok(Either::Left(AnyQueryResult {
                                rows_affected: output.changes,
                                last_insert_id: None,
                            }))))
                            .collect(),
                        Err(err) => vec![Err(err)],
                    };
                Box::pin(futures_util::stream::iter(items))
            }
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            TxConn::Postgres(conn) => conn.fetch_optional(query),
            TxConn::Sqlite(tx) => {
                let row = Self::run_sqlite(tx, query).map(|output| output.rows.into_iter().next());
                Box::pin(std::future::ready(row))
            }
        }
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<sqlx::any::AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            TxConn::Postgres(conn) => conn.prepare_with(sql, parameters),
            TxConn::Sqlite(_) => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                "statements are prepared (and cached) as they run on the SQLite writer".into(),
            )))),
        }
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            TxConn::Postgres(conn) => conn.describe(sql),
            TxConn::Sqlite(_) => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                "describe is not available on the SQLite writer".into(),
            )))),
        }
    }
}
