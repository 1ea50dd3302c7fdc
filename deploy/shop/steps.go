package shop

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// genState is what a Generator knows of the data: the id ranges it draws
// from, read at start and widened by its own inserts, and the browsing
// sessions in progress.
type genState struct {
	customers, products, campaigns, sellers, orders idRange
	sessions                                        []session
}

// idRange is an inclusive range of ids; ids inside may be missing (rolled
// back inserts leave gaps), which steps handle by drawing again.
type idRange struct{ lo, hi int64 }

func (r idRange) draw(rng *rand.Rand) int64 { return r.lo + rng.Int64N(r.hi-r.lo+1) }

// session is a visitor browsing and filling a cart.
type session struct {
	id       [16]byte
	customer int64 // 0: anonymous
	agent    string
	offset   time.Duration // visitor's UTC offset, for page_views.client_time
	cart     []OrderItem   // products in the cart, in the order added
}

const sessionsInFlight = 16

// loadState reads the id ranges of schema and opens the first sessions.
func loadState(ctx context.Context, db DB, schema string, rng *rand.Rand) (*genState, error) {
	st := &genState{}
	for _, t := range []struct {
		table string
		r     *idRange
	}{{"customers", &st.customers}, {"products", &st.products}, {"campaigns", &st.campaigns},
		{"sellers", &st.sellers}, {"orders", &st.orders}} {
		col := identityColumn(t.table)
		q := qualify(schema, fmt.Sprintf("SELECT coalesce(min(%s), 0), coalesce(max(%s), 0) FROM {s}.%s", col, col, t.table))
		if err := db.QueryRow(ctx, q).Scan(&t.r.lo, &t.r.hi); err != nil {
			return nil, fmt.Errorf("read id range of %s: %w", t.table, err)
		}
		if t.r.hi == 0 && t.table != "orders" {
			return nil, fmt.Errorf("%w: %s is empty", ErrNotSeeded, t.table)
		}
	}
	v := newVocab()
	for range sessionsInFlight {
		st.sessions = append(st.sessions, st.newSession(rng, v))
	}
	return st, nil
}

func (st *genState) newSession(rng *rand.Rand, v *vocab) session {
	s := session{id: newUUID(rng), agent: pick(rng, v.userAgents),
		offset: time.Duration(pick(rng, v.places).utcOffsetHours) * time.Hour}
	if chance(rng, 0.6) {
		s.customer = st.customers.draw(rng)
	}
	return s
}

// perform runs one step of kind, falling back to a new order when the kind
// finds nothing to change.
func (g *Generator) perform(ctx context.Context, kind Kind) (Kind, error) {
	err := g.stepOf(kind)(ctx)
	for range 10 {
		if !errors.Is(err, errSkip) {
			return kind, err
		}
		kind = KindNewOrder
		err = g.newOrder(ctx)
	}
	return kind, fmt.Errorf("no change possible: ids keep missing")
}

func (g *Generator) stepOf(kind Kind) func(context.Context) error {
	switch kind {
	case KindNewCustomer:
		return g.newCustomer
	case KindCustomerMove:
		return g.customerMove
	case KindCustomerTier:
		return g.customerTier
	case KindCustomerContact:
		return g.customerContact
	case KindProductPrice:
		return g.productPrice
	case KindProductCategory:
		return g.productCategory
	case KindProductDescription:
		return g.productDescription
	case KindSellerChange:
		return g.sellerChange
	case KindCampaignChange:
		return g.campaignChange
	case KindOrderProgress:
		return g.orderProgress
	case KindCartEvent:
		return g.cartEvent
	case KindCampaignEvent:
		return g.campaignEvent
	case KindInventoryReceipt:
		return g.inventoryReceipt
	case KindPageView:
		return g.pageView
	}
	return g.newOrder
}

// onExisting calls change with ids drawn from r until one exists, giving up
// (errSkip) after a few misses.
func (g *Generator) onExisting(r idRange, change func(id int64) error) error {
	for range 5 {
		err := change(r.draw(g.rng))
		if !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return errSkip
}

func (g *Generator) newCustomer(ctx context.Context) error {
	p := pick(g.rng, g.v.places)
	name := g.v.fullName(g.rng)
	c := Customer{Email: email(name, g.rng.Uint64N(1_000_000_000)), FullName: name, City: p.city,
		State: p.state, Country: p.country, Segment: weighted(g.rng, g.v.segments, []int{70, 20, 10}),
		MarketingOptIn: chance(g.rng, 0.4)}
	if chance(g.rng, 0.8) {
		c.Phone = phone(g.rng)
	}
	id, err := InsertCustomer(ctx, g.db, g.cfg.Schema, c)
	if err != nil {
		return err
	}
	g.state.customers.hi = max(g.state.customers.hi, id)
	return nil
}

func (g *Generator) customerMove(ctx context.Context) error {
	return g.onExisting(g.state.customers, func(id int64) error {
		p := pick(g.rng, g.v.places)
		return MoveCustomer(ctx, g.db, g.cfg.Schema, id, p.city, p.state, p.country)
	})
}

func (g *Generator) customerTier(ctx context.Context) error {
	return g.onExisting(g.state.customers, func(id int64) error {
		segment := ""
		if chance(g.rng, 0.3) {
			segment = pick(g.rng, g.v.segments)
		}
		return SetCustomerTier(ctx, g.db, g.cfg.Schema, id, segment, pick(g.rng, g.v.tiers))
	})
}

func (g *Generator) customerContact(ctx context.Context) error {
	return g.onExisting(g.state.customers, func(id int64) error {
		var c Contact
		switch g.rng.IntN(3) {
		case 0:
			c.Phone = phone(g.rng)
		case 1:
			c.FullName = g.v.fullName(g.rng)
			c.Email = email(c.FullName, g.rng.Uint64N(1_000_000_000))
		default:
			c.Email = email(g.v.fullName(g.rng), g.rng.Uint64N(1_000_000_000))
		}
		return UpdateCustomerContact(ctx, g.db, g.cfg.Schema, id, c)
	})
}
