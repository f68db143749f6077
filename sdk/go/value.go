package setpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Value is one configuration value as the application sees it: decoded JSON (a JSON string for
// values of format text and yaml), with the version and format of the entry that holds it.
// The zero Value stands for "no value" (the new value of a delete, the old value of a create).
type Value struct {
	raw json.RawMessage
	// Version of the entry (with an environment: of the most specific layer that set it).
	Version uint64
	// Revision of the commit that wrote this version.
	Revision int64
	// Format: "json", "yaml" or "text".
	Format string
}

// Exists tells a value from the zero Value (no value).
func (v Value) Exists() bool { return len(v.raw) > 0 }

// String returns the string itself for a JSON string value (so a text value prints as
// written), the JSON text for any other value, and "" for no value.
func (v Value) String() string {
	if len(v.raw) == 0 {
		return ""
	}
	if bytes.HasPrefix(v.raw, []byte(`"`)) {
		var s string
		if json.Unmarshal(v.raw, &s) == nil {
			return s
		}
	}
	return string(v.raw)
}

// Decode unmarshals the value into dst, as json.Unmarshal does.
func (v Value) Decode(dst any) error {
	if len(v.raw) == 0 {
		return fmt.Errorf("%w: no value to decode", ErrNotFound)
	}
	return json.Unmarshal(v.raw, dst)
}

// Raw returns the value's JSON text (a copy: the client keeps its own).
func (v Value) Raw() json.RawMessage {
	if len(v.raw) == 0 {
		return nil
	}
	return bytes.Clone(v.raw)
}

// MarshalJSON makes a Value encode as the value itself (null for no value).
func (v Value) MarshalJSON() ([]byte, error) {
	if len(v.raw) == 0 {
		return []byte("null"), nil
	}
	return v.Raw(), nil
}

// wireValue turns a value's JSON text from the wire into what the client holds. The edge sends
// valid JSON; should it not, the text is kept as a JSON string rather than poisoning the cache
// file (which embeds values as JSON) or failing the whole update.
func wireValue(text string) json.RawMessage {
	trimmed := bytes.TrimSpace([]byte(text))
	if json.Valid(trimmed) {
		return trimmed
	}
	quoted, _ := json.Marshal(text)
	return quoted
}
