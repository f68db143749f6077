package setpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// The cache file lets an application start with its last known configuration when no edge is
// reachable. Its format is shared by all four SDKs (sdk/README.md), so it is spelled out here
// rather than derived from the in-memory types.

const cacheFormat = 1

type cacheFile struct {
	Format   int                   `json:"format"`
	Env      *string               `json:"env"`
	Prefixes []string              `json:"prefixes"`
	Revision int64                 `json:"revision"`
	Entries  map[string]cacheEntry `json:"entries"`
}

type cacheEntry struct {
	Value    json.RawMessage `json:"value"`
	Format   string          `json:"format"`
	Version  uint64          `json:"version"`
	Revision int64           `json:"revision"`
}

// errCacheMismatch: the file holds another environment's or other prefixes' values; serving
// them would be serving the wrong configuration.
var errCacheMismatch = errors.New("the cache file is for another environment or other prefixes")

func encodeCache(env string, prefixes []string, s *store) ([]byte, error) {
	f := cacheFile{
		Format:   cacheFormat,
		Prefixes: prefixes,
		Revision: s.revision,
		Entries:  make(map[string]cacheEntry, len(s.entries)),
	}
	if env != "" {
		f.Env = &env
	}
	for p, e := range s.entries {
		f.Entries[p] = cacheEntry{Value: e.value, Format: e.format, Version: e.version, Revision: e.revision}
	}
	return json.Marshal(f)
}

// decodeCache reads a cache file's bytes into a store, if they are for env and prefixes.
func decodeCache(data []byte, env string, prefixes []string) (*store, error) {
	var f cacheFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("the cache file is not valid: %w", err)
	}
	if f.Format != cacheFormat {
		return nil, fmt.Errorf("the cache file has format %d, this SDK reads %d", f.Format, cacheFormat)
	}
	fileEnv := ""
	if f.Env != nil {
		fileEnv = *f.Env
	}
	filePrefixes, err := normalizePrefixes(f.Prefixes)
	if err != nil || fileEnv != env || !slices.Equal(filePrefixes, prefixes) {
		return nil, errCacheMismatch
	}
	s := newStore()
	s.revision = f.Revision
	for p, e := range f.Entries {
		if len(e.Value) == 0 {
			return nil, fmt.Errorf("the cache file's entry %s has no value", p)
		}
		s.entries[p] = &entry{value: e.Value, format: e.Format, version: e.Version, revision: e.Revision}
	}
	return s, nil
}

// loadCache reads the cache file at path; (nil, nil) when there is none.
func loadCache(path, env string, prefixes []string) (*store, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeCache(data, env, prefixes)
}

// writeFileAtomic replaces path with data so that a reader (or a crash) sees either the old file
// or the new one, never a torn one: a temp file in the same directory, fsync, rename, and an
// fsync of the directory so the rename itself survives a power loss.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	// Configuration may hold credentials (secret references resolved elsewhere, but also plain
	// values): owner-only, like other local credential caches.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: not every filesystem supports syncing a directory
		d.Close()
	}
	return nil
}
