package setpoint

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestValueString(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{`"new-host.internal"`, "new-host.internal"},
		{`"line\nbreak"`, "line\nbreak"},
		{`5432`, "5432"},
		{`{"a":[1,2]}`, `{"a":[1,2]}`},
		{`null`, "null"},
		{``, ""},
	} {
		if got := (Value{raw: json.RawMessage(tc.raw)}).String(); got != tc.want {
			t.Errorf("Value(%s).String() = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func TestValueDecodeAndRaw(t *testing.T) {
	v := Value{raw: json.RawMessage(`{"size":10}`), Version: 3, Format: "json"}
	var pool struct{ Size int }
	if err := v.Decode(&pool); err != nil || pool.Size != 10 {
		t.Fatalf("Decode = %+v, %v", pool, err)
	}
	raw := v.Raw()
	raw[0] = 'X'
	if v.String() != `{"size":10}` {
		t.Fatal("Raw returned the client's own bytes, not a copy")
	}
	if err := (Value{}).Decode(&pool); !errors.Is(err, ErrNotFound) {
		t.Fatalf("decoding no value = %v, want ErrNotFound", err)
	}
	if (Value{}).Exists() || !v.Exists() {
		t.Fatal("Exists")
	}
	out, err := json.Marshal(map[string]Value{"a": v, "b": {}})
	if err != nil || string(out) != `{"a":{"size":10},"b":null}` {
		t.Fatalf("MarshalJSON = %s, %v", out, err)
	}
}

func TestResolvedValueTellsAnEntryFromASubtree(t *testing.T) {
	entry := `{"path":"/a/host","value":"db-eu","format":"text","version":4,"revision":9,"resolved":true,"source":"/a/host"}`
	v, err := resolvedValue("/a/host", []byte(entry), 9)
	if err != nil || v.String() != "db-eu" || v.Version != 4 || v.Format != "text" {
		t.Fatalf("entry → %q v%d %s, %v", v, v.Version, v.Format, err)
	}
	tree := `{"host":"db-eu","path":"/x","value":1}`
	v, err = resolvedValue("/a", []byte(tree), 9)
	if err != nil || v.String() != tree {
		t.Fatalf("subtree → %q, %v", v, err)
	}
	if _, err := resolvedValue("/a", []byte("nope"), 9); err == nil {
		t.Fatal("a non-JSON answer was accepted")
	}
}

func TestPaths(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/", "/"}, {"/a", "/a"}, {"/a/b/", "/a/b"},
	} {
		if got, err := normalizePath(tc.in); err != nil || got != tc.want {
			t.Errorf("normalizePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "a/b", "/a//b", "/a/../b"} {
		if _, err := normalizePath(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("normalizePath(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	prefixes, err := normalizePrefixes([]string{"/b/", "/a", "/b"})
	if err != nil || len(prefixes) != 2 || prefixes[0] != "/a" || prefixes[1] != "/b" {
		t.Fatalf("normalizePrefixes = %v, %v", prefixes, err)
	}
	if p, _ := normalizePrefixes(nil); len(p) != 1 || p[0] != "/" {
		t.Fatalf("default prefixes = %v, want [/]", p)
	}
	for _, tc := range []struct {
		path, prefix string
		want         bool
	}{
		{"/a/b", "/", true}, {"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/a", "/a/b", false},
	} {
		if got := under(tc.path, tc.prefix); got != tc.want {
			t.Errorf("under(%s, %s) = %v", tc.path, tc.prefix, got)
		}
	}
}
