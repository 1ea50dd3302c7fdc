package shop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// isForeignKeyViolation reports whether err is PostgreSQL's 23503, which a
// drawn id that falls in a gap of its range causes.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}

func (g *Generator) newOrder(ctx context.Context) error {
	o := Order{CustomerID: g.state.customers.draw(g.rng)}
	if chance(g.rng, 0.25) {
		o.CampaignID = g.state.campaigns.draw(g.rng)
	}
	for range between(g.rng, 1, 4) {
		p := g.state.products.draw(g.rng)
		if slices.ContainsFunc(o.Items, func(it OrderItem) bool { return it.ProductID == p }) {
			continue
		}
		it := OrderItem{ProductID: p, Quantity: weightedQuantity(g.rng.IntN(10))}
		if chance(g.rng, 0.25) {
			it.Discount = cents(int64(between(g.rng, 1, 10)) * 100)
		}
		o.Items = append(o.Items, it)
	}
	id, _, err := InsertOrder(ctx, g.db, g.cfg.Schema, o)
	if errors.Is(err, ErrNotFound) || isForeignKeyViolation(err) {
		return errSkip // drew a missing customer, product or campaign
	}
	if err != nil {
		return err
	}
	g.state.orders.hi = max(g.state.orders.hi, id)
	if g.state.orders.lo == 0 {
		g.state.orders.lo = id
	}
	return nil
}

// weightedQuantity maps a draw in [0, 10) to a quantity: mostly 1.
func weightedQuantity(x int) int {
	switch {
	case x >= 9:
		return 3
	case x >= 6:
		return 2
	}
	return 1
}

// orderProgress moves an order one step on. It locks the order with SKIP
// LOCKED, so concurrent generators never progress the same order twice.
func (g *Generator) orderProgress(ctx context.Context) error {
	if g.state.orders.hi == 0 {
		return errSkip
	}
	from := g.state.orders.draw(g.rng)
	returning := chance(g.rng, 0.05)
	x := g.rng.IntN(100)
	return inTx(ctx, g.db, func(tx pgx.Tx) error {
		where := "status IN ('placed', 'paid', 'shipped')" // matches orders_open_idx
		if returning {
			where = "status = 'delivered'"
		}
		id, status, err := lockOrder(ctx, tx, g.cfg.Schema, where, from)
		if errors.Is(err, pgx.ErrNoRows) {
			id, status, err = lockOrder(ctx, tx, g.cfg.Schema, where, 0)
		}
		if errors.Is(err, pgx.ErrNoRows) {
			return errSkip
		}
		if err != nil {
			return err
		}
		switch {
		case status == OrderPlaced && x < 92, status == OrderDelivered:
			next := OrderPaid
			if status == OrderDelivered {
				next = OrderReturned
			}
			return SetOrderStatus(ctx, tx, g.cfg.Schema, id, next)
		case status == OrderPaid && x < 96:
			return ShipOrder(ctx, tx, g.cfg.Schema, id)
		case status == OrderShipped:
			return SetOrderStatus(ctx, tx, g.cfg.Schema, id, OrderDelivered)
		}
		return SetOrderStatus(ctx, tx, g.cfg.Schema, id, OrderCancelled)
	})
}

// lockOrder locks the first order from id on that matches where.
func lockOrder(ctx context.Context, tx pgx.Tx, schema, where string, from int64) (int64, OrderStatus, error) {
	var id int64
	var status string
	err := tx.QueryRow(ctx, qualify(schema, fmt.Sprintf(`
		SELECT order_id, status::text FROM {s}.orders WHERE %s AND order_id >= $1
		ORDER BY order_id LIMIT 1 FOR UPDATE SKIP LOCKED`, where)), from).Scan(&id, &status)
	return id, OrderStatus(status), err
}

// cartEvent advances a drawn session: an empty cart gets an add; otherwise
// the visitor adds, removes or checks out. A checkout records one row per
// product in the cart, in one transaction, and ends the session.
func (g *Generator) cartEvent(ctx context.Context) error {
	i := g.rng.IntN(len(g.state.sessions))
	s := &g.state.sessions[i]
	ev := CartEvent{SessionID: s.id, CustomerID: s.customer}
	switch x := g.rng.IntN(100); {
	case len(s.cart) == 0 || x < 50:
		ev.Action, ev.ProductID, ev.Quantity = CartAdd, g.state.products.draw(g.rng), between(g.rng, 1, 2)
		if _, err := AddCartEvent(ctx, g.db, g.cfg.Schema, ev); err != nil {
			if isForeignKeyViolation(err) {
				*s = g.state.newSession(g.rng, g.v) // its customer or the product is missing
				return errSkip
			}
			return err
		}
		s.cart = append(s.cart, OrderItem{ProductID: ev.ProductID, Quantity: ev.Quantity})
		return nil
	case x < 70:
		k := g.rng.IntN(len(s.cart))
		ev.Action, ev.ProductID, ev.Quantity = CartRemove, s.cart[k].ProductID, s.cart[k].Quantity
		if _, err := AddCartEvent(ctx, g.db, g.cfg.Schema, ev); err != nil {
			return err
		}
		s.cart = slices.Delete(s.cart, k, k+1)
		return nil
	}
	err := inTx(ctx, g.db, func(tx pgx.Tx) error {
		for _, line := range s.cart {
			ev.Action, ev.ProductID, ev.Quantity = CartCheckout, line.ProductID, line.Quantity
			if _, err := AddCartEvent(ctx, tx, g.cfg.Schema, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	g.state.sessions[i] = g.state.newSession(g.rng, g.v)
	return nil
}

func (g *Generator) pageView(ctx context.Context) error {
	i := g.rng.IntN(len(g.state.sessions))
	s := g.state.sessions[i]
	v := PageView{SessionID: s.id, CustomerID: s.customer, UserAgent: s.agent,
		URL: pageURL(g.rng, g.v, int(g.state.products.hi)), ClientTime: time.Now().UTC().Add(s.offset)}
	if chance(g.rng, 0.2) {
		v.Referrer = pick(g.rng, g.v.referrers)
	}
	_, err := AddPageView(ctx, g.db, g.cfg.Schema, v)
	if isForeignKeyViolation(err) {
		g.state.sessions[i] = g.state.newSession(g.rng, g.v) // its customer is missing
		return errSkip
	}
	return err
}
