package shop

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// OrderStatus is a value of the order_status enum.
type OrderStatus string

// The order statuses. Orders normally go placed → paid → shipped →
// delivered; cancelled and returned end them early or late.
const (
	OrderPlaced    OrderStatus = "placed"
	OrderPaid      OrderStatus = "paid"
	OrderShipped   OrderStatus = "shipped"
	OrderDelivered OrderStatus = "delivered"
	OrderCancelled OrderStatus = "cancelled"
	OrderReturned  OrderStatus = "returned"
)

// OrderItem is one line of a new order. Its unit price and seller are the
// product's current ones. Discount is a decimal string ("" for none), capped
// at the line's gross amount.
type OrderItem struct {
	ProductID int64
	Quantity  int
	Discount  string
}

// Order is a new order. CampaignID 0 means none. The ship-to address is the
// customer's current one.
type Order struct {
	CustomerID int64
	CampaignID int64
	Items      []OrderItem
}

// PlaceOrder places an order without campaign; see InsertOrder.
func PlaceOrder(ctx context.Context, db DB, schema string, customerID int64, items []OrderItem) (orderID int64, itemIDs []int64, err error) {
	return InsertOrder(ctx, db, schema, Order{CustomerID: customerID, Items: items})
}

// InsertOrder inserts an order and its items in one transaction, so they are
// captured together, and returns the order id and the item ids in the order
// of o.Items. It returns ErrNotFound if the customer or a product does not
// exist, and then nothing is written.
func InsertOrder(ctx context.Context, db DB, schema string, o Order) (orderID int64, itemIDs []int64, err error) {
	if len(o.Items) == 0 {
		return 0, nil, fmt.Errorf("insert order: %w: no items", ErrInvalidConfig)
	}
	products := make([]int64, len(o.Items))
	quantities := make([]int32, len(o.Items))
	discounts := make([]string, len(o.Items))
	for i, it := range o.Items {
		products[i], quantities[i], discounts[i] = it.ProductID, int32(it.Quantity), it.Discount
	}
	err = inTx(ctx, db, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, qualify(schema, `
			INSERT INTO {s}.orders (customer_id, campaign_id, ship_city, ship_state, ship_country)
			SELECT customer_id, $2, city, state, country FROM {s}.customers WHERE customer_id = $1
			RETURNING order_id`), o.CustomerID, nullID(o.CampaignID)).Scan(&orderID)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("customer %d: %w", o.CustomerID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, qualify(schema, `
			INSERT INTO {s}.order_items (order_id, product_id, seller_id, quantity, unit_price, discount)
			SELECT $1, p.product_id, p.seller_id, i.quantity, p.list_price,
			       LEAST(COALESCE(NULLIF(i.discount, '')::numeric, 0), p.list_price * i.quantity)
			FROM unnest($2::bigint[], $3::integer[], $4::text[]) WITH ORDINALITY AS i(product_id, quantity, discount, n)
			JOIN {s}.products p ON p.product_id = i.product_id
			ORDER BY i.n
			RETURNING order_item_id`), orderID, products, quantities, discounts)
		if err != nil {
			return err
		}
		itemIDs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if len(itemIDs) != len(o.Items) {
			return fmt.Errorf("product of order: %w", ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("insert order: %w", err)
	}
	return orderID, itemIDs, nil
}

// SetOrderStatus sets an order's status. Reaching shipped or delivered also
// stamps shipped_at and delivered_at, once. It checks no transition rules, so
// tests can make any change they need.
func SetOrderStatus(ctx context.Context, db DB, schema string, orderID int64, status OrderStatus) error {
	err := execOne(ctx, db, qualify(schema, `
		UPDATE {s}.orders
		SET status = $2::text::{s}.order_status,
		    shipped_at = CASE WHEN $2 IN ('shipped', 'delivered', 'returned')
		                      THEN COALESCE(shipped_at, greatest(now(), ordered_at)) ELSE shipped_at END,
		    delivered_at = CASE WHEN $2 IN ('delivered', 'returned')
		                        THEN COALESCE(delivered_at, greatest(now(), ordered_at)) ELSE delivered_at END,
		    updated_at = now()
		WHERE order_id = $1`), orderID, string(status))
	if err != nil {
		return fmt.Errorf("set status of order %d: %w", orderID, err)
	}
	return nil
}

// ShipOrder marks an order shipped and takes its items out of stock, each
// from the warehouse holding most of it, in one transaction.
func ShipOrder(ctx context.Context, db DB, schema string, orderID int64) error {
	err := inTx(ctx, db, func(tx pgx.Tx) error {
		if err := SetOrderStatus(ctx, tx, schema, orderID, OrderShipped); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, qualify(schema, `
			SELECT product_id, sum(quantity)::integer FROM {s}.order_items
			WHERE order_id = $1 GROUP BY product_id ORDER BY product_id`), orderID)
		if err != nil {
			return err
		}
		type line struct {
			Product  int64
			Quantity int32
		}
		lines, err := pgx.CollectRows(rows, pgx.RowToStructByPos[line])
		if err != nil {
			return err
		}
		// One row at a time in product order: concurrent shipments then lock
		// inventory rows in the same order and cannot deadlock.
		for _, l := range lines {
			_, err := tx.Exec(ctx, qualify(schema, `
				UPDATE {s}.inventory SET on_hand = on_hand - LEAST(on_hand, $2), updated_at = now()
				WHERE (product_id, warehouse_code) = (
					SELECT product_id, warehouse_code FROM {s}.inventory WHERE product_id = $1
					ORDER BY on_hand DESC, warehouse_code LIMIT 1)`), l.Product, l.Quantity)
			if err != nil {
				return fmt.Errorf("take product %d out of stock: %w", l.Product, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ship order %d: %w", orderID, err)
	}
	return nil
}
