package setpoint

import (
	"testing"
	"time"
)

func TestBackoffDoublesToTheCapWithFullJitter(t *testing.T) {
	b := newBackoff()
	b.random = func() float64 { return 0.999999 } // the top of each window
	var got []time.Duration
	for range 10 {
		got = append(got, b.next().Round(time.Millisecond))
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000}
	for i, w := range want {
		if got[i] != w*time.Millisecond {
			t.Fatalf("attempt %d: %v, want %v (all: %v)", i, got[i], w*time.Millisecond, got)
		}
	}
	b.random = func() float64 { return 0 }
	if d := b.next(); d != 0 {
		t.Fatalf("full jitter goes down to 0, got %v", d)
	}
	b.reset()
	b.random = func() float64 { return 0.5 }
	if d := b.next(); d != 50*time.Millisecond {
		t.Fatalf("after reset: %v, want 50ms", d)
	}
}

func TestBackoffNeverOverflows(t *testing.T) {
	b := newBackoff()
	b.random = func() float64 { return 0.999999 }
	for range 200 {
		if d := b.next(); d < 0 || d > backoffCap {
			t.Fatalf("attempt %d: %v", b.attempt, d)
		}
	}
}
