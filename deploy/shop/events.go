package shop

import (
	"context"
	"fmt"
	"time"
)

// CartAction is a value of the cart_action enum.
type CartAction string

// The cart actions. A checkout is recorded once per product left in the cart.
const (
	CartAdd      CartAction = "add"
	CartRemove   CartAction = "remove"
	CartCheckout CartAction = "checkout"
)

// CampaignEventType is a value of the campaign_event_type enum.
type CampaignEventType string

// The campaign event types.
const (
	CampaignImpression CampaignEventType = "impression"
	CampaignClick      CampaignEventType = "click"
	CampaignSpend      CampaignEventType = "spend"
)

// CartEvent is a shopping-cart action of a session. CustomerID 0 means an
// anonymous visitor.
type CartEvent struct {
	SessionID  [16]byte
	CustomerID int64
	ProductID  int64
	Action     CartAction
	Quantity   int
}

// CampaignEvent is an impression, click or spend of a campaign. CustomerID 0
// means unknown; Cost is a decimal string ("" for zero).
type CampaignEvent struct {
	CampaignID int64
	CustomerID int64
	Type       CampaignEventType
	Cost       string
}

// PageView is a page seen in a session. CustomerID 0 means anonymous; an
// empty Referrer and a zero ClientTime (the visitor's wall clock, whose zone
// is dropped) are stored as NULL.
type PageView struct {
	SessionID  [16]byte
	CustomerID int64
	URL        string
	Referrer   string
	UserAgent  string
	ClientTime time.Time
}

// AddCartEvent records a cart event at the current time and returns its id.
func AddCartEvent(ctx context.Context, db DB, schema string, e CartEvent) (int64, error) {
	var id int64
	err := db.QueryRow(ctx, qualify(schema, `
		INSERT INTO {s}.cart_events (session_id, customer_id, product_id, action, quantity)
		VALUES ($1, $2, $3, $4::text::{s}.cart_action, $5) RETURNING cart_event_id`),
		e.SessionID, nullID(e.CustomerID), e.ProductID, string(e.Action), e.Quantity).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("add cart event: %w", err)
	}
	return id, nil
}

// AddCampaignEvent records a campaign event at the current time and returns
// its id.
func AddCampaignEvent(ctx context.Context, db DB, schema string, e CampaignEvent) (int64, error) {
	var id int64
	err := db.QueryRow(ctx, qualify(schema, `
		INSERT INTO {s}.campaign_events (campaign_id, customer_id, event_type, cost)
		VALUES ($1, $2, $3::text::{s}.campaign_event_type, COALESCE(NULLIF($4, '')::numeric, 0))
		RETURNING campaign_event_id`),
		e.CampaignID, nullID(e.CustomerID), string(e.Type), e.Cost).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("add campaign event: %w", err)
	}
	return id, nil
}

// AddPageView records a page view at the current time and returns its id.
func AddPageView(ctx context.Context, db DB, schema string, v PageView) (int64, error) {
	var client *time.Time
	if !v.ClientTime.IsZero() {
		client = &v.ClientTime
	}
	var id int64
	err := db.QueryRow(ctx, qualify(schema, `
		INSERT INTO {s}.page_views (session_id, customer_id, url, referrer, user_agent, client_time)
		VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), $6) RETURNING page_view_id`),
		v.SessionID, nullID(v.CustomerID), v.URL, v.Referrer, v.UserAgent, client).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("add page view: %w", err)
	}
	return id, nil
}
