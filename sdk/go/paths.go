package setpoint

import (
	"fmt"
	"slices"
	"strings"
)

// normalizePath checks a path or prefix and gives it its one spelling: a leading "/", no
// trailing "/" (except the root), no empty segments. The edge is the authority on what a path
// may contain; this only keeps the client's own comparisons (prefix matching, cache lookups)
// from depending on how the caller spelled it.
func normalizePath(raw string) (string, error) {
	if raw == "/" {
		return "/", nil
	}
	if !strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("%w: path %q must start with /", ErrInvalid, raw)
	}
	trimmed := strings.TrimSuffix(raw, "/")
	for _, segment := range strings.Split(trimmed[1:], "/") {
		if segment == "" || segment == "." || segment == ".." {
			return "", fmt.Errorf("%w: path %q has an empty, . or .. segment", ErrInvalid, raw)
		}
	}
	return trimmed, nil
}

// normalizePrefixes normalizes, sorts and deduplicates the client's prefixes; none means "/".
func normalizePrefixes(raw []string) ([]string, error) {
	if len(raw) == 0 {
		return []string{"/"}, nil
	}
	out := make([]string, 0, len(raw))
	for _, p := range raw {
		n, err := normalizePath(p)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// under tells whether path is prefix itself or lies below it ("/a/bc" is not below "/a/b").
func under(path, prefix string) bool {
	return prefix == "/" || path == prefix || strings.HasPrefix(path, prefix+"/")
}

func underAny(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if under(path, p) {
			return true
		}
	}
	return false
}
