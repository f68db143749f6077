package setpoint

import (
	"fmt"
	"strings"
	"testing"

	"github.com/setpoint/setpoint/sdk/go/internal/edgepb"
)

func put(path, value string, version uint64, revision int64) *edgepb.Event {
	return &edgepb.Event{Type: edgepb.Event_PUT, Path: path, NewValue: &value, Version: version, Revision: revision, Format: "json"}
}

func putWithOld(path, old, value string, version uint64, revision int64) *edgepb.Event {
	e := put(path, value, version, revision)
	e.OldValue = &old
	return e
}

func del(path string, version uint64, revision int64) *edgepb.Event {
	return &edgepb.Event{Type: edgepb.Event_DELETE, Path: path, Version: version, Revision: revision, Format: "json"}
}

func state(entries ...[3]string) []*edgepb.Entry {
	out := make([]*edgepb.Entry, 0, len(entries))
	for _, e := range entries {
		var version uint64
		fmt.Sscan(e[2], &version)
		out = append(out, &edgepb.Entry{Path: e[0], Value: e[1], Format: "json", Version: version, Revision: int64(version) * 10})
	}
	return out
}

// show renders changes as "path: old → new (vN rM)", "-" for no value, one per line.
func show(changes []change) string {
	var lines []string
	for _, c := range changes {
		old, next := "-", "-"
		if c.old != nil {
			old = string(c.old.value)
		}
		if c.next != nil {
			next = string(c.next.value)
		}
		lines = append(lines, fmt.Sprintf("%s: %s → %s (v%d r%d)", c.path, old, next, c.version, c.revision))
	}
	return strings.Join(lines, "\n")
}

func check(t *testing.T, what string, changes []change, want string) {
	t.Helper()
	if got := show(changes); got != strings.TrimSpace(want) {
		t.Fatalf("%s:\ngot:\n%s\nwant:\n%s", what, got, strings.TrimSpace(want))
	}
}

func TestBatchAppliesInOrderWithOldValues(t *testing.T) {
	s := newStore()
	check(t, "first batch", s.applyBatch(5, []*edgepb.Event{
		put("/a/x", `1`, 1, 5),
		put("/a/y", `"y"`, 1, 5),
	}), `
/a/x: - → 1 (v1 r5)
/a/y: - → "y" (v1 r5)`)
	check(t, "second batch", s.applyBatch(6, []*edgepb.Event{
		put("/a/x", `2`, 2, 6),
		del("/a/y", 2, 6),
		put("/a/x", `3`, 3, 6),
	}), `
/a/x: 1 → 2 (v2 r6)
/a/y: "y" → - (v2 r6)
/a/x: 2 → 3 (v3 r6)`)
	if s.revision != 6 || len(s.entries) != 1 || string(s.entries["/a/x"].value) != "3" {
		t.Fatalf("store after batches: revision %d, entries %v", s.revision, s.entries)
	}
}

func TestBatchTakesTheEdgesOldValueForAPathTheClientLacks(t *testing.T) {
	s := newStore()
	check(t, "batch", s.applyBatch(3, []*edgepb.Event{putWithOld("/p", `"before"`, `"after"`, 2, 3)}),
		`/p: "before" → "after" (v2 r3)`)
}

func TestResetDiffsAgainstWhatTheClientHeld(t *testing.T) {
	s := newStore()
	s.applyReset(10, state(
		[3]string{"/a", `"same"`, "1"},
		[3]string{"/b", `"old"`, "1"},
		[3]string{"/c", `"gone"`, "1"},
	))
	// The reset after a reconnect folds a change to /b, a delete of /c and a create of /d.
	check(t, "reset", s.applyReset(20, state(
		[3]string{"/a", `"same"`, "1"},
		[3]string{"/b", `"new"`, "2"},
		[3]string{"/d", `{"k":true}`, "1"},
	)), `
/b: "old" → "new" (v2 r20)
/c: "gone" → - (v1 r20)
/d: - → {"k":true} (v1 r10)`)
	if s.revision != 20 || len(s.entries) != 3 {
		t.Fatalf("store after reset: revision %d, %d entries", s.revision, len(s.entries))
	}
}

func TestFirstResetReportsEveryEntryAsCreated(t *testing.T) {
	// The diff stays truthful; the session runs no callback for a client's very first state.
	s := newStore()
	check(t, "first reset", s.applyReset(4, state([3]string{"/x", `1`, "1"})), `/x: - → 1 (v1 r10)`)
}

func TestResetWithSameValueButNewVersionIsAChange(t *testing.T) {
	s := newStore()
	s.applyReset(1, state([3]string{"/a", `1`, "1"}))
	check(t, "reset", s.applyReset(2, state([3]string{"/a", `1`, "2"})), `/a: 1 → 1 (v2 r20)`)
}

func TestWireValueKeepsJSONAndQuotesAnythingElse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"text"`, `"text"`},
		{` {"a": 1} `, `{"a": 1}`},
		{`42`, `42`},
		{`not json`, `"not json"`},
		{``, `""`},
	} {
		if got := string(wireValue(tc.in)); got != tc.want {
			t.Errorf("wireValue(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestAcceptReset(t *testing.T) {
	for _, tc := range []struct {
		stale, hasData bool
		held, offered  int64
		want           bool
	}{
		{false, true, 10, 5, true}, // a live edge is believed, even backwards
		{false, false, 0, 0, true}, // a live, empty store
		{true, true, 10, 5, false}, // a restarted edge behind the client
		{true, true, 10, 10, true}, // a stale edge at the client's revision or later
		{true, true, 10, 12, true}, //
		{true, false, 0, 0, false}, // an edge without any snapshot
		{true, true, 10, 0, false}, //
		{true, false, 0, 7, true},  // a stale edge's disk snapshot beats nothing
	} {
		if got := acceptReset(tc.stale, tc.hasData, tc.held, tc.offered); got != tc.want {
			t.Errorf("acceptReset(stale %v, hasData %v, held %d, offered %d) = %v", tc.stale, tc.hasData, tc.held, tc.offered, got)
		}
	}
}
