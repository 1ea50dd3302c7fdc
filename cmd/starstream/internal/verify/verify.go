// Package verify reconciles the source database with the warehouse: every
// source order item exactly once in fact_sales, referencing the dimension
// versions valid at its position, and current dimension members equal to the
// source rows.
package verify

import (
	"context"
	"fmt"
	"io"
	"math/big"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/sinks"
)

// Source is the source database.
type Source interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Warehouse answers SQL queries (the DuckDB sink does).
type Warehouse interface {
	Query(ctx context.Context, sql string, args ...any) ([]string, [][]any, error)
}

// Check is the outcome of one reconciliation.
type Check struct {
	Name       string
	Rows       int      // rows compared
	Missing    int      // in the source, not in the warehouse
	Extra      int      // in the warehouse, not in the source
	Mismatched int      // present on both sides with different values
	Duplicated int      // more than once where once is required
	First      []string // the first differing keys, with what differs
}

// Differences counts every difference of the check.
func (c Check) Differences() int { return c.Missing + c.Extra + c.Mismatched + c.Duplicated }

func (c *Check) note(format string, args ...any) {
	if len(c.First) < 10 {
		c.First = append(c.First, fmt.Sprintf(format, args...))
	}
}

// Report is the outcome of a verification.
type Report struct{ Checks []Check }

// Differences counts every difference.
func (r Report) Differences() int {
	n := 0
	for _, c := range r.Checks {
		n += c.Differences()
	}
	return n
}

// Print writes a summary, one line per check and its first differing keys.
func (r Report) Print(w io.Writer) {
	for _, c := range r.Checks {
		status := "ok"
		if c.Differences() > 0 {
			status = "DIFFERENT"
		}
		fmt.Fprintf(w, "%-40s %-9s rows=%d missing=%d extra=%d mismatched=%d duplicated=%d\n",
			c.Name, status, c.Rows, c.Missing, c.Extra, c.Mismatched, c.Duplicated)
		for _, k := range c.First {
			fmt.Fprintf(w, "    %s\n", k)
		}
	}
	fmt.Fprintf(w, "%d differences\n", r.Differences())
}

// Run reconciles schema (the captured source schema) with the warehouse.
func Run(ctx context.Context, src Source, schema string, wh Warehouse, dims []dimensions.Spec) (Report, error) {
	var r Report
	c, err := sales(ctx, src, schema, wh)
	if err != nil {
		return r, err
	}
	r.Checks = append(r.Checks, c)
	for _, ref := range []struct{ dim, key, natural string }{
		{"dim_customer", "customer_key", "customer_id"},
		{"dim_product", "product_key", "product_id"},
		{"dim_campaign", "campaign_key", "campaign_id"},
	} {
		c, err := pointInTime(ctx, wh, ref.dim, ref.key, ref.natural)
		if err != nil {
			return r, err
		}
		r.Checks = append(r.Checks, c)
	}
	for _, d := range dims {
		c, err := current(ctx, src, schema, wh, d)
		if err != nil {
			return r, err
		}
		r.Checks = append(r.Checks, c)
	}
	return r, nil
}

// sales: every source order item once in fact_sales, with its order's status
// and customer, and its own quantity and price.
func sales(ctx context.Context, src Source, schema string, wh Warehouse) (Check, error) {
	c := Check{Name: "fact_sales ⇔ source order_items"}
	s := pgx.Identifier{schema}.Sanitize()
	want, err := sourceRows(ctx, src, `SELECT i.order_item_id::text, o.status::text, o.customer_id::text, i.product_id::text,
		i.quantity::text, i.unit_price::text, i.discount::text
		FROM `+s+`.order_items i JOIN `+s+`.orders o USING (order_id)`)
	if err != nil {
		return c, err
	}
	_, rows, err := wh.Query(ctx, `SELECT CAST(order_item_id AS VARCHAR), order_status, CAST(customer_id AS VARCHAR),
		CAST(product_id AS VARCHAR), CAST(quantity AS VARCHAR), CAST(unit_price AS VARCHAR), CAST(discount AS VARCHAR)
		FROM fact_sales`)
	if err != nil {
		return c, fmt.Errorf("read fact_sales: %w", err)
	}
	compareKeyed(&c, want, rows, []string{"order_status", "customer_id", "product_id", "quantity", "unit_price", "discount"})
	return c, nil
}

// pointInTime: each fact row's dimension version belongs to the fact's natural
// key and is the one valid at the fact's position: opened at or before it, and
// no later version of the member opened at or before it.
func pointInTime(ctx context.Context, wh Warehouse, dim, key, natural string) (Check, error) {
	c := Check{Name: "fact_sales → " + dim + " valid at position"}
	before := func(a, b string) string { // position a <= position b
		return fmt.Sprintf("(%[1]s.source_lsn < %[2]s.source_lsn OR (%[1]s.source_lsn = %[2]s.source_lsn AND %[1]s.source_seq <= %[2]s.source_seq))", a, b)
	}
	_, n, err := wh.Query(ctx, `SELECT count(*) FROM fact_sales WHERE `+key+` <> -1`)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	c.Rows = int(n[0][0].(int64))
	q := fmt.Sprintf(`SELECT f.order_item_id, f.%[3]s, d.%[3]s, f.%[2]s FROM fact_sales f JOIN %[1]s d ON d.%[2]s = f.%[2]s
		WHERE f.%[2]s <> -1 AND (d.%[3]s IS DISTINCT FROM f.%[3]s OR NOT %[4]s OR EXISTS (
			SELECT 1 FROM %[1]s n WHERE n.%[3]s = d.%[3]s AND n.%[2]s <> d.%[2]s AND %[5]s AND NOT %[6]s AND %[7]s))`,
		dim, key, natural, before("d", "f"), before("d", "n"), before("n", "d"), before("n", "f"))
	_, rows, err := wh.Query(ctx, q)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	for _, r := range rows {
		c.Mismatched++
		c.note("order_item_id=%v: %s %v version %v is not the one valid at its position (fact natural key %v)", r[0], dim, r[2], r[3], r[1])
	}
	_, orphans, err := wh.Query(ctx, fmt.Sprintf(`SELECT f.order_item_id FROM fact_sales f LEFT JOIN %[1]s d ON d.%[2]s = f.%[2]s
		WHERE f.%[2]s IS NOT NULL AND d.%[2]s IS NULL`, dim, key))
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	for _, r := range orphans {
		c.Missing++
		c.note("order_item_id=%v: %s key not in %s", r[0], key, dim)
	}
	return c, nil
}

// current: every source row is one current member of its dimension with the
// same attributes, and no member has two current versions.
func current(ctx context.Context, src Source, schema string, wh Warehouse, d dimensions.Spec) (Check, error) {
	c := Check{Name: d.Name + " current ⇔ source " + d.Source}
	var cols []string
	for _, col := range append(append([]dimensions.Col{}, d.Type2...), d.Type1...) {
		switch col.Type {
		case sinks.String, sinks.Int64, sinks.Numeric, sinks.Bool, sinks.Date:
			if strings.HasSuffix(col.Name, "_key") {
				continue // derived from another dimension
			}
			cols = append(cols, col.Name)
		}
	}
	nk := d.NaturalKey[0].Name
	srcCols := make([]string, len(cols))
	whCols := make([]string, len(cols))
	for i, col := range cols {
		srcCols[i] = col + "::text"
		whCols[i] = "CAST(" + col + " AS VARCHAR)"
	}
	want, err := sourceRows(ctx, src, "SELECT "+nk+"::text, "+strings.Join(srcCols, ", ")+" FROM "+pgx.Identifier{schema, d.Source}.Sanitize())
	if err != nil {
		return c, err
	}
	_, rows, err := wh.Query(ctx, "SELECT CAST("+nk+" AS VARCHAR), "+strings.Join(whCols, ", ")+" FROM "+d.Name+" WHERE is_current AND "+d.Key+" <> -1")
	if err != nil {
		return c, fmt.Errorf("read %s: %w", d.Name, err)
	}
	compareKeyed(&c, want, rows, cols)
	return c, nil
}

func sourceRows(ctx context.Context, src Source, sql string) (map[string][]any, error) {
	rows, err := src.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("read source: %w", err)
	}
	defer rows.Close()
	out := map[string][]any{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		out[fmt.Sprint(vals[0])] = vals[1:]
	}
	return out, rows.Err()
}

// compareKeyed compares warehouse rows (key first) with the source rows by key.
func compareKeyed(c *Check, want map[string][]any, rows [][]any, cols []string) {
	seen := map[string]bool{}
	for _, r := range rows {
		k := fmt.Sprint(r[0])
		if seen[k] {
			c.Duplicated++
			c.note("key %s: more than once", k)
			continue
		}
		seen[k] = true
		w, ok := want[k]
		if !ok {
			c.Extra++
			c.note("key %s: in the warehouse, not in the source", k)
			continue
		}
		for i, col := range cols {
			if !sameValue(w[i], r[i+1]) {
				c.Mismatched++
				c.note("key %s: %s is %v in the warehouse, %v in the source", k, col, r[i+1], w[i])
				break
			}
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.Missing++
		c.note("key %s: in the source, not in the warehouse", k)
	}
	c.Rows = len(want)
}

// sameValue compares text renderings, numerically when both are numbers.
func sameValue(a, b any) bool {
	as, bs := text(a), text(b)
	if as == bs {
		return true
	}
	x, ok1 := new(big.Rat).SetString(as)
	y, ok2 := new(big.Rat).SetString(bs)
	return ok1 && ok2 && x.Cmp(y) == 0
}

func text(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case bool:
		if x {
			return "true"
		}
		return "false"
	case string:
		switch x {
		case "t":
			return "true"
		case "f":
			return "false"
		}
		return x
	}
	return fmt.Sprint(v)
}
