package setpoint

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func sampleStore() *store {
	s := newStore()
	s.revision = 812
	s.entries["/myapp/db/host"] = &entry{value: json.RawMessage(`"db.internal"`), format: "text", version: 3, revision: 810}
	s.entries["/myapp/db/pool"] = &entry{value: json.RawMessage(`{"size":10}`), format: "json", version: 1, revision: 700}
	return s
}

func TestCacheFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "cache.json")
	data, err := encodeCache("prod", []string{"/myapp"}, sampleStore())
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, data); err != nil {
		t.Fatal(err)
	}
	loaded, err := loadCache(path, "prod", []string{"/myapp"})
	if err != nil || loaded == nil {
		t.Fatalf("loadCache = %v, %v", loaded, err)
	}
	if loaded.revision != 812 || len(loaded.entries) != 2 {
		t.Fatalf("loaded revision %d with %d entries", loaded.revision, len(loaded.entries))
	}
	host := loaded.entries["/myapp/db/host"]
	if string(host.value) != `"db.internal"` || host.format != "text" || host.version != 3 || host.revision != 810 {
		t.Fatalf("host = %+v", host)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("cache file mode = %v, %v; want 0600", info.Mode(), err)
	}
	if leftovers, _ := filepath.Glob(path + ".tmp-*"); len(leftovers) != 0 {
		t.Fatalf("temp files left behind: %v", leftovers)
	}
}

func TestCacheFileFormatIsTheSharedOne(t *testing.T) {
	data, err := encodeCache("", []string{"/"}, sampleStore())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"format": 1.0, "env": nil, "prefixes": []any{"/"}, "revision": 812.0,
		"entries": map[string]any{
			"/myapp/db/host": map[string]any{"value": "db.internal", "format": "text", "version": 3.0, "revision": 810.0},
			"/myapp/db/pool": map[string]any{"value": map[string]any{"size": 10.0}, "format": "json", "version": 1.0, "revision": 700.0},
		},
	}
	got, _ := json.Marshal(doc)
	expected, _ := json.Marshal(want)
	if string(got) != string(expected) {
		t.Fatalf("cache file =\n%s\nwant\n%s", got, expected)
	}
}

func TestCacheFileOfAnotherEnvironmentOrPrefixesIsRefused(t *testing.T) {
	data, _ := encodeCache("prod", []string{"/myapp"}, sampleStore())
	for _, tc := range []struct {
		env      string
		prefixes []string
	}{
		{"staging", []string{"/myapp"}},
		{"", []string{"/myapp"}},
		{"prod", []string{"/"}},
		{"prod", []string{"/myapp", "/other"}},
	} {
		if _, err := decodeCache(data, tc.env, tc.prefixes); !errors.Is(err, errCacheMismatch) {
			t.Errorf("decodeCache(env %q, %v) = %v, want a mismatch", tc.env, tc.prefixes, err)
		}
	}
}

func TestCorruptOrMissingCacheFile(t *testing.T) {
	dir := t.TempDir()
	if s, err := loadCache(filepath.Join(dir, "none.json"), "", []string{"/"}); s != nil || err != nil {
		t.Fatalf("missing file = %v, %v; want nothing and no error", s, err)
	}
	for name, body := range map[string]string{
		"truncated":  `{"format": 1, "env": null, "prefixes": ["/"], "revi`,
		"format 2":   `{"format": 2, "env": null, "prefixes": ["/"], "revision": 1, "entries": {}}`,
		"no value":   `{"format": 1, "env": null, "prefixes": ["/"], "revision": 1, "entries": {"/a": {"format": "json"}}}`,
		"not object": `[]`,
	} {
		path := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := loadCache(path, "", []string{"/"}); s != nil || err == nil {
			t.Errorf("%s: loadCache = %v, %v; want an error", name, s, err)
		}
	}
}

func TestWriteFileAtomicReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.json")
	for _, body := range []string{"first", "second"} {
		if err := writeFileAtomic(path, []byte(body)); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != body {
			t.Fatalf("file = %q, want %q", got, body)
		}
	}
}
