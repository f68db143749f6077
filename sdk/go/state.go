package setpoint

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"

	"github.com/setpoint/setpoint/sdk/go/internal/edgepb"
)

// This file is the client's state machine without I/O: what it holds, and how an update from
// the edge (a batch or a reset) changes it and which changes the callbacks must see. The
// session (session.go) feeds it; tests drive it directly.

// entry is one value the client holds.
type entry struct {
	value    json.RawMessage
	format   string
	version  uint64
	revision int64
}

func (e *entry) asValue() Value {
	if e == nil {
		return Value{}
	}
	return Value{raw: e.value, Version: e.version, Revision: e.revision, Format: e.format}
}

func (e *entry) same(o *entry) bool {
	return e.version == o.version && e.format == o.format && bytes.Equal(e.value, o.value)
}

// change is one path's transition, as the callbacks see it; next is nil for a delete.
type change struct {
	path     string
	old      *entry
	next     *entry
	version  uint64
	revision int64
}

func (c change) event() Event {
	return Event{
		Path:     c.path,
		Value:    c.next.asValue(),
		OldValue: c.old.asValue(),
		Version:  c.version,
		Revision: c.revision,
		Deleted:  c.next == nil,
		Format:   formatOf(c),
	}
}

func formatOf(c change) string {
	if c.next != nil {
		return c.next.format
	}
	if c.old != nil {
		return c.old.format
	}
	return ""
}

// store holds every entry under the client's prefixes at one revision.
type store struct {
	entries  map[string]*entry
	revision int64
}

func newStore() *store { return &store{entries: map[string]*entry{}} }

// applyBatch applies one commit batch in order and returns the changes it makes.
func (s *store) applyBatch(revision int64, events []*edgepb.Event) []change {
	changes := make([]change, 0, len(events))
	for _, ev := range events {
		old := s.entries[ev.GetPath()]
		if ev.OldValue != nil && old == nil {
			// The edge knew an old value the client did not hold (it may have filtered it, or
			// the client's copy is older): the callback still sees what the edge saw.
			old = &entry{value: wireValue(ev.GetOldValue()), format: ev.GetFormat()}
		}
		rev := ev.GetRevision()
		if rev == 0 {
			rev = revision
		}
		c := change{path: ev.GetPath(), old: old, version: ev.GetVersion(), revision: rev}
		if ev.GetType() == edgepb.Event_DELETE {
			delete(s.entries, ev.GetPath())
		} else {
			c.next = &entry{
				value:    wireValue(ev.GetNewValue()),
				format:   ev.GetFormat(),
				version:  ev.GetVersion(),
				revision: rev,
			}
			s.entries[ev.GetPath()] = c.next
		}
		changes = append(changes, c)
	}
	s.revision = max(s.revision, revision)
	return changes
}

// applyReset replaces everything with state (the complete state of the prefixes at revision)
// and returns what differs from before, path by path in order: a reset after a reconnect or a
// slow-consumer cut-off hides the changes it folds in, and callbacks must still see them.
func (s *store) applyReset(revision int64, state []*edgepb.Entry) []change {
	next := make(map[string]*entry, len(state))
	for _, e := range state {
		next[e.GetPath()] = &entry{
			value:    wireValue(e.GetValue()),
			format:   e.GetFormat(),
			version:  e.GetVersion(),
			revision: e.GetRevision(),
		}
	}
	paths := slices.Sorted(maps.Keys(next))
	for p := range s.entries {
		if _, ok := next[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var changes []change
	for _, p := range paths {
		old, now := s.entries[p], next[p]
		switch {
		case now == nil:
			changes = append(changes, change{path: p, old: old, version: old.version, revision: revision})
		case old == nil || !old.same(now):
			// The commit that wrote the value, as a batch would have reported it.
			rev := now.revision
			if rev == 0 {
				rev = revision
			}
			changes = append(changes, change{path: p, old: old, next: now, version: now.version, revision: rev})
		}
	}
	s.entries = next
	s.revision = revision
	return changes
}

// acceptReset decides whether to apply a reset at revision offered, the client holding held
// (hasData: from a sync or the cache file) and the edge saying whether it is stale.
//
// A stale edge — one that lost the writer or has not reached it yet, e.g. just restarted
// before its snapshot arrived — may offer an older state than the client holds, or at revision
// 0 none at all. Applying it would fire deletes for values that still exist and, before the
// first sync, make WaitReady succeed on an empty state. Such a reset is skipped: the edge's
// next reset or batches bring the client forward once it catches up. A live edge is always
// believed, even backwards (the store was rebuilt).
func acceptReset(edgeStale, hasData bool, held, offered int64) bool {
	if !edgeStale {
		return true
	}
	if offered == 0 {
		return false
	}
	return !hasData || offered >= held
}
