package shop

// Kind is a kind of transaction the Generator makes.
type Kind uint8

// The kinds of generated transactions, with their share of the traffic in
// parentheses (per mille).
const (
	KindNewCustomer        Kind = iota // a customer signs up (40)
	KindCustomerMove                   // a customer's address changes: SCD2 (25)
	KindCustomerTier                   // segment or loyalty tier changes: SCD2 (20)
	KindCustomerContact                // name, email or phone changes: SCD1 (30)
	KindProductPrice                   // list price and maybe unit cost change (20)
	KindProductCategory                // category and subcategory change (8)
	KindProductDescription             // description rewritten, sometimes TOAST-sized (7)
	KindSellerChange                   // a seller moves or changes status (5)
	KindCampaignChange                 // a campaign's status or budget changes (5)
	KindNewOrder                       // an order with 1–4 items, one transaction (100)
	KindOrderProgress                  // an order moves on: paid, shipped, delivered, cancelled, returned (250)
	KindCartEvent                      // add, remove or checkout in a session's cart (150)
	KindCampaignEvent                  // an impression, click or spend (120)
	KindInventoryReceipt               // stock arrives at a warehouse (50)
	KindPageView                       // a page is viewed in a session (170)
	kindCount
)

// weightTotal is the sum of the kinds' weights.
const weightTotal = 1000

// weight returns the kind's share of the traffic, per mille.
func (k Kind) weight() int {
	switch k {
	case KindNewCustomer:
		return 40
	case KindCustomerMove:
		return 25
	case KindCustomerTier:
		return 20
	case KindCustomerContact:
		return 30
	case KindProductPrice:
		return 20
	case KindProductCategory:
		return 8
	case KindProductDescription:
		return 7
	case KindSellerChange, KindCampaignChange:
		return 5
	case KindNewOrder:
		return 100
	case KindOrderProgress:
		return 250
	case KindCartEvent:
		return 150
	case KindCampaignEvent:
		return 120
	case KindInventoryReceipt:
		return 50
	case KindPageView:
		return 170
	}
	return 0
}

// Kinds lists every kind, in order.
func Kinds() []Kind {
	ks := make([]Kind, kindCount)
	for k := range kindCount {
		ks[k] = k
	}
	return ks
}

// String returns the kind's snake_case name, as used in logs.
func (k Kind) String() string {
	switch k {
	case KindNewCustomer:
		return "new_customer"
	case KindCustomerMove:
		return "customer_move"
	case KindCustomerTier:
		return "customer_tier"
	case KindCustomerContact:
		return "customer_contact"
	case KindProductPrice:
		return "product_price"
	case KindProductCategory:
		return "product_category"
	case KindProductDescription:
		return "product_description"
	case KindSellerChange:
		return "seller_change"
	case KindCampaignChange:
		return "campaign_change"
	case KindNewOrder:
		return "new_order"
	case KindOrderProgress:
		return "order_progress"
	case KindCartEvent:
		return "cart_event"
	case KindCampaignEvent:
		return "campaign_event"
	case KindInventoryReceipt:
		return "inventory_receipt"
	case KindPageView:
		return "page_view"
	}
	return "unknown"
}
