//! `distributor status`: the operator's snapshot as one JSON line, for scripts.
//!
//! The JSON is an interface: fields are only ever added. Times are Unix ms (`*_at_ms`), ages and
//! lengths are ms (`*_ms`), money is integer cents (`*_cents`).

use super::operator::{block_on, Operator, OperatorArgs};
use protocol::{CloseReason, MonthState, SystemStatus};
use serde_json::{json, Value};
use std::process::ExitCode;

/// Prints the status of the distributor at `args.server`.
pub fn run(args: &OperatorArgs) -> ExitCode {
    let status = block_on(async {
        let operator = Operator::connect(args, "distributor-status").await?;
        operator.status().await
    });
    match status {
        Ok(status) => {
            println!("{}", to_json(&status));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The stable name of a close reason in JSON.
pub fn reason_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::SoldOut => "sold_out",
        CloseReason::AllCustomersDone => "all_customers_done",
        CloseReason::TimeUp => "time_up",
        CloseReason::Operator => "operator",
    }
}

/// The status as `distributor status` prints it.
pub fn to_json(s: &SystemStatus) -> Value {
    let now = s.now_ms;
    let month = s.month.as_ref().map(|m| {
        json!({
            "id": m.id.0,
            "state": if m.state == MonthState::Open { "open" } else { "closed" },
            "opened_at_ms": m.opened_at_ms,
            "closes_at_ms": m.ends_at_ms,
        })
    });
    let manufacturers: Vec<Value> = s
        .manufacturers
        .iter()
        .map(|m| {
            json!({
                "id": m.id.0,
                "name": m.name,
                "connected": m.connected,
                "since_ms": (m.since_ms > 0).then_some(m.since_ms),
                "last_offered_month": m.last_offered.map(|id| id.0),
                "offered_this_month": m.offered_this_month,
                "notices_sent": m.last_seq.0,
                "notices_acked": m.acked_seq.0,
                "notices_pending": m.pending(),
                "oldest_pending_ms": m.oldest_pending_at_ms.map(|at| now.saturating_sub(at)),
                "units_sold_month": m.units_sold_month,
            })
        })
        .collect();
    let top: Vec<Value> = s
        .top_products
        .iter()
        .map(|p| {
            json!({
                "listing": p.listing.0,
                "product": p.product,
                "manufacturer": p.manufacturer_name,
                "units": p.units,
                "revenue_cents": p.revenue.0,
            })
        })
        .collect();
    let history: Vec<Value> = s
        .history
        .iter()
        .map(|h| {
            json!({
                "id": h.id.0,
                "opened_at_ms": h.opened_at_ms,
                "closed_at_ms": h.closed_at_ms,
                "lasted_ms": h.lasted_ms(),
                "reason": reason_name(h.reason),
                "units": h.units,
                "revenue_cents": h.revenue.0,
            })
        })
        .collect();
    json!({
        "now_ms": now,
        "month": month,
        "month_secs_next": s.month_ms / 1000,
        "stock_offered": s.offered_units,
        "stock_remaining": s.remaining_units,
        "month_checkouts": s.month_sales.checkouts,
        "month_units": s.month_sales.units,
        "month_revenue_cents": s.month_sales.revenue.0,
        "checkouts_total": s.orders,
        "units_total": s.sold_units,
        "customers_connected": s.customers.connected,
        "customers_logged_in": s.customers.logged_in,
        "customers_active": s.customers.active,
        "customers_done": s.customers.done,
        "node_clients": s.node_clients,
        "manufacturers": manufacturers,
        "top_products": top,
        "history": history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::*;

    #[test]
    fn the_json_has_the_fields_scripts_rely_on() {
        let status = SystemStatus {
            month: Some(MonthView {
                id: MonthId(3),
                state: MonthState::Open,
                opened_at_ms: 1_000,
                ends_at_ms: 61_000,
            }),
            manufacturers: vec![ManufacturerStatus {
                name: "dairy".into(),
                last_seq: NoticeSeq(7),
                acked_seq: NoticeSeq(4),
                oldest_pending_at_ms: Some(2_000),
                ..Default::default()
            }],
            orders: 12,
            now_ms: 5_000,
            customers: CustomerCounts {
                connected: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        let json = to_json(&status);
        assert_eq!(json["month"]["id"], 3);
        assert_eq!(json["month"]["opened_at_ms"], 1_000);
        assert_eq!(json["month"]["closes_at_ms"], 61_000);
        let m = &json["manufacturers"][0];
        assert_eq!(m["name"], "dairy");
        assert_eq!(m["connected"], false);
        assert_eq!(m["notices_pending"], 3);
        assert_eq!(
            m["oldest_pending_ms"], 3_000,
            "an age, measured on the server's clock"
        );
        assert_eq!(json["customers_connected"], 2);
        assert_eq!(json["checkouts_total"], 12);
        assert_eq!(json["node_clients"], 0);
    }
}
