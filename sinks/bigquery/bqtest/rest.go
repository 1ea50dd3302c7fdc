package bqtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	bq "google.golang.org/api/bigquery/v2"
)

// restHandler serves the BigQuery v2 REST endpoints for datasets and tables
// (https://cloud.google.com/bigquery/docs/reference/rest/v2/datasets and
// .../rest/v2/tables): get, insert, patch, update, delete.
func (s *Server) restHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The real base path is /bigquery/v2/; option.WithEndpoint(URL) drops it.
		path := strings.TrimPrefix(r.URL.Path, "/bigquery/v2")
		parts := strings.Split(strings.Trim(path, "/"), "/")
		if len(parts) < 3 || parts[0] != "projects" || parts[2] != "datasets" {
			restError(w, http.StatusNotFound, "notFound", "no such endpoint: "+r.URL.Path)
			return
		}
		project := parts[1]
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case len(parts) == 3 && r.Method == http.MethodPost:
			s.insertDataset(w, r, project)
		case len(parts) == 4 && r.Method == http.MethodGet:
			s.getDataset(w, project, parts[3])
		case len(parts) == 4 && r.Method == http.MethodDelete:
			s.deleteDataset(w, project, parts[3])
		case len(parts) == 5 && parts[4] == "tables" && r.Method == http.MethodPost:
			s.insertTable(w, r, project, parts[3])
		case len(parts) == 6 && parts[4] == "tables":
			switch r.Method {
			case http.MethodGet:
				s.getTable(w, project, parts[3], parts[5])
			case http.MethodPatch, http.MethodPut:
				s.updateTable(w, r, project, parts[3], parts[5])
			case http.MethodDelete:
				s.deleteTable(w, project, parts[3], parts[5])
			default:
				restError(w, http.StatusMethodNotAllowed, "invalid", "method not allowed")
			}
		default:
			restError(w, http.StatusNotFound, "notFound", "no such endpoint: "+r.Method+" "+r.URL.Path)
		}
	})
}

// restError writes the v2 error envelope the Go client turns into a *googleapi.Error.
func restError(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": code, "message": msg,
		"errors": []map[string]any{{"reason": reason, "message": msg, "domain": "global"}},
	}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) insertDataset(w http.ResponseWriter, r *http.Request, project string) {
	var d bq.Dataset
	if err := json.NewDecoder(r.Body).Decode(&d); err != nil || d.DatasetReference == nil || d.DatasetReference.DatasetId == "" {
		restError(w, http.StatusBadRequest, "invalid", "dataset reference required")
		return
	}
	id := d.DatasetReference.DatasetId
	if _, ok := s.datasets[tableKey(project, id)]; ok {
		restError(w, http.StatusConflict, "duplicate", fmt.Sprintf("Already Exists: Dataset %s:%s", project, id))
		return
	}
	d.DatasetReference.ProjectId = project
	d.Id = project + ":" + id
	d.Kind = "bigquery#dataset"
	if d.Location == "" {
		d.Location = "US"
	}
	d.CreationTime = time.Now().UnixMilli()
	d.Etag = "1"
	s.datasets[tableKey(project, id)] = &dataset{meta: &d, tables: map[string]*table{}}
	writeJSON(w, &d)
}

func (s *Server) getDataset(w http.ResponseWriter, project, id string) {
	d, ok := s.datasets[tableKey(project, id)]
	if !ok {
		restError(w, http.StatusNotFound, "notFound", fmt.Sprintf("Not found: Dataset %s:%s", project, id))
		return
	}
	writeJSON(w, d.meta)
}

func (s *Server) deleteDataset(w http.ResponseWriter, project, id string) {
	if _, ok := s.datasets[tableKey(project, id)]; !ok {
		restError(w, http.StatusNotFound, "notFound", fmt.Sprintf("Not found: Dataset %s:%s", project, id))
		return
	}
	delete(s.datasets, tableKey(project, id))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) insertTable(w http.ResponseWriter, r *http.Request, project, ds string) {
	d, ok := s.datasets[tableKey(project, ds)]
	if !ok {
		restError(w, http.StatusNotFound, "notFound", fmt.Sprintf("Not found: Dataset %s:%s", project, ds))
		return
	}
	var t bq.Table
	if err := json.NewDecoder(r.Body).Decode(&t); err != nil || t.TableReference == nil || t.TableReference.TableId == "" {
		restError(w, http.StatusBadRequest, "invalid", "table reference required")
		return
	}
	name := t.TableReference.TableId
	if _, ok := d.tables[strings.ToLower(name)]; ok {
		restError(w, http.StatusConflict, "duplicate", fmt.Sprintf("Already Exists: Table %s:%s.%s", project, ds, name))
		return
	}
	if err := validateTable(&t); err != nil {
		restError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	t.TableReference.ProjectId, t.TableReference.DatasetId = project, ds
	t.Id = fmt.Sprintf("%s:%s.%s", project, ds, name)
	t.Kind, t.Type, t.Location = "bigquery#table", "TABLE", d.meta.Location
	t.CreationTime = time.Now().UnixMilli()
	tb := &table{project: project, dataset: ds, name: name, meta: &t, keyed: map[string]*change{}}
	tb.touch()
	d.tables[strings.ToLower(name)] = tb
	writeJSON(w, &t)
}

func (t *table) touch() {
	t.gen++
	t.meta.Etag = strconv.Itoa(t.gen)
	t.meta.LastModifiedTime = uint64(time.Now().UnixMilli())
}

func (s *Server) getTable(w http.ResponseWriter, project, ds, name string) {
	t, err := s.lookupTable(project, ds, name)
	if err != nil {
		restError(w, http.StatusNotFound, "notFound", err.Error())
		return
	}
	writeJSON(w, t.meta)
}

func (s *Server) deleteTable(w http.ResponseWriter, project, ds, name string) {
	if _, err := s.lookupTable(project, ds, name); err != nil {
		restError(w, http.StatusNotFound, "notFound", err.Error())
		return
	}
	delete(s.datasets[tableKey(project, ds)].tables, strings.ToLower(name))
	w.WriteHeader(http.StatusNoContent)
}

// updateTable implements tables.patch ("only replaces fields that are provided
// in the submitted table resource") and tables.update (replaces the resource).
// With If-Match, a stale etag fails with 412.
func (s *Server) updateTable(w http.ResponseWriter, r *http.Request, project, ds, name string) {
	t, err := s.lookupTable(project, ds, name)
	if err != nil {
		restError(w, http.StatusNotFound, "notFound", err.Error())
		return
	}
	if m := r.Header.Get("If-Match"); m != "" && m != t.meta.Etag {
		restError(w, http.StatusPreconditionFailed, "conditionNotMet", "Precondition check failed.")
		return
	}
	var in bq.Table
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		restError(w, http.StatusBadRequest, "invalid", "bad table resource")
		return
	}
	next := cloneTable(t.meta)
	if r.Method == http.MethodPut || in.Schema != nil {
		if in.Schema == nil {
			restError(w, http.StatusBadRequest, "invalid", "tables.update needs the schema")
			return
		}
		if err := checkSchemaChange(t.meta.Schema, in.Schema); err != nil {
			restError(w, http.StatusBadRequest, "invalid", err.Error())
			return
		}
		next.Schema = in.Schema
	}
	if in.Description != "" || r.Method == http.MethodPut {
		next.Description = in.Description
	}
	if in.MaxStaleness != "" {
		next.MaxStaleness = in.MaxStaleness
	}
	if in.Clustering != nil {
		next.Clustering = in.Clustering
	}
	if in.TableConstraints != nil {
		next.TableConstraints = in.TableConstraints
	}
	if in.TimePartitioning != nil {
		if t.meta.TimePartitioning == nil || in.TimePartitioning.Field != t.meta.TimePartitioning.Field {
			restError(w, http.StatusBadRequest, "invalid", "Cannot change partitioning spec of an existing table")
			return
		}
		next.TimePartitioning = in.TimePartitioning
	}
	if in.Labels != nil {
		next.Labels = in.Labels
	}
	if err := validateTable(next); err != nil {
		restError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	t.meta = next
	t.touch()
	writeJSON(w, t.meta)
}

var knownTypes = map[string]bool{
	"STRING": true, "BYTES": true, "INTEGER": true, "INT64": true, "FLOAT": true, "FLOAT64": true,
	"NUMERIC": true, "BIGNUMERIC": true, "BOOLEAN": true, "BOOL": true, "TIMESTAMP": true,
	"DATE": true, "TIME": true, "DATETIME": true, "JSON": true, "GEOGRAPHY": true,
}

// validateTable checks a table resource against the documented limits.
func validateTable(t *bq.Table) error {
	if t.Schema == nil || len(t.Schema.Fields) == 0 {
		return fmt.Errorf("table needs a schema")
	}
	cols := map[string]*bq.TableFieldSchema{}
	for _, f := range t.Schema.Fields {
		if f.Name == "" || !knownTypes[f.Type] {
			return fmt.Errorf("field %q: unsupported type %q", f.Name, f.Type)
		}
		switch f.Mode {
		case "", "NULLABLE", "REQUIRED":
		default:
			return fmt.Errorf("field %q: unsupported mode %q", f.Name, f.Mode)
		}
		l := strings.ToLower(f.Name)
		if cols[l] != nil {
			return fmt.Errorf("duplicate column %q (column names are case-insensitive)", f.Name)
		}
		cols[l] = f
	}
	// "Composite primary keys containing up to 16 columns are supported."
	// (https://cloud.google.com/bigquery/docs/change-data-capture#prerequisites)
	if tc := t.TableConstraints; tc != nil && tc.PrimaryKey != nil {
		pk := tc.PrimaryKey.Columns
		if len(pk) == 0 || len(pk) > 16 {
			return fmt.Errorf("primary key needs 1 to 16 columns")
		}
		for _, k := range pk {
			if cols[strings.ToLower(k)] == nil {
				return fmt.Errorf("primary key column %q does not exist", k)
			}
		}
	}
	// "The partitioning column must be a top-level DATE, TIMESTAMP, or DATETIME
	// field" (https://cloud.google.com/bigquery/docs/partitioned-tables#date_timestamp_partitioned_tables).
	if tp := t.TimePartitioning; tp != nil {
		switch tp.Type {
		case "DAY", "HOUR", "MONTH", "YEAR":
		default:
			return fmt.Errorf("time partitioning type %q", tp.Type)
		}
		if tp.Field != "" {
			c := cols[strings.ToLower(tp.Field)]
			if c == nil || (c.Type != "DATE" && c.Type != "TIMESTAMP" && c.Type != "DATETIME") {
				return fmt.Errorf("partitioning field %q must be a top-level DATE, TIMESTAMP or DATETIME column", tp.Field)
			}
		}
	}
	// "You can specify up to four clustering columns" and they must be top-level,
	// non-repeated columns (https://cloud.google.com/bigquery/docs/clustered-tables#limitations).
	if c := t.Clustering; c != nil {
		if len(c.Fields) > 4 {
			return fmt.Errorf("at most 4 clustering columns")
		}
		for _, f := range c.Fields {
			if cols[strings.ToLower(f)] == nil {
				return fmt.Errorf("clustering column %q does not exist", f)
			}
		}
	}
	if t.MaxStaleness != "" {
		if _, err := bigquery.ParseInterval(t.MaxStaleness); err != nil {
			return fmt.Errorf("max_staleness %q: %v", t.MaxStaleness, err)
		}
	}
	return nil
}

// checkSchemaChange allows what BigQuery allows on an existing table: adding
// NULLABLE columns at the end and relaxing REQUIRED to NULLABLE; "You cannot add
// a REQUIRED column to an existing table schema", and columns are neither dropped
// nor retyped by a patch (https://cloud.google.com/bigquery/docs/managing-table-schemas).
func checkSchemaChange(old, next *bq.TableSchema) error {
	if len(next.Fields) < len(old.Fields) {
		return fmt.Errorf("Provided Schema does not match Table: columns cannot be dropped")
	}
	for i, o := range old.Fields {
		n := next.Fields[i]
		if !strings.EqualFold(o.Name, n.Name) || normType(o.Type) != normType(n.Type) {
			return fmt.Errorf("Provided Schema does not match Table: field %s changed", o.Name)
		}
		if o.Mode != "REQUIRED" && n.Mode == "REQUIRED" {
			return fmt.Errorf("Provided Schema does not match Table: field %s has changed mode from NULLABLE to REQUIRED", o.Name)
		}
	}
	for _, n := range next.Fields[len(old.Fields):] {
		if n.Mode == "REQUIRED" {
			return fmt.Errorf("Provided Schema does not match Table: cannot add required field %s", n.Name)
		}
	}
	return nil
}

func normType(t string) string {
	switch t {
	case "INTEGER":
		return "INT64"
	case "FLOAT":
		return "FLOAT64"
	case "BOOLEAN":
		return "BOOL"
	}
	return t
}
