package shop

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// SeedConfig says what Seed writes.
type SeedConfig struct {
	// Schema to seed; DefaultSchema when empty. It must exist (see Create).
	Schema string
	// Scale multiplies every row count; 0 means 1. At scale 1 there are 200
	// customers, 30 sellers, 300 products, 10 campaigns and 500 orders.
	Scale int
	// Seed drives every random choice: the same Seed and Scale give
	// identical rows, timestamps included.
	Seed int64
}

// SeedStats reports what Seed wrote.
type SeedStats struct {
	// Rows is the number of rows copied per table.
	Rows map[string]int64
	// Total is the sum of Rows.
	Total int64
	// Elapsed is the wall time of the whole seed transaction.
	Elapsed time.Duration
}

// Validate reports whether the config can be used.
func (c SeedConfig) Validate() error {
	if c.Scale < 0 {
		return fmt.Errorf("%w: seed scale %d is negative", ErrInvalidConfig, c.Scale)
	}
	return nil
}

func (c SeedConfig) withDefaults() SeedConfig {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.Scale == 0 {
		c.Scale = 1
	}
	return c
}

// seedBase is the instant all seeded timestamps derive from, so seeding never
// depends on the clock. Seeded history covers seedDays from there.
func seedBase() time.Time { return time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC) }

const seedDays = 365

// Per-scale row counts. Child tables (items, inventory, events) vary around
// their targets with the random draws.
const (
	sellersPerScale        = 30
	customersPerScale      = 200
	productsPerScale       = 300
	campaignsPerScale      = 10
	ordersPerScale         = 500
	cartEventsPerScale     = 400
	campaignEventsPerScale = 400
	pageViewsPerScale      = 600
)

// Seed fills an empty shop schema with deterministic sample data in one
// transaction, bulk-loaded with COPY. It returns ErrNotEmpty if the schema
// already has rows. Identity sequences are moved past the seeded ids so later
// inserts (the Generator, the helpers) do not collide.
func Seed(ctx context.Context, db DB, cfg SeedConfig) (SeedStats, error) {
	if err := cfg.Validate(); err != nil {
		return SeedStats{}, err
	}
	cfg = cfg.withDefaults()
	start := time.Now()
	stats := SeedStats{Rows: make(map[string]int64)}
	s := newSeeder(cfg)
	err := inTx(ctx, db, func(tx pgx.Tx) error {
		if err := checkEmpty(ctx, tx, cfg.Schema); err != nil {
			return err
		}
		fks, err := dropForeignKeys(ctx, tx, cfg.Schema)
		if err != nil {
			return err
		}
		for _, t := range s.tables() {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{cfg.Schema, t.name}, t.columns, pgx.CopyFromFunc(t.next))
			if err != nil {
				return fmt.Errorf("copy %s: %w", t.name, err)
			}
			stats.Rows[t.name] = n
			stats.Total += n
		}
		if err := restoreForeignKeys(ctx, tx, fks); err != nil {
			return err
		}
		return resetIdentities(ctx, tx, cfg.Schema)
	})
	if err != nil {
		return SeedStats{}, fmt.Errorf("seed %s: %w", cfg.Schema, err)
	}
	stats.Elapsed = time.Since(start)
	return stats, nil
}

// checkEmpty fails with ErrNotEmpty if any shop table has a row.
func checkEmpty(ctx context.Context, db DB, schema string) error {
	for _, t := range Tables() {
		var found bool
		q := qualify(schema, "SELECT EXISTS (SELECT 1 FROM {s}."+t+")")
		if err := db.QueryRow(ctx, q).Scan(&found); err != nil {
			return fmt.Errorf("check %s is empty: %w", t, err)
		}
		if found {
			return fmt.Errorf("%w: %s has rows", ErrNotEmpty, t)
		}
	}
	return nil
}

// foreignKey is a dropped constraint and the statement that restores it.
type foreignKey struct{ name, restore string }

// dropForeignKeys drops the foreign keys of the schema's tables. Checking
// them row by row dominates a COPY (three quarters of the time at scale 50);
// adding them back afterwards validates every row in one set-based pass. The
// caller's transaction makes this invisible to anyone else.
func dropForeignKeys(ctx context.Context, tx pgx.Tx, schema string) ([]foreignKey, error) {
	rows, err := tx.Query(ctx, `
		SELECT format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, t.relname, c.conname),
		       format('ALTER TABLE %I.%I ADD CONSTRAINT %I ', n.nspname, t.relname, c.conname)
		         || pg_get_constraintdef(c.oid), c.conname
		FROM pg_constraint c
		JOIN pg_class t ON t.oid = c.conrelid
		JOIN pg_namespace n ON n.oid = t.relnamespace
		WHERE c.contype = 'f' AND n.nspname = $1
		ORDER BY t.relname, c.conname`, schema)
	if err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	var drops []string
	var fks []foreignKey
	for rows.Next() {
		var drop string
		var fk foreignKey
		if err := rows.Scan(&drop, &fk.restore, &fk.name); err != nil {
			return nil, fmt.Errorf("list foreign keys: %w", err)
		}
		drops = append(drops, drop)
		fks = append(fks, fk)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	for i, d := range drops {
		if _, err := tx.Exec(ctx, d); err != nil {
			return nil, fmt.Errorf("drop foreign key %s: %w", fks[i].name, err)
		}
	}
	return fks, nil
}

// restoreForeignKeys adds back what dropForeignKeys dropped, which validates
// the seeded rows against them.
func restoreForeignKeys(ctx context.Context, tx pgx.Tx, fks []foreignKey) error {
	for _, fk := range fks {
		if _, err := tx.Exec(ctx, fk.restore); err != nil {
			return fmt.Errorf("restore foreign key %s: %w", fk.name, err)
		}
	}
	return nil
}

// resetIdentities moves each identity sequence to its table's largest id.
func resetIdentities(ctx context.Context, db DB, schema string) error {
	for _, t := range Tables() {
		if t == "inventory" {
			continue // natural key, no identity
		}
		col := identityColumn(t)
		q := qualify(schema, fmt.Sprintf(
			"SELECT setval(pg_get_serial_sequence($1, '%s'), max(%s)) FROM {s}.%s", col, col, t))
		if _, err := db.Exec(ctx, q, pgx.Identifier{schema, t}.Sanitize()); err != nil {
			return fmt.Errorf("reset identity of %s: %w", t, err)
		}
	}
	return nil
}

// identityColumn names the bigint identity primary key of table.
func identityColumn(table string) string {
	switch table {
	case "customers":
		return "customer_id"
	case "sellers":
		return "seller_id"
	case "products":
		return "product_id"
	case "campaigns":
		return "campaign_id"
	case "orders":
		return "order_id"
	case "order_items":
		return "order_item_id"
	case "cart_events":
		return "cart_event_id"
	case "campaign_events":
		return "campaign_event_id"
	case "page_views":
		return "page_view_id"
	}
	return ""
}

// decimal is v×10^exp as a numeric. COPY encodes it directly, where a decimal
// string would first fail binary encoding and be parsed.
func decimal(v int64, exp int32) pgtype.Numeric {
	return pgtype.Numeric{Int: big.NewInt(v), Exp: exp, Valid: true}
}

// copyTable is one table's COPY: its columns and a row source that returns
// nil, nil when done.
type copyTable struct {
	name    string
	columns []string
	next    func() ([]any, error)
}

// seeder draws the sample rows. Each table has its own random stream (seeded
// from Seed and the table), so changing how one table is drawn does not
// reshuffle the others. Rows of later tables refer to what earlier tables
// drew, kept in the slices below; COPY runs the tables in order.
type seeder struct {
	cfg      SeedConfig
	v        *vocab
	base     time.Time
	end      time.Time
	customer []seedCustomer
	product  []seedProduct
	campaign []seedCampaign
	items    [][]any
}

type seedCustomer struct {
	created time.Time
	place   place
}

type seedProduct struct {
	seller int64
	price  int64 // cents
}

type seedCampaign struct{ start, end time.Time }

func newSeeder(cfg SeedConfig) *seeder {
	base := seedBase()
	return &seeder{cfg: cfg, v: newVocab(), base: base, end: base.AddDate(0, 0, seedDays)}
}

// rng returns the random stream of the table numbered salt.
func (s *seeder) rng(salt uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(s.cfg.Seed), salt*0x9e3779b97f4a7c15))
}

// counted adapts a row function over 1..n to a COPY row source.
func counted(n int, row func(i int) []any) func() ([]any, error) {
	i := 0
	return func() ([]any, error) {
		if i >= n {
			return nil, nil
		}
		i++
		return row(i), nil
	}
}

// listed adapts a slice function, called once on first use, to a row source.
func listed(build func() [][]any) func() ([]any, error) {
	var rows [][]any
	built, i := false, 0
	return func() ([]any, error) {
		if !built {
			rows, built = build(), true
		}
		if i >= len(rows) {
			return nil, nil
		}
		i++
		return rows[i-1], nil
	}
}
