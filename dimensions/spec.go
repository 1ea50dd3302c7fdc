// Package dimensions declares the star schema's dimensions and runs them as
// streaming pipelines: slowly changing (SCD1 and SCD2 per column), with
// deterministic surrogate keys and point-in-time lookups for facts.
package dimensions

import (
	"errors"
	"fmt"
	"strings"

	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
)

// Col is a column of a dimension with its warehouse type.
type Col struct {
	Name string
	Type sinks.Type
}

// Spec declares a dimension fed by one source table.
type Spec struct {
	Name        string   // warehouse table, e.g. "dim_customer"
	Source      string   // captured source table, e.g. "customers"
	Key         string   // surrogate key column, e.g. "customer_key"
	NaturalKey  []Col    // source primary key
	Type2       []Col    // a change opens a new version (history kept)
	Type1       []Col    // a change overwrites every version (no history)
	Upstream    []string // pipelines this one waits for (gating)
	Refs        []Ref    // columns holding another dimension's surrogate key (declared in Type1 or Type2)
	Rules       []quality.Rule
	Description string
}

// Validate checks the spec.
func (s Spec) Validate() error {
	if !strings.HasPrefix(s.Name, "dim_") {
		return fmt.Errorf("dimension %q: name must start with dim_", s.Name)
	}
	if s.Source == "" || s.Key == "" || len(s.NaturalKey) == 0 {
		return fmt.Errorf("dimension %s: source, key and natural key are required", s.Name)
	}
	seen := map[string]bool{s.Key: true}
	for _, c := range s.columns() {
		if c.Name == "" || c.Type == "" {
			return fmt.Errorf("dimension %s: column %q needs a name and a type", s.Name, c.Name)
		}
		if seen[c.Name] || reserved[c.Name] {
			return fmt.Errorf("dimension %s: column %q declared twice or reserved", s.Name, c.Name)
		}
		seen[c.Name] = true
	}
	for _, r := range s.Refs {
		if !seen[r.Column] || r.From == "" {
			return fmt.Errorf("dimension %s: reference column %q must be declared and name its source column", s.Name, r.Column)
		}
		if !contains(s.Upstream, r.Dimension.Name) {
			return fmt.Errorf("dimension %s: references %s, which must be upstream", s.Name, r.Dimension.Name)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var reserved = map[string]bool{"valid_from": true, "valid_to": true, "is_current": true, "source_lsn": true, "source_seq": true, "deleted": true}

func (s Spec) columns() []Col {
	out := append([]Col{}, s.NaturalKey...)
	out = append(out, s.Type2...)
	return append(out, s.Type1...)
}

// Short is the name without its dim_ prefix ("customer"), used for topics.
func (s Spec) Short() string { return strings.TrimPrefix(s.Name, "dim_") }

// Table returns the warehouse table definition: surrogate key, natural key,
// attributes, validity interval, current flag and source position.
func (s Spec) Table() sinks.Table {
	cols := []sinks.Column{{Name: s.Key, Type: sinks.Int64, Description: "surrogate key: 63-bit hash of (dimension, natural key, valid_from position); -1 is the unknown member"}}
	for _, c := range s.NaturalKey {
		cols = append(cols, sinks.Column{Name: c.Name, Type: c.Type, Nullable: true, Description: "natural key"})
	}
	for _, c := range s.Type2 {
		cols = append(cols, sinks.Column{Name: c.Name, Type: c.Type, Nullable: true, Description: "SCD2: a change opens a new version"})
	}
	for _, c := range s.Type1 {
		cols = append(cols, sinks.Column{Name: c.Name, Type: c.Type, Nullable: true, Description: "SCD1: overwritten in every version"})
	}
	cols = append(cols,
		sinks.Column{Name: "valid_from", Type: sinks.Timestamp, Nullable: true, Description: "commit time of the change that opened this version"},
		sinks.Column{Name: "valid_to", Type: sinks.Timestamp, Nullable: true, Description: "commit time of the change that closed it; NULL while current"},
		sinks.Column{Name: "is_current", Type: sinks.Bool, Description: "true for the version valid now"},
		sinks.Column{Name: "source_lsn", Type: sinks.Int64, Description: "commit LSN of the change that opened this version"},
		sinks.Column{Name: "source_seq", Type: sinks.Int64, Description: "index of that change in its transaction"},
	)
	cluster := []string{}
	for _, c := range s.NaturalKey {
		cluster = append(cluster, c.Name)
	}
	return sinks.Table{Name: s.Name, Description: s.Description, Columns: cols, PrimaryKey: []string{s.Key}, ClusterBy: cluster}
}

// ErrUnknownPipeline marks a pipeline name that is not registered.
var ErrUnknownPipeline = errors.New("unknown pipeline")
