package bigquery

import (
	"fmt"
	"strings"
	"time"

	"github.com/starstream/starstream/sinks"
)

// DDLOption adjusts the statement DDL renders.
type DDLOption func(*ddlOptions)

type ddlOptions struct{ maxStaleness time.Duration }

// WithMaxStaleness adds the table option max_staleness (as Config.MaxStaleness does).
func WithMaxStaleness(d time.Duration) DDLOption {
	return func(o *ddlOptions) { o.maxStaleness = d }
}

// DDL renders the GoogleSQL CREATE TABLE IF NOT EXISTS statement of a table:
// the table EnsureTable creates, for review and for running by hand
// (https://cloud.google.com/bigquery/docs/reference/standard-sql/data-definition-language#create_table_statement).
// Names are always quoted with backticks, so reserved words are safe.
func DDL(dataset string, t sinks.Table, opts ...DDLOption) string {
	var o ddlOptions
	for _, opt := range opts {
		opt(&o)
	}
	types := map[string]sinks.Type{}
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s (\n", ident(dataset), ident(t.Name))
	for _, c := range t.Columns {
		types[c.Name] = c.Type
		fmt.Fprintf(&b, "  %s %s", ident(c.Name), c.Type)
		if !c.Nullable {
			b.WriteString(" NOT NULL")
		}
		if c.Description != "" {
			fmt.Fprintf(&b, " OPTIONS(description=%s)", literal(c.Description))
		}
		b.WriteString(",\n")
	}
	keys := make([]string, len(t.PrimaryKey))
	for i, k := range t.PrimaryKey {
		keys[i] = ident(k)
	}
	fmt.Fprintf(&b, "  PRIMARY KEY (%s) NOT ENFORCED\n)", strings.Join(keys, ", "))
	if t.PartitionBy != "" {
		// Day partitions: a DATE column partitions by itself, a TIMESTAMP by its date.
		if types[t.PartitionBy] == sinks.Timestamp {
			fmt.Fprintf(&b, "\nPARTITION BY DATE(%s)", ident(t.PartitionBy))
		} else {
			fmt.Fprintf(&b, "\nPARTITION BY %s", ident(t.PartitionBy))
		}
	}
	if len(t.ClusterBy) > 0 {
		cols := make([]string, len(t.ClusterBy))
		for i, c := range t.ClusterBy {
			cols[i] = ident(c)
		}
		fmt.Fprintf(&b, "\nCLUSTER BY %s", strings.Join(cols, ", "))
	}
	var options []string
	if t.Description != "" {
		options = append(options, "description="+literal(t.Description))
	}
	if o.maxStaleness > 0 {
		options = append(options, "max_staleness="+interval(o.maxStaleness))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "\nOPTIONS(\n  %s\n)", strings.Join(options, ",\n  "))
	}
	b.WriteString(";\n")
	return b.String()
}

// ident quotes a name with backticks.
func ident(name string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(name) + "`"
}

// literal renders a GoogleSQL string literal.
func literal(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(s) + `"`
}

// interval renders a duration as an INTERVAL literal in its largest whole unit.
func interval(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("INTERVAL %d HOUR", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("INTERVAL %d MINUTE", d/time.Minute)
	default:
		return fmt.Sprintf("INTERVAL %d SECOND", (d+time.Second/2)/time.Second)
	}
}
