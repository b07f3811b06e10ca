//! Inventory's commands applied a batch at a time.
//!
//! Reservations of different orders write the same products' rows, so a batch cannot run
//! its events side by side the way other consumers pipeline theirs. Applied one by one,
//! each reservation cost five statements while the batch held its products' rows locked,
//! and the other workers' batches queued on those locks (229 ms mean lock wait per batch
//! at 200 checkouts/s, the saga's longest step). Here a batch costs a fixed handful of
//! statements whatever its size:
//!
//! 1. read the batch's orders' reservations, and lock and read the stock heads of every
//!    product the batch names, in product id order (so two workers' batches queue, never
//!    deadlock);
//! 2. decide every command in memory, in the batch's order, against the heads as the
//!    commands before it left them: exactly what applying them one at a time would
//!    decide (a single command is applied as a batch of one: there is no other path);
//! 3. write the heads, the appended stock events and the reservations with one statement
//!    each, and stage the replies in the outbox.
//!
//! The heads are still updated only from the versions read, so a writer that got past the
//! locks would make the batch fail and the consumer apply its commands again one at a time
//! (each a batch of one).

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::reply;
use crate::platform::consumer::{decode_each, not_handled, sorted_once, HandleError};
use crate::platform::envelope::Envelope;
use crate::platform::outbox::OutboxTx;
use crate::platform::sql::Prepared;
use crate::services::messages::{types, Amount, Failed, OrderItem, OrderRef, Reserve, V1};

/// A command of the batch, decoded.
enum Command {
    Reserve(Reserve),
    Release(Uuid),
}

impl Command {
    fn order_id(&self) -> Uuid {
        match self {
            Command::Reserve(reserve) => reserve.order_id,
            Command::Release(order_id) => *order_id,
        }
    }
}

/// One product's stock head and price, as the batch moves it.
struct Head {
    /// The version read under the lock: the update applies only from it.
    read_version: i64,
    version: i64,
    available: i32,
    price_cents: i64,
}

/// A reservation of one product for an order.
#[derive(Clone, Copy)]
struct Held {
    product_id: i64,
    quantity: i32,
    released: bool,
}

/// Everything the batch writes, gathered while deciding.
#[derive(Default)]
struct Writes {
    /// `stock_events` rows: product, version, kind, quantity, order.
    appended: Vec<(i64, i64, &'static str, i32, Uuid)>,
    /// New `reservations` rows.
    reserved: Vec<(Uuid, i64, i32)>,
    /// Orders whose reservations were given back.
    released: Vec<Uuid>,
}

/// Applies `events` (inventory commands, each new) in `tx`; see the module documentation.
pub(super) async fn apply(tx: &OutboxTx<'_>, events: &[&Envelope]) -> Result<(), HandleError> {
    let commands = decode(events)?;
    let order_ids: Vec<Uuid> = commands.iter().map(|(_, c)| c.order_id()).collect();
    let mut held = reservations(tx, &order_ids).await?;
    let mut products: Vec<i64> = held.values().flatten().map(|h| h.product_id).collect();
    for (_, command) in &commands {
        if let Command::Reserve(reserve) = command {
            products.extend(reserve.items.iter().map(|item| item.product_id));
        }
    }
    let products = sorted_once(products);
    let mut heads = lock_heads(tx, &products).await?;
    let mut writes = Writes::default();
    for (event, command) in &commands {
        match command {
            Command::Reserve(reserve) => {
                let order_id = reserve.order_id;
                let holding = held.entry(order_id).or_default();
                // A second reserve for the same order (the saga re-sent it) answers like
                // the first.
                let outcome = if holding.is_empty() {
                    reserve_stock(&reserve.items, &mut heads, &mut writes, order_id, holding)
                } else {
                    Ok(held_amount(holding, &heads, order_id)?)
                };
                match outcome {
                    Ok(amount_cents) => {
                        let reserved = Amount {
                            order_id,
                            amount_cents,
                        };
                        reply(tx, event, types::RESERVED, &reserved).await?;
                    }
                    Err(reason) => {
                        let failed = Failed { order_id, reason };
                        reply(tx, event, types::RESERVATION_FAILED, &failed).await?;
                    }
                }
            }
            Command::Release(order_id) => {
                let holding = held.entry(*order_id).or_default();
                for h in holding.iter_mut().filter(|h| !h.released) {
                    if let Some(head) = heads.get_mut(&h.product_id) {
                        append(
                            &mut writes,
                            head,
                            h.product_id,
                            "released",
                            h.quantity,
                            *order_id,
                        );
                    }
                    h.released = true;
                }
                writes.released.push(*order_id);
                // Released (or never held): either way the order holds no stock now.
                let released = OrderRef {
                    order_id: *order_id,
                };
                reply(tx, event, types::RELEASED, &released).await?;
            }
        }
    }
    write(tx, &heads, &writes).await
}

/// Decodes every command ([`decode_each`]).
fn decode<'a>(events: &[&'a Envelope]) -> Result<Vec<(&'a Envelope, Command)>, HandleError> {
    decode_each(events, V1, |event| match event.event_type.as_str() {
        types::RESERVE => Ok(Command::Reserve(event.payload_as()?)),
        types::RELEASE => Ok(Command::Release(event.payload_as::<OrderRef>()?.order_id)),
        _ => Err(not_handled(super::NAME, event)),
    })
}

/// The reservations of `order_ids`, by order, in product id order.
async fn reservations(
    tx: &OutboxTx<'_>,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Held>>, HandleError> {
    let rows = tx
        .query_prepared(
            "SELECT order_id, product_id, quantity, released FROM reservations
             WHERE order_id = ANY($1) ORDER BY order_id, product_id",
            &[&order_ids],
        )
        .await?;
    let mut held: HashMap<Uuid, Vec<Held>> = HashMap::new();
    for row in &rows {
        held.entry(row.get(0)).or_default().push(Held {
            product_id: row.get(1),
            quantity: row.get(2),
            released: row.get(3),
        });
    }
    Ok(held)
}

/// Locks and reads the stock heads of `products` (sorted), in product id order.
async fn lock_heads(
    tx: &OutboxTx<'_>,
    products: &[i64],
) -> Result<BTreeMap<i64, Head>, HandleError> {
    let rows = tx
        .query_prepared(
            "SELECT s.product_id, s.version, s.available, p.price_cents
             FROM stock_levels s JOIN products p ON p.id = s.product_id
             WHERE s.product_id = ANY($1) ORDER BY s.product_id FOR UPDATE OF s",
            &[&products],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let version: i64 = row.get(1);
            let head = Head {
                read_version: version,
                version,
                available: row.get(2),
                price_cents: row.get(3),
            };
            (row.get(0), head)
        })
        .collect())
}

/// The price of what `order_id` already holds. Every held product's head was read with the
/// batch, so a missing one is a bug: said, not priced at 0.
fn held_amount(
    holding: &[Held],
    heads: &BTreeMap<i64, Head>,
    order_id: Uuid,
) -> Result<i64, HandleError> {
    holding.iter().try_fold(0i64, |amount_cents, h| {
        let head = heads.get(&h.product_id).ok_or_else(|| {
            HandleError::Poison(format!(
                "order {order_id} holds product {}, whose stock head the batch did not read",
                h.product_id
            ))
        })?;
        Ok(amount_cents + i64::from(h.quantity) * head.price_cents)
    })
}

/// The quantity wanted of each product of an order, repeated products merged, in product
/// id order (the order in which reservations lock rows, so they never wait in a cycle); or
/// why the order cannot be reserved.
fn wanted_quantities(items: &[OrderItem]) -> Result<BTreeMap<i64, i64>, String> {
    let mut wanted: BTreeMap<i64, i64> = BTreeMap::new();
    for OrderItem {
        product_id,
        quantity,
    } in items
    {
        if *quantity <= 0 {
            return Err(format!(
                "quantity {quantity} of product {product_id} is not positive"
            ));
        }
        *wanted.entry(*product_id).or_default() += i64::from(*quantity);
    }
    if wanted.is_empty() {
        return Err("no items".into());
    }
    Ok(wanted)
}

/// Reserves every item of an order or none, in memory; the price, or why not (checked in
/// product id order: the first product short of stock is the one named).
fn reserve_stock(
    items: &[OrderItem],
    heads: &mut BTreeMap<i64, Head>,
    writes: &mut Writes,
    order_id: Uuid,
    holding: &mut Vec<Held>,
) -> Result<i64, String> {
    let wanted = wanted_quantities(items)?;
    for (&product_id, &quantity) in &wanted {
        let Some(head) = heads.get(&product_id) else {
            return Err(format!("no product {product_id}"));
        };
        if i64::from(head.available) < quantity {
            return Err(format!(
                "product {product_id}: {} available, {quantity} wanted",
                head.available
            ));
        }
    }
    let mut amount_cents = 0i64;
    for (product_id, quantity) in wanted {
        // At most `available`, an i32: checked above.
        let quantity = quantity as i32;
        if let Some(head) = heads.get_mut(&product_id) {
            append(writes, head, product_id, "reserved", -quantity, order_id);
            amount_cents += i64::from(quantity) * head.price_cents;
        }
        writes.reserved.push((order_id, product_id, quantity));
        holding.push(Held {
            product_id,
            quantity,
            released: false,
        });
    }
    Ok(amount_cents)
}

/// Appends one stock event moving `quantity` units (negative: taken) to a head.
fn append(
    writes: &mut Writes,
    head: &mut Head,
    product_id: i64,
    kind: &'static str,
    quantity: i32,
    order_id: Uuid,
) {
    head.version += 1;
    head.available += quantity;
    writes
        .appended
        .push((product_id, head.version, kind, quantity, order_id));
}

/// Writes the moved heads, the appended events and the reservations, one statement each.
async fn write(
    tx: &OutboxTx<'_>,
    heads: &BTreeMap<i64, Head>,
    writes: &Writes,
) -> Result<(), HandleError> {
    let moved: Vec<(&i64, &Head)> = heads
        .iter()
        .filter(|(_, head)| head.version != head.read_version)
        .collect();
    if !moved.is_empty() {
        let ids: Vec<i64> = moved.iter().map(|(id, _)| **id).collect();
        let read: Vec<i64> = moved.iter().map(|(_, h)| h.read_version).collect();
        let versions: Vec<i64> = moved.iter().map(|(_, h)| h.version).collect();
        let available: Vec<i32> = moved.iter().map(|(_, h)| h.available).collect();
        let updated = tx
            .execute_prepared(
                "UPDATE stock_levels s SET version = v.version, available = v.available
                 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::int[])
                      AS v(product_id, read_version, version, available)
                 WHERE s.product_id = v.product_id AND s.version = v.read_version",
                &[&ids, &read, &versions, &available],
            )
            .await?;
        if updated != moved.len() as u64 {
            return Err(HandleError::Conflict(
                "a stock head moved past the version the batch read".into(),
            ));
        }
    }
    if !writes.appended.is_empty() {
        let a = &writes.appended;
        let products: Vec<i64> = a.iter().map(|e| e.0).collect();
        let versions: Vec<i64> = a.iter().map(|e| e.1).collect();
        let kinds: Vec<&str> = a.iter().map(|e| e.2).collect();
        let quantities: Vec<i32> = a.iter().map(|e| e.3).collect();
        let orders: Vec<Uuid> = a.iter().map(|e| e.4).collect();
        tx.execute_prepared(
            "INSERT INTO stock_events (product_id, version, kind, quantity, order_id)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::uuid[])",
            &[&products, &versions, &kinds, &quantities, &orders],
        )
        .await?;
    }
    if !writes.reserved.is_empty() {
        let r = &writes.reserved;
        let orders: Vec<Uuid> = r.iter().map(|e| e.0).collect();
        let products: Vec<i64> = r.iter().map(|e| e.1).collect();
        let quantities: Vec<i32> = r.iter().map(|e| e.2).collect();
        tx.execute_prepared(
            "INSERT INTO reservations (order_id, product_id, quantity)
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[])",
            &[&orders, &products, &quantities],
        )
        .await?;
    }
    if !writes.released.is_empty() {
        tx.execute_prepared(
            "UPDATE reservations SET released = true WHERE order_id = ANY($1)",
            &[&writes.released],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(stock: &[(i64, i32)]) -> BTreeMap<i64, Head> {
        stock
            .iter()
            .map(|&(id, available)| {
                let head = Head {
                    read_version: 1,
                    version: 1,
                    available,
                    price_cents: 100 * id,
                };
                (id, head)
            })
            .collect()
    }

    fn item(product_id: i64, quantity: i32) -> OrderItem {
        OrderItem {
            product_id,
            quantity,
        }
    }

    #[test]
    fn a_batch_decides_each_reservation_against_the_stock_the_ones_before_it_left() {
        let mut heads = heads(&[(1, 5), (2, 1)]);
        let mut writes = Writes::default();
        let (first, second, third) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        // Repeated products merge: 2 + 1 of product 1, and product 2.
        let items = [item(2, 1), item(1, 2), item(1, 1)];
        let amount = reserve_stock(&items, &mut heads, &mut writes, first, &mut Vec::new());
        assert_eq!(amount, Ok(3 * 100 + 200));
        // Product 2 is gone now: all or nothing, so product 1 is not taken either.
        let items = [item(1, 1), item(2, 1)];
        let refused = reserve_stock(&items, &mut heads, &mut writes, second, &mut Vec::new());
        assert_eq!(refused, Err("product 2: 0 available, 1 wanted".to_string()));
        let amount = reserve_stock(
            &[item(1, 2)],
            &mut heads,
            &mut writes,
            third,
            &mut Vec::new(),
        );
        assert_eq!(amount, Ok(200));
        assert_eq!((heads[&1].available, heads[&1].version), (0, 3));
        assert_eq!((heads[&2].available, heads[&2].version), (0, 2));
        let versions: Vec<(i64, i64, i32)> =
            writes.appended.iter().map(|a| (a.0, a.1, a.3)).collect();
        assert_eq!(versions, vec![(1, 2, -3), (2, 2, -1), (1, 3, -2)]);
        assert_eq!(writes.reserved.len(), 3);
    }

    #[test]
    fn refusals_name_the_item_at_fault() {
        let mut heads = heads(&[(1, 5)]);
        let mut writes = Writes::default();
        let order = Uuid::new_v4();
        let mut reserve = |items: &[OrderItem]| {
            reserve_stock(items, &mut heads, &mut writes, order, &mut Vec::new())
        };
        assert_eq!(
            reserve(&[item(1, 0)]),
            Err("quantity 0 of product 1 is not positive".to_string())
        );
        assert_eq!(reserve(&[]), Err("no items".to_string()));
        assert_eq!(reserve(&[item(9, 1)]), Err("no product 9".to_string()));
        assert!(writes.appended.is_empty() && writes.reserved.is_empty());
    }
}
