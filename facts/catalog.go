package facts

import (
	"time"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
)

func col(name string, t sinks.Type, nullable bool, desc string) sinks.Column {
	return sinks.Column{Name: name, Type: t, Nullable: nullable, Description: desc}
}

// Sales is fact_sales: one row per order item, with the customer, product and
// seller versions valid when the item was sold; order status follows the order.
var Sales = Spec{
	Name:   "fact_sales",
	Inputs: []string{"orders", "order_items"},
	Grain:  []string{"order_item_id"},
	Lookups: []Lookup{
		{Dimension: dimensions.Customer, Column: "customer_key", From: "customer_id"},
		{Dimension: dimensions.Product, Column: "product_key", From: "product_id"},
		{Dimension: dimensions.Seller, Column: "seller_key", From: "seller_id"},
		{Dimension: dimensions.Campaign, Column: "campaign_key", From: "campaign_id"},
	},
	Measures: []string{"quantity", "gross_amount", "discount", "net_amount", "cost_amount", "margin"},
	Columns: []sinks.Column{
		col("order_item_id", sinks.Int64, false, "grain: the source order item"),
		col("order_id", sinks.Int64, true, "degenerate dimension: the source order"),
		col("date_key", sinks.Int64, true, "dim_date key of the order date (yyyymmdd, UTC)"),
		col("customer_key", sinks.Int64, true, "dim_customer version valid when the item was sold; -1 unknown"),
		col("product_key", sinks.Int64, true, "dim_product version valid when the item was sold; -1 unknown"),
		col("seller_key", sinks.Int64, true, "dim_seller version valid when the item was sold; -1 unknown"),
		col("campaign_key", sinks.Int64, true, "dim_campaign of the order; NULL without campaign, -1 unknown"),
		col("customer_id", sinks.Int64, true, "natural key of the customer (for downstream facts)"),
		col("product_id", sinks.Int64, true, "natural key of the product"),
		col("campaign_id", sinks.Int64, true, "natural key of the campaign, NULL without campaign"),
		col("quantity", sinks.Int64, true, "units sold"),
		col("unit_price", sinks.Numeric, true, "price per unit charged"),
		col("discount", sinks.Numeric, true, "discount on the line"),
		col("gross_amount", sinks.Numeric, true, "quantity × unit_price"),
		col("net_amount", sinks.Numeric, true, "gross_amount − discount"),
		col("cost_amount", sinks.Numeric, true, "quantity × unit_cost of the product version; NULL when the product is unknown"),
		col("margin", sinks.Numeric, true, "net_amount − cost_amount"),
		col("order_status", sinks.String, true, "current status of the order"),
		col("ordered_at", sinks.Timestamp, true, "when the order was placed"),
		col("source_lsn", sinks.Int64, true, "commit LSN of the item's creation: the position its keys are valid at"),
		col("source_seq", sinks.Int64, true, "index of that change in its transaction"),
		col("dq_warnings", sinks.String, true, "data-quality warnings of the row (comma-separated rules); details in dq_quarantine"),
	},
	Rules: []quality.Rule{
		quality.NotNull("order_items", "quantity", quality.Error),
		quality.Range("order_items", "quantity", quality.Error, 1, 10_000),
		quality.Range("order_items", "unit_price", quality.Error, 0, 1_000_000),
		quality.Range("order_items", "discount", quality.Warn, 0, 100_000),
		quality.AcceptedValues("orders", "status", quality.Error, "placed", "paid", "shipped", "delivered", "cancelled", "returned"),
		quality.Freshness("orders", "ordered_at", quality.Warn, 30*24*time.Hour, 5*time.Minute),
	},
	PartitionBy: "ordered_at",
	ClusterBy:   []string{"customer_key", "product_key"},
	Upstream:    []string{"dim_date", "dim_customer", "dim_product", "dim_seller", "dim_campaign"},
	Description: "Sales at order-item grain with point-in-time dimension keys.",
}

// AllWarehouses is fact_inventory's warehouse_code of the product-level row
// that carries sold_units: an order item does not say which warehouse serves it.
const AllWarehouses = "*"

// Inventory is fact_inventory: stock per product, warehouse and UTC commit day.
// A row exists for each day a stock level changed (or was first seen, in the
// snapshot); days without changes have none, the last row before holds the level.
var Inventory = Spec{
	Name:       "fact_inventory",
	Inputs:     []string{"inventory"},
	FactInputs: []string{Sales.Name},
	Grain:      []string{"product_id", "warehouse_code", "date_key"},
	Lookups:    []Lookup{{Dimension: dimensions.Product, Column: "product_key", From: "product_id"}},
	Measures:   []string{"received_units", "shipped_units", "sold_units"},
	Columns: []sinks.Column{
		col("product_id", sinks.Int64, false, "grain: the source product"),
		col("warehouse_code", sinks.String, false, "grain: the source warehouse; '*' is the product-level row holding sold_units"),
		col("date_key", sinks.Int64, false, "grain: dim_date key of the commit day (UTC) of the stock changes; the order day for sold_units"),
		col("product_key", sinks.Int64, true, "dim_product version valid at the row's latest change; -1 unknown"),
		col("inventory_date", sinks.Date, true, "the day of date_key"),
		col("on_hand", sinks.Int64, true, "units on hand at the end of the day (the day's latest change); NULL on the '*' row"),
		col("reserved", sinks.Int64, true, "units reserved at the end of the day; NULL on the '*' row"),
		col("received_units", sinks.Int64, true, "sum of the day's increases of on_hand"),
		col("shipped_units", sinks.Int64, true, "sum of the day's decreases of on_hand, as a positive number"),
		col("sold_units", sinks.Int64, true, "'*' row only: units of the product in fact_sales items ordered that day, orders neither cancelled nor returned; 0 on warehouse rows"),
		col("source_lsn", sinks.Int64, true, "commit LSN of the latest change that rewrote the row"),
		col("source_seq", sinks.Int64, true, "index of that change in its transaction"),
		col("dq_warnings", sinks.String, true, "data-quality warnings of the contributing changes and lookups (comma-separated rules); details in dq_quarantine"),
	},
	Rules: []quality.Rule{
		quality.NotNull("inventory", "on_hand", quality.Error),
		quality.Range("inventory", "on_hand", quality.Error, 0, 100_000_000),
		quality.Range("inventory", "reserved", quality.Error, 0, 100_000_000),
	},
	PartitionBy: "inventory_date",
	ClusterBy:   []string{"product_key", "warehouse_code"},
	Upstream:    []string{"dim_date", "dim_product", "fact_sales"},
	Description: "Daily stock per product and warehouse: end-of-day levels, receipts and shipments; units sold per product on warehouse '*'.",
}

// Cart is fact_cart: what a shopping session did with one product, and how
// much of it the session's customer then bought.
var Cart = Spec{
	Name:       "fact_cart",
	Inputs:     []string{"cart_events"},
	FactInputs: []string{Sales.Name},
	Grain:      []string{"session_id", "product_id"},
	Lookups: []Lookup{
		{Dimension: dimensions.Customer, Column: "customer_key", From: "customer_id"},
		{Dimension: dimensions.Product, Column: "product_key", From: "product_id"},
	},
	Measures: []string{"added_units", "removed_units", "checked_out_units", "purchased_units"},
	Columns: []sinks.Column{
		col("session_id", sinks.String, false, "grain: the cart session (uuid)"),
		col("product_id", sinks.Int64, false, "grain: the source product"),
		col("customer_id", sinks.Int64, true, "the session's customer: of its latest event carrying one; NULL for anonymous sessions"),
		col("customer_key", sinks.Int64, true, "dim_customer version valid at the row's latest change; NULL anonymous, -1 unknown"),
		col("product_key", sinks.Int64, true, "dim_product version valid at the row's latest change; -1 unknown"),
		col("date_key", sinks.Int64, true, "dim_date key of the session's first event (UTC)"),
		col("session_started_at", sinks.Timestamp, true, "occurred_at of the session's first event"),
		col("checked_out_at", sinks.Timestamp, true, "occurred_at of the product's latest checkout in the session; NULL without one"),
		col("added_units", sinks.Int64, true, "units added to the cart"),
		col("removed_units", sinks.Int64, true, "units removed from the cart"),
		col("checked_out_units", sinks.Int64, true, "units checked out"),
		col("purchased_units", sinks.Int64, true, "units in fact_sales items of the session's customer and this product, ordered within an hour after checked_out_at, each item attributed to the latest such checkout only; cancelled and returned orders excluded"),
		col("source_lsn", sinks.Int64, true, "commit LSN of the latest change that rewrote the row"),
		col("source_seq", sinks.Int64, true, "index of that change in its transaction"),
		col("dq_warnings", sinks.String, true, "data-quality warnings of the contributing events and lookups (comma-separated rules); details in dq_quarantine"),
	},
	Rules: []quality.Rule{
		quality.NotNull("cart_events", "session_id", quality.Error),
		quality.NotNull("cart_events", "product_id", quality.Error),
		quality.NotNull("cart_events", "action", quality.Error),
		quality.AcceptedValues("cart_events", "action", quality.Error, "add", "remove", "checkout"),
		quality.Range("cart_events", "quantity", quality.Error, 1, 1_000),
		quality.NotNull("cart_events", "occurred_at", quality.Error),
		quality.Freshness("cart_events", "occurred_at", quality.Warn, 30*24*time.Hour, 5*time.Minute),
	},
	PartitionBy: "session_started_at",
	ClusterBy:   []string{"customer_key", "product_key"},
	Upstream:    []string{"dim_date", "dim_customer", "dim_product", "fact_sales"},
	Description: "Cart sessions per product: units added, removed, checked out, and purchased after the checkout.",
}

// Marketing is fact_marketing: campaign activity and the sales attributed to
// it, per campaign and UTC day.
var Marketing = Spec{
	Name:       "fact_marketing",
	Inputs:     []string{"campaign_events"},
	FactInputs: []string{Sales.Name},
	Grain:      []string{"campaign_id", "date_key"},
	Lookups:    []Lookup{{Dimension: dimensions.Campaign, Column: "campaign_key", From: "campaign_id"}},
	Measures:   []string{"impressions", "clicks", "spend", "attributed_orders", "attributed_revenue"},
	Columns: []sinks.Column{
		col("campaign_id", sinks.Int64, false, "grain: the source campaign"),
		col("date_key", sinks.Int64, false, "grain: dim_date key of the day (UTC) events occurred and attributed orders were placed"),
		col("campaign_key", sinks.Int64, true, "dim_campaign member at the row's latest change; -1 unknown"),
		col("activity_date", sinks.Date, true, "the day of date_key"),
		col("impressions", sinks.Int64, true, "impression events"),
		col("clicks", sinks.Int64, true, "click events"),
		col("spend", sinks.Numeric, true, "sum of the cost of spend events"),
		col("attributed_orders", sinks.Int64, true, "distinct orders with this campaign placed that day, neither cancelled nor returned"),
		col("attributed_revenue", sinks.Numeric, true, "sum of the net_amount of those orders' items"),
		col("roas", sinks.Numeric, true, "attributed_revenue / spend, rounded to 9 decimals; NULL without spend"),
		col("source_lsn", sinks.Int64, true, "commit LSN of the latest change that rewrote the row"),
		col("source_seq", sinks.Int64, true, "index of that change in its transaction"),
		col("dq_warnings", sinks.String, true, "data-quality warnings of the contributing events and lookups (comma-separated rules); details in dq_quarantine"),
	},
	Rules: []quality.Rule{
		quality.NotNull("campaign_events", "campaign_id", quality.Error),
		quality.NotNull("campaign_events", "event_type", quality.Error),
		quality.AcceptedValues("campaign_events", "event_type", quality.Error, "impression", "click", "spend"),
		quality.Range("campaign_events", "cost", quality.Error, 0, 1_000_000),
		quality.NotNull("campaign_events", "occurred_at", quality.Error),
		quality.Freshness("campaign_events", "occurred_at", quality.Warn, 30*24*time.Hour, 5*time.Minute),
	},
	PartitionBy: "activity_date",
	ClusterBy:   []string{"campaign_key"},
	Upstream:    []string{"dim_date", "dim_campaign", "fact_sales"},
	Description: "Campaigns per day: impressions, clicks, spend, attributed orders and revenue, ROAS.",
}

// All lists the fact pipelines, in dependency order.
func All() []Spec { return []Spec{Sales, Inventory, Cart, Marketing} }
