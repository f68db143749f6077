package setpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/metadata"

	"github.com/setpoint/setpoint/sdk/go/internal/edgepb"
)

// Resolve asks the edge for the value at path in the client's environment with ${VAR} and
// ${secret:…} substituted — how an application reads a secret, since the session never pushes
// one resolved. On a prefix without a value it answers the subtree as one JSON object. Unlike
// Get this is a network call, and its answer is not cached (a secret should not land in the
// cache file). Errors: ErrNotFound, ErrUnauthorized (the token may not read secrets), or the
// gRPC error.
func (c *Client) Resolve(ctx context.Context, path string) (Value, error) {
	p, err := normalizePath(path)
	if err != nil {
		return Value{}, err
	}
	if c.ctx.Err() != nil {
		return Value{}, ErrClosed
	}
	if c.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	}
	req := &edgepb.ResolveRequest{Path: p}
	if c.env != "" {
		req.Env = &c.env
	}
	resp, err := c.edge.Resolve(ctx, req)
	if err != nil {
		return Value{}, rpcError(err, p)
	}
	return resolvedValue(p, []byte(resp.GetJson()), resp.GetRevision())
}

// resolvedEntry is the HTTP API's answer for a path that has a value (GET
// /api/config/{path}?env=…&resolve=true); a prefix's answer is the subtree object instead.
type resolvedEntry struct {
	Path     *string         `json:"path"`
	Value    json.RawMessage `json:"value"`
	Format   string          `json:"format"`
	Version  uint64          `json:"version"`
	Revision int64           `json:"revision"`
	Resolved *bool           `json:"resolved"`
}

func resolvedValue(path string, doc []byte, revision int64) (Value, error) {
	doc = bytes.TrimSpace(doc)
	if !json.Valid(doc) {
		return Value{}, fmt.Errorf("setpoint: the edge's answer for %s is not JSON", path)
	}
	var e resolvedEntry
	// An entry names its own path and says whether it was resolved; a subtree object that
	// happened to have keys "path" and "value" would not carry both with these types.
	if json.Unmarshal(doc, &e) == nil && e.Path != nil && *e.Path == path && e.Resolved != nil && len(e.Value) > 0 {
		return Value{raw: e.Value, Version: e.Version, Revision: e.Revision, Format: e.Format}, nil
	}
	return Value{raw: doc, Revision: revision, Format: "json"}, nil
}
