package capture_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// valueType returns the type of column v in the writer schema of a record,
// read back from the Avro schema (the "doc" holds the source type).
func valueType(t *testing.T, codecs *stream.Codecs, r capturetest.Record, table string) stream.Type {
	t.Helper()
	_ = table
	d, err := codecs.DecodeEvent(r.Raw)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := codecs.Schema(d.Fingerprint)
	var env struct {
		Fields []struct {
			Name string          `json:"name"`
			Type json.RawMessage `json:"type"`
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(js), &env); err != nil {
		t.Fatal(err)
	}
	var before []json.RawMessage
	_ = json.Unmarshal(env.Fields[1].Type, &before)
	var row struct {
		Fields []struct {
			Name string          `json:"name"`
			Type json.RawMessage `json:"type"`
		} `json:"fields"`
	}
	_ = json.Unmarshal(before[1], &row)
	for _, f := range row.Fields {
		if f.Name != "v" {
			continue
		}
		var union []json.RawMessage
		_ = json.Unmarshal(f.Type, &union)
		return avroToType(t, union[1])
	}
	t.Fatalf("no column v in %s", js)
	return stream.Type{}
}

func avroToType(t *testing.T, raw json.RawMessage) stream.Type {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "boolean":
			return stream.Type{Kind: stream.KindBool}
		case "long":
			return stream.Type{Kind: stream.KindInt}
		case "double":
			return stream.Type{Kind: stream.KindFloat}
		case "bytes":
			return stream.Type{Kind: stream.KindBytes}
		default:
			return stream.Type{Kind: stream.KindString}
		}
	}
	var m struct {
		Type        string          `json:"type"`
		LogicalType string          `json:"logicalType"`
		Precision   int             `json:"precision"`
		Scale       int             `json:"scale"`
		Items       json.RawMessage `json:"items"`
		ConnectName string          `json:"connect.name"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.LogicalType == "decimal":
		return stream.Type{Kind: stream.KindDecimal, Precision: m.Precision, Scale: m.Scale}
	case m.LogicalType == "uuid":
		return stream.Type{Kind: stream.KindUUID}
	case m.LogicalType == "date":
		return stream.Type{Kind: stream.KindDate}
	case m.LogicalType == "time-micros":
		return stream.Type{Kind: stream.KindTime}
	case m.LogicalType == "timestamp-micros":
		return stream.Type{Kind: stream.KindTimestamp}
	case m.ConnectName == "json":
		return stream.Type{Kind: stream.KindJSON}
	case m.Type == "array":
		var items []json.RawMessage
		_ = json.Unmarshal(m.Items, &items)
		elem := avroToType(t, items[1])
		return stream.Type{Kind: stream.KindArray, Elem: &elem}
	}
	return stream.Type{Kind: stream.KindString}
}
