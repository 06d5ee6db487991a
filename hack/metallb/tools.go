//go:build tools

// Package tools pins MetalLB's speaker and controller, which the benchmark
// runs beside Porter in the same lab. It is a module of its own so that
// MetalLB's dependencies never enter Porter's.
package tools

import (
	_ "go.universe.tf/metallb/controller"
	_ "go.universe.tf/metallb/speaker"
)
