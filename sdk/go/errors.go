package setpoint

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The errors a caller branches on. Returned errors wrap them with the detail (the path, the
// edge's message), so compare with errors.Is.
var (
	// ErrNotFound: the client is synced (or serves its cache file) and holds no value at the path.
	ErrNotFound = errors.New("setpoint: not found")
	// ErrNotSynced: no sync has completed yet and no cache file was loaded.
	ErrNotSynced = errors.New("setpoint: not synced yet")
	// ErrUnauthorized: the edge refused the token (UNAUTHENTICATED or PERMISSION_DENIED).
	ErrUnauthorized = errors.New("setpoint: unauthorized")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("setpoint: client closed")
	// ErrInvalid: an argument the client cannot use (a malformed path, a watch prefix outside
	// the client's prefixes, an empty address).
	ErrInvalid = errors.New("setpoint: invalid argument")
)

// isUnauthorized tells whether a gRPC error is the edge refusing the caller, which must not be
// retried at the normal pace (every retry would fail again and count against the edge's
// per-source failure limit).
func isUnauthorized(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	}
	return false
}

// rpcError maps a gRPC error of a unary call to the package's typed errors.
func rpcError(err error, path string) error {
	s, _ := status.FromError(err)
	switch s.Code() {
	case codes.NotFound:
		return fmt.Errorf("%w: %s: %s", ErrNotFound, path, s.Message())
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("%w: %s", ErrUnauthorized, s.Message())
	case codes.InvalidArgument:
		return fmt.Errorf("%w: %s", ErrInvalid, s.Message())
	}
	return fmt.Errorf("setpoint: %s: %w", path, err)
}
