// Package facts declares the star schema's fact tables and runs them as
// streaming pipelines gated by the watermarks of the dimensions they reference,
// so every fact row carries the dimension versions valid at its position.
package facts

import (
	"fmt"
	"slices"
	"strings"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// Lookup resolves a natural key of the fact's source to a dimension's surrogate
// key, as the dimension stood at the change's position.
type Lookup = dimensions.Ref

// Spec declares a fact table. A fact built on another fact's rows names it in
// FactInputs (and Upstream): its output topic fact.<short> is consumed like a
// captured table, merged by position, and the markers that fact publishes there
// gate the merge, so nothing past the upstream fact's watermark is processed.
type Spec struct {
	Name        string   // warehouse table, e.g. "fact_sales"
	Inputs      []string // captured source tables it consumes
	FactInputs  []string // upstream facts whose output topics it consumes too (see Spec)
	Grain       []string // primary key: one row per …
	Lookups     []Lookup
	Measures    []string // additive measures among the columns
	Columns     []sinks.Column
	PartitionBy string
	ClusterBy   []string
	Upstream    []string // pipelines it waits for: its lookups' dimensions, and more
	Rules       []quality.Rule
	Description string
}

// Validate checks the spec against its own table definition.
func (s Spec) Validate() error {
	if !strings.HasPrefix(s.Name, "fact_") || len(s.Inputs) == 0 {
		return fmt.Errorf("fact %q: name must start with fact_ and inputs are required", s.Name)
	}
	t := s.Table()
	if err := t.Validate(); err != nil {
		return fmt.Errorf("fact %s: %w", s.Name, err)
	}
	cols := map[string]bool{}
	for _, c := range s.Columns {
		cols[c.Name] = true
	}
	for _, l := range s.Lookups {
		if !cols[l.Column] {
			return fmt.Errorf("fact %s: lookup column %q is not a column", s.Name, l.Column)
		}
	}
	for _, in := range s.FactInputs {
		if !strings.HasPrefix(in, "fact_") || in == s.Name || !slices.Contains(s.Upstream, in) {
			return fmt.Errorf("fact %s: fact input %q must be another fact listed in Upstream", s.Name, in)
		}
	}
	for _, m := range s.Measures {
		if !cols[m] {
			return fmt.Errorf("fact %s: measure %q is not a column", s.Name, m)
		}
	}
	return nil
}

// Short is the name without its fact_ prefix ("sales"), used for topics.
func (s Spec) Short() string { return strings.TrimPrefix(s.Name, "fact_") }

// Table returns the warehouse table definition.
func (s Spec) Table() sinks.Table {
	return sinks.Table{Name: s.Name, Description: s.Description, Columns: s.Columns, PrimaryKey: s.Grain,
		PartitionBy: s.PartitionBy, ClusterBy: s.ClusterBy}
}

// RecordSchema is the schema of the fact's topic records: its rows, keyed by grain.
func (s Spec) RecordSchema(namespace, table string) stream.TableSchema {
	grain := map[string]bool{}
	for _, g := range s.Grain {
		grain[g] = true
	}
	ts := stream.TableSchema{Schema: namespace, Table: table}
	for _, c := range s.Columns {
		ts.Columns = append(ts.Columns, stream.Column{Name: c.Name, Type: dimensions.Kind(c.Type), Nullable: !grain[c.Name], Key: grain[c.Name]})
	}
	return ts
}
