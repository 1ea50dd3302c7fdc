package bigquery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"google.golang.org/api/googleapi"

	"github.com/starstream/starstream/sinks"
)

// Column names: letters, digits and underscores, starting with a letter or an
// underscore, at most 300 characters
// (https://cloud.google.com/bigquery/docs/schemas#column_names). Table names
// here keep to the same alphabet, which every BigQuery table name accepts.
var (
	columnName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,299}$`)
	tableName  = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
)

var bqTypes = map[sinks.Type]bigquery.FieldType{
	sinks.String:    bigquery.StringFieldType,
	sinks.Int64:     bigquery.IntegerFieldType,
	sinks.Float64:   bigquery.FloatFieldType,
	sinks.Numeric:   bigquery.NumericFieldType,
	sinks.Bool:      bigquery.BooleanFieldType,
	sinks.Timestamp: bigquery.TimestampFieldType,
	sinks.Date:      bigquery.DateFieldType,
	sinks.JSON:      bigquery.JSONFieldType,
	sinks.Bytes:     bigquery.BytesFieldType,
}

func validate(t sinks.Table) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if !tableName.MatchString(t.Name) || len(t.Name) > 1024 {
		return fmt.Errorf("%w: table name %q: letters, digits and underscores only", sinks.ErrInvalidTable, t.Name)
	}
	for _, c := range t.Columns {
		if !columnName.MatchString(c.Name) || strings.HasPrefix(strings.ToUpper(c.Name), "_CHANGE_") {
			return fmt.Errorf("%w: %s: column name %q is not a BigQuery column name", sinks.ErrInvalidTable, t.Name, c.Name)
		}
		if _, ok := bqTypes[c.Type]; !ok {
			return fmt.Errorf("%w: %s: column %q has unknown type %q", sinks.ErrInvalidTable, t.Name, c.Name, c.Type)
		}
	}
	return nil
}

func fieldSchema(c sinks.Column) *bigquery.FieldSchema {
	return &bigquery.FieldSchema{Name: c.Name, Type: bqTypes[c.Type], Required: !c.Nullable, Description: c.Description}
}

// metadata is the table as EnsureTable creates it.
func (w *Writer) metadata(t sinks.Table) *bigquery.TableMetadata {
	md := &bigquery.TableMetadata{
		Name:        t.Name,
		Description: t.Description,
		// CDC needs a primary key; BigQuery's are NOT ENFORCED
		// (https://cloud.google.com/bigquery/docs/change-data-capture#prerequisites).
		TableConstraints: &bigquery.TableConstraints{PrimaryKey: &bigquery.PrimaryKey{Columns: t.PrimaryKey}},
	}
	for _, c := range t.Columns {
		md.Schema = append(md.Schema, fieldSchema(c))
	}
	if t.PartitionBy != "" {
		md.TimePartitioning = &bigquery.TimePartitioning{Type: bigquery.DayPartitioningType, Field: t.PartitionBy}
	}
	if len(t.ClusterBy) > 0 {
		md.Clustering = &bigquery.Clustering{Fields: t.ClusterBy}
	}
	if w.cfg.MaxStaleness > 0 {
		md.MaxStaleness = bigquery.IntervalValueFromDuration(w.cfg.MaxStaleness)
	}
	return md
}

// EnsureTable creates the dataset and the table if missing, adds the nullable
// columns the definition gained (never dropping or narrowing anything), and
// refreshes the schema rows are written with from the table BigQuery holds.
func (w *Writer) EnsureTable(ctx context.Context, t sinks.Table) error {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := validate(t); err != nil {
		return err
	}
	if err := w.ensureDataset(ctx); err != nil {
		return err
	}
	md, err := w.ensureTable(ctx, t)
	if err != nil {
		return err
	}
	rs, err := newRowSchema(md.Schema)
	if err != nil {
		return fmt.Errorf("ensure table %s: %w", t.Name, err)
	}

	w.mu.Lock()
	st, ok := w.tables[t.Name]
	if ok {
		st.schema = rs
		w.mu.Unlock()
		return nil
	}
	w.mu.Unlock()

	// The default stream: the only one that accepts CDC rows ("You must use the
	// Storage Write API in the default stream", change-data-capture#prerequisites).
	// It has no offsets: delivery is at least once and the sequence numbers make
	// repeats harmless.
	stream, err := w.write.NewManagedStream(context.WithoutCancel(ctx),
		managedwriter.WithDestinationTable(managedwriter.TableParentFromParts(w.cfg.Project, w.cfg.Dataset, t.Name)),
		managedwriter.WithType(managedwriter.DefaultStream),
		managedwriter.WithSchemaDescriptor(rs.descriptor),
		managedwriter.WithDataOrigin("starstream"),
	)
	if err != nil {
		return fmt.Errorf("ensure table %s: open write stream: %w", t.Name, classify(err))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		stream.Close()
		return ErrClosed
	}
	if st, ok := w.tables[t.Name]; ok { // a concurrent EnsureTable won
		st.schema = rs
		stream.Close()
		return nil
	}
	w.tables[t.Name] = &tableState{name: t.Name, pk: slices.Clone(t.PrimaryKey), schema: rs, first: rs, stream: stream}
	return nil
}

func (w *Writer) ensureDataset(ctx context.Context) error {
	ds := w.rest.Dataset(w.cfg.Dataset)
	_, err := ds.Metadata(ctx)
	if err == nil {
		return nil
	}
	if !hasStatus(err, http.StatusNotFound) {
		return fmt.Errorf("dataset %s: %w", w.cfg.Dataset, classify(err))
	}
	err = ds.Create(ctx, &bigquery.DatasetMetadata{Location: w.cfg.Location, Description: "starstream warehouse"})
	if err != nil && !hasStatus(err, http.StatusConflict) { // 409: created meanwhile
		return fmt.Errorf("create dataset %s: %w", w.cfg.Dataset, classify(err))
	}
	return nil
}

// ensureTable returns the table's metadata after creating it, or after adding
// the columns the definition gained and bringing its description and
// max_staleness up to date.
func (w *Writer) ensureTable(ctx context.Context, t sinks.Table) (*bigquery.TableMetadata, error) {
	tbl := w.rest.Dataset(w.cfg.Dataset).Table(t.Name)
	for attempt := 0; ; attempt++ {
		md, err := tbl.Metadata(ctx)
		if hasStatus(err, http.StatusNotFound) {
			err = tbl.Create(ctx, w.metadata(t))
			switch {
			case err == nil:
				return tbl.Metadata(ctx)
			case hasStatus(err, http.StatusConflict) && attempt == 0:
				continue // created concurrently: grow it instead
			case hasStatus(err, http.StatusBadRequest):
				return nil, fmt.Errorf("%w: create table %s: %v", sinks.ErrInvalidTable, t.Name, err)
			default:
				return nil, fmt.Errorf("create table %s: %w", t.Name, classify(err))
			}
		}
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", t.Name, classify(err))
		}
		schema, err := grow(t, md)
		if err != nil {
			return nil, err
		}
		update, changed := bigquery.TableMetadataToUpdate{Schema: schema}, schema != nil
		if t.Description != "" && t.Description != md.Description {
			update.Description, changed = t.Description, true
		}
		if d := w.cfg.MaxStaleness; d > 0 && (md.MaxStaleness == nil || md.MaxStaleness.ToDuration() != d) {
			update.MaxStaleness, changed = bigquery.IntervalValueFromDuration(d), true
		}
		if !changed {
			return md, nil
		}
		// Guarded by the etag: a concurrent change makes this fail with 412 and
		// the loop reads the table again.
		md, err = tbl.Update(ctx, update, md.ETag)
		switch {
		case err == nil:
			w.logger.Info("bigquery table updated", "table", t.Name, "columns", len(md.Schema))
			return md, nil
		case hasStatus(err, http.StatusPreconditionFailed) && attempt < 3:
			continue
		case hasStatus(err, http.StatusBadRequest):
			return nil, fmt.Errorf("%w: add columns to %s: %v", sinks.ErrInvalidTable, t.Name, err)
		default:
			return nil, fmt.Errorf("add columns to %s: %w", t.Name, classify(err))
		}
	}
}

// grow checks an existing table against the definition and returns the schema
// with the columns the definition gained, or nil when nothing is missing.
func grow(t sinks.Table, md *bigquery.TableMetadata) (bigquery.Schema, error) {
	var pk []string
	if md.TableConstraints != nil && md.TableConstraints.PrimaryKey != nil {
		pk = md.TableConstraints.PrimaryKey.Columns
	}
	if !slices.Equal(pk, t.PrimaryKey) {
		return nil, fmt.Errorf("%w: table %s exists with primary key %v, the definition has %v", sinks.ErrInvalidTable, t.Name, pk, t.PrimaryKey)
	}
	have := map[string]*bigquery.FieldSchema{}
	for _, f := range md.Schema {
		have[strings.ToLower(f.Name)] = f
	}
	schema := slices.Clone(md.Schema)
	for _, c := range t.Columns {
		f, ok := have[strings.ToLower(c.Name)]
		if ok {
			if f.Type != bqTypes[c.Type] {
				return nil, fmt.Errorf("%w: table %s: column %s is %s in BigQuery, %s in the definition", sinks.ErrInvalidTable, t.Name, c.Name, f.Type, c.Type)
			}
			continue
		}
		// "You cannot add a REQUIRED column to an existing table schema."
		// (https://cloud.google.com/bigquery/docs/managing-table-schemas#add_columns)
		if !c.Nullable {
			return nil, fmt.Errorf("%w: table %s: column %s added to an existing table must be nullable", sinks.ErrInvalidTable, t.Name, c.Name)
		}
		schema = append(schema, fieldSchema(c))
	}
	if len(schema) == len(md.Schema) {
		return nil, nil
	}
	return schema, nil
}

func hasStatus(err error, code int) bool {
	var e *googleapi.Error
	return errors.As(err, &e) && e.Code == code
}
