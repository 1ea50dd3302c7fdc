package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/facts"
	"github.com/starstream/starstream/stream"
)

// pipeline is what `run` starts: a dimension or a fact.
type pipeline interface {
	Name() string
	Run(ctx context.Context) error
	Stats() stream.Stats
}

// node is a pipeline in the DAG, built on demand.
type node struct {
	name     string
	upstream []string
	build    func(dimensions.Env) (pipeline, error)
}

// registry is the explicit list of pipelines, in dependency order.
func registry() []node {
	nodes := []node{{name: dimensions.DateName, build: func(e dimensions.Env) (pipeline, error) { return dimensions.NewDatePipeline(e) }}}
	for _, spec := range dimensions.All() {
		nodes = append(nodes, node{name: spec.Name, upstream: spec.Upstream,
			build: func(e dimensions.Env) (pipeline, error) { return dimensions.NewPipeline(spec, e) }})
	}
	for _, spec := range facts.All() {
		nodes = append(nodes, node{name: spec.Name, upstream: spec.Upstream,
			build: func(e dimensions.Env) (pipeline, error) { return facts.NewPipeline(spec, e) }})
	}
	return nodes
}

// resolve returns the named pipelines and everything upstream of them (only the
// named ones when only is set), in dependency order, like the batch runner's
// --pipelines. No names means all.
func resolve(names []string, only bool) ([]node, error) {
	all := registry()
	byName := map[string]node{}
	for _, n := range all {
		byName[n.name] = n
	}
	if len(names) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	var visit func(string) error
	visit = func(name string) error {
		n, ok := byName[name]
		if !ok {
			known := make([]string, 0, len(all))
			for _, n := range all {
				known = append(known, n.name)
			}
			return fmt.Errorf("%w %q (known: %s)", dimensions.ErrUnknownPipeline, name, strings.Join(known, ", "))
		}
		if want[name] {
			return nil
		}
		want[name] = true
		if only {
			return nil
		}
		for _, up := range n.upstream {
			if err := visit(up); err != nil {
				return err
			}
		}
		return nil
	}
	for _, name := range names {
		if err := visit(strings.TrimSpace(name)); err != nil {
			return nil, err
		}
	}
	var out []node
	for _, n := range all { // registry order is a topological order
		if want[n.name] {
			out = append(out, n)
		}
	}
	return out, nil
}

// dagText renders the DAG, upstream → downstream.
func dagText() string {
	var b strings.Builder
	down := map[string][]string{}
	for _, n := range registry() {
		for _, up := range n.upstream {
			down[up] = append(down[up], n.name)
		}
	}
	for _, n := range registry() {
		d := down[n.name]
		sort.Strings(d)
		if len(d) == 0 {
			fmt.Fprintf(&b, "%s\n", n.name)
			continue
		}
		fmt.Fprintf(&b, "%s → %s\n", n.name, strings.Join(d, ", "))
	}
	return b.String()
}
