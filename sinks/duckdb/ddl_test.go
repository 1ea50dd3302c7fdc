package duckdb

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starstream/starstream/sinks"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestDDLGolden pins the generated DDL and merge: create, then grow.
func TestDDLGolden(t *testing.T) {
	t.Parallel()
	v1 := sinks.Table{
		Name:        "fact_sales",
		Description: "one row per order item",
		Columns: []sinks.Column{
			{Name: "order_item_id", Type: sinks.Int64, Description: "grain"},
			{Name: "date_key", Type: sinks.Int64},
			{Name: "net", Type: sinks.Numeric, Nullable: true, Description: "after discount, it's net"},
			{Name: "attributes", Type: sinks.JSON, Nullable: true},
			{Name: "ordered_at", Type: sinks.Timestamp},
		},
		PrimaryKey:  []string{"order_item_id"},
		PartitionBy: "ordered_at",
	}
	create, err := ddl(v1, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var physical []physicalColumn
	for _, c := range v1.Columns {
		physical = append(physical, physicalColumn{c.Name, sqlTypes[c.Type]})
	}
	v2 := v1
	v2.Columns = append(v2.Columns[:len(v2.Columns):len(v2.Columns)], sinks.Column{Name: "order", Type: sinks.String, Nullable: true})
	grow, err := ddl(v2, physical, []string{"order_item_id"})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := newTable(v2, append(physical, physicalColumn{"order", "VARCHAR"}))
	if err != nil {
		t.Fatal(err)
	}
	got := "-- create\n" + strings.Join(create, ";\n") + ";\n\n-- grow\n" + strings.Join(grow, ";\n") +
		";\n\n-- stage\n" + tb.stageDDL + ";\n\n-- merge\n" + tb.merge + ";\n"

	path := filepath.Join("testdata", "fact_sales.sql.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("DDL differs from %s (run with -update if intended):\n%s", path, got)
	}
}
