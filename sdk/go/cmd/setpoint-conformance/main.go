// Command setpoint-conformance drives the Go SDK for the cross-SDK conformance tests
// (tests/conformance/README.md): JSON commands on stdin, one JSON answer per command and one
// line per callback invocation on stdout, logs on stderr. It exits when stdin closes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	setpoint "github.com/setpoint/setpoint/sdk/go"
)

type command struct {
	Seq       *int64            `json:"seq"`
	Cmd       string            `json:"cmd"`
	Address   string            `json:"address"`
	Env       *string           `json:"env"`
	Prefixes  []string          `json:"prefixes"`
	CachePath *string           `json:"cache_path"`
	Instance  string            `json:"instance_id"`
	Token     *string           `json:"token"`
	Labels    map[string]string `json:"labels"`
	TimeoutMS int64             `json:"timeout_ms"`
	Path      string            `json:"path"`
	WatchID   string            `json:"watch_id"`
	Prefix    string            `json:"prefix"`
	FailPaths []string          `json:"fail_paths"`
}

// failure is a command's error answer.
type failure struct {
	kind    string
	message string
}

func (f *failure) Error() string { return f.message }

func fail(kind, format string, args ...any) *failure {
	return &failure{kind: kind, message: fmt.Sprintf(format, args...)}
}

// kindOf maps the SDK's typed errors to the protocol's error kinds.
func kindOf(err error) *failure {
	var f *failure
	switch {
	case errors.As(err, &f):
		return f
	case errors.Is(err, setpoint.ErrNotFound):
		return &failure{"not_found", err.Error()}
	case errors.Is(err, setpoint.ErrNotSynced):
		return &failure{"not_synced", err.Error()}
	case errors.Is(err, setpoint.ErrUnauthorized):
		return &failure{"unauthorized", err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &failure{"timeout", err.Error()}
	case errors.Is(err, setpoint.ErrClosed):
		return &failure{"closed", err.Error()}
	case errors.Is(err, setpoint.ErrInvalid):
		return &failure{"invalid", err.Error()}
	}
	return &failure{"other", err.Error()}
}

// output serialises stdout: answers and callback lines come from different goroutines.
type output struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *output) line(v any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.enc.Encode(v); err != nil {
		slog.Error("writing to stdout", "error", err)
		os.Exit(1)
	}
}

type driver struct {
	out     *output
	client  *setpoint.Client
	watches map[string]*setpoint.Watch
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	d := &driver{out: &output{enc: json.NewEncoder(os.Stdout)}, watches: map[string]*setpoint.Watch{}}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() {
		if len(in.Bytes()) == 0 {
			continue
		}
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil || cmd.Seq == nil {
			slog.Error("not a command", "line", in.Text(), "error", err)
			continue
		}
		answer := map[string]any{"seq": *cmd.Seq}
		fields, err := d.handle(cmd)
		if err != nil {
			f := kindOf(err)
			answer["ok"] = false
			answer["error"] = map[string]string{"kind": f.kind, "message": f.message}
		} else {
			answer["ok"] = true
			for k, v := range fields {
				answer[k] = v
			}
		}
		d.out.line(answer)
	}
	if d.client != nil {
		_ = d.client.Close()
	}
}

func (d *driver) handle(cmd command) (map[string]any, error) {
	if cmd.Cmd != "open" && d.client == nil {
		return nil, fail("invalid", "no client: send open first")
	}
	switch cmd.Cmd {
	case "open":
		if d.client != nil {
			return nil, fail("invalid", "a client is already open")
		}
		opts := setpoint.Options{Prefixes: cmd.Prefixes, InstanceID: cmd.Instance, Labels: cmd.Labels}
		if cmd.Env != nil {
			opts.Environment = *cmd.Env
		}
		if cmd.CachePath != nil {
			opts.CachePath = *cmd.CachePath
		}
		if cmd.Token != nil {
			opts.Token = *cmd.Token
		}
		c, err := setpoint.NewClient(cmd.Address, opts)
		if err != nil {
			return nil, err
		}
		d.client = c
		return nil, nil
	case "wait_ready":
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cmd.TimeoutMS)*time.Millisecond)
		defer cancel()
		return nil, d.client.WaitReady(ctx)
	case "get":
		v, err := d.client.Get(cmd.Path)
		if err != nil {
			return nil, err
		}
		return map[string]any{"value": v, "version": v.Version}, nil
	case "watch":
		if _, dup := d.watches[cmd.WatchID]; dup {
			return nil, fail("invalid", "watch %q exists", cmd.WatchID)
		}
		w, err := d.client.WatchErr(cmd.Prefix, d.callback(cmd.WatchID, cmd.FailPaths))
		if err != nil {
			return nil, err
		}
		d.watches[cmd.WatchID] = w
		return nil, nil
	case "unwatch":
		w, ok := d.watches[cmd.WatchID]
		if !ok {
			return nil, fail("invalid", "no watch %q", cmd.WatchID)
		}
		w.Stop()
		delete(d.watches, cmd.WatchID)
		return nil, nil
	case "is_stale":
		return map[string]any{"stale": d.client.IsStale()}, nil
	case "close":
		return nil, d.client.Close()
	}
	return nil, fail("invalid", "unknown command %q", cmd.Cmd)
}

// callback records each event and fails, as Go code fails, for the paths in failPaths: it
// returns an error (WatchErr turns it into a NACK; a panic would too).
func (d *driver) callback(id string, failPaths []string) func(setpoint.Event) error {
	return func(e setpoint.Event) error {
		d.out.line(map[string]any{
			"event":     "change",
			"watch_id":  id,
			"path":      e.Path,
			"value":     e.Value,
			"old_value": e.OldValue,
			"version":   e.Version,
			"revision":  e.Revision,
			"deleted":   e.Deleted,
			"at_ms":     float64(time.Now().UnixMicro()) / 1000,
		})
		if slices.Contains(failPaths, e.Path) {
			return fmt.Errorf("injected failure at %s", e.Path)
		}
		return nil
	}
}
