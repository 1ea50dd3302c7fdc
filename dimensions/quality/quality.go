// Package quality declares data-quality rules that pipelines check on every
// source row: an error row is quarantined (quarantine table and dead-letter
// topic, with the rule and the reason) and not loaded; a warning row is loaded
// and flagged. Every failure is counted per rule; the pipeline keeps running.
package quality

import (
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/starstream/starstream/sinks"
)

// Severity says what a failure does to the row.
type Severity string

// Severities.
const (
	Warn  Severity = "warn"  // the row loads, flagged
	Error Severity = "error" // the row is quarantined and does not load
)

// Rule checks one column of a source table's rows.
type Rule struct {
	Name     string // unique in the pipeline; the metric label and quarantine reason
	Table    string // source table it applies to
	Column   string
	Severity Severity
	check    func(v any, commit time.Time) (bool, string)
}

// Failure is a rule a row failed.
type Failure struct {
	Rule     string
	Severity Severity
	Reason   string
}

// Check evaluates the rule on a row committed at commit.
func (r Rule) Check(row map[string]any, commit time.Time) (Failure, bool) {
	if ok, why := r.check(row[r.Column], commit); !ok {
		return Failure{Rule: r.Name, Severity: r.Severity, Reason: fmt.Sprintf("%s.%s %s", r.Table, r.Column, why)}, false
	}
	return Failure{}, true
}

// Evaluate returns the failures of a row of table against the rules. Columns
// listed in unchanged (TOAST values not sent with this change) are not checked.
func Evaluate(rules []Rule, table string, row map[string]any, unchanged []string, commit time.Time) []Failure {
	var out []Failure
	for _, r := range rules {
		if r.Table != table || contains(unchanged, r.Column) {
			continue
		}
		if f, ok := r.Check(row, commit); !ok {
			out = append(out, f)
		}
	}
	return out
}

// Blocking reports whether any failure keeps the row out of the warehouse.
func Blocking(fs []Failure) bool {
	for _, f := range fs {
		if f.Severity == Error {
			return true
		}
	}
	return false
}

// Flags renders warning failures for the row's dq_warnings column.
func Flags(fs []Failure) any {
	var names []string
	for _, f := range fs {
		if f.Severity == Warn {
			names = append(names, f.Rule)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return strings.Join(names, ",")
}

// NotNull requires a value.
func NotNull(table, column string, sev Severity) Rule {
	return Rule{Name: "not_null_" + table + "_" + column, Table: table, Column: column, Severity: sev,
		check: func(v any, _ time.Time) (bool, string) { return v != nil, "is null" }}
}

// AcceptedValues requires one of the listed values (NULL passes; combine with NotNull).
func AcceptedValues(table, column string, sev Severity, values ...string) Rule {
	ok := map[string]bool{}
	for _, v := range values {
		ok[v] = true
	}
	return Rule{Name: "accepted_" + table + "_" + column, Table: table, Column: column, Severity: sev,
		check: func(v any, _ time.Time) (bool, string) {
			if v == nil {
				return true, ""
			}
			s := fmt.Sprint(v)
			return ok[s], fmt.Sprintf("value %q is not one of %s", s, strings.Join(values, ", "))
		}}
}

// Range requires min <= value <= max (NULL passes). Numbers of any kind.
func Range(table, column string, sev Severity, min, max float64) Rule {
	return Rule{Name: "range_" + table + "_" + column, Table: table, Column: column, Severity: sev,
		check: func(v any, _ time.Time) (bool, string) {
			if v == nil {
				return true, ""
			}
			f, ok := number(v)
			if !ok {
				return false, fmt.Sprintf("value %v is not a number", v)
			}
			return f >= min && f <= max, fmt.Sprintf("value %v is outside [%g, %g]", v, min, max)
		}}
}

// Freshness requires a timestamp no older than maxAge and no later than maxAhead
// relative to the change's commit time (late or clock-skewed data).
func Freshness(table, column string, sev Severity, maxAge, maxAhead time.Duration) Rule {
	return Rule{Name: "freshness_" + table + "_" + column, Table: table, Column: column, Severity: sev,
		check: func(v any, commit time.Time) (bool, string) {
			t, ok := v.(time.Time)
			if !ok || commit.IsZero() {
				return true, ""
			}
			switch {
			case t.Before(commit.Add(-maxAge)):
				return false, fmt.Sprintf("%s is more than %s before its commit at %s", t.UTC().Format(time.RFC3339), maxAge, commit.UTC().Format(time.RFC3339))
			case t.After(commit.Add(maxAhead)):
				return false, fmt.Sprintf("%s is more than %s after its commit at %s", t.UTC().Format(time.RFC3339), maxAhead, commit.UTC().Format(time.RFC3339))
			}
			return true, ""
		}}
}

// Referential is the rule name of a reference with no dimension version at the
// row's position; facts load such rows with the unknown member and quarantine them.
func Referential(column string) string { return "referential_" + column }

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	case *big.Rat:
		f, _ := n.Float64()
		return f, true
	}
	return 0, false
}

// QuarantineTable is where failed rows are kept with their rule and reason.
func QuarantineTable() sinks.Table {
	c := func(n string, t sinks.Type, null bool, d string) sinks.Column {
		return sinks.Column{Name: n, Type: t, Nullable: null, Description: d}
	}
	return sinks.Table{Name: "dq_quarantine", Description: "Rows that failed data-quality rules, with the rule and the reason.",
		PrimaryKey:  []string{"pipeline", "rule", "source_table", "source_key", "source_lsn", "source_seq"},
		PartitionBy: "quarantined_at", ClusterBy: []string{"pipeline", "rule"},
		Columns: []sinks.Column{
			c("pipeline", sinks.String, false, "pipeline that checked the row"),
			c("rule", sinks.String, false, "the rule that failed"),
			c("severity", sinks.String, true, "error: not loaded; warn: loaded and flagged"),
			c("reason", sinks.String, true, "why the row failed"),
			c("source_table", sinks.String, false, "source table of the row"),
			c("source_key", sinks.String, false, "primary key of the row, as JSON"),
			c("source_lsn", sinks.Int64, false, "commit LSN of the change"),
			c("source_seq", sinks.Int64, false, "index of the change in its transaction"),
			c("row", sinks.JSON, true, "the row as JSON"),
			c("quarantined_at", sinks.Timestamp, true, "commit time of the change"),
		}}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
