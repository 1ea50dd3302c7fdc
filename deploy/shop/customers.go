package shop

import (
	"context"
	"fmt"
	"time"
)

// Customer is a new customer's row. Empty Segment and LoyaltyTier take the
// table defaults (consumer, bronze); an empty Phone and a zero BirthDate are
// stored as NULL.
type Customer struct {
	Email, FullName, Phone string
	City, State, Country   string
	Segment, LoyaltyTier   string
	BirthDate              time.Time
	MarketingOptIn         bool
}

// Contact holds a customer's type-1 attributes; empty fields are left as
// they are.
type Contact struct {
	FullName, Email, Phone string
}

// InsertCustomer adds a customer and returns its id.
func InsertCustomer(ctx context.Context, db DB, schema string, c Customer) (int64, error) {
	var birth *time.Time
	if !c.BirthDate.IsZero() {
		birth = &c.BirthDate
	}
	var id int64
	err := db.QueryRow(ctx, qualify(schema, `
		INSERT INTO {s}.customers (email, full_name, phone, city, state, country, segment,
		                           loyalty_tier, birth_date, marketing_opt_in)
		VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, COALESCE(NULLIF($7, ''), 'consumer'),
		        COALESCE(NULLIF($8, ''), 'bronze'), $9, $10)
		RETURNING customer_id`),
		c.Email, c.FullName, c.Phone, c.City, c.State, c.Country, c.Segment, c.LoyaltyTier,
		birth, c.MarketingOptIn).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert customer: %w", err)
	}
	return id, nil
}

// MoveCustomer changes a customer's address, a type-2 change for
// dim_customer. It returns ErrNotFound for an unknown id.
func MoveCustomer(ctx context.Context, db DB, schema string, id int64, city, state, country string) error {
	err := execOne(ctx, db, qualify(schema, `
		UPDATE {s}.customers SET city = $2, state = $3, country = $4, updated_at = now()
		WHERE customer_id = $1`), id, city, state, country)
	if err != nil {
		return fmt.Errorf("move customer %d: %w", id, err)
	}
	return nil
}

// SetCustomerTier changes a customer's segment and loyalty tier, type-2
// attributes of dim_customer; an empty value is left as it is.
func SetCustomerTier(ctx context.Context, db DB, schema string, id int64, segment, tier string) error {
	err := execOne(ctx, db, qualify(schema, `
		UPDATE {s}.customers
		SET segment = COALESCE(NULLIF($2, ''), segment), loyalty_tier = COALESCE(NULLIF($3, ''), loyalty_tier),
		    updated_at = now()
		WHERE customer_id = $1`), id, segment, tier)
	if err != nil {
		return fmt.Errorf("set tier of customer %d: %w", id, err)
	}
	return nil
}

// UpdateCustomerContact changes a customer's name, email or phone, type-1
// attributes of dim_customer.
func UpdateCustomerContact(ctx context.Context, db DB, schema string, id int64, c Contact) error {
	err := execOne(ctx, db, qualify(schema, `
		UPDATE {s}.customers
		SET full_name = COALESCE(NULLIF($2, ''), full_name), email = COALESCE(NULLIF($3, ''), email),
		    phone = COALESCE(NULLIF($4, ''), phone), updated_at = now()
		WHERE customer_id = $1`), id, c.FullName, c.Email, c.Phone)
	if err != nil {
		return fmt.Errorf("update contact of customer %d: %w", id, err)
	}
	return nil
}

// MoveSeller changes a seller's location, a type-2 change for dim_seller.
func MoveSeller(ctx context.Context, db DB, schema string, id int64, city, state, country string) error {
	err := execOne(ctx, db, qualify(schema, `
		UPDATE {s}.sellers SET city = $2, state = $3, country = $4, updated_at = now()
		WHERE seller_id = $1`), id, city, state, country)
	if err != nil {
		return fmt.Errorf("move seller %d: %w", id, err)
	}
	return nil
}

// SetSellerStatus changes a seller's status (active, suspended, closed), a
// type-2 change for dim_seller.
func SetSellerStatus(ctx context.Context, db DB, schema string, id int64, status string) error {
	err := execOne(ctx, db, qualify(schema, `
		UPDATE {s}.sellers SET status = $2, updated_at = now() WHERE seller_id = $1`), id, status)
	if err != nil {
		return fmt.Errorf("set status of seller %d: %w", id, err)
	}
	return nil
}
