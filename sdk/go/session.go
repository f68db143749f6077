package setpoint

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/setpoint/setpoint/sdk/go/internal/edgepb"
)

const (
	// defaultHeartbeat applies when the edge names no interval.
	defaultHeartbeat = 5 * time.Second
	// startTimeout bounds the wait for SessionStarted (the edge itself allows 10 s for the
	// hello, which the client sends at once).
	startTimeout = 15 * time.Second
)

var errNoSessionStarted = errors.New("the edge did not answer the hello within 15 s")

// run holds a session with the edge for the client's lifetime: connect, stream, and on any
// loss reconnect with backoff, resuming from the last applied revision.
func (c *Client) run() {
	defer close(c.sessionDone)
	b := newBackoff()
	for {
		started, err := c.session()
		c.mu.Lock()
		c.live = false
		c.lastErr = err
		c.mu.Unlock()
		if c.ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if isUnauthorized(err) {
			c.mu.Lock()
			c.authErr = fmt.Errorf("%w: %v", ErrUnauthorized, err)
			c.notifyLocked()
			c.mu.Unlock()
			wait = unauthorizedRetry
		} else {
			if started {
				b.reset()
			}
			wait = b.next()
		}
		c.log.Warn("setpoint: session with the edge ended; reconnecting", "error", err, "retry_in", wait)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-c.ctx.Done():
			timer.Stop()
			return
		}
	}
}

// stream is one Session call; Send is serialised (gRPC allows one sender at a time).
type stream struct {
	rpc    edgepb.Edge_SessionClient
	sendMu sync.Mutex
}

func (s *stream) send(m *edgepb.ClientMessage) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.rpc.Send(m)
}

// session runs one session until it ends; started tells whether the edge accepted it.
func (c *Client) session() (started bool, err error) {
	ctx, cancel := context.WithCancelCause(c.ctx)
	defer cancel(nil)
	if c.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	}
	rpc, err := c.edge.Session(ctx)
	if err != nil {
		return false, err
	}
	s := &stream{rpc: rpc}

	c.mu.Lock()
	hello := &edgepb.ClientHello{
		InstanceId: c.instanceID,
		Prefixes:   c.prefixes,
		Labels:     c.labels,
		Sdk:        SDKName,
		SdkVersion: SDKVersion,
		Resolve:    c.resolve,
	}
	if c.env != "" {
		hello.Env = &c.env
	}
	// Resume only from a revision the client really holds (a sync or the cache file).
	var from int64 = -1
	if c.hasData {
		from = c.store.revision
		hello.FromRevision = &from
	}
	c.mu.Unlock()
	if err := s.send(&edgepb.ClientMessage{Kind: &edgepb.ClientMessage_Hello{Hello: hello}}); err != nil {
		return false, recvError(s)
	}

	// An edge that accepts the stream but never answers (a proxy holding it, a wedged process)
	// must not hold the client forever: no heartbeat watchdog runs before SessionStarted.
	noAnswer := time.AfterFunc(startTimeout, func() { cancel(errNoSessionStarted) })
	first, err := rpc.Recv()
	noAnswer.Stop()
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errNoSessionStarted) {
			return false, cause
		}
		return false, err
	}
	st := first.GetStarted()
	if st == nil {
		return false, errors.New("the edge's first message is not SessionStarted")
	}
	interval := time.Duration(st.GetHeartbeatIntervalMs()) * time.Millisecond
	if interval <= 0 {
		interval = defaultHeartbeat
	}
	c.mu.Lock()
	c.authErr = nil
	c.edgeStale = st.GetStale()
	// Resuming from the edge's own revision: nothing to replay, the client is caught up
	// (unless the edge has no state at all yet: revision 0 and stale).
	caughtUp := from >= 0 && from >= st.GetRevision() && (st.GetRevision() > 0 || !st.GetStale())
	if caughtUp {
		c.markSyncedLocked()
	}
	c.mu.Unlock()
	c.log.Debug("setpoint: session started", "edge", st.GetEdgeId(), "revision", st.GetRevision(),
		"from_revision", from, "heartbeat", interval, "stale", st.GetStale())

	hb := newHeartbeat(interval)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.beat(ctx, cancel, s, hb)
	}()
	defer wg.Wait()
	defer cancel(nil)

	for {
		msg, err := rpc.Recv()
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && c.ctx.Err() == nil {
				return true, cause
			}
			return true, err
		}
		hb.heard()
		switch kind := msg.GetKind().(type) {
		case *edgepb.ServerMessage_Heartbeat:
			c.log.Debug("setpoint: heartbeat", "revision", kind.Heartbeat.GetRevision(), "stale", kind.Heartbeat.GetStale())
			c.mu.Lock()
			c.edgeStale = kind.Heartbeat.GetStale()
			// Heartbeats follow the replay on the stream: one arriving means the replay is
			// done even when none of the commits in between touched the client's prefixes.
			// A client without any state still needs its reset.
			if c.hasData {
				c.markSyncedLocked()
			}
			c.mu.Unlock()
		case *edgepb.ServerMessage_Update:
			if err := c.applyUpdate(ctx, s, kind.Update, st.GetRevision()); err != nil {
				return true, err
			}
		case *edgepb.ServerMessage_Started:
			return true, errors.New("the edge sent SessionStarted twice")
		}
	}
}

// recvError returns the status that ended a stream whose Send failed: gRPC reports only io.EOF
// from Send, the reason comes from Recv.
func recvError(s *stream) error {
	_, err := s.rpc.Recv()
	return err
}

// markSyncedLocked records that the client holds the edge's state; c.mu must be held.
func (c *Client) markSyncedLocked() {
	c.hasData = true
	c.live = true
	if !c.synced {
		c.synced = true
		c.notifyLocked()
	}
}

// applyUpdate applies one update, writes the cache file, runs the callbacks and sends the
// receipt — in that order, so that a receipt means "applied and acted upon".
func (c *Client) applyUpdate(ctx context.Context, s *stream, u *edgepb.WatchResponse, startedAt int64) error {
	c.log.Debug("setpoint: update", "revision", u.GetRevision(), "reset", u.GetReset_(),
		"events", len(u.GetEvents()), "state", len(u.GetState()))
	c.mu.Lock()
	var changes []change
	applied := true
	switch {
	case u.GetReset_() && !acceptReset(c.edgeStale, c.hasData, c.store.revision, u.GetRevision()):
		c.log.Debug("setpoint: ignoring a stale edge's reset older than the state held",
			"reset", u.GetRevision(), "held", c.store.revision)
		applied = false
	case u.GetReset_():
		initial := !c.hasData
		changes = c.store.applyReset(u.GetRevision(), u.GetState())
		if initial {
			// The first state a client ever holds is not a change: callbacks see changes only.
			// (A reset over a cache file is diffed: what changed since is real news.)
			changes = nil
		}
		c.markSyncedLocked()
	case u.GetRevision() <= c.store.revision:
		// Already applied (a replay overlapping what the cache file held): nothing changes,
		// but the edge still gets its receipt.
		applied = false
	default:
		changes = c.store.applyBatch(u.GetRevision(), u.GetEvents())
		if c.store.revision >= startedAt {
			c.markSyncedLocked()
		}
	}
	// Which watches see these changes is decided before anyone can read the new state: a watch
	// registered after a Get that saw it must not be called for it.
	deliveries := c.dispatch.deliveriesFor(changes)
	c.mu.Unlock()
	if applied {
		if err := c.writeCache(); err != nil {
			c.log.Warn("setpoint: writing the cache file", "path", c.cachePath, "error", err)
		}
	}
	failures := c.runCallbacks(deliveries)
	if c.ctx.Err() != nil {
		return c.ctx.Err()
	}
	receipt := &edgepb.Receipt{Revision: u.GetRevision()}
	for _, f := range failures {
		receipt.Failures = append(receipt.Failures, &edgepb.Nack{Path: f.path, Error: f.message})
	}
	if err := s.send(&edgepb.ClientMessage{Kind: &edgepb.ClientMessage_Receipt{Receipt: receipt}}); err != nil {
		if ctx.Err() == nil {
			return recvError(s)
		}
		return context.Cause(ctx)
	}
	return nil
}

// runCallbacks hands the callbacks to the dispatcher and waits for them; it gives up only when
// the client closes (a lost session does not stop callbacks of an update already applied).
func (c *Client) runCallbacks(deliveries []delivery) []failure {
	if len(deliveries) == 0 {
		return nil
	}
	j := job{deliveries: deliveries, done: make(chan []failure, 1)}
	select {
	case c.dispatch.jobs <- j:
	case <-c.ctx.Done():
		return nil
	}
	select {
	case failures := <-j.done:
		return failures
	case <-c.ctx.Done():
		return nil
	}
}

// heartbeat tracks when the edge was last heard from.
type heartbeat struct {
	interval time.Duration
	mu       sync.Mutex
	last     time.Time
}

func newHeartbeat(interval time.Duration) *heartbeat {
	return &heartbeat{interval: interval, last: time.Now()}
}

func (h *heartbeat) heard() {
	h.mu.Lock()
	h.last = time.Now()
	h.mu.Unlock()
}

func (h *heartbeat) silentFor() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Since(h.last)
}

// errEdgeSilent ends a session whose edge sent nothing for three heartbeat intervals.
var errEdgeSilent = errors.New("no message from the edge for three heartbeat intervals")

// beat sends the client's heartbeats and ends the session when the edge goes silent — from its
// own goroutine, so that a slow callback neither stops heartbeats nor hides a dead edge.
func (c *Client) beat(ctx context.Context, cancel context.CancelCauseFunc, s *stream, h *heartbeat) {
	ticker := time.NewTicker(h.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if h.silentFor() > 3*h.interval {
			cancel(errEdgeSilent)
			return
		}
		c.mu.Lock()
		revision := c.store.revision
		c.mu.Unlock()
		msg := &edgepb.ClientMessage{Kind: &edgepb.ClientMessage_Heartbeat{Heartbeat: &edgepb.Heartbeat{Revision: revision}}}
		if err := s.send(msg); err != nil {
			return // the session is ending; its Recv reports why
		}
	}
}
