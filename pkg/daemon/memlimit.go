package daemon

import (
	"math"
	"strconv"
	"strings"
)

// MemoryLimitEnv is set from the container's memory limit through the
// downward API (resourceFieldRef limits.memory), in bytes.
const MemoryLimitEnv = "MEMORY_LIMIT"

// softShare is the part of the container's limit the Go runtime aims to
// stay under. The rest is for what it does not count, the executable's
// pages above all, which the kernel charges to the container too.
const softShare = 0.85

// SoftLimit is the Go runtime's soft memory limit for the environment
// getenv reads: a share of the container's limit, so that the collector
// works harder as the limit nears instead of letting garbage grow the
// heap into an OOM kill. ok is false when GOMEMLIMIT is set, which the
// runtime has already applied and an operator's choice wins, or when no
// usable limit is given.
func SoftLimit(getenv func(string) string) (limit int64, ok bool) {
	if strings.TrimSpace(getenv("GOMEMLIMIT")) != "" {
		return 0, false
	}
	v := strings.TrimSpace(getenv(MemoryLimitEnv))
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	// Without a limit the downward API gives the node's allocatable
	// memory, which is as good a ceiling as any.
	if err != nil || n <= 0 || n > math.MaxInt64/2 {
		return 0, false
	}
	return int64(float64(n) * softShare), true
}
