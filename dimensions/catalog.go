package dimensions

import (
	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
)

// Customer is dim_customer: SCD2 on location, segment and tier; SCD1 on contact.
var Customer = Spec{
	Name: "dim_customer", Source: "customers", Key: "customer_key",
	NaturalKey: []Col{{"customer_id", sinks.Int64}},
	Type2: []Col{{"city", sinks.String}, {"state", sinks.String}, {"country", sinks.String},
		{"segment", sinks.String}, {"loyalty_tier", sinks.String}},
	Type1:    []Col{{"email", sinks.String}, {"full_name", sinks.String}, {"phone", sinks.String}, {"created_at", sinks.Timestamp}},
	Upstream: []string{"dim_date"},
	Rules: []quality.Rule{
		quality.NotNull("customers", "email", quality.Error),
		quality.NotNull("customers", "country", quality.Error),
		quality.AcceptedValues("customers", "loyalty_tier", quality.Error, "bronze", "silver", "gold", "platinum"),
		quality.AcceptedValues("customers", "segment", quality.Warn, "consumer", "corporate", "home_office"),
	},
	Description: "Customers, one row per version of their address, segment and loyalty tier.",
}

// Product is dim_product: SCD2 on price, cost, category and brand; SCD1 on the rest.
var Product = Spec{
	Name: "dim_product", Source: "products", Key: "product_key",
	NaturalKey: []Col{{"product_id", sinks.Int64}},
	Type2: []Col{{"list_price", sinks.Numeric}, {"unit_cost", sinks.Numeric}, {"category", sinks.String},
		{"subcategory", sinks.String}, {"brand", sinks.String}},
	Type1:    []Col{{"sku", sinks.String}, {"name", sinks.String}, {"seller_id", sinks.Int64}, {"is_active", sinks.Bool}},
	Upstream: []string{"dim_date"},
	Rules: []quality.Rule{
		quality.Range("products", "list_price", quality.Error, 0, 1_000_000),
		quality.Range("products", "unit_cost", quality.Error, 0, 1_000_000),
		quality.NotNull("products", "category", quality.Warn),
	},
	Description: "Products, one row per version of their price, cost, category and brand.",
}

// Seller is dim_seller: SCD2 on location and status; SCD1 on name and rating.
var Seller = Spec{
	Name: "dim_seller", Source: "sellers", Key: "seller_key",
	NaturalKey: []Col{{"seller_id", sinks.Int64}},
	Type2:      []Col{{"city", sinks.String}, {"state", sinks.String}, {"country", sinks.String}, {"status", sinks.String}},
	Type1:      []Col{{"name", sinks.String}, {"rating", sinks.Numeric}},
	Upstream:   []string{"dim_date"},
	Rules: []quality.Rule{
		quality.AcceptedValues("sellers", "status", quality.Error, "active", "suspended", "closed"),
		quality.Range("sellers", "rating", quality.Warn, 0, 5),
	},
	Description: "Sellers, one row per version of their location and status.",
}

// Campaign is dim_campaign: SCD1 throughout, with the key of the product it
// targets (the product version valid when the campaign last changed).
var Campaign = Spec{
	Name: "dim_campaign", Source: "campaigns", Key: "campaign_key",
	NaturalKey: []Col{{"campaign_id", sinks.Int64}},
	Type1: []Col{{"name", sinks.String}, {"channel", sinks.String}, {"start_date", sinks.Date}, {"end_date", sinks.Date},
		{"budget", sinks.Numeric}, {"status", sinks.String}, {"target_product_id", sinks.Int64}, {"target_product_key", sinks.Int64}},
	Upstream: []string{"dim_date", "dim_product"},
	Refs:     []Ref{{Dimension: Product, Column: "target_product_key", From: "target_product_id"}},
	Rules: []quality.Rule{
		quality.AcceptedValues("campaigns", "channel", quality.Error, "email", "search", "social", "display", "affiliate"),
		quality.AcceptedValues("campaigns", "status", quality.Warn, "draft", "active", "paused", "ended"),
		quality.Range("campaigns", "budget", quality.Error, 0, 100_000_000),
	},
	Description: "Marketing campaigns (SCD1), with the product they target.",
}

// All lists the dimensions fed from the source, in dependency order.
func All() []Spec { return []Spec{Customer, Product, Seller, Campaign} }
