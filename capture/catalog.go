package capture

import (
	"context"
	"fmt"
	"reflect"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starstream/starstream/capture/internal/pgdecode"
	"github.com/starstream/starstream/stream"
)

// querier is what the catalog needs: a *pgx.Conn or a pgx.Tx (the snapshot
// reads the catalog inside its snapshot, streaming reads the current one).
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// typeCatalog resolves non-built-in types through pg_type, with a cache.
type typeCatalog struct {
	db    querier
	cache map[uint32]pgdecode.TypeInfo
}

var _ pgdecode.Catalog = (*typeCatalog)(nil)

func (c *typeCatalog) Type(ctx context.Context, oid uint32) (pgdecode.TypeInfo, error) {
	if ti, ok := c.cache[oid]; ok {
		return ti, nil
	}
	ti := pgdecode.TypeInfo{OID: oid}
	var typtype, category, delim string
	var elem, base uint32
	err := c.db.QueryRow(ctx, `SELECT format_type(oid, NULL), typtype::text, typcategory::text, typdelim::text,
		CASE WHEN typcategory = 'A' THEN typelem ELSE 0 END, typbasetype, typtypmod
		FROM pg_type WHERE oid = $1`, oid).Scan(&ti.Name, &typtype, &category, &delim, &elem, &base, &ti.BaseMod)
	if err != nil {
		return ti, err
	}
	ti.Type, ti.Category, ti.Elem, ti.Base = typtype[0], category[0], elem, base
	if delim != "" {
		ti.Delim = delim[0]
	}
	if c.cache == nil {
		c.cache = map[uint32]pgdecode.TypeInfo{}
	}
	c.cache[oid] = ti
	return ti, nil
}

// sourceColumn is a column as the source describes it (RelationMessage or pg_attribute).
type sourceColumn struct {
	Name   string
	OID    uint32
	Typmod int32
}

// relation is one captured table version: its schema, topic and decoders,
// with columns in the order pgoutput sends them.
type relation struct {
	ID     uint32
	Schema stream.TableSchema
	Topic  string
	name   string // schema.table
	Decode []pgdecode.Decoder
	isKey  []bool
	ident  byte // relreplident: d default, f full, i index, n nothing
	skip   bool // not captured (the state and progress tables)
	signal bool // the signal table: watermarks and backfill requests
}

// tableMeta is what the catalog says about a table beyond its column types.
type tableMeta struct {
	notNull map[string]bool
	pk      []string // primary key columns
	ri      []string // replica identity index columns
	ident   byte
	oid     uint32
}

func loadTableMeta(ctx context.Context, db querier, schema, table string) (tableMeta, []sourceColumn, error) {
	rows, err := db.Query(ctx, `
SELECT c.oid, a.attname, a.atttypid, a.atttypmod, a.attnotnull,
       coalesce(a.attnum = ANY(pk.indkey), false),
       coalesce(a.attnum = ANY(ri.indkey), false),
       c.relreplident::text
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
LEFT JOIN pg_index ri ON ri.indrelid = c.oid AND ri.indisreplident
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum`, schema, table)
	if err != nil {
		return tableMeta{}, nil, fmt.Errorf("read columns of %s.%s: %w", schema, table, err)
	}
	defer rows.Close()
	meta := tableMeta{notNull: map[string]bool{}}
	var cols []sourceColumn
	for rows.Next() {
		var c sourceColumn
		var notNull, isPK, isRI bool
		var ident string
		if err := rows.Scan(&meta.oid, &c.Name, &c.OID, &c.Typmod, &notNull, &isPK, &isRI, &ident); err != nil {
			return tableMeta{}, nil, fmt.Errorf("read columns of %s.%s: %w", schema, table, err)
		}
		cols = append(cols, c)
		meta.notNull[c.Name] = notNull
		if isPK {
			meta.pk = append(meta.pk, c.Name)
		}
		if isRI {
			meta.ri = append(meta.ri, c.Name)
		}
		if ident != "" {
			meta.ident = ident[0]
		}
	}
	if err := rows.Err(); err != nil {
		return tableMeta{}, nil, fmt.Errorf("read columns of %s.%s: %w", schema, table, err)
	}
	if len(cols) == 0 {
		return tableMeta{}, nil, fmt.Errorf("table %s.%s: not found or has no columns", schema, table)
	}
	return meta, cols, nil
}

// buildRelation turns source columns into a table version. flagged lists the
// columns pgoutput marks as part of the replica identity (nil from the catalog).
func buildRelation(ctx context.Context, cat pgdecode.Catalog, meta tableMeta, id uint32, schema, table, prefix string,
	cols []sourceColumn, flagged []string) (*relation, error) {
	rel := &relation{ID: id, Topic: stream.Topic(prefix, schema, table), ident: meta.ident, name: schema + "." + table,
		Schema: stream.TableSchema{Schema: schema, Table: table}}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	key := chooseKey(meta, names, flagged)
	for _, c := range cols {
		col, err := pgdecode.Resolve(ctx, c.OID, c.Typmod, cat)
		if err != nil {
			return nil, fmt.Errorf("column %s of %s.%s: %w", c.Name, schema, table, err)
		}
		rel.Schema.Columns = append(rel.Schema.Columns, stream.Column{
			Name: c.Name, Type: col.Type, Nullable: !meta.notNull[c.Name], Key: slices.Contains(key, c.Name),
		})
		rel.Decode = append(rel.Decode, col.Decode)
		rel.isKey = append(rel.isKey, slices.Contains(key, c.Name))
	}
	if err := rel.Schema.Validate(); err != nil {
		return nil, terminal(fmt.Errorf("%w: %w", ErrUnsupported, err))
	}
	return rel, nil
}

// chooseKey picks the Kafka key columns: the primary key, unless the replica
// identity is another unique index (then deletes carry only that index's
// columns); a table without either is keyed by all its columns.
func chooseKey(meta tableMeta, names, flagged []string) []string {
	present := func(cols []string) bool {
		if len(cols) == 0 {
			return false
		}
		for _, c := range cols {
			if !slices.Contains(names, c) {
				return false
			}
		}
		return true
	}
	switch {
	case meta.ident == 'i' && present(meta.ri):
		return meta.ri
	case present(meta.pk):
		return meta.pk
	case present(meta.ri):
		return meta.ri
	case meta.ident != 'f' && len(flagged) > 0:
		return flagged
	}
	return names
}

func sameSchema(a, b stream.TableSchema) bool { return reflect.DeepEqual(a, b) }

// publicationTables lists the tables a publication covers, in a stable order.
func publicationTables(ctx context.Context, db querier, publication string) ([][2]string, error) {
	rows, err := db.Query(ctx, `SELECT schemaname, tablename FROM pg_publication_tables
		WHERE pubname = $1 ORDER BY schemaname, tablename`, publication)
	if err != nil {
		return nil, fmt.Errorf("list tables of publication %s: %w", publication, err)
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var s, t string
		if err := rows.Scan(&s, &t); err != nil {
			return nil, err
		}
		out = append(out, [2]string{s, t})
	}
	return out, rows.Err()
}
