package setpoint

import (
	"fmt"
	"slices"
	"sync"
)

// Event is one change a watch callback sees.
type Event struct {
	// Path is a base path (never /env/…), even with an environment.
	Path string
	// Value is the new value; the zero Value (Exists() false) when Deleted.
	Value Value
	// OldValue is the value before; the zero Value when the path had none.
	OldValue Value
	Version  uint64
	Revision int64
	Deleted  bool
	// Format of the value: "json", "yaml" or "text".
	Format string
}

// Watch is a registered callback; Stop ends it.
type Watch struct {
	prefix   string
	fn       func(Event) error
	dispatch *dispatcher
	stopped  bool // guarded by dispatch.mu
}

// Prefix is the watched prefix.
func (w *Watch) Prefix() string { return w.prefix }

// Stop ends the watch: no callback of it starts after Stop returns (one already running
// finishes). Stop may be called from the callback itself, and more than once.
func (w *Watch) Stop() {
	w.dispatch.mu.Lock()
	defer w.dispatch.mu.Unlock()
	w.stopped = true
	w.dispatch.watches = slices.DeleteFunc(w.dispatch.watches, func(o *Watch) bool { return o == w })
}

// Watch calls fn for every change at or below prefix, which must lie under one of the
// client's prefixes. Callbacks run in revision order, one at a time (never concurrently with
// another callback of this client), and only for changes — not for the state at start —
// including the changes a reconnect reveals. A callback that panics is reported to the edge as
// a NACK for that path and does not stop the client.
func (c *Client) Watch(prefix string, fn func(Event)) (*Watch, error) {
	if fn == nil {
		return nil, fmt.Errorf("%w: the callback is nil", ErrInvalid)
	}
	return c.WatchErr(prefix, func(e Event) error { fn(e); return nil })
}

// WatchErr is Watch with a callback that can fail: a returned error (or a panic) is reported
// to the edge as a NACK for the event's path, with the error's text.
func (c *Client) WatchErr(prefix string, fn func(Event) error) (*Watch, error) {
	if fn == nil {
		return nil, fmt.Errorf("%w: the callback is nil", ErrInvalid)
	}
	p, err := normalizePath(prefix)
	if err != nil {
		return nil, err
	}
	if !underAny(p, c.prefixes) {
		return nil, fmt.Errorf("%w: watch prefix %s is not under the client's prefixes %v", ErrInvalid, p, c.prefixes)
	}
	w := &Watch{prefix: p, fn: fn, dispatch: c.dispatch}
	c.dispatch.mu.Lock()
	defer c.dispatch.mu.Unlock()
	if c.dispatch.closed {
		return nil, ErrClosed
	}
	c.dispatch.watches = append(c.dispatch.watches, w)
	return w, nil
}

// delivery is one callback to run.
type delivery struct {
	watch *Watch
	event Event
}

// job is the callbacks one update triggers; the dispatcher answers on done with the failures.
type job struct {
	deliveries []delivery
	done       chan []failure
}

type failure struct{ path, message string }

// dispatcher runs callbacks on its own goroutine, so that the session goroutine keeps reading
// the stream and a callback may call Stop or Close without deadlocking on itself.
type dispatcher struct {
	jobs chan job
	done chan struct{}

	mu         sync.Mutex
	watches    []*Watch
	closed     bool
	inCallback bool
}

func newDispatcher() *dispatcher {
	return &dispatcher{jobs: make(chan job), done: make(chan struct{})}
}

// deliveriesFor matches changes to the watches registered now, in change order.
func (d *dispatcher) deliveriesFor(changes []change) []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []delivery
	for _, ch := range changes {
		for _, w := range d.watches {
			if under(ch.path, w.prefix) {
				out = append(out, delivery{watch: w, event: ch.event()})
			}
		}
	}
	return out
}

func (d *dispatcher) run() {
	defer close(d.done)
	for j := range d.jobs {
		var failures []failure
		for _, dl := range j.deliveries {
			if ran, err := d.call(dl); ran && err != nil {
				failures = append(failures, failure{path: dl.event.Path, message: err.Error()})
			}
		}
		j.done <- failures // buffered: the session may have stopped waiting
	}
}

// call runs one callback unless its watch was stopped or the client closed; ran says whether
// it did.
func (d *dispatcher) call(dl delivery) (ran bool, err error) {
	d.mu.Lock()
	if d.closed || dl.watch.stopped {
		d.mu.Unlock()
		return false, nil
	}
	d.inCallback = true
	d.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
		d.mu.Lock()
		d.inCallback = false
		d.mu.Unlock()
	}()
	return true, dl.watch.fn(dl.event)
}

// close stops the dispatcher: no callback starts afterwards. It waits for the goroutine unless
// a callback is running — which may be the caller itself (Close from a callback).
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	running := d.inCallback
	d.watches = nil
	d.mu.Unlock()
	close(d.jobs)
	if !running {
		<-d.done
	}
}
