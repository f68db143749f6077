// Package setpoint is the Go SDK of Setpoint, a configuration management system.
//
// A Client holds one gRPC session (setpoint.edge.v1.Edge/Session) with an edge and keeps every
// value under its prefixes in memory: Get never makes a network call, Watch callbacks run for
// each change in revision order, and an optional cache file lets an application start with its
// last known configuration when no edge is reachable. sdk/README.md in the Setpoint repository
// is the contract this package implements, the same as the Rust, Python and Node SDKs.
//
// Layout: client.go (options, Get, WaitReady, Close), session.go (the connection loop),
// state.go (applying updates, no I/O), watch.go (callbacks), cache.go, backoff.go, resolve.go.
package setpoint

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/setpoint/setpoint/sdk/go/internal/edgepb"
)

// SDKName and SDKVersion are sent in the session's hello (the edge shows them in /api/clients).
const (
	SDKName    = "go"
	SDKVersion = "0.1.0"
)

// Options configure a Client. The zero value works: base values of everything the token may
// read, no cache file.
type Options struct {
	// Environment whose effective values the client holds (overrides merged over base values);
	// empty: base values. Paths stay base paths either way.
	Environment string
	// Prefixes the client holds and may watch; default ["/"]. A token limited to /myapp needs
	// []string{"/myapp"}.
	Prefixes []string
	// CachePath: where to keep the cache file (written after every update, loaded at start).
	// Empty: no cache file.
	CachePath string
	// InstanceID names this application instance in the fleet (GET /api/clients); stable
	// across reconnects. Default: "{hostname}-{pid}-{random}".
	InstanceID string
	// Labels describe the instance, e.g. {"zone": "eu-1"}.
	Labels map[string]string
	// Token: an API key, sent as "authorization: Bearer <token>".
	Token string
	// TLS: connect over TLS with this configuration; nil: plaintext (h2c), unless the address
	// starts with https://.
	TLS *tls.Config
	// Resolve asks the edge to substitute ${VAR} in pushed values. ${secret:…} references are
	// never pushed resolved: read those with Client.Resolve.
	Resolve bool
	// Logger receives connection problems (Warn) and session events (Debug); nil:
	// slog.Default().
	Logger *slog.Logger
}

// Client is one application instance's view of the configuration. It is safe for concurrent
// use.
type Client struct {
	env        string
	prefixes   []string
	cachePath  string
	instanceID string
	labels     map[string]string
	token      string
	resolve    bool
	log        *slog.Logger

	conn *grpc.ClientConn
	edge edgepb.EdgeClient

	ctx         context.Context
	cancel      context.CancelFunc
	sessionDone chan struct{}
	dispatch    *dispatcher

	mu sync.Mutex
	// store is what the client serves; hasData once a cache file was loaded or a sync done.
	store   *store
	hasData bool
	// synced: the first sync completed. live: the current session is up and caught up.
	synced    bool
	live      bool
	edgeStale bool
	// authErr: the edge refused the token on the last attempt; lastErr: why the last session
	// ended or failed (for WaitReady's timeout message).
	authErr error
	lastErr error
	closed  bool
	// changed is closed (and replaced) whenever synced, authErr or closed change.
	changed chan struct{}
	// cacheDirty: the last cache write failed; Close tries again.
	cacheDirty bool
	closeOnce  sync.Once
}

// NewClient creates a client for the edge at address ("host:port", or http://… / https://…).
// It is usable at once — Get serves the cache file if there is one — and connects in the
// background; WaitReady waits for the first sync.
func NewClient(address string, opts Options) (*Client, error) {
	target, useTLS := strings.CutPrefix(address, "https://")
	target = strings.TrimPrefix(target, "http://")
	target = strings.TrimSuffix(target, "/")
	if target == "" {
		return nil, fmt.Errorf("%w: the edge address is empty", ErrInvalid)
	}
	prefixes, err := normalizePrefixes(opts.Prefixes)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
	} else if useTLS {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("%w: address %q: %v", ErrInvalid, address, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	instanceID := opts.InstanceID
	if instanceID == "" {
		instanceID = defaultInstanceID()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		env:         opts.Environment,
		prefixes:    prefixes,
		cachePath:   opts.CachePath,
		instanceID:  instanceID,
		labels:      maps.Clone(opts.Labels),
		token:       opts.Token,
		resolve:     opts.Resolve,
		log:         log.With("sdk", "setpoint", "instance", instanceID),
		conn:        conn,
		edge:        edgepb.NewEdgeClient(conn),
		ctx:         ctx,
		cancel:      cancel,
		sessionDone: make(chan struct{}),
		dispatch:    newDispatcher(),
		store:       newStore(),
		changed:     make(chan struct{}),
	}
	if c.cachePath != "" {
		cached, err := loadCache(c.cachePath, c.env, c.prefixes)
		switch {
		case err != nil:
			c.log.Warn("setpoint: not using the cache file", "path", c.cachePath, "error", err)
		case cached != nil:
			c.store = cached
			c.hasData = true
			c.log.Debug("setpoint: serving the cache file until the edge answers",
				"path", c.cachePath, "revision", cached.revision, "entries", len(cached.entries))
		}
	}
	go c.dispatch.run()
	go c.run()
	return c, nil
}

func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	random := make([]byte, 4)
	_, _ = rand.Read(random) // crypto/rand.Read does not fail on supported platforms
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(random))
}

// notifyLocked wakes WaitReady callers; c.mu must be held.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// WaitReady returns nil once the first sync has completed (a reset or a resumed session
// applied), ErrUnauthorized (wrapped) when the edge refuses the token, ErrClosed, or ctx's
// error when ctx ends first.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		c.mu.Lock()
		synced, authErr, closed, changed := c.synced, c.authErr, c.closed, c.changed
		c.mu.Unlock()
		switch {
		case closed:
			return ErrClosed
		case synced:
			return nil
		case authErr != nil:
			return authErr
		}
		select {
		case <-changed:
		case <-ctx.Done():
			c.mu.Lock()
			lastErr := c.lastErr
			c.mu.Unlock()
			if lastErr != nil {
				return fmt.Errorf("setpoint: not ready (last attempt: %v): %w", lastErr, ctx.Err())
			}
			return fmt.Errorf("setpoint: not ready: %w", ctx.Err())
		}
	}
}

// Get returns the value at path from what the client holds — never a network call. Errors:
// ErrNotFound (no value there), ErrNotSynced (no sync yet and no cache file), ErrUnauthorized
// (the edge refused the token and nothing is cached), ErrClosed, ErrInvalid (a malformed path).
// A value served from the cache file before the first sync is returned as is; IsStale says so.
func (c *Client) Get(path string) (Value, error) {
	p, err := normalizePath(path)
	if err != nil {
		return Value{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return Value{}, ErrClosed
	case !c.hasData && c.authErr != nil:
		return Value{}, c.authErr
	case !c.hasData:
		return Value{}, fmt.Errorf("%w: %s", ErrNotSynced, p)
	case !underAny(p, c.prefixes):
		return Value{}, fmt.Errorf("%w: %s is outside the client's prefixes %v", ErrNotFound, p, c.prefixes)
	}
	e, ok := c.store.entries[p]
	if !ok {
		return Value{}, fmt.Errorf("%w: %s", ErrNotFound, p)
	}
	return e.asValue(), nil
}

// IsStale is true while the values may be behind the writer: before the first sync (serving
// the cache file), while the session is lost, or while the edge reports it lost the writer.
func (c *Client) IsStale() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.live || c.edgeStale
}

// Close ends the session, stops the client's goroutines and flushes the cache file. A callback
// running when Close is called finishes on its own (Close may be called from a callback); no
// callback starts after Close returns. Get and Watch then return ErrClosed.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.live = false
		c.notifyLocked()
		c.mu.Unlock()
		c.cancel()
		<-c.sessionDone
		c.dispatch.close()
		// The session goroutine has ended: nothing else writes the cache file now.
		c.mu.Lock()
		dirty := c.cacheDirty
		c.mu.Unlock()
		if dirty {
			if werr := c.writeCache(); werr != nil {
				err = fmt.Errorf("setpoint: flushing the cache file: %w", werr)
			}
		}
		if cerr := c.conn.Close(); cerr != nil && err == nil {
			err = cerr
		}
	})
	return err
}

// writeCache writes the cache file (if configured) from the state the client holds. Only the
// session goroutine calls it (and Close, once that goroutine has ended), so writes never
// interleave; the state is encoded under c.mu but written outside it, so Get never waits for
// an fsync.
func (c *Client) writeCache() error {
	if c.cachePath == "" {
		return nil
	}
	c.mu.Lock()
	data, err := encodeCache(c.env, c.prefixes, c.store)
	c.mu.Unlock()
	if err == nil {
		err = writeFileAtomic(c.cachePath, data)
	}
	c.mu.Lock()
	c.cacheDirty = err != nil
	c.mu.Unlock()
	return err
}
