// Package postgres holds the PostgreSQL side of the deployment: the DDL of the
// e-commerce source database that starstream captures.
package postgres

import _ "embed"

// SchemaSQL is the DDL of the shop source schema (DESIGN §3). Its names are
// unqualified and every statement is idempotent, so it can be run repeatedly
// into any schema after setting search_path to it.
//
//go:embed schema.sql
var SchemaSQL string
