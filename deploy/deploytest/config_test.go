package deploytest

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// configKeys reads the YAML keys of cmd/starstream's Config from its source, so the
// configuration files and STARSTREAM_* variables written here are checked against the
// binary that reads them without building it (DuckDB makes that a minute). It returns
// section → key → Go type.
func configKeys(t *testing.T) map[string]map[string]string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "cmd", "starstream")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("cmd/starstream is missing: configuration keys cannot be checked: %v", err)
	}
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				if ts.Name.Name != "Config" {
					continue
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					t.Fatalf("%s: Config is not a struct", name)
				}
				return sectionKeys(t, st)
			}
		}
	}
	t.Fatalf("no type Config in %s", dir)
	return nil
}

func sectionKeys(t *testing.T, st *ast.StructType) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, f := range st.Fields.List {
		section := yamlTag(f)
		inner, ok := f.Type.(*ast.StructType)
		if section == "" || !ok {
			t.Fatalf("Config field %v: want an inline struct with a yaml tag (section), as LoadConfig's env mapping expects", f.Names)
		}
		out[section] = map[string]string{}
		for _, kf := range inner.Fields.List {
			if key := yamlTag(kf); key != "" {
				out[section][key] = goType(kf.Type)
			}
		}
	}
	return out
}

func yamlTag(f *ast.Field) string {
	if f.Tag == nil {
		return ""
	}
	tag, err := strconv.Unquote(f.Tag.Value)
	if err != nil {
		return ""
	}
	name, _, _ := strings.Cut(reflect.StructTag(tag).Get("yaml"), ",")
	return name
}

func goType(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.ArrayType:
		return "[]" + goType(e.Elt)
	default:
		return "other"
	}
}

// checkConfigFile decodes a starstream YAML configuration and fails on a section or key
// that cmd/starstream would reject (it decodes strictly too), or on a value of the wrong
// shape. It returns the decoded sections.
func checkConfigFile(t *testing.T, where string, b []byte) map[string]map[string]any {
	t.Helper()
	keys := configKeys(t)
	var doc map[string]map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	for section, kv := range doc {
		known, ok := keys[section]
		if !ok {
			t.Errorf("%s: unknown section %q (known: %v)", where, section, sortedKeys(keys))
			continue
		}
		for k, v := range kv {
			typ, ok := known[k]
			if !ok {
				t.Errorf("%s: unknown key %s.%s (known: %v)", where, section, k, sortedKeys(known))
				continue
			}
			if !shapeFits(typ, v) {
				t.Errorf("%s: %s.%s = %v (%T) does not fit Go type %s", where, section, k, v, v, typ)
			}
		}
	}
	return doc
}

func shapeFits(typ string, v any) bool {
	switch typ {
	case "string":
		_, ok := v.(string)
		return ok
	case "int":
		_, ok := v.(int)
		return ok
	case "bool":
		_, ok := v.(bool)
		return ok
	case "[]string":
		l, ok := v.([]any)
		for _, e := range l {
			if _, isString := e.(string); !isString {
				return false
			}
		}
		return ok
	default:
		return true
	}
}

// checkEnvName fails unless name is a STARSTREAM_<SECTION>_<KEY> override that
// cmd/starstream maps onto a Config key, or one of the variables it reads besides:
// STARSTREAM_CONFIG (the --config default) and STARSTREAM_MEMORY_LIMIT (the
// container's memory limit, cmd/starstream/memlimit.go).
func checkEnvName(t *testing.T, where, name string) {
	t.Helper()
	if !strings.HasPrefix(name, "STARSTREAM_") || name == "STARSTREAM_CONFIG" || name == "STARSTREAM_MEMORY_LIMIT" {
		return
	}
	for section, keys := range configKeys(t) {
		for key := range keys {
			if name == "STARSTREAM_"+strings.ToUpper(section+"_"+key) {
				return
			}
		}
	}
	t.Errorf("%s: %s is not an override cmd/starstream reads (STARSTREAM_<SECTION>_<KEY> of its Config)", where, name)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestConfigKeysAreReadFromSource(t *testing.T) {
	keys := configKeys(t)
	for _, want := range []string{"postgres.dsn", "postgres.password_file", "kafka.brokers", "warehouse.kind", "http.addr"} {
		section, key, _ := strings.Cut(want, ".")
		if _, ok := keys[section][key]; !ok {
			t.Errorf("cmd/starstream Config has no %s: the deployment files rely on it", want)
		}
	}
}
