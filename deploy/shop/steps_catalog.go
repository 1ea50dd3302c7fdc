package shop

import (
	"context"
	"fmt"
)

// percent formats n/100 as a decimal factor, like "1.07".
func percent(n int) string { return fmt.Sprintf("%d.%02d", n/100, n%100) }

// productPrice reprices a product by a drawn factor; half the time the unit
// cost moves too. The factors apply in SQL so no read is needed first.
func (g *Generator) productPrice(ctx context.Context) error {
	return g.onExisting(g.state.products, func(id int64) error {
		price := percent(between(g.rng, 85, 118))
		cost := "1.00"
		if chance(g.rng, 0.5) {
			cost = percent(between(g.rng, 92, 110))
		}
		return execOne(ctx, g.db, qualify(g.cfg.Schema, `
			UPDATE {s}.products
			SET list_price = greatest(round(list_price * $2::numeric, 2), 0.99),
			    unit_cost = round(unit_cost * $3::numeric, 4), updated_at = now()
			WHERE product_id = $1`), id, price, cost)
	})
}

func (g *Generator) productCategory(ctx context.Context) error {
	return g.onExisting(g.state.products, func(id int64) error {
		c := pick(g.rng, g.v.categories)
		return SetProductCategory(ctx, g.db, g.cfg.Schema, id, c.name, pick(g.rng, c.subs))
	})
}

func (g *Generator) productDescription(ctx context.Context) error {
	return g.onExisting(g.state.products, func(id int64) error {
		text := g.v.description(g.rng, "Revised", descriptionSize(g.rng))
		return SetProductDescription(ctx, g.db, g.cfg.Schema, id, text)
	})
}

func (g *Generator) sellerChange(ctx context.Context) error {
	return g.onExisting(g.state.sellers, func(id int64) error {
		if chance(g.rng, 0.5) {
			p := pick(g.rng, g.v.places)
			return MoveSeller(ctx, g.db, g.cfg.Schema, id, p.city, p.state, p.country)
		}
		status := weighted(g.rng, []string{"active", "suspended", "closed"}, []int{80, 15, 5})
		return SetSellerStatus(ctx, g.db, g.cfg.Schema, id, status)
	})
}

func (g *Generator) campaignChange(ctx context.Context) error {
	return g.onExisting(g.state.campaigns, func(id int64) error {
		status := weighted(g.rng, []string{"active", "paused", "ended"}, []int{60, 25, 15})
		budget := ""
		if chance(g.rng, 0.5) {
			budget = cents(int64(between(g.rng, 1000, 80000)) * 100)
		}
		return UpdateCampaign(ctx, g.db, g.cfg.Schema, id, status, budget)
	})
}

func (g *Generator) inventoryReceipt(ctx context.Context) error {
	// The product may have no row in the drawn warehouse yet: the receipt then
	// inserts one, as a new stocking location would.
	id := g.state.products.draw(g.rng)
	err := AdjustInventory(ctx, g.db, g.cfg.Schema, id, pick(g.rng, g.v.warehouses), between(g.rng, 10, 200))
	if isForeignKeyViolation(err) {
		return errSkip // a gap in the product ids
	}
	return err
}

func (g *Generator) campaignEvent(ctx context.Context) error {
	e := CampaignEvent{CampaignID: g.state.campaigns.draw(g.rng)}
	anonymous := 0.6
	switch x := g.rng.IntN(100); {
	case x < 75:
		e.Type, e.Cost = CampaignImpression, tenThousandths(int64(between(g.rng, 0, 100)))
	case x < 95:
		e.Type, e.Cost, anonymous = CampaignClick, tenThousandths(int64(between(g.rng, 1000, 25000))), 0.3
	default:
		e.Type, e.Cost, anonymous = CampaignSpend, cents(int64(between(g.rng, 500, 50000))), 1
	}
	if !chance(g.rng, anonymous) {
		e.CustomerID = g.state.customers.draw(g.rng)
	}
	_, err := AddCampaignEvent(ctx, g.db, g.cfg.Schema, e)
	if isForeignKeyViolation(err) {
		return errSkip
	}
	return err
}
