package shop_test

import (
	"context"
	"errors"
	"testing"

	"github.com/starstream/starstream/deploy/shop"
)

func TestPlaceOrderIsAtomic(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	ctx := context.Background()
	schema, _ := seeded(t, db, 2)
	before := count(t, db, schema, "SELECT count(*) FROM {s}.orders")

	// A missing product fails the whole order: no order row is left behind.
	_, _, err := shop.PlaceOrder(ctx, db, schema, 1, []shop.OrderItem{{ProductID: 1, Quantity: 1}, {ProductID: 999999, Quantity: 1}})
	if !errors.Is(err, shop.ErrNotFound) {
		t.Fatalf("order with a missing product: %v, want ErrNotFound", err)
	}
	if _, _, err := shop.PlaceOrder(ctx, db, schema, 999999, []shop.OrderItem{{ProductID: 1, Quantity: 1}}); !errors.Is(err, shop.ErrNotFound) {
		t.Fatalf("order of a missing customer: %v, want ErrNotFound", err)
	}
	if n := count(t, db, schema, "SELECT count(*) FROM {s}.orders"); n != before {
		t.Fatalf("failed orders left rows: %d orders, want %d", n, before)
	}

	items := []shop.OrderItem{{ProductID: 5, Quantity: 2, Discount: "1.50"}, {ProductID: 7, Quantity: 1, Discount: "99999"}}
	orderID, itemIDs, err := shop.InsertOrder(ctx, db, schema, shop.Order{CustomerID: 3, CampaignID: 2, Items: items})
	if err != nil {
		t.Fatal(err)
	}
	if len(itemIDs) != 2 || itemIDs[0] >= itemIDs[1] {
		t.Fatalf("item ids %v", itemIDs)
	}
	// Price and seller come from the product; an excessive discount is capped
	// at the line's gross; the ship-to address is the customer's.
	checks := map[string]string{
		"item 1 priced from its product": "SELECT count(*) FROM {s}.order_items i JOIN {s}.products p USING (product_id, seller_id) " +
			"WHERE i.order_item_id = " + itoa(itemIDs[0]) + " AND i.unit_price = p.list_price AND i.quantity = 2 AND i.discount = 1.50",
		"item 2 discount capped": "SELECT count(*) FROM {s}.order_items WHERE order_item_id = " + itoa(itemIDs[1]) +
			" AND discount = unit_price",
		"ship-to copied": "SELECT count(*) FROM {s}.orders o JOIN {s}.customers c USING (customer_id) WHERE o.order_id = " +
			itoa(orderID) + " AND o.ship_city = c.city AND o.campaign_id = 2 AND o.status = 'placed'",
	}
	for what, q := range checks {
		if count(t, db, schema, q) != 1 {
			t.Errorf("%s: no", what)
		}
	}
}

func TestHelpersChangeOneRow(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	ctx := context.Background()
	schema, _ := seeded(t, db, 2)
	id, err := shop.InsertCustomer(ctx, db, schema, shop.Customer{Email: "a@example.com", FullName: "A B",
		City: "Austin", State: "TX", Country: "US"})
	if err != nil {
		t.Fatal(err)
	}
	orderID, _, err := shop.PlaceOrder(ctx, db, schema, id, []shop.OrderItem{{ProductID: 1, Quantity: 2}})
	if err != nil {
		t.Fatal(err)
	}
	stock := "SELECT sum(on_hand) FROM {s}.inventory WHERE product_id = 1"
	stockBefore := count(t, db, schema, stock)
	steps := []struct {
		what  string
		do    func() error
		check string
	}{
		{"move", func() error { return shop.MoveCustomer(ctx, db, schema, id, "Berlin", "BE", "DE") },
			"SELECT count(*) FROM {s}.customers WHERE city = 'Berlin' AND country = 'DE' AND updated_at > created_at AND customer_id = " + itoa(id)},
		{"tier", func() error { return shop.SetCustomerTier(ctx, db, schema, id, "", "gold") },
			"SELECT count(*) FROM {s}.customers WHERE loyalty_tier = 'gold' AND segment = 'consumer' AND customer_id = " + itoa(id)},
		{"contact", func() error { return shop.UpdateCustomerContact(ctx, db, schema, id, shop.Contact{Phone: "+1-555"}) },
			"SELECT count(*) FROM {s}.customers WHERE phone = '+1-555' AND email = 'a@example.com' AND customer_id = " + itoa(id)},
		{"price", func() error { return shop.SetProductPrice(ctx, db, schema, 1, "12.34", "") },
			"SELECT count(*) FROM {s}.products WHERE list_price = 12.34 AND product_id = 1"},
		{"category", func() error { return shop.SetProductCategory(ctx, db, schema, 1, "books", "comics") },
			"SELECT count(*) FROM {s}.products WHERE category = 'books' AND product_id = 1"},
		{"paid", func() error { return shop.SetOrderStatus(ctx, db, schema, orderID, shop.OrderPaid) },
			"SELECT count(*) FROM {s}.orders WHERE status = 'paid' AND shipped_at IS NULL AND order_id = " + itoa(orderID)},
		{"shipped", func() error { return shop.ShipOrder(ctx, db, schema, orderID) },
			"SELECT count(*) FROM {s}.orders WHERE status = 'shipped' AND shipped_at IS NOT NULL AND order_id = " + itoa(orderID)},
		{"delivered", func() error { return shop.SetOrderStatus(ctx, db, schema, orderID, shop.OrderDelivered) },
			"SELECT count(*) FROM {s}.orders WHERE status = 'delivered' AND delivered_at >= shipped_at AND order_id = " + itoa(orderID)},
		{"seller", func() error { return shop.SetSellerStatus(ctx, db, schema, 1, "suspended") },
			"SELECT count(*) FROM {s}.sellers WHERE status = 'suspended' AND seller_id = 1"},
		{"campaign", func() error { return shop.UpdateCampaign(ctx, db, schema, 1, "paused", "100.00") },
			"SELECT count(*) FROM {s}.campaigns WHERE status = 'paused' AND budget = 100 AND campaign_id = 1"},
		{"receipt", func() error { return shop.AdjustInventory(ctx, db, schema, 1, "ZZZ9", 5) },
			"SELECT count(*) FROM {s}.inventory WHERE warehouse_code = 'ZZZ9' AND on_hand = 5 AND product_id = 1"},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		if count(t, db, schema, s.check) != 1 {
			t.Errorf("%s: change not found", s.what)
		}
	}
	if got := count(t, db, schema, stock); got != max(stockBefore-2, 0)+5 {
		t.Errorf("stock of product 1 = %d, want %d shipped out of %d and 5 received", got, 2, stockBefore)
	}
	if err := shop.MoveCustomer(ctx, db, schema, 999999, "X", "Y", "ZZ"); !errors.Is(err, shop.ErrNotFound) {
		t.Errorf("move of a missing customer: %v, want ErrNotFound", err)
	}
}

func TestEventHelpers(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	ctx := context.Background()
	schema, _ := seeded(t, db, 2)
	session := [16]byte{1, 2, 3}
	if _, err := shop.AddCartEvent(ctx, db, schema, shop.CartEvent{SessionID: session, ProductID: 3, Action: shop.CartAdd, Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := shop.AddCampaignEvent(ctx, db, schema, shop.CampaignEvent{CampaignID: 1, CustomerID: 4, Type: shop.CampaignClick, Cost: "0.25"}); err != nil {
		t.Fatal(err)
	}
	if _, err := shop.AddPageView(ctx, db, schema, shop.PageView{SessionID: session, URL: "/p/3"}); err != nil {
		t.Fatal(err)
	}
	q := "SELECT count(*) FROM {s}.cart_events c JOIN {s}.page_views v USING (session_id) " +
		"WHERE c.customer_id IS NULL AND v.referrer IS NULL AND v.client_time IS NULL AND c.action = 'add'"
	if count(t, db, schema, q) != 1 {
		t.Error("cart event and page view of the session not found as written")
	}
	if count(t, db, schema, "SELECT count(*) FROM {s}.campaign_events WHERE cost = 0.25 AND event_type = 'click' AND customer_id = 4") != 1 {
		t.Error("campaign event not found as written")
	}
}
