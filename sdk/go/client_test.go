package setpoint_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	setpoint "github.com/setpoint/setpoint/sdk/go"
	"github.com/setpoint/setpoint/sdk/go/internal/devserver"
)

// newClient makes a client that logs into the test's output and is closed when the test ends.
func newClient(t *testing.T, address string, opts setpoint.Options) *setpoint.Client {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := setpoint.NewClient(address, opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func waitReady(t *testing.T, c *setpoint.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
}

func mustGet(t *testing.T, c *setpoint.Client, path string) setpoint.Value {
	t.Helper()
	v, err := c.Get(path)
	if err != nil {
		t.Fatalf("Get(%s): %v", path, err)
	}
	return v
}

func TestGetAfterWaitReady(t *testing.T) {
	s := devserver.Start(t)
	version, _ := s.Put("/myapp/database/host", "db.internal")
	s.Put("/myapp/database/pool", map[string]any{"size": 10, "timeout_ms": 250})
	s.Put("/myapp/database/password", "${secret:db-password}")

	c := newClient(t, s.Address(), setpoint.Options{Prefixes: []string{"/myapp"}})
	waitReady(t, c)

	host := mustGet(t, c, "/myapp/database/host")
	if host.String() != "db.internal" || host.Version != version {
		t.Fatalf("host = %q v%d, want db.internal v%d", host, host.Version, version)
	}
	var pool struct {
		Size      int `json:"size"`
		TimeoutMS int `json:"timeout_ms"`
	}
	if err := mustGet(t, c, "/myapp/database/pool").Decode(&pool); err != nil || pool.Size != 10 || pool.TimeoutMS != 250 {
		t.Fatalf("pool = %+v, %v; want size 10, timeout 250", pool, err)
	}
	// Secrets are never pushed resolved: the session carries the reference (Resolve reads it).
	if v := mustGet(t, c, "/myapp/database/password"); v.String() != "${secret:db-password}" {
		t.Fatalf("password = %q, want the reference itself", v)
	}
	if _, err := c.Get("/myapp/database/missing"); !errors.Is(err, setpoint.ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
	if c.IsStale() {
		t.Fatal("a synced client reports stale")
	}
	if _, err := c.Watch("/other", func(setpoint.Event) {}); !errors.Is(err, setpoint.ErrInvalid) {
		t.Fatalf("Watch outside the prefixes = %v, want ErrInvalid", err)
	}
}

func TestGetBeforeAnySyncIsNotSynced(t *testing.T) {
	// Nothing listens on this port: the client never syncs and has no cache file.
	c := newClient(t, fmt.Sprintf("127.0.0.1:%d", devserver.FreePort(t)), setpoint.Options{})
	if _, err := c.Get("/myapp/x"); !errors.Is(err, setpoint.ErrNotSynced) {
		t.Fatalf("Get before sync = %v, want ErrNotSynced", err)
	}
	if !c.IsStale() {
		t.Fatal("a client that never connected is not stale")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady without a server = %v, want a deadline error", err)
	}
}

func TestWatchSeesOnlyChangesWithOldAndNewValues(t *testing.T) {
	s := devserver.Start(t)
	s.Put("/myapp/database/host", "old-host")
	s.Put("/myapp/feature", true)

	c := newClient(t, s.Address(), setpoint.Options{})
	waitReady(t, c)
	var got recorder
	if _, err := c.Watch("/myapp/database", got.record); err != nil {
		t.Fatal(err)
	}

	version, revision := s.Put("/myapp/database/host", "new-host.internal")
	s.Put("/myapp/feature", false) // outside the watch: no event
	s.Put("/myapp/database/port", 5432)
	s.Del("/myapp/database/port")

	events := got.waitFor(t, 3)
	if len(events) != 3 {
		t.Fatalf("events = %s, want exactly 3 (no initial state, nothing outside the prefix)", describe(events))
	}
	first := events[0]
	if first.Path != "/myapp/database/host" || first.Value.String() != "new-host.internal" ||
		first.OldValue.String() != "old-host" || first.Version != version || first.Revision != revision ||
		first.Deleted || first.Format != "json" {
		t.Fatalf("first event = %+v, want host old-host → new-host.internal v%d r%d", first, version, revision)
	}
	created, deleted := events[1], events[2]
	if created.Path != "/myapp/database/port" || string(created.Value.Raw()) != "5432" || created.OldValue.Exists() {
		t.Fatalf("create event = %+v", created)
	}
	if !deleted.Deleted || deleted.Value.Exists() || string(deleted.OldValue.Raw()) != "5432" {
		t.Fatalf("delete event = %+v", deleted)
	}
	if _, err := c.Get("/myapp/database/port"); !errors.Is(err, setpoint.ErrNotFound) {
		t.Fatalf("Get after delete = %v, want ErrNotFound", err)
	}
	if v := mustGet(t, c, "/myapp/feature"); string(v.Raw()) != "false" {
		t.Fatalf("/myapp/feature = %s, want false", v.Raw())
	}
}

func TestWatchBeforeTheFirstSyncSeesNoInitialState(t *testing.T) {
	s := devserver.Start(t)
	s.Put("/early/a", 1)
	s.Put("/early/b", 2)
	c := newClient(t, s.Address(), setpoint.Options{})
	var got recorder
	if _, err := c.Watch("/early", got.record); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c)
	s.Put("/early/b", 3)
	events := got.waitFor(t, 1)
	if len(events) != 1 || events[0].Path != "/early/b" || events[0].OldValue.String() != "2" {
		t.Fatalf("events = %s, want only the change of /early/b", describe(events))
	}
}

func TestStoppedWatchGetsNothingMore(t *testing.T) {
	s := devserver.Start(t)
	c := newClient(t, s.Address(), setpoint.Options{})
	waitReady(t, c)
	var stopped, witness recorder
	w, err := c.Watch("/s", stopped.record)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Watch("/s", witness.record); err != nil {
		t.Fatal(err)
	}
	s.Put("/s/a", 1)
	stopped.waitFor(t, 1)
	witness.waitFor(t, 1)
	w.Stop()
	w.Stop() // idempotent
	s.Put("/s/a", 2)
	// Callbacks of one update run in registration order: once the witness (registered second)
	// has the event, the stopped watch would have had it too.
	witness.waitFor(t, 2)
	if got := stopped.all(); len(got) != 1 {
		t.Fatalf("the stopped watch got %s", describe(got))
	}
}

func TestBatchArrivesAsOneOrderedDelivery(t *testing.T) {
	s := devserver.Start(t)
	s.Put("/app/c", "gone soon")
	c := newClient(t, s.Address(), setpoint.Options{Prefixes: []string{"/app"}})
	waitReady(t, c)
	var got recorder
	if _, err := c.Watch("/app", got.record); err != nil {
		t.Fatal(err)
	}

	var answer struct {
		Revision int64 `json:"revision"`
	}
	out := s.Call(http.MethodPost, "/api/batch", map[string]any{"changes": []map[string]any{
		{"op": "put", "path": "/app/z", "value": 1},
		{"op": "put", "path": "/app/a", "value": 2},
		{"op": "delete", "path": "/app/c"},
		{"op": "put", "path": "/app/m", "value": "three"},
	}})
	if err := json.Unmarshal(out, &answer); err != nil {
		t.Fatalf("batch answered %s: %v", out, err)
	}

	events := got.waitFor(t, 4)
	var order []string
	for _, e := range events {
		order = append(order, e.Path)
		if e.Revision != answer.Revision {
			t.Fatalf("event %s has revision %d, the batch committed at %d", e.Path, e.Revision, answer.Revision)
		}
	}
	if want := "/app/z /app/a /app/c /app/m"; strings.Join(order, " ") != want {
		t.Fatalf("order = %v, want %s (the batch's order)", order, want)
	}
	if !events[2].Deleted {
		t.Fatalf("/app/c event = %+v, want a delete", events[2])
	}
}

func TestEnvironmentEffectiveValues(t *testing.T) {
	s := devserver.Start(t)
	s.Put("/myapp/database/host", "localhost")
	s.Put("/myapp/database/port", 5432)
	s.Put("/env/prod/myapp/database/host", "prod-db.internal")

	c := newClient(t, s.Address(), setpoint.Options{Environment: "prod", Prefixes: []string{"/myapp"}})
	waitReady(t, c)
	if v := mustGet(t, c, "/myapp/database/host"); v.String() != "prod-db.internal" {
		t.Fatalf("prod host = %q, want the override prod-db.internal", v)
	}
	if v := mustGet(t, c, "/myapp/database/port"); string(v.Raw()) != "5432" {
		t.Fatalf("prod port = %s, want the base value 5432", v.Raw())
	}
	var got recorder
	if _, err := c.Watch("/myapp", got.record); err != nil {
		t.Fatal(err)
	}
	s.Put("/env/prod/myapp/database/host", "prod-db-2.internal")
	s.Put("/myapp/database/host", "base-only") // hidden by the override: no event
	s.Put("/myapp/database/port", 6432)

	events := got.waitFor(t, 2)
	if len(events) != 2 {
		t.Fatalf("events = %s, want the override change and the port change only", describe(events))
	}
	if e := events[0]; e.Path != "/myapp/database/host" || e.Value.String() != "prod-db-2.internal" || e.OldValue.String() != "prod-db.internal" {
		t.Fatalf("override event = %+v, want base path, prod-db.internal → prod-db-2.internal", e)
	}
	if e := events[1]; e.Path != "/myapp/database/port" || string(e.Value.Raw()) != "6432" {
		t.Fatalf("port event = %+v", e)
	}
}

func TestFailingCallbackDoesNotKillTheClient(t *testing.T) {
	s := devserver.Start(t)
	c := newClient(t, s.Address(), setpoint.Options{InstanceID: "nack-test"})
	waitReady(t, c)
	var got recorder
	_, err := c.WatchErr("/svc", func(e setpoint.Event) error {
		got.record(e)
		switch e.Path {
		case "/svc/returns":
			return fmt.Errorf("injected failure at %s", e.Path)
		case "/svc/panics":
			panic("injected failure at " + e.Path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	s.Put("/svc/returns", 1)
	s.Put("/svc/panics", 2)
	s.Put("/svc/fine", 3)
	events := got.waitFor(t, 3)
	if events[2].Path != "/svc/fine" || string(events[2].Value.Raw()) != "3" {
		t.Fatalf("events after failing callbacks = %s", describe(events))
	}
	if v := mustGet(t, c, "/svc/fine"); string(v.Raw()) != "3" {
		t.Fatalf("Get after failing callbacks = %s", v.Raw())
	}
	// The edge got the NACK: the writer's client list shows it.
	devserver.WaitUntil(t, 10*time.Second, "/api/clients shows the NACK of nack-test", func() bool {
		return strings.Contains(clientRecord(t, s, "nack-test"), "injected failure at /svc/")
	})
}

// clientRecord returns the writer's record of one instance as JSON text ("" when absent).
func clientRecord(t *testing.T, s *devserver.Server, id string) string {
	t.Helper()
	var clients []map[string]any
	if err := json.Unmarshal(s.Call(http.MethodGet, "/api/clients", nil), &clients); err != nil {
		t.Fatalf("GET /api/clients: %v", err)
	}
	for _, c := range clients {
		if c["id"] == id {
			text, _ := json.Marshal(c)
			return string(text)
		}
	}
	return ""
}

func TestCacheServesStaleValuesWithoutAServer(t *testing.T) {
	s := devserver.Start(t)
	cache := filepath.Join(t.TempDir(), "config-cache.json")
	version, _ := s.Put("/myapp/database/host", "cached-host")
	s.Put("/myapp/limits", map[string]any{"rps": 100})

	first := newClient(t, s.Address(), setpoint.Options{CachePath: cache, Prefixes: []string{"/myapp"}})
	waitReady(t, first)
	devserver.WaitUntil(t, 10*time.Second, "the first sync is in the cache file", func() bool {
		data, err := os.ReadFile(cache)
		return err == nil && strings.Contains(string(data), `"cached-host"`)
	})
	_, revision := s.Put("/myapp/database/host", "cached-host-2")
	devserver.WaitUntil(t, 10*time.Second, "the cache file holds the latest write", func() bool {
		data, err := os.ReadFile(cache)
		return err == nil && strings.Contains(string(data), "cached-host-2")
	})
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	var file struct {
		Format   int      `json:"format"`
		Env      *string  `json:"env"`
		Prefixes []string `json:"prefixes"`
		Revision int64    `json:"revision"`
		Entries  map[string]struct {
			Value   json.RawMessage `json:"value"`
			Format  string          `json:"format"`
			Version uint64          `json:"version"`
		} `json:"entries"`
	}
	data, _ := os.ReadFile(cache)
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatalf("cache file %s: %v", data, err)
	}
	host := file.Entries["/myapp/database/host"]
	if file.Format != 1 || file.Env != nil || strings.Join(file.Prefixes, ",") != "/myapp" ||
		file.Revision != revision || string(host.Value) != `"cached-host-2"` || host.Version != version+1 ||
		string(file.Entries["/myapp/limits"].Value) != `{"rps":100}` {
		t.Fatalf("cache file = %s", data)
	}

	s.Stop()
	second := newClient(t, s.Address(), setpoint.Options{CachePath: cache, Prefixes: []string{"/myapp"}})
	if v := mustGet(t, second, "/myapp/database/host"); v.String() != "cached-host-2" {
		t.Fatalf("cached host = %q", v)
	}
	if !second.IsStale() {
		t.Fatal("a client serving its cache file with no server is not stale")
	}

	// Another environment's client must not serve this file.
	other := newClient(t, s.Address(), setpoint.Options{CachePath: cache, Prefixes: []string{"/myapp"}, Environment: "staging"})
	if _, err := other.Get("/myapp/database/host"); !errors.Is(err, setpoint.ErrNotSynced) {
		t.Fatalf("Get from another environment's cache = %v, want ErrNotSynced", err)
	}
}

func TestReconnectResumesAfterTheServerRestarts(t *testing.T) {
	s := devserver.Start(t)
	s.Put("/r/a", "one")
	c := newClient(t, s.Address(), setpoint.Options{Prefixes: []string{"/r"}})
	waitReady(t, c)
	var got recorder
	if _, err := c.Watch("/r", got.record); err != nil {
		t.Fatal(err)
	}

	s.Stop()
	devserver.WaitUntil(t, 10*time.Second, "the client notices the lost session", c.IsStale)
	if v := mustGet(t, c, "/r/a"); v.String() != "one" {
		t.Fatalf("while disconnected /r/a = %q, want the value held", v)
	}
	s.Start()
	devserver.WaitUntil(t, 20*time.Second, "the client is live again", func() bool { return !c.IsStale() })
	s.Put("/r/a", "two")
	events := got.waitFor(t, 1)
	if e := events[0]; e.Path != "/r/a" || e.Value.String() != "two" || e.OldValue.String() != "one" {
		t.Fatalf("event after the restart = %+v", e)
	}
}

func TestUnauthorizedTokenIsATypedError(t *testing.T) {
	s := devserver.Start(t)
	c := newClient(t, s.Address(), setpoint.Options{Token: "spk_not_a_real_key"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.WaitReady(ctx)
	if !errors.Is(err, setpoint.ErrUnauthorized) {
		t.Fatalf("WaitReady with a bad token = %v, want ErrUnauthorized", err)
	}
	if _, err := c.Get("/anything"); !errors.Is(err, setpoint.ErrUnauthorized) {
		t.Fatalf("Get with a bad token and no cache = %v, want ErrUnauthorized", err)
	}
	if _, err := c.Resolve(ctx, "/anything"); !errors.Is(err, setpoint.ErrUnauthorized) {
		t.Fatalf("Resolve with a bad token = %v, want ErrUnauthorized", err)
	}
}

func TestResolveSubstitutesVariables(t *testing.T) {
	s := devserver.Start(t)
	s.Call(http.MethodPut, "/api/environments/prod-eu", map[string]any{"parent": "prod", "variables": map[string]string{"REGION": "eu"}})
	s.Put("/myapp/database/host", "db-${REGION}.internal")
	c := newClient(t, s.Address(), setpoint.Options{Environment: "prod-eu", Prefixes: []string{"/myapp"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.Resolve(ctx, "/myapp/database/host")
	if err != nil || v.String() != "db-eu.internal" {
		t.Fatalf("Resolve = %q, %v; want db-eu.internal", v, err)
	}
	tree, err := c.Resolve(ctx, "/myapp/database")
	var doc map[string]any
	if err != nil || tree.Decode(&doc) != nil || doc["host"] != "db-eu.internal" {
		t.Fatalf("Resolve(prefix) = %s, %v; want {\"host\": \"db-eu.internal\"}", tree.Raw(), err)
	}
	if _, err := c.Resolve(ctx, "/myapp/nothing"); !errors.Is(err, setpoint.ErrNotFound) {
		t.Fatalf("Resolve(missing) = %v, want ErrNotFound", err)
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	s := devserver.Start(t)
	s.Put("/c/x", 1)
	baseline := runtime.NumGoroutine()
	c, err := setpoint.NewClient(s.Address(), setpoint.Options{InstanceID: "closer", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, c)
	var got recorder
	if _, err := c.Watch("/c", got.record); err != nil {
		t.Fatal(err)
	}
	devserver.WaitUntil(t, 10*time.Second, "the writer lists the session", func() bool {
		return strings.Contains(clientRecord(t, s, "closer"), `"connected"`)
	})

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if _, err := c.Get("/c/x"); !errors.Is(err, setpoint.ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Watch("/c", got.record); !errors.Is(err, setpoint.ErrClosed) {
		t.Fatalf("Watch after Close = %v, want ErrClosed", err)
	}
	devserver.WaitUntil(t, 10*time.Second, "the client's goroutines are gone", func() bool {
		return runtime.NumGoroutine() <= baseline
	})
	devserver.WaitUntil(t, 10*time.Second, "the writer sees the session closed", func() bool {
		return !strings.Contains(clientRecord(t, s, "closer"), `"connected"`)
	})
	s.Put("/c/x", 2)
	time.Sleep(300 * time.Millisecond) // nothing to wait for: proving an absence
	if n := len(got.all()); n != 0 {
		t.Fatalf("a closed client's watch ran %d times", n)
	}
}

func TestCloseFromACallback(t *testing.T) {
	s := devserver.Start(t)
	c := newClient(t, s.Address(), setpoint.Options{})
	waitReady(t, c)
	closed := make(chan error, 1)
	if _, err := c.Watch("/", func(setpoint.Event) { closed <- c.Close() }); err != nil {
		t.Fatal(err)
	}
	s.Put("/k", 1)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close from a callback: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close from a callback did not return")
	}
}

// recorder collects a watch's events.
type recorder struct {
	mu     sync.Mutex
	events []setpoint.Event
}

func (r *recorder) record(e setpoint.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []setpoint.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]setpoint.Event(nil), r.events...)
}

// waitFor waits until at least n events arrived and returns them all.
func (r *recorder) waitFor(t *testing.T, n int) []setpoint.Event {
	t.Helper()
	devserver.WaitUntil(t, 10*time.Second, fmt.Sprintf("%d events arrive (have %s)", n, describe(r.all())), func() bool {
		return len(r.all()) >= n
	})
	return r.all()
}

func describe(events []setpoint.Event) string {
	parts := make([]string, 0, len(events))
	for _, e := range events {
		parts = append(parts, fmt.Sprintf("%s=%s(v%d,r%d,del=%v)", e.Path, e.Value.Raw(), e.Version, e.Revision, e.Deleted))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
