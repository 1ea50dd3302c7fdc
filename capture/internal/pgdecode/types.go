// Package pgdecode maps PostgreSQL column types to stream types and decodes
// their text representation (pgoutput text format, and snapshot reads in text
// format) into the Go values stream.Kind documents. Snapshot and streaming
// share these decoders, so a row reads the same whichever way it arrived.
package pgdecode

import (
	"context"
	"fmt"
	"strconv"

	"github.com/starstream/starstream/stream"
)

// Built-in type OIDs (pg_type.h); they never change between servers.
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidXML         = 142
	oidFloat4      = 700
	oidFloat8      = 701
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

// TypeInfo is what the catalog says about a type that is not built in
// (pg_type: typtype, typelem, typbasetype, typtypmod, typdelim).
type TypeInfo struct {
	OID      uint32
	Name     string // format_type(oid, NULL)
	Type     byte   // typtype: b base, e enum, d domain, c composite, r range, m multirange
	Elem     uint32 // element type of arrays (typelem with typcategory 'A'), else 0
	Base     uint32 // base type of domains
	BaseMod  int32  // typmod of the domain's base type
	Category byte   // typcategory
	Delim    byte   // array element delimiter
}

// Catalog looks up types that are not built in.
type Catalog interface {
	Type(ctx context.Context, oid uint32) (TypeInfo, error)
}

// Column is a resolved column: its stream type and the decoder of its text form.
type Column struct {
	Type   stream.Type
	Decode Decoder
}

// Resolve maps a column type (oid and atttypmod) to a stream type and decoder.
func Resolve(ctx context.Context, oid uint32, typmod int32, cat Catalog) (Column, error) {
	return resolve(ctx, oid, typmod, cat, 0)
}

func resolve(ctx context.Context, oid uint32, typmod int32, cat Catalog, depth int) (Column, error) {
	if depth > 8 {
		return Column{}, fmt.Errorf("type %d: domain or array nesting too deep", oid)
	}
	switch oid {
	case oidBool:
		return Column{stream.Type{Kind: stream.KindBool, SourceTyp: "boolean"}, decodeBool}, nil
	case oidInt2:
		return Column{stream.Type{Kind: stream.KindInt, SourceTyp: "smallint"}, decodeInt}, nil
	case oidInt4:
		return Column{stream.Type{Kind: stream.KindInt, SourceTyp: "integer"}, decodeInt}, nil
	case oidInt8:
		return Column{stream.Type{Kind: stream.KindInt, SourceTyp: "bigint"}, decodeInt}, nil
	case oidOID:
		return Column{stream.Type{Kind: stream.KindInt, SourceTyp: "oid"}, decodeInt}, nil
	case oidFloat4:
		return Column{stream.Type{Kind: stream.KindFloat, SourceTyp: "real"}, decodeFloat}, nil
	case oidFloat8:
		return Column{stream.Type{Kind: stream.KindFloat, SourceTyp: "double precision"}, decodeFloat}, nil
	case oidNumeric:
		if typmod < 4 {
			return Column{stream.Type{Kind: stream.KindString, SourceTyp: "numeric"}, decodeString}, nil
		}
		p, s := NumericTypmod(typmod)
		src := fmt.Sprintf("numeric(%d,%d)", p, s)
		if s < 0 {
			// PostgreSQL 15 allows a negative scale (rounding to tens, hundreds…):
			// the values are integers of up to p-s digits.
			p, s = p-s, 0
		}
		return Column{stream.Type{Kind: stream.KindDecimal, Precision: p, Scale: s, SourceTyp: src}, decodeDecimal}, nil
	case oidText, oidVarchar, oidBPChar, oidName, oidChar, oidXML:
		return Column{stream.Type{Kind: stream.KindString, SourceTyp: textName(oid, typmod)}, decodeString}, nil
	case oidUUID:
		return Column{stream.Type{Kind: stream.KindUUID, SourceTyp: "uuid"}, decodeString}, nil
	case oidJSON:
		return Column{stream.Type{Kind: stream.KindJSON, SourceTyp: "json"}, decodeString}, nil
	case oidJSONB:
		return Column{stream.Type{Kind: stream.KindJSON, SourceTyp: "jsonb"}, decodeString}, nil
	case oidBytea:
		return Column{stream.Type{Kind: stream.KindBytes, SourceTyp: "bytea"}, decodeBytea}, nil
	case oidDate:
		return Column{stream.Type{Kind: stream.KindDate, SourceTyp: "date"}, decodeDate}, nil
	case oidTime:
		return Column{stream.Type{Kind: stream.KindTime, SourceTyp: "time without time zone"}, decodeTime}, nil
	case oidTimestamp:
		return Column{stream.Type{Kind: stream.KindTimestamp, SourceTyp: "timestamp without time zone"}, decodeTimestamp}, nil
	case oidTimestamptz:
		return Column{stream.Type{Kind: stream.KindTimestamp, SourceTyp: "timestamp with time zone"}, decodeTimestamptz}, nil
	}
	if cat == nil {
		return Column{stream.Type{Kind: stream.KindString, SourceTyp: "oid " + strconv.FormatUint(uint64(oid), 10)}, decodeString}, nil
	}
	info, err := cat.Type(ctx, oid)
	if err != nil {
		return Column{}, fmt.Errorf("look up type %d: %w", oid, err)
	}
	switch {
	case info.Type == 'd':
		c, err := resolve(ctx, info.Base, info.BaseMod, cat, depth+1)
		if err != nil {
			return Column{}, err
		}
		c.Type.SourceTyp = info.Name
		return c, nil
	case info.Category == 'A' && info.Elem != 0:
		// An array column's typmod applies to its elements (numeric(10,2)[]).
		elem, err := resolve(ctx, info.Elem, typmod, cat, depth+1)
		if err != nil {
			return Column{}, err
		}
		if elem.Type.Kind == stream.KindArray {
			return Column{}, fmt.Errorf("type %s: arrays of arrays are not supported", info.Name)
		}
		et := elem.Type
		delim := info.Delim
		if delim == 0 {
			delim = ','
		}
		return Column{
			Type:   stream.Type{Kind: stream.KindArray, Elem: &et, SourceTyp: info.Name},
			Decode: arrayDecoder(elem.Decode, delim),
		}, nil
	default:
		// Enums, citext, inet, interval, ranges, composites…: their text form.
		return Column{stream.Type{Kind: stream.KindString, SourceTyp: info.Name}, decodeString}, nil
	}
}

// NumericTypmod splits a numeric atttypmod into precision and scale
// (scale is an 11-bit signed field since PostgreSQL 15).
func NumericTypmod(typmod int32) (precision, scale int) {
	t := typmod - 4
	precision = int((t >> 16) & 0xffff)
	scale = int(t & 0x7ff)
	if scale&0x400 != 0 {
		scale -= 0x800
	}
	return precision, scale
}

func textName(oid uint32, typmod int32) string {
	switch oid {
	case oidText:
		return "text"
	case oidVarchar:
		if typmod >= 4 {
			return fmt.Sprintf("character varying(%d)", typmod-4)
		}
		return "character varying"
	case oidBPChar:
		if typmod >= 4 {
			return fmt.Sprintf("character(%d)", typmod-4)
		}
		return "character"
	case oidName:
		return "name"
	case oidChar:
		return "\"char\""
	default:
		return "xml"
	}
}
