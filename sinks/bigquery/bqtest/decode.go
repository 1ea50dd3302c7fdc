package bqtest

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	bq "google.golang.org/api/bigquery/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Pseudo-columns of BigQuery CDC
// (https://cloud.google.com/bigquery/docs/change-data-capture).
const (
	ChangeType     = "_CHANGE_TYPE"
	ChangeSequence = "_CHANGE_SEQUENCE_NUMBER"
)

// decoder turns serialized rows of one writer schema into column values for one
// table. It is compiled per connection and writer schema, and again when the
// table's schema changed.
type decoder struct {
	md     protoreflect.MessageDescriptor
	gen    int // table generation compiled against
	fields []fieldMap
	cdc    bool // the writer schema carries _CHANGE_TYPE
	typ    protoreflect.FieldDescriptor
	seq    protoreflect.FieldDescriptor
	t      *table
}

type fieldMap struct {
	fd  protoreflect.FieldDescriptor
	col *bq.TableFieldSchema
	idx int // column position
}

// compile checks a writer schema against a table. Mismatches fail the whole
// request with INVALID_ARGUMENT, as BigQuery does ("Input schema has more fields
// than BigQuery schema, extra fields: 'x'", reported in apache/beam#27892 and
// memiiso/debezium-server-bigquery#268): the writer schema is per request, not per row.
func compile(t *table, defaultStream bool, dp *descriptorpb.DescriptorProto) (*decoder, error) {
	if dp == nil {
		return nil, fmt.Errorf("no writer schema: the first AppendRows request of a connection must carry proto_rows.writer_schema")
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:        proto.String("bqtest_writer_schema.proto"),
		Syntax:      proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{proto.CloneOf(dp)},
	}
	for _, f := range dp.GetField() {
		if strings.HasPrefix(f.GetTypeName(), ".google.protobuf.") {
			fdp.Dependency = []string{"google/protobuf/wrappers.proto"}
			break
		}
	}
	file, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		return nil, fmt.Errorf("invalid proto schema: %v", err)
	}
	d := &decoder{md: file.Messages().Get(0), gen: t.gen, t: t}
	seen := map[string]bool{}
	var extra []string
	fields := d.md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := columnName(fd)
		switch name {
		case ChangeType:
			if fd.Kind() != protoreflect.StringKind {
				return nil, fmt.Errorf("%s must be a string field", ChangeType)
			}
			d.cdc, d.typ = true, fd
			continue
		case ChangeSequence:
			if fd.Kind() != protoreflect.StringKind {
				return nil, fmt.Errorf("%s must be a string field", ChangeSequence)
			}
			d.seq = fd
			continue
		}
		col := t.column(name)
		if col == nil {
			extra = append(extra, name)
			continue
		}
		if fd.Cardinality() == protoreflect.Repeated || !compatible(col.Type, valueKind(fd)) {
			return nil, fmt.Errorf("field %s: proto type %s cannot be written to BigQuery column type %s", name, valueKind(fd), col.Type)
		}
		seen[strings.ToLower(col.Name)] = true
		d.fields = append(d.fields, fieldMap{fd: fd, col: col, idx: t.colIndex(name)})
	}
	if len(extra) > 0 {
		return nil, fmt.Errorf("Input schema has more fields than BigQuery schema, extra fields: '%s'", strings.Join(extra, "', '"))
	}
	for _, c := range t.meta.Schema.Fields {
		if c.Mode == "REQUIRED" && !seen[strings.ToLower(c.Name)] {
			return nil, fmt.Errorf("writer schema lacks REQUIRED column %s", c.Name)
		}
	}
	if d.seq != nil && !d.cdc {
		return nil, fmt.Errorf("%s needs %s in the writer schema", ChangeSequence, ChangeType)
	}
	if d.cdc {
		// "You must use the Storage Write API in the default stream" and "You must
		// declare primary keys for the destination table in BigQuery"
		// (https://cloud.google.com/bigquery/docs/change-data-capture#prerequisites).
		if !defaultStream {
			return nil, fmt.Errorf("%s (CDC upserts and deletes) is supported only on the _default stream", ChangeType)
		}
		if len(t.primaryKey()) == 0 {
			return nil, fmt.Errorf("%s needs a table with a primary key; table %s has none", ChangeType, t.name)
		}
	}
	return d, nil
}

// columnName is the column a proto field writes: its name, or the
// bigquery.storage column_name annotation adapt uses for names that are not
// proto identifiers.
func columnName(fd protoreflect.FieldDescriptor) string {
	if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts != nil && proto.HasExtension(opts, storagepb.E_ColumnName) {
		if n, ok := proto.GetExtension(opts, storagepb.E_ColumnName).(string); ok && n != "" {
			return n
		}
	}
	return string(fd.Name())
}

// valueKind unwraps the google.protobuf wrapper types adapt uses for nullable
// proto3 fields.
func valueKind(fd protoreflect.FieldDescriptor) protoreflect.Kind {
	if fd.Kind() == protoreflect.MessageKind && strings.HasPrefix(string(fd.Message().FullName()), "google.protobuf.") {
		if v := fd.Message().Fields().ByName("value"); v != nil {
			return v.Kind()
		}
	}
	return fd.Kind()
}

// compatible follows the Storage Write API's proto-to-BigQuery conversions
// (https://cloud.google.com/bigquery/docs/write-api#data_type_conversions),
// limited to the encodings a sink uses.
func compatible(colType string, k protoreflect.Kind) bool {
	switch normType(colType) {
	case "STRING":
		return k == protoreflect.StringKind
	case "INT64":
		return isInt(k) || k == protoreflect.EnumKind
	case "FLOAT64":
		return k == protoreflect.DoubleKind || k == protoreflect.FloatKind
	case "BOOL":
		return k == protoreflect.BoolKind
	case "NUMERIC", "BIGNUMERIC":
		return k == protoreflect.BytesKind || k == protoreflect.StringKind
	case "TIMESTAMP":
		return k == protoreflect.Int64Kind || k == protoreflect.Sfixed64Kind || k == protoreflect.Sint64Kind
	case "DATE":
		return k == protoreflect.Int32Kind || k == protoreflect.Int64Kind
	case "JSON":
		return k == protoreflect.StringKind
	case "BYTES":
		return k == protoreflect.BytesKind
	}
	return false
}

func isInt(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
		protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind, protoreflect.Uint32Kind, protoreflect.Uint64Kind,
		protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		return true
	}
	return false
}

// decoded is one row after decoding.
type decoded struct {
	values     []any  // by column position
	changeType string // "", "UPSERT" or "DELETE"
	seq        Sequence
}

// decode parses and checks one serialized row. Its error becomes a RowError.
func (d *decoder) decode(b []byte) (*decoded, error) {
	msg := dynamicpb.NewMessage(d.md)
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(b, msg); err != nil {
		return nil, fmt.Errorf("cannot parse row with the writer schema: %v", err)
	}
	if len(msg.GetUnknown()) > 0 {
		return nil, fmt.Errorf("row has fields that are not in the writer schema")
	}
	out := &decoded{values: make([]any, len(d.t.meta.Schema.Fields))}
	for _, f := range d.fields {
		if !msg.Has(f.fd) {
			continue
		}
		v := msg.Get(f.fd)
		if f.fd.Kind() == protoreflect.MessageKind {
			inner := f.fd.Message().Fields().ByName("value")
			v = v.Message().Get(inner)
		}
		gv, err := convert(f.col.Type, v)
		if err != nil {
			return nil, fmt.Errorf("field %s: %v", f.col.Name, err)
		}
		out.values[f.idx] = gv
	}
	if d.cdc {
		if !msg.Has(d.typ) {
			return nil, fmt.Errorf("%s is not set", ChangeType)
		}
		// "The _CHANGE_TYPE pseudocolumn only accepts the values UPSERT and DELETE."
		switch ct := msg.Get(d.typ).String(); ct {
		case "UPSERT", "DELETE":
			out.changeType = ct
		default:
			return nil, fmt.Errorf("%s %q: only UPSERT and DELETE are accepted", ChangeType, ct)
		}
		if d.seq != nil && msg.Has(d.seq) {
			seq, err := ParseSequence(msg.Get(d.seq).String())
			if err != nil {
				return nil, err
			}
			out.seq = seq
		}
		for _, k := range d.t.primaryKey() {
			if out.values[d.t.colIndex(k)] == nil {
				return nil, fmt.Errorf("primary key column %s is NULL", k)
			}
		}
	}
	if out.changeType != "DELETE" {
		for i, c := range d.t.meta.Schema.Fields {
			if c.Mode == "REQUIRED" && out.values[i] == nil {
				return nil, fmt.Errorf("required field %s is missing", c.Name)
			}
		}
	}
	return out, nil
}

var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	// NUMERIC holds 38 digits, 9 after the point: |v| < 1e29.
	numericLimit    = new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(29), nil))
	numericScale    = new(big.Int).Exp(big.NewInt(10), big.NewInt(9), nil)
	bigNumericScale = new(big.Int).Exp(big.NewInt(10), big.NewInt(38), nil)
)

func convert(colType string, v protoreflect.Value) (any, error) {
	switch normType(colType) {
	case "STRING":
		s := v.String()
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("invalid UTF-8")
		}
		return s, nil
	case "JSON":
		s := v.String()
		if !json.Valid([]byte(s)) {
			return nil, fmt.Errorf("invalid JSON text")
		}
		return s, nil
	case "INT64":
		switch x := v.Interface().(type) {
		case int32:
			return int64(x), nil
		case int64:
			return x, nil
		case uint32:
			return int64(x), nil
		case uint64:
			if x > 1<<63-1 {
				return nil, fmt.Errorf("%d overflows INT64", x)
			}
			return int64(x), nil
		case protoreflect.EnumNumber:
			return int64(x), nil
		}
	case "FLOAT64":
		return v.Float(), nil
	case "BOOL":
		return v.Bool(), nil
	case "BYTES":
		return append([]byte{}, v.Bytes()...), nil
	case "NUMERIC", "BIGNUMERIC":
		var r *big.Rat
		if b, ok := v.Interface().([]byte); ok {
			// "NUMERIC ... BYTES: the little-endian two's complement of the value
			// scaled by 10^9" (write-api#data_type_conversions; FINDINGS.md).
			scale := numericScale
			if normType(colType) == "BIGNUMERIC" {
				scale = bigNumericScale
			}
			if len(b) == 0 || len(b) > 32 || (scale == numericScale && len(b) > 16) {
				return nil, fmt.Errorf("NUMERIC bytes of length %d", len(b))
			}
			r = new(big.Rat).SetFrac(decodeTwosComplementLE(b), scale)
		} else {
			var ok bool
			if r, ok = new(big.Rat).SetString(v.String()); !ok {
				return nil, fmt.Errorf("invalid NUMERIC %q", v.String())
			}
		}
		if normType(colType) == "NUMERIC" && new(big.Rat).Abs(r).Cmp(numericLimit) >= 0 {
			return nil, fmt.Errorf("NUMERIC %s out of range", r.FloatString(9))
		}
		return r, nil
	case "TIMESTAMP":
		t := time.UnixMicro(v.Int()).UTC()
		if t.Before(minTime) || t.After(maxTime) {
			return nil, fmt.Errorf("TIMESTAMP out of range")
		}
		return t, nil
	case "DATE":
		t := time.Unix(v.Int()*86400, 0).UTC()
		if t.Before(minTime) || t.After(maxTime) {
			return nil, fmt.Errorf("DATE out of range")
		}
		return t, nil
	}
	return nil, fmt.Errorf("unsupported column type %s", colType)
}

// decodeTwosComplementLE reads a little-endian two's complement integer.
func decodeTwosComplementLE(b []byte) *big.Int {
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	n := new(big.Int).SetBytes(be)
	if be[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return n
}

// storageSchema converts a REST schema to the Storage API's TableSchema (for
// GetWriteStream with the FULL view).
func storageSchema(s *bq.TableSchema) *storagepb.TableSchema {
	out := &storagepb.TableSchema{}
	for _, f := range s.Fields {
		typ := storagepb.TableFieldSchema_Type_value[normType(f.Type)]
		switch normType(f.Type) {
		case "INT64":
			typ = int32(storagepb.TableFieldSchema_INT64)
		case "FLOAT64":
			typ = int32(storagepb.TableFieldSchema_DOUBLE)
		}
		mode := storagepb.TableFieldSchema_NULLABLE
		if f.Mode == "REQUIRED" {
			mode = storagepb.TableFieldSchema_REQUIRED
		}
		out.Fields = append(out.Fields, &storagepb.TableFieldSchema{
			Name: f.Name, Type: storagepb.TableFieldSchema_Type(typ), Mode: mode, Description: f.Description,
		})
	}
	return out
}
