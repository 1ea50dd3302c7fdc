package bigquery_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/sinks/bigquery"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestDDL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		table sinks.Table
		opts  []bigquery.DDLOption
	}{
		{
			name: "fact_sales",
			table: sinks.Table{
				Name:        "fact_sales",
				Description: "Sales at order-item grain; \"net\" after discount.",
				Columns: []sinks.Column{
					{Name: "order_item_id", Type: sinks.Int64, Description: "source order_items.order_item_id"},
					{Name: "customer_key", Type: sinks.Int64},
					{Name: "net", Type: sinks.Numeric, Nullable: true, Description: "gross − discount"},
					{Name: "status", Type: sinks.String},
					{Name: "ordered_at", Type: sinks.Timestamp},
					{Name: "attributes", Type: sinks.JSON, Nullable: true},
				},
				PrimaryKey:  []string{"order_item_id"},
				PartitionBy: "ordered_at",
				ClusterBy:   []string{"customer_key", "status"},
			},
			opts: []bigquery.DDLOption{bigquery.WithMaxStaleness(15 * time.Minute)},
		},
		{
			name: "fact_inventory",
			table: sinks.Table{
				Name: "fact_inventory",
				Columns: []sinks.Column{
					{Name: "product_key", Type: sinks.Int64},
					{Name: "warehouse_code", Type: sinks.String},
					{Name: "snapshot_date", Type: sinks.Date},
					{Name: "on_hand", Type: sinks.Int64},
					{Name: "by", Type: sinks.Bytes, Nullable: true, Description: "a reserved word\nwith a newline"},
					{Name: "ok", Type: sinks.Bool, Nullable: true},
					{Name: "ratio", Type: sinks.Float64, Nullable: true},
				},
				PrimaryKey:  []string{"product_key", "warehouse_code", "snapshot_date"},
				PartitionBy: "snapshot_date",
			},
			opts: []bigquery.DDLOption{bigquery.WithMaxStaleness(90 * time.Second)},
		},
		{
			name: "dim_date",
			table: sinks.Table{
				Name:       "dim_date",
				Columns:    []sinks.Column{{Name: "date_key", Type: sinks.Int64}, {Name: "date", Type: sinks.Date}},
				PrimaryKey: []string{"date_key"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.table.Validate(); err != nil {
				t.Fatalf("test table: %v", err)
			}
			got := bigquery.DDL("shop_dw", tc.table, tc.opts...)
			golden := filepath.Join("testdata", "ddl_"+tc.name+".sql")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("DDL differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}
