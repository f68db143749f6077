package setpoint

import (
	"math/rand/v2"
	"time"
)

const (
	backoffBase = 100 * time.Millisecond
	backoffCap  = 10 * time.Second
	// unauthorizedRetry: a refused token stays refused until someone changes it; retrying at
	// the normal pace would only feed the edge's failure limiter.
	unauthorizedRetry = 30 * time.Second
)

// backoff is full-jitter exponential backoff: the n-th wait is uniform in [0, min(cap,
// base·2ⁿ)), so a fleet that lost its edge at the same moment does not come back in lockstep.
type backoff struct {
	base, cap time.Duration
	attempt   int
	// random returns a float in [0, 1); injected so tests can pin it.
	random func() float64
}

func newBackoff() *backoff {
	return &backoff{base: backoffBase, cap: backoffCap, random: rand.Float64}
}

// next returns the wait before the next attempt and counts the attempt.
func (b *backoff) next() time.Duration {
	ceiling := b.cap
	if b.attempt < 32 { // beyond that the shift overflows and the cap applies anyway
		if d := b.base << b.attempt; d > 0 && d < b.cap {
			ceiling = d
		}
	}
	b.attempt++
	return time.Duration(b.random() * float64(ceiling))
}

// reset starts over after a session that got going.
func (b *backoff) reset() { b.attempt = 0 }
