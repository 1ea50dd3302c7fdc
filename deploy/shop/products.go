package shop

import (
	"context"
	"fmt"
)

// SetProductPrice changes a product's list price and unit cost, given as
// decimal strings ("19.99"); an empty value is left as it is. Both are
// type-2 attributes of dim_product.
func SetProductPrice(ctx context.Context, db DB, schema string, id int64, listPrice, unitCost string) error {
	err := execOne(ctx, db, qualify(schema, `
		UPDATE {s}.products
		SET list_price = COALESCE(NULLIF($2, '')::numeric, list_price),
		    unit_cost = COALESCE(NULLIF($3, '')::numeric, unit_cost), updated_at = now()
		WHERE product_id = $1`), id, listPrice, unitCost)
	if err != nil {
		return fmt.Errorf("set price of product %d: %w", id, err)
	}
	return nil
}

// SetProductCategory moves a product to another category and subcategory, a
// type-2 change for dim_product.
func SetProductCategory(ctx context.Context, db DB, schema string, id int64, category, subcategory string) error {
	err := execOne(ctx, db, qualify(schema, `
		UPDATE {s}.products SET category = $2, subcategory = $3, updated_at = now()
		WHERE product_id = $1`), id, category, subcategory)
	if err != nil {
		return fmt.Errorf("set category of product %d: %w", id, err)
	}
	return nil
}

// SetProductDescription replaces a product's description; a long one (over
// about 2 KB) is stored out of line in TOAST.
func SetProductDescription(ctx context.Context, db DB, schema string, id int64, description string) error {
	err := execOne(ctx, db, qualify(schema, `
		UPDATE {s}.products SET description = $2, updated_at = now() WHERE product_id = $1`),
		id, description)
	if err != nil {
		return fmt.Errorf("set description of product %d: %w", id, err)
	}
	return nil
}

// UpdateCampaign changes a campaign's status (draft, active, paused, ended)
// and budget (a decimal string); an empty value is left as it is.
func UpdateCampaign(ctx context.Context, db DB, schema string, id int64, status, budget string) error {
	err := execOne(ctx, db, qualify(schema, `
		UPDATE {s}.campaigns
		SET status = COALESCE(NULLIF($2, ''), status), budget = COALESCE(NULLIF($3, '')::numeric, budget),
		    updated_at = now()
		WHERE campaign_id = $1`), id, status, budget)
	if err != nil {
		return fmt.Errorf("update campaign %d: %w", id, err)
	}
	return nil
}

// AdjustInventory adds delta (negative to remove) to the stock of a product
// in a warehouse, creating the inventory row if needed. Stock never goes
// below zero: a removal larger than the stock empties it.
func AdjustInventory(ctx context.Context, db DB, schema string, productID int64, warehouse string, delta int) error {
	_, err := db.Exec(ctx, qualify(schema, `
		INSERT INTO {s}.inventory AS i (product_id, warehouse_code, on_hand)
		VALUES ($1, $2, GREATEST($3::integer, 0))
		ON CONFLICT (product_id, warehouse_code)
		DO UPDATE SET on_hand = GREATEST(i.on_hand + $3::integer, 0), updated_at = now()`),
		productID, warehouse, delta)
	if err != nil {
		return fmt.Errorf("adjust inventory of product %d in %s: %w", productID, warehouse, err)
	}
	return nil
}
