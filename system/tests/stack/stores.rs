//! PostgreSQL and Redis round trips through the shared stack.

use std::sync::Arc;

use anyhow::{ensure, Context};
use faultline_system::stack::{postgres, Stack};

pub async fn postgres_round_trip_in_a_database_created_on_request(
    stack: Arc<Stack>,
) -> anyhow::Result<()> {
    let url = stack.create_database("roundtrip_orders").await?;
    ensure!(url.ends_with("/roundtrip_orders"), "unexpected URL {url}");
    // Creating it again is not an error: one database per service, created idempotently.
    let again = stack.create_database("roundtrip_orders").await?;
    ensure!(again == url);

    let client = postgres::connect(&url).await.map_err(anyhow::Error::msg)?;
    client
        .batch_execute("CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        .await?;
    client
        .execute(
            "INSERT INTO items VALUES ($1, $2)",
            &[&42_i64, &"the answer"],
        )
        .await?;
    let row = client
        .query_one("SELECT name FROM items WHERE id = $1", &[&42_i64])
        .await?;
    let name: String = row.try_get(0)?;
    ensure!(name == "the answer", "read back {name:?}");

    // The default database does not see the table: databases are separate.
    let default = postgres::connect(&stack.endpoints().database_url)
        .await
        .map_err(anyhow::Error::msg)?;
    let found = default
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'items'",
            &[],
        )
        .await?;
    ensure!(
        found.is_none(),
        "the table leaked into the default database"
    );

    // fsync is on, as promised for durability figures.
    let fsync: String = client.query_one("SHOW fsync", &[]).await?.try_get(0)?;
    ensure!(fsync == "on", "fsync is {fsync}");

    let bad = stack
        .create_database("Robert'); DROP TABLE students;--")
        .await;
    ensure!(bad.is_err(), "an unsafe database name was accepted");
    Ok(())
}

pub async fn redis_set_then_get_returns_the_value(stack: Arc<Stack>) -> anyhow::Result<()> {
    let client = redis::Client::open(stack.endpoints().redis_url)?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;
    let () = redis::cmd("SET")
        .arg("faultline:test")
        .arg("value-1")
        .query_async(&mut connection)
        .await?;
    let value: Option<String> = redis::cmd("GET")
        .arg("faultline:test")
        .query_async(&mut connection)
        .await?;
    ensure!(
        value.as_deref() == Some("value-1"),
        "GET returned {value:?}"
    );
    let missing: Option<String> = redis::cmd("GET")
        .arg("faultline:absent")
        .query_async(&mut connection)
        .await?;
    ensure!(missing.is_none());
    Ok(())
}
