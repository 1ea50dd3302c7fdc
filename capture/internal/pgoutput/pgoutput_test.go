package pgoutput

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/jackc/pglogrepl"
)

// tuple builds TupleData; a nil entry is NULL, "\x00u" an unchanged TOAST value.
func tuple(vals ...any) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		switch v := v.(type) {
		case nil:
			b = append(b, 'n')
		case byte:
			b = append(b, v)
		case string:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

func msg(op byte, rel uint32, parts ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32([]byte{op}, rel)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// pglogreplTuple returns what pglogrepl parses from the same bytes.
func pglogreplTuple(td *pglogrepl.TupleData) []Column {
	if td == nil {
		return nil
	}
	out := []Column{}
	for _, c := range td.Columns {
		col := Column{Kind: c.DataType}
		if c.DataType == 't' || c.DataType == 'b' {
			col.Data = c.Data
		}
		out = append(out, col)
	}
	return out
}

func sameColumns(a, b []Column) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if a[i].Kind != b[i].Kind || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

func TestParseMatchesPglogrepl(t *testing.T) {
	t.Parallel()
	row := tuple("42", nil, byte('u'), "", "héllo")
	key := tuple("42", nil, nil, nil, nil)
	tests := map[string][]byte{
		"insert":          msg('I', 16384, []byte{'N'}, row),
		"update":          msg('U', 16385, []byte{'N'}, row),
		"update key":      msg('U', 16385, []byte{'K'}, key, []byte{'N'}, row),
		"update old":      msg('U', 16385, []byte{'O'}, tuple("41", "x", "y", "", "z"), []byte{'N'}, row),
		"delete key":      msg('D', 7, []byte{'K'}, key),
		"delete old":      msg('D', 7, []byte{'O'}, row),
		"binary":          msg('I', 1, []byte{'N'}, append(binary.BigEndian.AppendUint32(append(binary.BigEndian.AppendUint16(nil, 1), 'b'), 2), 0xbe, 0xef)),
		"empty text only": msg('I', 1, []byte{'N'}, tuple("")),
	}
	var c Change // reused across messages, as the reader does
	for name, data := range tests {
		if err := Parse(data, &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m, err := pglogrepl.Parse(data)
		if err != nil {
			t.Fatalf("%s: pglogrepl: %v", name, err)
		}
		var want Change
		switch m := m.(type) {
		case *pglogrepl.InsertMessage:
			want = Change{Op: 'I', RelationID: m.RelationID, New: pglogreplTuple(m.Tuple)}
		case *pglogrepl.UpdateMessage:
			want = Change{Op: 'U', RelationID: m.RelationID, OldKind: m.OldTupleType, Old: pglogreplTuple(m.OldTuple), New: pglogreplTuple(m.NewTuple)}
		case *pglogrepl.DeleteMessage:
			want = Change{Op: 'D', RelationID: m.RelationID, OldKind: m.OldTupleType, Old: pglogreplTuple(m.OldTuple)}
		}
		if c.Op != want.Op || c.RelationID != want.RelationID || c.OldKind != want.OldKind ||
			!sameColumns(c.Old, want.Old) || !sameColumns(c.New, want.New) {
			t.Errorf("%s: got %+v, want %+v", name, c, want)
		}
	}
}

func TestParseRejectsTruncated(t *testing.T) {
	t.Parallel()
	full := msg('U', 16385, []byte{'K'}, tuple("42", nil), []byte{'N'}, tuple("42", "abc"))
	var c Change
	for n := 0; n < len(full); n++ {
		if err := Parse(full[:n], &c); err == nil {
			t.Errorf("%d of %d bytes parsed without error: %+v", n, len(full), c)
		}
	}
	if err := Parse(msg('I', 1, []byte{'N'}, []byte{0, 1, 'x'}), &c); err == nil {
		t.Error("unknown column kind accepted")
	}
	if err := Parse(msg('B', 1, []byte{'N'}, tuple()), &c); err == nil || IsChange([]byte{'B'}) {
		t.Error("begin parsed as a change")
	}
}
