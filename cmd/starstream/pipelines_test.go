package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/starstream/starstream/dimensions"
)

func names(nodes []node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.name
	}
	return out
}

func TestResolveAddsUpstreamInDependencyOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ask  []string
		only bool
		want []string
	}{
		{[]string{"dim_customer"}, false, []string{"dim_date", "dim_customer"}},
		{[]string{"dim_campaign"}, false, []string{"dim_date", "dim_product", "dim_campaign"}},
		{[]string{"fact_sales"}, false, []string{"dim_date", "dim_customer", "dim_product", "dim_seller", "dim_campaign", "fact_sales"}},
		{[]string{"fact_sales"}, true, []string{"fact_sales"}},
		{[]string{"dim_customer", "dim_seller"}, false, []string{"dim_date", "dim_customer", "dim_seller"}},
	}
	for _, tt := range tests {
		got, err := resolve(tt.ask, tt.only)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(names(got), tt.want) {
			t.Errorf("resolve(%v, only=%v) = %v, want %v", tt.ask, tt.only, names(got), tt.want)
		}
	}
	if _, err := resolve([]string{"dim_nope"}, false); !errors.Is(err, dimensions.ErrUnknownPipeline) || !strings.Contains(err.Error(), "dim_customer") {
		t.Fatalf("unknown pipeline: %v", err)
	}
}

func TestRegistryOrderIsTopological(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, n := range registry() {
		for _, up := range n.upstream {
			if !seen[up] {
				t.Errorf("%s comes before its upstream %s", n.name, up)
			}
		}
		seen[n.name] = true
	}
	if !strings.Contains(dagText(), "dim_product → dim_campaign, fact_cart, fact_inventory, fact_sales") {
		t.Errorf("dag:\n%s", dagText())
	}
}
