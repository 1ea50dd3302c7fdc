package status

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// TestStatusPageInChromium loads the page in Debian's headless Chromium,
// waits for the DAG to render from /api/status, checks nodes, edges, a
// watermark, a live update and that no planted secret reaches the page, and
// saves test-artifacts/status.png.
func TestStatusPageInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s not found (%v): install Debian's Chromium with `apt-get install -y chromium` "+
			"(make test does it: see the chromium target in the Makefile)", chromiumPath, err)
	}
	src := newFakeSource()
	srv := newTestServer(t, src)

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1500, 1000),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	fail := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	fail("load the page in chromium", chromedp.Do(bctx,
		chromedp.Navigate(srv.URL),
		chromedp.WaitVisible(chromedp.CSS(`[data-node="fact_marketing"]`)),
	))
	nodes, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('.node')].map(n => n.dataset.node)`))
	fail("read the nodes", err)
	wm, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`[data-node="dim_customer"] .wm`)))
	fail("read a watermark", err)
	edges, err := chromedp.Run(bctx, chromedp.Evaluate[string](
		`[...document.querySelectorAll('#edges path[data-edge]')].map(p => p.dataset.edge).sort().join(',')`))
	fail("read the edges", err)
	want := []string{"dim_date", "dim_customer", "dim_product", "dim_seller", "dim_campaign",
		"fact_sales", "fact_inventory", "fact_cart", "fact_marketing"}
	for _, w := range want {
		if !slices.Contains(nodes, w) {
			t.Errorf("node %s not rendered (got %v)", w, nodes)
		}
	}
	if wm != "0/16B3748" {
		t.Errorf("dim_customer watermark shows %q, want 0/16B3748", wm)
	}
	if !strings.Contains(edges, "dim_date→dim_customer") || !strings.Contains(edges, "fact_sales→fact_marketing") ||
		strings.Contains(edges, "dim_date→fact_sales") {
		t.Errorf("edges drawn: %s", edges)
	}

	// Live update: a later poll shows a new watermark without reloading.
	src.update(func(s *Snapshot) { s.Pipelines[1].Watermark = 0x2A000000FF })
	_, err = chromedp.Run(bctx, chromedp.Poll[bool](
		`document.querySelector('[data-node="dim_customer"] .wm').textContent === '2A/FF'`,
		chromedp.WithPollingTimeout(10*time.Second)))
	fail("the page did not update itself", err)
	html, err := chromedp.Run(bctx, chromedp.OuterHTML(chromedp.CSS("html")))
	fail("read the page", err)
	assertNoSecret(t, "the rendered page", html)
	if !strings.Contains(html, "xxxxx") {
		t.Error("the rendered page shows no redaction mark where the planted secrets were")
	}

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	fail("screenshot", err)
	path := artifactPath(t, "status.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// artifactPath returns test-artifacts/<name> at the repository root (git-ignored).
func artifactPath(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.mod) not found")
		}
		dir = parent
	}
	out := filepath.Join(dir, "test-artifacts")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(out, name)
}
