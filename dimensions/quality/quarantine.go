package quality

import (
	"encoding/json"
	"math/big"
	"sort"
	"time"

	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// Quarantine collects one batch's failures: rows for the quarantine table,
// dead letters for the pipeline's dead-letter topic, and counts per rule.
type Quarantine struct {
	Pipeline string
	Rows     []sinks.Row
	Dead     []stream.DeadLetter
	Counts   map[string]int64
}

// NewQuarantine returns an empty quarantine for a pipeline's batch.
func NewQuarantine(pipeline string) *Quarantine {
	return &Quarantine{Pipeline: pipeline, Counts: map[string]int64{}}
}

// Add records that the change of rec failed f: a quarantine row always (a
// warning row loads too, and this row is its flag), a dead letter for errors.
func (q *Quarantine) Add(rec stream.Record, f Failure) {
	ev := rec.Event
	row := ev.Row()
	q.Counts[f.Rule]++
	q.Rows = append(q.Rows, sinks.Row{Op: sinks.Upsert, Pos: sinks.Position{LSN: uint64(ev.Pos.LSN), Seq: ev.Pos.Seq},
		Values: map[string]any{
			"pipeline": q.Pipeline, "rule": f.Rule, "severity": string(f.Severity), "reason": f.Reason,
			"source_table": ev.Table, "source_key": JSON(ev.Key), "source_lsn": int64(ev.Pos.LSN), "source_seq": int64(ev.Pos.Seq),
			"row": JSON(row), "quarantined_at": ev.CommitTime.UTC(),
		}})
	if f.Severity == Error {
		q.Dead = append(q.Dead, stream.DeadLetter{Record: rec, Rule: f.Rule, Reason: f.Reason})
	}
}

// JSON renders column values as a JSON object with stable key order; numerics
// keep their exact decimal digits.
func JSON(row map[string]any) string {
	keys := make([]string, 0, len(row))
	for k := range row {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	obj := make(map[string]any, len(row))
	for _, k := range keys {
		obj[k] = jsonValue(row[k])
	}
	b, _ := json.Marshal(obj)
	return string(b)
}

func jsonValue(v any) any {
	switch x := v.(type) {
	case *big.Rat:
		return json.Number(trimDecimal(x.FloatString(9)))
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	}
	return v
}

func trimDecimal(s string) string {
	for len(s) > 1 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}
