package sinkstest

import (
	"math/big"
	"strings"
	"time"

	"github.com/starstream/starstream/sinks"
)

// ordersTable has a NOT NULL attribute (status) next to nullable ones.
func ordersTable(name string) sinks.Table {
	return sinks.Table{
		Name:        name,
		Description: "orders written by the sink acceptance suite",
		Columns: []sinks.Column{
			{Name: "order_id", Type: sinks.Int64, Description: "source order id"},
			{Name: "status", Type: sinks.String, Description: "placed, paid, shipped, …"},
			{Name: "amount", Type: sinks.Numeric, Nullable: true},
			{Name: "updated_at", Type: sinks.Timestamp, Nullable: true},
		},
		PrimaryKey: []string{"order_id"},
	}
}

// order returns the values of an order row; amount "" is NULL.
func order(id int64, status, amount string, lsn uint64) map[string]any {
	v := map[string]any{
		"order_id":   id,
		"status":     status,
		"amount":     nil,
		"updated_at": at(lsn),
	}
	if amount != "" {
		v["amount"] = rat(amount)
	}
	return v
}

func orderKey(id int64) map[string]any { return map[string]any{"order_id": id} }

// inventoryTable has a composite key.
func inventoryTable(name string) sinks.Table {
	return sinks.Table{
		Name: name,
		Columns: []sinks.Column{
			{Name: "product_id", Type: sinks.Int64},
			{Name: "warehouse", Type: sinks.String},
			{Name: "on_hand", Type: sinks.Int64},
			{Name: "reserved", Type: sinks.Int64, Nullable: true},
		},
		PrimaryKey: []string{"product_id", "warehouse"},
		ClusterBy:  []string{"warehouse"},
	}
}

func stock(product int64, warehouse string, onHand int64) map[string]any {
	return map[string]any{"product_id": product, "warehouse": warehouse, "on_hand": onHand, "reserved": nil}
}

// bulkTable carries about 300 bytes a row, so MaxBatchRows rows make a large request.
func bulkTable(name string) sinks.Table {
	return sinks.Table{
		Name: name,
		Columns: []sinks.Column{
			{Name: "id", Type: sinks.Int64},
			{Name: "payload", Type: sinks.String},
			{Name: "amount", Type: sinks.Numeric, Nullable: true},
			{Name: "created_at", Type: sinks.Timestamp, Nullable: true},
		},
		PrimaryKey:  []string{"id"},
		PartitionBy: "created_at",
	}
}

func bulkRow(id int64, lsn uint64) map[string]any {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b strings.Builder
	for i := range 256 {
		b.WriteByte(alphabet[(int(id)+i*7)%len(alphabet)])
	}
	return map[string]any{
		"id":         id,
		"payload":    b.String(),
		"amount":     new(big.Rat).SetFrac64(id*100+37, 100),
		"created_at": at(lsn).Add(time.Duration(id) * time.Microsecond),
	}
}

// allTypesTable has one column of every type, all nullable but the key.
func allTypesTable(name string) sinks.Table {
	return sinks.Table{
		Name:        name,
		Description: "every column type",
		Columns: []sinks.Column{
			{Name: "k", Type: sinks.Int64},
			{Name: "s", Type: sinks.String, Nullable: true, Description: "a string"},
			{Name: "i", Type: sinks.Int64, Nullable: true},
			{Name: "f", Type: sinks.Float64, Nullable: true},
			{Name: "n", Type: sinks.Numeric, Nullable: true},
			{Name: "b", Type: sinks.Bool, Nullable: true},
			{Name: "ts", Type: sinks.Timestamp, Nullable: true},
			{Name: "d", Type: sinks.Date, Nullable: true},
			{Name: "j", Type: sinks.JSON, Nullable: true},
			{Name: "by", Type: sinks.Bytes, Nullable: true, Description: "a reserved word: sinks must quote names"},
		},
		PrimaryKey:  []string{"k"},
		PartitionBy: "d",
		ClusterBy:   []string{"s"},
	}
}

// at is a timestamp with microseconds derived from a position.
func at(lsn uint64) time.Time {
	return time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC).Add(time.Duration(lsn) * time.Second)
}

func rat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic("sinkstest: bad rational " + s)
	}
	return r
}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
