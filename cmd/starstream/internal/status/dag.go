package status

import "slices"

// layout gives each pipeline its column (the longest path from a root) and
// the edges to draw: the transitive reduction of the upstream relation, so
// dim_date → fact_sales is not drawn when dim_date → dim_customer → fact_sales
// is. Upstream pipelines that this process does not run become external nodes.
func layout(nodes []Node) (levels map[string]int, edges [][2]string, external []string) {
	up := map[string][]string{}
	known := map[string]bool{}
	for _, n := range nodes {
		known[n.Name] = true
	}
	var order []string
	for _, n := range nodes {
		order = append(order, n.Name)
		up[n.Name] = n.Upstream
		for _, u := range n.Upstream {
			if !known[u] {
				known[u] = true
				external = append(external, u)
				order = append(order, u)
			}
		}
	}
	levels = map[string]int{}
	visiting := map[string]bool{}
	var level func(string) int
	level = func(name string) int {
		if l, ok := levels[name]; ok {
			return l
		}
		if visiting[name] { // a cycle would be a bug elsewhere; do not loop on it
			return 0
		}
		visiting[name] = true
		l := 0
		for _, u := range up[name] {
			l = max(l, level(u)+1)
		}
		levels[name] = l
		return l
	}
	for _, name := range order {
		level(name)
	}
	// reaches reports whether to is reachable from from's upstream in two or more steps.
	var reachesVia func(from, to string, depth int, seen map[string]bool) bool
	reachesVia = func(from, to string, depth int, seen map[string]bool) bool {
		for _, u := range up[from] {
			if u == to && depth > 0 {
				return true
			}
			if seen[u] {
				continue
			}
			seen[u] = true
			if reachesVia(u, to, depth+1, seen) {
				return true
			}
		}
		return false
	}
	for _, name := range order {
		for _, u := range up[name] {
			if !reachesVia(name, u, 0, map[string]bool{}) {
				edges = append(edges, [2]string{u, name})
			}
		}
	}
	slices.SortStableFunc(edges, func(a, b [2]string) int { return levels[a[0]] - levels[b[0]] })
	return levels, edges, external
}
